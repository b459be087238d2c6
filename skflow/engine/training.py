"""The one training loop shared by every skflow estimator.

Maximum likelihood with Adam, a cosine-annealed learning rate, mini-batches,
gradient-norm clipping and early stopping on a monitored score (held-out
log-likelihood, or the training loss when there is no validation set).

Guards: a step whose loss or gradients are not finite is never applied; the
loop stops, restores the best state seen and reports ``"diverged"``.  A
``KeyboardInterrupt`` also restores the best state and reports
``"interrupted"``.  Warnings are the caller's business (this module knows
nothing of scikit-learn).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from .flow import Flow

__all__ = ["TrainingResult", "Trainer", "mean_log_prob"]

# Gradient-norm clip: heavy-tailed batches (outliers far in the tails) give
# rare huge gradients that would otherwise undo many steps of progress.
MAX_GRAD_NORM = 10.0

# Rows per forward pass when evaluating without gradients: bounds memory.
EVAL_CHUNK = 65536


@dataclass
class TrainingResult:
    """What a call to :meth:`Trainer.fit` did."""

    n_iter: int = 0
    loss_curve: list[float] = field(default_factory=list)
    validation_scores: list[float] = field(default_factory=list)
    best_score: float = -math.inf
    status: str = "max_iter"  # "max_iter" | "converged" | "diverged" | "interrupted"


@torch.no_grad()
def mean_log_prob(flow: Flow, x: Tensor, weight: Tensor | None = None, chunk: int = EVAL_CHUNK) -> float:
    """Weighted mean log-likelihood of ``x`` under ``flow``, in chunks."""
    total, norm = 0.0, 0.0
    for start in range(0, x.shape[0], chunk):
        lp = flow.log_prob(x[start : start + chunk])
        if weight is None:
            total += lp.sum().item()
            norm += lp.shape[0]
        else:
            w = weight[start : start + chunk]
            total += (w * lp).sum().item()
            norm += w.sum().item()
    return total / norm


class Trainer:
    """Optimiser state around a flow; ``fit`` runs epochs of mini-batch SGD.

    Parameters
    ----------
    flow : Flow
        The model, already on its training device and dtype.
    learning_rate : float
        Peak Adam step size.
    weight_decay : float
        Decoupled weight decay (AdamW).
    """

    def __init__(self, flow: Flow, learning_rate: float = 1e-3, weight_decay: float = 0.0) -> None:
        self.flow = flow
        self.learning_rate = learning_rate
        self.optimizer = torch.optim.AdamW(
            [p for p in flow.parameters() if p.requires_grad], lr=learning_rate, weight_decay=weight_decay
        )

    def _snapshot(self) -> dict[str, Tensor]:
        return copy.deepcopy(self.flow.state_dict())

    def _step(self, xb: Tensor, wb: Tensor | None) -> float | None:
        """One optimiser step; ``None`` (and no update) if anything is non-finite."""
        log_prob = self.flow.log_prob(xb)
        loss = -log_prob.mean() if wb is None else -(wb * log_prob).sum() / wb.sum()
        if not torch.isfinite(loss):
            return None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.flow.parameters(), MAX_GRAD_NORM)
        if not torch.isfinite(norm):
            return None
        self.optimizer.step()
        return loss.item()

    def fit(
        self,
        x: Tensor,
        weight: Tensor | None = None,
        x_val: Tensor | None = None,
        weight_val: Tensor | None = None,
        *,
        rows: Tensor | None = None,
        max_iter: int = 100,
        batch_size: int = 256,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        anneal: bool = True,
        generator: torch.Generator | None = None,
        log: Callable[[str], None] | None = None,
        log_every: int = 1,
    ) -> TrainingResult:
        """Train for at most ``max_iter`` epochs over ``x``.

        The monitored score is the mean log-likelihood of ``x_val`` if given,
        else minus the epoch's mean training loss.  Training stops after
        ``n_iter_no_change`` epochs without an improvement larger than
        ``tol``; the best state is then restored.  Rows are moved to the
        flow's device one batch at a time, so ``x`` may stay on the CPU.
        ``rows`` restricts training to those row indices of ``x`` (and
        ``weight``) without copying them.
        """
        param = next(self.flow.parameters())
        device, dtype = param.device, param.dtype
        n = x.shape[0] if rows is None else rows.numel()
        batch_size = min(batch_size, n)
        n_batches = math.ceil(n / batch_size)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate
        total_steps = max_iter * n_batches
        if x_val is not None:
            x_val = x_val.to(device=device, dtype=dtype)
            weight_val = None if weight_val is None else weight_val.to(device=device, dtype=dtype)
        result = TrainingResult()
        best_state = self._snapshot()
        no_change = 0
        step = 0
        self.flow.train()
        try:
            for epoch in range(1, max_iter + 1):
                tic = time.perf_counter()
                order = torch.randperm(n, generator=generator)
                if rows is not None:
                    order = rows[order]
                epoch_loss, epoch_norm = 0.0, 0.0
                for b in range(n_batches):
                    idx = order[b * batch_size : (b + 1) * batch_size]
                    xb = x[idx].to(device=device, dtype=dtype)
                    wb = None if weight is None else weight[idx].to(device=device, dtype=dtype)
                    loss = self._step(xb, wb)
                    if loss is None:
                        result.status = "diverged"
                        break
                    size = idx.numel() if wb is None else wb.sum().item()
                    epoch_loss += loss * size
                    epoch_norm += size
                    step += 1
                    if anneal:
                        for group in self.optimizer.param_groups:
                            group["lr"] = 0.5 * self.learning_rate * (1 + math.cos(math.pi * step / total_steps))
                if result.status == "diverged":
                    break
                result.n_iter = epoch
                result.loss_curve.append(epoch_loss / epoch_norm)
                if x_val is not None:
                    self.flow.eval()
                    score = mean_log_prob(self.flow, x_val, weight_val)
                    self.flow.train()
                    result.validation_scores.append(score)
                else:
                    score = -result.loss_curve[-1]
                if not math.isfinite(score):
                    result.status = "diverged"
                    break
                improved = score > result.best_score + tol
                if score > result.best_score:
                    result.best_score = score
                    best_state = self._snapshot()
                no_change = 0 if improved else no_change + 1
                if log is not None and (epoch % log_every == 0 or epoch == 1):
                    val = f", validation log-likelihood {score:.5f}" if x_val is not None else ""
                    log(
                        f"Epoch {epoch}/{max_iter}: loss {result.loss_curve[-1]:.5f}{val}"
                        f" ({time.perf_counter() - tic:.2f} s)"
                    )
                if no_change >= n_iter_no_change:
                    result.status = "converged"
                    break
        except KeyboardInterrupt:
            result.status = "interrupted"
        self.flow.load_state_dict(best_state)
        self.flow.eval()
        return result
