"""The k-nearest-neighbour density of a set of rows, as a score for the outlier detector."""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
from scipy.special import gammaln
from sklearn.base import BaseEstimator, _fit_context
from sklearn.neighbors import NearestNeighbors
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._preprocessing import _quantile

# Radii below this fraction of the reference rows' median k-NN radius are
# raised to it: k or more repeated rows would otherwise have an infinite
# density.
_MIN_RADIUS_FRACTION = 1e-3


class _KNeighborsDensity(BaseEstimator):
    """k-nearest-neighbour density estimate (Loftsgaarden and Quesenberry, 1965).

    ``log p(x) = log(k / n) - log V_d - d log r_k(x)``: ``k`` of the ``n``
    training rows lie in the ball of radius ``r_k(x)`` around ``x`` (the
    distance to its ``k``-th nearest training row), whose volume is
    ``V_d r_k(x)^d``.  A ``sample_weight`` counts repetitions of a row: ``n``
    is the total weight and ``r_k`` the smallest radius holding a weight of
    ``k``.  ``"auto"`` takes ``k = round(sqrt(n))``, the rate the authors
    propose; the estimate is consistent when ``k -> inf`` and ``k / n -> 0``.

    The estimate is not normalised (its integral diverges in the tails) and
    not smooth; the detector uses it as a score.  A training row is its own
    nearest neighbour when scored: ``r_k`` then counts it.
    """

    _parameter_constraints: dict = {
        "n_neighbors": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_neighbors="auto"):
        self.n_neighbors = n_neighbors

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=1)
        n, d = X.shape
        weight = None
        if sample_weight is not None:
            weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        # Weights count rows: weight w is w repetitions of the row.
        total = float(n if weight is None else weight.sum())
        k = max(1, round(math.sqrt(total))) if self.n_neighbors == "auto" else self.n_neighbors
        self.n_neighbors_ = min(k, n) if weight is None else min(k, total)
        self.weight_ = weight
        self.neighbors_ = NearestNeighbors().fit(X)
        # log(k / n) - log V_d, V_d = pi^(d/2) / Gamma(d/2 + 1) the volume of the unit d-ball.
        log_unit_ball = d / 2 * math.log(math.pi) - gammaln(d / 2 + 1)
        self.log_constant_ = math.log(self.n_neighbors_ / total) - log_unit_ball
        median = float(_quantile(self._radius(X)[:, None], 0.5, weight)[0])
        self.min_radius_ = _MIN_RADIUS_FRACTION * median if median > 0 else np.finfo(np.float64).tiny
        return self

    def _radius(self, X):
        """Distance from each row of ``X`` to the k-th nearest training row (weighted: holding weight k)."""
        k, n = self.n_neighbors_, self.neighbors_.n_samples_fit_
        if self.weight_ is None:
            distances, _ = self.neighbors_.kneighbors(X, n_neighbors=int(k))
            return distances[:, -1]
        # Widen the search until every row's nearest neighbours hold weight k (all n rows do).
        queried = min(math.ceil(k), n)
        while True:
            distances, indices = self.neighbors_.kneighbors(X, n_neighbors=queried)
            held = np.cumsum(self.weight_[indices], axis=1) >= k * (1 - 1e-12)
            if held[:, -1].all() or queried == n:
                # Rows that never reach k (rounding, at queried == n) take the farthest row.
                first = np.where(held[:, -1], held.argmax(axis=1), queried - 1)
                return distances[np.arange(X.shape[0]), first]
            queried = min(2 * queried, n)

    def score_samples(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.log_constant_ - X.shape[1] * np.log(np.maximum(self._radius(X), self.min_radius_))
