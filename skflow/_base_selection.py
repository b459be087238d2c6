"""Choosing and initialising a flow's base distribution (the ``base`` parameter).

The engine has the torch bases (:mod:`skflow.engine.bases`); this module does
the statistics that set them up from the latent training rows of a freshly
initialised flow, with scikit-learn's EM:

- ``"normal"``: ``N(0, I)``;
- ``"mixture"``: a Gaussian mixture fitted by EM (``GaussianMixture``), its
  size (``n_components="auto"``) and covariance structure chosen by BIC on
  the training rows; the engine mixture is initialised to it, so with
  identity-initialised layers the untrained flow *is* that mixture;
- ``"student_t"``: independent Student-t marginals fitted by maximum
  likelihood (heavy tails);
- ``"auto"``: the mixture or the Student-t base, whichever has the lower BIC
  on the training rows.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from .engine.bases import GaussianMixtureBase, StandardNormal, StudentTBase
from .engine.runtime import INFER_DTYPE

__all__ = ["make_base"]

# Largest mixture tried by n_components="auto"; each component also needs
# _ROWS_PER_COMPONENT training rows, so small data sets try fewer.
_MAX_COMPONENTS = 10
_ROWS_PER_COMPONENT = 10
# Covariance structures tried: full for correlated modes, diagonal where the
# full one has too many parameters for the rows (BIC decides).
_COVARIANCE_TYPES = ("full", "diag")
# Ridge added to covariances by EM (in the standardised latent space).
_REG_COVAR = 1e-6


def _component_grid(n_rows: int, n_components) -> list[int]:
    if n_components != "auto":
        return [int(min(n_components, n_rows))]
    top = max(1, min(_MAX_COMPONENTS, n_rows // _ROWS_PER_COMPONENT))
    return list(range(1, top + 1))


def _full_covariances(gmm: GaussianMixture, d: int) -> np.ndarray:
    k = gmm.n_components
    cov = gmm.covariances_
    if gmm.covariance_type == "full":
        return cov
    if gmm.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    if gmm.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d)).copy()
    return np.stack([np.eye(d) * c for c in cov])


def _best_mixture(z: np.ndarray, n_components, seed: int) -> tuple[GaussianMixture, float]:
    """The GaussianMixture with the lowest BIC over the grid, and that BIC."""
    best, best_bic = None, np.inf
    types = _COVARIANCE_TYPES if z.shape[1] > 1 else ("full",)
    for k in _component_grid(z.shape[0], n_components):
        for covariance_type in types:
            gmm = GaussianMixture(
                k, covariance_type=covariance_type, reg_covar=_REG_COVAR, random_state=seed, max_iter=200
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gmm.fit(z)
            bic = gmm.bic(z)
            if np.isfinite(bic) and bic < best_bic:
                best, best_bic = gmm, bic
    return best, best_bic


def _mixture_base(gmm: GaussianMixture, d: int) -> GaussianMixtureBase:
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=INFER_DTYPE)  # noqa: E731
    return GaussianMixtureBase(t(gmm.weights_), t(gmm.means_), t(_full_covariances(gmm, d)))


def _student_t(z: np.ndarray) -> tuple[StudentTBase, float]:
    """The maximum-likelihood Student-t base and its BIC (3 parameters per dimension)."""
    base = StudentTBase(z.shape[1]).to(INFER_DTYPE)
    zt = torch.as_tensor(z, dtype=INFER_DTYPE)
    base.data_init(zt)
    with torch.no_grad():
        log_lik = base.log_prob(zt).sum().item()
    n_params = 3 * z.shape[1]
    return base, -2.0 * log_lik + n_params * np.log(z.shape[0])


def make_base(kind: str, n_components, z: np.ndarray, seed: int):
    """The base distribution ``kind`` set up on latent rows ``z`` (float64).

    Returns ``(base, description)``; ``description`` says what was chosen
    (for the estimator's ``base_`` attribute docs and verbose output).
    """
    d = z.shape[1]
    if kind == "normal":
        return StandardNormal(d).to(INFER_DTYPE), "normal"
    if kind == "student_t":
        return _student_t(z)[0], "student_t"
    gmm, gmm_bic = _best_mixture(z, n_components, seed)
    if kind == "auto":
        t_base, t_bic = _student_t(z)
        if gmm is None or t_bic < gmm_bic:
            return t_base, "student_t"
    if gmm is None:  # pragma: no cover - EM failed on every candidate
        return StandardNormal(d).to(INFER_DTYPE), "normal"
    return _mixture_base(gmm, d), f"mixture({gmm.n_components}, {gmm.covariance_type})"
