"""AdamW and its cosine schedule, without ``torch.optim``.

The maths of ``torch.optim.AdamW`` (decoupled weight decay, bias-corrected
moments; Loshchilov & Hutter, arXiv 1711.05101) in a few tensor operations.
Why not torch's own: constructing any ``torch.optim.Optimizer`` imports
``torch._dynamo`` (its ``add_param_group`` is wrapped to disable the
compiler), which costs seconds in a fresh process, more than a whole small
fit.  The moment estimates follow their parameter's dtype and device, so a
model moved between float32 training and float64 inference (or between
devices) keeps its optimiser state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["AdamW", "cosine_learning_rate"]


class AdamW:
    """Adam with decoupled weight decay.

    Parameters
    ----------
    params : iterable of Tensor
        The parameters to optimise.
    lr : float
        Step size (the schedule sets ``self.lr`` before each step).
    betas : tuple of float, default=(0.9, 0.999)
        Decay rates of the first and second moment estimates.
    eps : float, default=1e-8
        Added to the root of the second moment.
    weight_decay : float, default=0.0
        Decoupled weight decay: each step multiplies parameters by
        ``1 - lr * weight_decay``.

    Examples
    --------
    >>> import torch
    >>> p = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = AdamW([p], lr=0.1)
    >>> (p ** 2).sum().backward(); opt.step(); round(p.item(), 4)
    0.9
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.steps = 0
        self.exp_avg: list[Tensor | None] = [None] * len(self.params)
        self.exp_avg_sq: list[Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW update of every parameter that has a gradient.

        The update runs as a handful of multi-tensor (``torch._foreach_*``)
        operations over all parameters, not a Python loop of six operations
        per parameter: on small models the loop was most of a step's cost.
        """
        self.steps += 1
        beta1, beta2 = self.betas
        bias1 = 1.0 - beta1**self.steps
        bias2 = 1.0 - beta2**self.steps
        params, grads, ms, vs = [], [], [], []
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            m, v = self.exp_avg[i], self.exp_avg_sq[i]
            if m is None:
                m, v = torch.zeros_like(p), torch.zeros_like(p)
            elif m.dtype != p.dtype or m.device != p.device:
                m, v = m.to(p), v.to(p)
            self.exp_avg[i], self.exp_avg_sq[i] = m, v
            params.append(p)
            grads.append(p.grad)
            ms.append(m)
            vs.append(v)
        if not params:
            return
        if self.weight_decay:
            torch._foreach_mul_(params, 1.0 - self.lr * self.weight_decay)
        torch._foreach_lerp_(ms, grads, 1.0 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1.0 - beta2)
        denominators = torch._foreach_div(vs, bias2)
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, self.eps)
        torch._foreach_addcdiv_(params, ms, denominators, value=-self.lr / bias1)

    def to(self, device: torch.device | str) -> AdamW:
        """Move the moment estimates (e.g. to the CPU, so a pickle loads anywhere)."""
        self.exp_avg = [None if m is None else m.to(device) for m in self.exp_avg]
        self.exp_avg_sq = [None if v is None else v.to(device) for v in self.exp_avg_sq]
        return self


def cosine_learning_rate(peak: float, step: int, total_steps: int) -> float:
    """Cosine annealing from ``peak`` at step 0 to 0 at ``total_steps`` (SGDR without restarts)."""
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
