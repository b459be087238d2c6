"""Column statistics the estimators need before building a flow (numpy only).

- :func:`location_scale`: (weighted) mean and standard deviation, safe for
  values near the float64 limit;
- :class:`ConstantColumns`: the rule for exactly constant columns, shared by
  every estimator (and :class:`~skflow.DensityOutlierDetector`).

A column with no spread has no density.  Rather than a spike of arbitrary
width (whose log-density would dominate every score) it is a **point mass**:
the flow models the other columns, a row that has the training value in
every constant column gets the density of its other columns, a row that
does not gets ``-inf``; samples carry the constant, and its latent
coordinate is 0.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["ConstantColumns", "location_scale"]

# Rows per chunk when computing statistics: no full-size temporary.
_CHUNK = 8192
# A column whose spread is below this fraction (~50 ulps) of its magnitude is
# constant: its standard deviation is round-off, dividing by it would blow up.
CONSTANT_RTOL = 1e-14
# A scored value matches a constant column within this relative tolerance:
# the same value given in float32 (7 significant digits) still matches.
MATCH_RTOL = 1e-6


def location_scale(X: np.ndarray, weight: np.ndarray | None = None, rows: np.ndarray | None = None):
    """(Weighted) mean and standard deviation of ``X[rows]``, overflow-safe.

    Columns are divided by their largest magnitude first, so data near the
    float64 limit (|x| ~ 1e300) still gives finite statistics; rows are
    visited in chunks, so no full-size temporary is made.
    """
    rows = np.arange(X.shape[0]) if rows is None else rows
    chunks = [rows[i : i + _CHUNK] for i in range(0, rows.size, _CHUNK)]
    magnitude = np.max([np.abs(X[c]).max(axis=0) for c in chunks], axis=0).astype(np.float64)
    magnitude[magnitude == 0] = 1.0

    def weighted_sum(fn):
        total, norm = 0.0, 0.0
        for c in chunks:
            values = fn(X[c].astype(np.float64) / magnitude)
            w = np.ones(c.size) if weight is None else weight[c]
            total = total + w @ values
            norm += w.sum()
        return total / norm

    mean = weighted_sum(lambda v: v)
    var = weighted_sum(lambda v: (v - mean) ** 2)
    return mean * magnitude, np.sqrt(var) * magnitude


class ConstantColumns:
    """Which columns of the training data are constant, and their values.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training rows (rows of zero weight already removed).
    """

    def __init__(self, X: np.ndarray) -> None:
        low, high = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        magnitude = np.maximum(np.abs(low), np.abs(high))
        self.mask = (high - low) <= CONSTANT_RTOL * magnitude
        self.values = np.where(self.mask, 0.5 * (low + high), 0.0)

    @property
    def any(self) -> bool:
        return bool(self.mask.any())

    @property
    def indices(self) -> np.ndarray:
        return np.flatnonzero(self.mask)

    def warn(self, owner: str) -> None:
        if self.any:
            warnings.warn(
                f"Features {self.indices.tolist()} are constant in the training data; {owner} models "
                "them as point masses: rows with exactly these values get the density of the other "
                "features, other rows get log-density -inf.",
                UserWarning,
            )

    def check(self, n_features: int) -> None:
        if self.mask.all():
            raise ValueError(
                f"All {n_features} features are constant in the training data: there is no density to fit."
            )

    def variable(self, X: np.ndarray) -> np.ndarray:
        """The non-constant columns of ``X``."""
        return X[:, ~self.mask] if self.any else X

    def matches(self, X: np.ndarray) -> np.ndarray:
        """Boolean per row: every constant column holds its training value."""
        if not self.any:
            return np.ones(X.shape[0], dtype=bool)
        values = self.values[self.mask]
        return np.isclose(X[:, self.mask], values, rtol=MATCH_RTOL, atol=0.0).all(axis=1)

    def fill(self, variable: np.ndarray, constant_value: np.ndarray | float | None = None) -> np.ndarray:
        """Full-width rows from the variable columns; constant columns get ``constant_value``.

        ``None`` fills the training values (data space); a number fills that
        (latent space uses 0).
        """
        if not self.any:
            return variable
        out = np.empty((variable.shape[0], self.mask.size), dtype=np.float64)
        out[:, ~self.mask] = variable
        out[:, self.mask] = self.values[self.mask] if constant_value is None else constant_value
        return out
