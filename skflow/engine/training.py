"""The one training loop: maximum likelihood for any module with ``log_prob``.

:class:`Trainer` owns the optimiser (AdamW) of one model and keeps it across
calls to :meth:`Trainer.fit`, so warm starts and ``partial_fit`` continue
with the moment estimates they had (as scikit-learn's MLP keeps its
``_optimizer``).  Each call runs mini-batch epochs under a cosine learning-rate
schedule (:mod:`skflow.engine.optim`), clips gradient norms and stops early on a monitored score: the
held-out log-likelihood, or minus the training loss without a validation
set.  The starting model is scored too (epoch 0), so training replaces it
only by something better.

Guards: a step whose loss or gradients are not finite is never applied; the
loop stops, restores the best state and reports ``DIVERGED``.  A
``KeyboardInterrupt`` restores the best state and reports ``INTERRUPTED``.
Warnings are the caller's business (this module knows nothing of
scikit-learn).
"""

from __future__ import annotations

import copy
import enum
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from .optim import AdamW, cosine_learning_rate

__all__ = ["Trainer", "TrainingResult", "TrainingStatus", "mean_log_prob"]

# Gradient-norm clip: heavy-tailed batches (outliers far in the tails) give
# rare huge gradients that would otherwise undo many steps of progress.
MAX_GRAD_NORM = 10.0

# Rows per forward pass when evaluating without gradients: bounds memory.
EVAL_CHUNK = 65536


class TrainingStatus(enum.Enum):
    """How a call to :meth:`Trainer.fit` ended."""

    MAX_ITER = "max_iter"  # the epoch budget ran out while still improving
    CONVERGED = "converged"  # no improvement for ``n_iter_no_change`` epochs
    DIVERGED = "diverged"  # a non-finite loss, gradient or score; best state restored
    INTERRUPTED = "interrupted"  # KeyboardInterrupt; best state restored


@dataclass
class TrainingResult:
    """What a call to :meth:`Trainer.fit` did.

    ``validation_scores`` (or, without validation rows, minus the training
    loss) has one entry per epoch run; ``initial_score`` is the score of the
    model before the first epoch and ``best_epoch`` the epoch whose state was
    kept (0: the starting model).
    """

    n_iter: int = 0
    loss_curve: list[float] = field(default_factory=list)
    validation_scores: list[float] = field(default_factory=list)
    initial_score: float = -math.inf
    best_score: float = -math.inf
    best_epoch: int = 0
    status: TrainingStatus = TrainingStatus.MAX_ITER


@torch.no_grad()
def mean_log_prob(
    model: nn.Module, x: Tensor, weight: Tensor | None = None, chunk: int = EVAL_CHUNK
) -> float:
    """Weighted mean log-likelihood of ``x`` under ``model``, in chunks."""
    total, norm = 0.0, 0.0
    for start in range(0, x.shape[0], chunk):
        lp = model.log_prob(x[start : start + chunk])
        if weight is None:
            total += lp.sum().item()
            norm += lp.shape[0]
        else:
            w = weight[start : start + chunk]
            total += (w * lp).sum().item()
            norm += w.sum().item()
    return total / norm


class Trainer:
    """Optimiser state around a model with ``log_prob``; :meth:`fit` trains it.

    Parameters
    ----------
    model : nn.Module
        Anything with ``log_prob(x) -> (n,)`` and trainable parameters,
        already on its training device and dtype.
    learning_rate : float, default=1e-3
        Peak AdamW step size.
    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW).

    Examples
    --------
    >>> import torch
    >>> from skflow.engine import ActNorm, Flow
    >>> flow = Flow(ActNorm(2), 2)
    >>> result = Trainer(flow, learning_rate=1e-2).fit(torch.randn(64, 2) * 3, max_iter=5, batch_size=16)
    >>> result.n_iter, result.status.value
    (5, 'max_iter')
    """

    def __init__(self, model: nn.Module, learning_rate: float = 1e-3, weight_decay: float = 0.0) -> None:
        self.model = model
        self.learning_rate = learning_rate
        self.optimizer = AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)

    def _snapshot(self) -> dict[str, Tensor]:
        return copy.deepcopy(self.model.state_dict())

    def _step(self, xb: Tensor, wb: Tensor | None) -> float | None:
        """One optimiser step; ``None`` (and no update) if anything is non-finite."""
        log_prob = self.model.log_prob(xb)
        loss = -log_prob.mean() if wb is None else -(wb * log_prob).sum() / wb.sum()
        if not torch.isfinite(loss):
            return None
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        norm = self.optimizer.clip_grad_norm_(MAX_GRAD_NORM)
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
        keep_best: bool = True,
        generator: torch.Generator | None = None,
        log: Callable[[str], None] | None = None,
        log_every: int = 1,
    ) -> TrainingResult:
        """Train for at most ``max_iter`` epochs over ``x``.

        The monitored score is the mean log-likelihood of ``x_val`` if given,
        else minus the epoch's mean training loss (the starting model is
        scored on the training rows).  Training stops after
        ``n_iter_no_change`` epochs without an improvement larger than
        ``tol``; with ``keep_best`` the best state (possibly the starting
        one) is then restored, otherwise the last one is kept unless a step
        diverged.  Rows move to the model's device one batch at a time, so
        ``x`` may stay on the CPU; ``rows`` restricts training to those row
        indices of ``x`` (and ``weight``) without copying them.
        """
        param = next(p for p in self.model.parameters() if p.requires_grad)
        device, dtype = param.device, param.dtype
        train_rows = torch.arange(x.shape[0]) if rows is None else rows
        n = train_rows.numel()
        batch_size = min(batch_size, n)
        n_batches = math.ceil(n / batch_size)
        total_steps, step = max_iter * n_batches, 0
        self.optimizer.lr = self.learning_rate
        if x_val is not None:
            x_val = x_val.to(device=device, dtype=dtype)
            weight_val = None if weight_val is None else weight_val.to(device=device, dtype=dtype)
        result = TrainingResult()
        self.model.eval()
        result.initial_score = result.best_score = self._score(x, weight, train_rows, x_val, weight_val)
        best_state = self._snapshot()
        no_change = 0
        self.model.train()
        self.optimizer.bind()
        try:
            for epoch in range(1, max_iter + 1):
                tic = time.perf_counter()
                order = train_rows[torch.randperm(n, generator=generator)]
                epoch_loss, epoch_norm = 0.0, 0.0
                for b in range(n_batches):
                    idx = order[b * batch_size : (b + 1) * batch_size]
                    xb = x[idx].to(device=device, dtype=dtype)
                    wb = None if weight is None else weight[idx].to(device=device, dtype=dtype)
                    loss = self._step(xb, wb)
                    if loss is None:
                        result.status = TrainingStatus.DIVERGED
                        break
                    size = idx.numel() if wb is None else wb.sum().item()
                    epoch_loss += loss * size
                    epoch_norm += size
                    step += 1
                    if anneal:
                        self.optimizer.lr = cosine_learning_rate(self.learning_rate, step, total_steps)
                if result.status is TrainingStatus.DIVERGED:
                    break
                result.n_iter = epoch
                result.loss_curve.append(epoch_loss / epoch_norm)
                if x_val is not None:
                    self.model.eval()
                    score = mean_log_prob(self.model, x_val, weight_val)
                    self.model.train()
                else:
                    score = -result.loss_curve[-1]
                result.validation_scores.append(score)
                if not math.isfinite(score):
                    result.status = TrainingStatus.DIVERGED
                    break
                improved = score > result.best_score + tol
                if score > result.best_score or not keep_best:
                    result.best_score, result.best_epoch = score, epoch
                    best_state = self._snapshot()
                no_change = 0 if improved else no_change + 1
                if log is not None and (epoch % log_every == 0 or epoch == 1):
                    val = f", validation log-likelihood {score:.5f}" if x_val is not None else ""
                    log(
                        f"Epoch {epoch}/{max_iter}: loss {result.loss_curve[-1]:.5f}{val}"
                        f" ({time.perf_counter() - tic:.2f} s)"
                    )
                if no_change >= n_iter_no_change:
                    result.status = TrainingStatus.CONVERGED
                    break
        except KeyboardInterrupt:
            result.status = TrainingStatus.INTERRUPTED
        finally:
            self.optimizer.unbind()  # the fitted model keeps no gradients
        self.model.load_state_dict(best_state)
        self.model.eval()
        return result

    @torch.no_grad()
    def _score(self, x, weight, rows, x_val, weight_val) -> float:
        """The monitored score of the current model (before any epoch)."""
        if x_val is not None:
            score = mean_log_prob(self.model, x_val, weight_val)
        else:
            param = next(self.model.parameters())
            xt = x[rows].to(device=param.device, dtype=param.dtype)
            wt = None if weight is None else weight[rows].to(device=param.device, dtype=param.dtype)
            score = mean_log_prob(self.model, xt, wt)
        # A starting model with a non-finite score is replaced by the first finite epoch.
        return score if math.isfinite(score) else -math.inf
