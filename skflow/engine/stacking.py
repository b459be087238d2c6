"""Stacked density estimation: a convex combination of fitted densities.

``p(x) = sum_k w_k p_k(x)`` with weights ``w`` on the simplex fitted by
maximum likelihood on held-out rows (Smyth & Wolpert, *Stacked density
estimation*, NIPS 1997; *Linearly combining density estimators via
stacking*, Machine Learning 1999).  A convex combination of normalised
densities is a normalised density, and it samples exactly: pick a component
with probability ``w_k``, then draw from it.  By Jensen's inequality,
``log sum_k w_k p_k(x) >= sum_k w_k log p_k(x)``, so combining models that
err on different rows gains on held-out data, not just in-sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["DensityMixture", "stacking_weights"]


def stacking_weights(
    log_probs: Tensor,
    weight: Tensor | None = None,
    prior: float | Tensor = 1.0,
    n_iter: int = 500,
    tol: float = 1e-10,
    optional: Tensor | None = None,
    min_gain: float = 0.0,
) -> Tensor:
    """Mixing weights that maximise the held-out log-likelihood of a combination.

    EM on the weights only (the components are fixed): each iteration sets
    ``w_k`` to the mean responsibility of component ``k``.  ``prior`` adds
    that many pseudo-rows of responsibility to every component (the MAP
    estimate under a Dirichlet(1 + prior_k) prior), which shrinks the
    weights towards uniform when the held-out rows are few, and keeps every
    weight above ``prior_k / (n + sum(prior))``.

    Components marked ``optional`` must earn their place: they keep their
    weights only if the combination with them has a held-out log-likelihood
    (summed over the rows, the row weights scaled to sum to the number of
    rows) at least ``min_gain`` nats above the best combination of the
    others; otherwise their weights are exactly 0 and the others' are
    fitted without them.  Twice the gain is the likelihood-ratio statistic
    for those weights, so ``min_gain`` is half a chi-squared quantile (3.0:
    95 % with 2 degrees of freedom) when the components were not fitted on
    these rows; components tuned on them (e.g. early stopping) gain
    optimistically, and deserve a larger ``min_gain``.

    Parameters
    ----------
    log_probs : Tensor of shape (n, K)
        ``log p_k(x_i)`` of each held-out row under each component.  Rows
        where every component is ``-inf`` (or NaN) are ignored.
    weight : Tensor of shape (n,), optional
        Row weights.
    prior : float or Tensor of shape (K,), default=1.0
        Pseudo-rows per component, or one count per component (``0``:
        maximum likelihood).
    n_iter : int, default=500
        At most this many EM iterations.
    tol : float, default=1e-10
        Stop once the objective improves by less than this.
    optional : Tensor of shape (K,) of bool, optional
        Components that are dropped unless they gain ``min_gain``; at least
        one component must not be optional.
    min_gain : float, default=0.0
        Nats of summed held-out log-likelihood that the optional components
        must add.

    Returns
    -------
    w : Tensor of shape (K,)
        Non-negative weights that sum to 1.

    Examples
    --------
    >>> import torch
    >>> lp = torch.tensor([[0.0, -10.0], [0.0, -10.0], [-10.0, 0.0]], dtype=torch.float64)
    >>> stacking_weights(lp, prior=0.0).round(decimals=3).tolist()
    [0.667, 0.333]
    >>> stacking_weights(lp, prior=0.0, optional=torch.tensor([False, True]), min_gain=20.0).tolist()
    [1.0, 0.0]
    """
    if optional is None or not bool(optional.any()):
        return _em_weights(log_probs, weight, prior, n_iter, tol)
    if bool(optional.all()):
        raise ValueError("at least one component must not be optional")
    prior = torch.as_tensor(prior, dtype=log_probs.dtype).expand(log_probs.shape[1])
    log_probs, row_weight = _usable(log_probs, weight)  # the same rows for both likelihoods
    w = _em_weights(log_probs, row_weight, prior, n_iter, tol)
    required = ~optional
    w_required = _em_weights(log_probs[:, required], row_weight, prior[required], n_iter, tol)
    with_all = _log_likelihood(log_probs, w, row_weight)
    gain = with_all - _log_likelihood(log_probs[:, required], w_required, row_weight)
    if gain >= min_gain:
        return w
    w = torch.zeros_like(w)
    w[required] = w_required
    return w


def _usable(log_probs: Tensor, weight: Tensor | None) -> tuple[Tensor, Tensor]:
    """The rows some component gives a finite log-density, and their weights scaled to sum to their number."""
    log_probs = torch.where(torch.isnan(log_probs), -math.inf, log_probs)
    keep = torch.isfinite(log_probs).any(dim=1)
    log_probs = log_probs[keep]
    row_weight = torch.ones(log_probs.shape[0], dtype=log_probs.dtype) if weight is None else weight[keep]
    if log_probs.shape[0] > 0:
        row_weight = row_weight / row_weight.sum() * row_weight.numel()
    return log_probs, row_weight.to(log_probs.dtype)


def _log_likelihood(log_probs: Tensor, w: Tensor, row_weight: Tensor) -> float:
    """Summed row-weighted log-likelihood of the combination with weights ``w`` (``-inf`` if a row gets 0)."""
    total = torch.logsumexp(log_probs + torch.log(w), dim=1)
    return float(torch.where(row_weight > 0, row_weight * total, 0.0).sum())


def _em_weights(log_probs: Tensor, weight: Tensor | None, prior, n_iter: int, tol: float) -> Tensor:
    k = log_probs.shape[1]
    log_probs, row_weight = _usable(log_probs, weight)
    if log_probs.shape[0] == 0:
        return torch.full((k,), 1.0 / k, dtype=log_probs.dtype)
    prior = torch.as_tensor(prior, dtype=log_probs.dtype).expand(k)
    log_w = torch.full((k,), -math.log(k), dtype=log_probs.dtype)
    previous = -math.inf
    for _ in range(n_iter):
        joint = log_probs + log_w
        total = torch.logsumexp(joint, dim=1)
        objective = (row_weight * total).sum().item() + (prior * log_w).sum().item()
        responsibility = torch.exp(joint - total.unsqueeze(1))
        counts = (row_weight.unsqueeze(1) * responsibility).sum(dim=0) + prior
        log_w = torch.log(counts / counts.sum())
        if objective - previous < tol:
            break
        previous = objective
    return torch.exp(log_w)


class DensityMixture(nn.Module):
    """``p(x) = sum_k w_k p_k(x)``: exact log-density and exact sampling.

    Parameters
    ----------
    components : sequence of nn.Module
        Densities with ``log_prob(x)``, ``sample(n, generator)`` and
        ``features`` (e.g. :class:`~skflow.engine.Flow`); they are used as
        given, not copied.
    weights : Tensor of shape (K,)
        Non-negative mixing weights (normalised here).

    Examples
    --------
    >>> import torch
    >>> from skflow.engine import ActNorm, Flow
    >>> mix = DensityMixture([Flow(ActNorm(2), 2), Flow(ActNorm(2), 2)], torch.tensor([0.25, 0.75]))
    >>> mix.log_prob(torch.zeros(3, 2)).shape, mix.sample(5).shape
    (torch.Size([3]), torch.Size([5, 2]))
    """

    def __init__(self, components: Sequence[nn.Module], weights: Tensor) -> None:
        super().__init__()
        if len(components) == 0 or len(components) != len(weights):
            raise ValueError("need one weight per component and at least one component")
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if not (torch.all(weights >= 0) and weights.sum() > 0):
            raise ValueError("weights must be non-negative and not all zero")
        self.components = nn.ModuleList(components)
        self.register_buffer("log_weights", torch.log(weights / weights.sum()))

    @property
    def features(self) -> int:
        return self.components[0].features

    def component_log_prob(self, x: Tensor) -> Tensor:
        """``log w_k + log p_k(x)``, shape ``(n, K)``."""
        log_w = self.log_weights.to(x.dtype)
        return torch.stack([c.log_prob(x) for c in self.components], dim=1) + log_w

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density of each row of ``x``."""
        return torch.logsumexp(self.component_log_prob(x), dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` rows: component counts drawn from the weights, rows in random order."""
        probs = torch.exp(self.log_weights.double())
        which = torch.multinomial(probs, n, replacement=True, generator=generator)
        parts = [
            self.components[k].sample(int(count), generator)
            for k, count in enumerate(torch.bincount(which, minlength=len(self.components)).tolist())
            if count > 0
        ]
        rows = torch.cat(parts)
        return rows[torch.randperm(n, generator=generator)]
