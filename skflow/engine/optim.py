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

    Notes
    -----
    Between :meth:`bind` and :meth:`unbind` the parameters are views of one
    flat buffer and, after ``zero_grad(set_to_none=False)``, so are their
    gradients (autograd accumulates into them in place).  A step and a
    gradient clip are then a few operations on two long vectors instead of
    a few per parameter: on the flows' small models, per-tensor updates
    (even as ``torch._foreach_*`` operations) were about a sixth of a
    training step.  Unbound, or when some parameter has no gradient, the
    same maths runs over the parameters that have one.

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
        # The moment estimates of all parameters, flat, in the order of ``params`` (None: no step yet).
        self._moments: tuple[Tensor, Tensor] | None = None
        # While bound: the flat parameter buffer, and the flat gradient buffer once gradients are bound.
        self._flat: Tensor | None = None
        self._flat_grad: Tensor | None = None
        self._grad_views: list[Tensor] = []

    def __setstate__(self, state: dict) -> None:
        # Pickled before the moments were flat: per-parameter lists (None where no step was taken).
        if "exp_avg" in state:
            first, second = state.pop("exp_avg"), state.pop("exp_avg_sq")
            params = state["params"]
            state["_moments"] = None
            if any(m is not None for m in first):
                state["_moments"] = tuple(
                    torch.cat([(torch.zeros_like(p) if m is None else m).reshape(-1) for m, p in pairs])
                    for pairs in (zip(first, params), zip(second, params))
                )
        state.setdefault("_flat", None)
        state.setdefault("_flat_grad", None)
        state.setdefault("_grad_views", [])
        self.__dict__.update(state)

    # ----------------------------------------------------------- flat buffers
    def _numels(self) -> list[int]:
        return [p.numel() for p in self.params]

    def _views(self, flat: Tensor) -> list[Tensor]:
        return [v.view_as(p) for v, p in zip(flat.split(self._numels()), self.params)]

    @property
    def exp_avg(self) -> list[Tensor | None]:
        """First moment estimate per parameter (views; ``None`` before the first step)."""
        return [None] * len(self.params) if self._moments is None else self._views(self._moments[0])

    @property
    def exp_avg_sq(self) -> list[Tensor | None]:
        """Second moment estimate per parameter (views; ``None`` before the first step)."""
        return [None] * len(self.params) if self._moments is None else self._views(self._moments[1])

    @torch.no_grad()
    def bind(self) -> None:
        """Make the parameters views of one flat buffer (their values unchanged).

        All parameters must share a dtype and device; otherwise nothing
        changes and steps run per parameter.
        """
        self.unbind()
        if not self.params:
            return
        first = self.params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in self.params):
            return
        flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        for p, view in zip(self.params, self._views(flat)):
            p.data = view
        self._flat = flat

    def unbind(self) -> None:
        """Release the flat buffers and the gradients (the parameters keep their values)."""
        self.zero_grad()
        self._flat = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients: to ``None``, or (``set_to_none=False``) to zeros.

        Bound, zeros are views of one flat gradient buffer that backward
        accumulates into in place.
        """
        if set_to_none:
            for p in self.params:
                p.grad = None
            self._flat_grad, self._grad_views = None, []
        elif self._flat is not None:
            if not self._flat_path():
                self._flat_grad = torch.zeros_like(self._flat)
                self._grad_views = self._views(self._flat_grad)
                for p, view in zip(self.params, self._grad_views):
                    p.grad = view
            else:
                self._flat_grad.zero_()
        else:
            for p in self.params:
                if p.grad is not None:
                    p.grad.zero_()

    def _flat_path(self) -> bool:
        """Whether the step can run on the flat buffers (bound, every gradient a view of them)."""
        return self._flat_grad is not None and all(p.grad is v for p, v in zip(self.params, self._grad_views))

    def clip_grad_norm_(self, max_norm: float) -> Tensor:
        """Scale the gradients to a total 2-norm of at most ``max_norm``; return the norm before.

        As :func:`torch.nn.utils.clip_grad_norm_`.
        """
        if self._flat_path():
            norm = torch.linalg.vector_norm(self._flat_grad)
            self._flat_grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
            return norm
        params = [p for p in self.params if p.grad is not None]
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW update of every parameter that has a gradient.

        The maths of ``torch.optim.AdamW``, either on the flat buffers or as
        multi-tensor (``torch._foreach_*``) operations over the parameters
        that have a gradient.
        """
        flat = self._flat_path()
        if flat:
            params, grads = [self._flat], [self._flat_grad]
            first = self._flat
        else:
            have = [i for i, p in enumerate(self.params) if p.grad is not None]
            if not have:
                return
            params = [self.params[i] for i in have]
            grads = [p.grad for p in params]
            first = params[0]
        if self._moments is None:
            zeros = torch.zeros(sum(self._numels()), dtype=first.dtype, device=first.device)
            self._moments = (zeros, zeros.clone())
        elif self._moments[0].dtype != first.dtype or self._moments[0].device != first.device:
            self._moments = tuple(m.to(first) for m in self._moments)
        if flat:
            ms, vs = [self._moments[0]], [self._moments[1]]
        else:
            m_views, v_views = self._views(self._moments[0]), self._views(self._moments[1])
            ms, vs = [m_views[i] for i in have], [v_views[i] for i in have]
        self.steps += 1
        beta1, beta2 = self.betas
        bias1 = 1.0 - beta1**self.steps
        bias2 = 1.0 - beta2**self.steps
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
        if self._moments is not None:
            self._moments = tuple(m.to(device) for m in self._moments)
        return self


def cosine_learning_rate(peak: float, step: int, total_steps: int) -> float:
    """Cosine annealing from ``peak`` at step 0 to 0 at ``total_steps`` (SGDR without restarts)."""
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
