"""Preprocessing of raw tabular data for a density fitted to rank rows.

One private transformer, shared by :class:`~skflow.DensityOutlierDetector`
and the anomaly benchmark (``benchmarks/anomaly.py``), so that the detector
and the baselines it is compared with see the same matrix.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

__all__ = ["_TabularPreprocessor"]

# IQR / 1.349 is the standard deviation of a Gaussian: robust-standardised
# columns are on the scale of ordinary z-scores.
_IQR_TO_STD = 1.3489795003921634
# A column is discrete (and dequantised) when its number of distinct values
# is at most this fraction of the number of rows: ties are then the rule, not
# an accident.  On the ODDS sets it catches integer pixels and codes, counts
# and coarsely rounded lab values, and leaves continuous columns alone.
_DISCRETE_MAX_DISTINCT_FRACTION = 0.5


def _quantile(x, q, weight=None):
    """Column quantiles of ``x`` (numpy's "linear" rule); weights act as repetition counts.

    With integer weights the result equals ``np.quantile`` of the repeated
    rows, so weighting and repeating rows give the same statistics.
    """
    if weight is None:
        return np.quantile(x, q, axis=0)
    q = np.asarray(q, dtype=np.float64)
    out = np.empty(q.shape + x.shape[1:])
    for j in range(x.shape[1]):
        order = np.argsort(x[:, j], kind="stable")
        values, cum = x[order, j], np.cumsum(weight[order])
        position = q * max(cum[-1] - 1.0, 0.0)
        low = np.floor(position)

        def at(k):
            return values[np.minimum(np.searchsorted(cum, k, side="right"), len(values) - 1)]

        out[..., j] = at(low) + (position - low) * (at(low + 1) - at(low))
    return out


def _grid_steps(Z, max_distinct):
    """Width of the dequantisation noise of each column (0: continuous column).

    A column with at most ``max_distinct`` distinct values is discrete; its
    step is the median gap between consecutive distinct values (the grid
    spacing of integer or rounded data, robust to a few off-grid values).
    """
    steps = np.zeros(Z.shape[1])
    for j in range(Z.shape[1]):
        values = np.unique(Z[:, j])
        if 1 < len(values) <= max_distinct:
            steps[j] = np.median(np.diff(values))
    return steps


class _TabularPreprocessor(TransformerMixin, BaseEstimator):
    """Drop constant columns, robust-standardise, and size the dequantisation noise.

    ``transform`` is deterministic (no noise): scores of the same rows are
    reproducible.  Training rows get their noise separately, from
    :meth:`dequantization_noise`, so a caller controls which rows receive
    it and from which random stream.

    1. **Constant columns are dropped**: a column with a single value on the
       (positively weighted) training rows carries no density, and some
       estimators divide by its zero spread.  Deviations from that value at
       scoring time are ignored.
    2. **Robust standardisation**: each column is centred on its median and
       divided by ``IQR / 1.349`` (its standard deviation if the IQR is 0),
       so a few extreme rows do not squash the bulk of the data.
    3. **Dequantisation width**: a column with at most ``n_samples / 2``
       distinct values is discrete; its noise width is its grid step (the
       median gap between its distinct values), in standardised units.

    Parameters
    ----------
    dequantize : bool, default=True
        Whether discrete columns get a non-zero noise width.

    Attributes
    ----------
    support_ : ndarray of bool of shape (n_features_in_,)
        The non-constant columns, the ones :meth:`transform` returns.
    location_ : ndarray of shape (n_kept_features,)
        Medians of the kept columns.
    scale_ : ndarray of shape (n_kept_features,)
        ``IQR / 1.349`` of the kept columns (their standard deviation where
        the IQR is 0).
    dequantization_step_ : ndarray of shape (n_kept_features,)
        Width of the uniform noise per kept column, in standardised units;
        0 for continuous columns.
    n_features_in_ : int
        Number of features seen during :term:`fit`.
    """

    _parameter_constraints: dict = {"dequantize": ["boolean"]}

    def __init__(self, *, dequantize=True):
        self.dequantize = dequantize

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Learn the kept columns, their location and scale, and the noise widths.

        Rows of zero weight are ignored; other weights act as repetition
        counts in the quantiles.
        """
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        w = None
        if sample_weight is not None:
            w = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            X, w = X[w > 0], w[w > 0]
        support = np.ptp(X, axis=0) > 0 if X.shape[0] else np.zeros(X.shape[1], bool)
        if not support.any():
            raise ValueError("Every feature is constant on the training rows: there is no density to fit.")
        kept = X[:, support]
        q1, median, q3 = _quantile(kept, [0.25, 0.5, 0.75], w)
        std = np.sqrt(np.average((kept - np.average(kept, axis=0, weights=w)) ** 2, axis=0, weights=w))
        iqr_scale = (q3 - q1) / _IQR_TO_STD
        self.support_ = support
        self.location_ = median
        self.scale_ = np.where(iqr_scale > 0, iqr_scale, std)
        n_rows = X.shape[0] if w is None else w.sum()
        max_distinct = _DISCRETE_MAX_DISTINCT_FRACTION * n_rows if self.dequantize else 0
        self.dequantization_step_ = _grid_steps(self._standardised(X), max_distinct)
        return self

    def _standardised(self, X):
        return (X[:, self.support_] - self.location_) / self.scale_

    def transform(self, X):
        """Kept columns, robust-standardised; no noise."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._standardised(X)

    def dequantization_noise(self, n_rows, random_state=None):
        """Uniform noise to add to ``n_rows`` transformed training rows.

        Each discrete column gets ``U(-step / 2, step / 2)``, the others 0.
        """
        check_is_fitted(self)
        rng = check_random_state(random_state)
        return rng.uniform(-0.5, 0.5, size=(n_rows, self.support_.sum())) * self.dequantization_step_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
