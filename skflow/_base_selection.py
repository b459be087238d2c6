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
- ``"auto"``: the mixture or the Student-t base, whichever has the higher
  mean log-likelihood on the validation rows (the lower BIC on the training
  rows when there are none).  BIC alone preferred the mixture on every task
  of the ablation, also where its extra components only fit noise: with
  8-D Student-t data (100 rows) the Student-t base was 3.9 nats per row
  better on held-out rows.
"""

from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
import torch
from scipy.linalg import solve_triangular
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from .engine.bases import (
    GaussianMixtureBase,
    KernelDensityBase,
    MultivariateStudentTBase,
    StandardNormal,
    StudentTBase,
    multivariate_t_log_norm,
)
from .engine.runtime import INFER_DTYPE

__all__ = [
    "cv_kernel_density", "cv_mixtures", "fit_student_t", "make_base", "mixture_base",
    "refit_kernel_density", "refit_mixture", "refit_student_t",
]

# Largest mixture tried by n_components="auto"; each component also needs
# _ROWS_PER_COMPONENT training rows, so small data sets try fewer.
_MAX_COMPONENTS = 10
_ROWS_PER_COMPONENT = 10
# Covariance structures tried (BIC decides), as a cross-validated
# GaussianMixture would: full for correlated modes, one shared (tied) full
# covariance, diagonal or spherical where full ones have too many parameters
# for the rows.  The engine's mixture is full either way.  A full
# covariance is only tried while every component can have this many rows per
# dimension: with 90 rows in 16-D, components of a few rows had near-singular
# covariances that gave held-out rows log-densities of -2.6e5 nats.
_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_FULL_ROWS_PER_DIMENSION = 2
# cv_mixtures: _CV_FOLDS-fold cross-validation, or BIC below _MIN_CV_ROWS rows.
_CV_FOLDS = 5
_MIN_CV_ROWS = 20
_CV_PATIENCE = 2
# ... and beyond _MAX_COMPONENTS these sizes, as a cross-validated GaussianMixture search would try
# them (a ring of 16 Gaussians needs 16).
_CV_LARGER_SIZES = (12, 16, 24, 32)
# cv_kernel_density: only where scoring a row costs at most this many rows x dimensions^2 (a kernel
# density keeps every training row; it competes in a few dimensions, not in many), with the bandwidth
# (standardised units) chosen from _BANDWIDTHS by cross-validation.
_KDE_BUDGET = 100_000
_BANDWIDTHS = np.logspace(-1.5, 0.5, 17)
# ... scored on at most _KDE_CV_HELD_OUT held-out rows in all (a seeded subsample of each fold's beyond
# about 2,000 rows; every training row of a fold stays a kernel centre, so the bandwidth is chosen for the
# right number of rows).  Without it the search is quadratic in the rows.  On 8,000 and 16,000 rows of 2-D
# moons and 8,000 rows of the power-plant set (5-D) the subsample chose the full search's bandwidth.
_KDE_CV_HELD_OUT = 2000
# Fewer validation rows than this: "auto" decides by BIC instead.
_MIN_VALIDATION_ROWS = 5
# Ridge added to covariances by EM (variance, in the standardised latent space
# where the data have unit variance): no component narrower than 1% of it.
_REG_COVAR = 1e-4
# fit_student_t: degrees of freedom tried (maximum likelihood on the rows picks one; 100 is
# close to Gaussian), EM iterations per value and the rows it uses at most (a seeded subsample:
# d + d (d + 1) / 2 + 1 parameters need no more).
_T_DF_GRID = (100.0, 30.0, 10.0, 5.0, 3.0, 2.0, 1.0)
_T_EM_ITERATIONS = 200
_T_TOL = 1e-7
_T_MAX_ROWS = 20_000


def _single_threaded(function):
    """Run ``function`` with BLAS and OpenMP on one thread.

    EM on a few hundred rows is many small matrix operations, and the KMeans
    that starts each GaussianMixture runs on scikit-learn's OpenMP pool;
    their threads only contend there, with each other and with anything else
    on the machine (the same reasoning as skflow's torch thread policy).
    In two test workers on two cores, limiting every pool (not BLAS alone)
    took a test that fits three stacked 2-D models from 43-47 s to 5.6-7.2 s.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1):
            return function(*args, **kwargs)

    return wrapper


def _component_grid(n_rows: int, n_components, larger: tuple[int, ...] = ()) -> list[int]:
    """Sizes 1 to ``_MAX_COMPONENTS``, then ``larger`` ones, each with ``_ROWS_PER_COMPONENT`` rows."""
    if n_components != "auto":
        return [int(min(n_components, n_rows))]
    top = max(1, n_rows // _ROWS_PER_COMPONENT)
    return [k for k in (*range(1, _MAX_COMPONENTS + 1), *larger) if k <= top]


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
    n, d = z.shape
    for k in _component_grid(n, n_components):
        full_ok = d == 1 or n >= k * _FULL_ROWS_PER_DIMENSION * (d + 1)
        types = ("full",) if d == 1 else _COVARIANCE_TYPES if full_ok else _COVARIANCE_TYPES[1:]
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


@_single_threaded
def cv_mixtures(
    z: np.ndarray, n_components, seed: int, weight: np.ndarray | None = None, n_best: int = 1
) -> list[GaussianMixture]:
    """The ``n_best`` Gaussian mixtures a cross-validated ``GaussianMixture`` search ranks first.

    Size and covariance type are ranked by the 5-fold cross-validated
    log-likelihood of ``z`` over the same grid as the flows' start
    (:func:`_cv_search`), best first, each refitted on all of ``z``; fewer
    where the search tried fewer, and below ``_MIN_CV_ROWS`` rows only the
    BIC choice.  The flows start from a BIC mixture (BIC's heavy penalty on
    full covariances leaves the layers something to learn: on 16-D
    separated modes the flows trained from it beat the flows trained from
    the cross-validated one); these are the stand-alone mixtures that
    ``base="auto"`` stacks with them: on those modes (450 rows) the best
    scored -24.0 nats per held-out row against the BIC choice's -25.6.
    With a single EM start per candidate the
    cross-validated scores of neighbouring sizes are within EM's run-to-run
    spread: on 16-D data of 6 separated modes (450 rows) the search put 5
    components first, 0.3 nats per held-out row below the 6 that came
    second.  ``base="auto"`` therefore stacks the best two and lets the
    validation rows weigh them.
    """
    estimator = GaussianMixture(reg_covar=_REG_COVAR, random_state=seed, max_iter=200)
    z = _resample(z, weight, seed)
    n, d = z.shape
    with warnings.catch_warnings():
        # A candidate that fails on a fold (EM on too few distinct rows) scores -inf.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FitFailedWarning)
        warnings.filterwarnings("ignore", "One or more of the test scores are non-finite", UserWarning)
        if n >= _MIN_CV_ROWS:
            return _cv_search(estimator, z, n_components, n_best)
        return [_best_mixture(z, n_components, seed)[0]]


@_single_threaded
def refit_mixture(
    gmm: GaussianMixture, z: np.ndarray, seed: int, weight: np.ndarray | None = None
) -> GaussianMixture:
    """A copy of the fitted ``gmm`` refitted on the rows ``z`` by EM started from its parameters.

    The size and covariance type stay as selected; starting from the fitted
    parameters keeps the components where they were (a fresh EM may settle
    in another local optimum) while the new rows refine them.
    """
    refit = copy.deepcopy(gmm).set_params(warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return refit.fit(_resample(z, weight, seed))


def _tensor(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=INFER_DTYPE)


def mixture_base(gmm: GaussianMixture) -> GaussianMixtureBase:
    """The engine's (full-covariance) mixture with the parameters of ``gmm``."""
    covariances = _full_covariances(gmm, gmm.means_.shape[1])
    return GaussianMixtureBase(_tensor(gmm.weights_), _tensor(gmm.means_), _tensor(covariances))


def _cv_search(
    estimator: GaussianMixture, z: np.ndarray, n_components, n_best: int = 1
) -> list[GaussianMixture]:
    """The ``n_best`` candidates with the best mean 5-fold held-out log-likelihood, refitted on all of ``z``.

    For each covariance type the size grows from 1 and stops after
    ``_CV_PATIENCE`` sizes in a row without a better score: held-out
    likelihood over the size is close to unimodal, and the larger sizes are
    the costly ones (this cut a small fit's model selection about threefold).
    """
    n, d = z.shape
    folds = list(KFold(_CV_FOLDS, shuffle=True, random_state=estimator.random_state).split(z))
    n_fold = n - n // _CV_FOLDS  # the largest training fold decides which candidates are tried
    scored = []
    for covariance_type in _COVARIANCE_TYPES if d > 1 else ("full",):
        type_best, misses = -np.inf, 0
        for k in _component_grid(n_fold, n_components, _CV_LARGER_SIZES):
            if covariance_type == "full" and d > 1 and n_fold < k * _FULL_ROWS_PER_DIMENSION * (d + 1):
                break
            candidate = clone(estimator).set_params(n_components=k, covariance_type=covariance_type)
            score = _cross_validated_score(candidate, z, folds)
            if np.isfinite(score):
                scored.append((score, len(scored), candidate))
            if score > type_best:
                type_best, misses = score, 0
            else:
                misses += 1
                if misses >= _CV_PATIENCE:
                    break
    if not scored:  # pragma: no cover - EM failed on every candidate
        scored = [(0.0, 0, clone(estimator).set_params(n_components=1, covariance_type="diag"))]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [candidate.fit(z) for _, _, candidate in scored[:n_best]]


def _cross_validated_score(estimator, z: np.ndarray, folds) -> float:
    """``cross_val_score(estimator, z, cv=folds, error_score=-np.inf).mean()``, without its per-call overhead.

    The same fits and scores (a clone fitted on each training fold, its
    ``score`` on the held-out fold); a fold whose fit or score fails makes
    the mean ``-inf`` (also where every fold fails, where
    ``cross_val_score`` raises).  On small data the search's fits take a
    few milliseconds each, and ``cross_val_score``'s bookkeeping about as
    much again (iris: 0.22 -> 0.12 s for eight candidates).
    """
    scores = []
    for train, test in folds:
        try:
            scores.append(clone(estimator).fit(z[train]).score(z[test]))
        except Exception:  # EM on too few distinct rows, like cross_val_score's error_score
            return -np.inf
    return float(np.mean(scores))


@_single_threaded
def cv_kernel_density(z: np.ndarray, seed: int, weight: np.ndarray | None = None) -> KernelDensityBase | None:
    """A Gaussian kernel density of the rows ``z``, its bandwidth chosen by 5-fold cross-validation.

    ``None`` where it would be costly to score (more than ``_KDE_BUDGET``
    rows x dimensions^2) or the rows are too few to cross-validate.  On
    many rows each fold scores a seeded subsample of its held-out rows
    (``_KDE_CV_HELD_OUT`` in all), with all its training rows as centres.
    """
    n, d = z.shape
    if n * d * d > _KDE_BUDGET or n < _MIN_CV_ROWS:
        return None
    z = _resample(z, weight, seed)
    rng = np.random.RandomState(seed)
    scores = np.zeros(len(_BANDWIDTHS))
    held_out = _KDE_CV_HELD_OUT // _CV_FOLDS
    for train, test in KFold(_CV_FOLDS, shuffle=True, random_state=seed).split(z):
        if test.size > held_out:  # as many held-out rows in every fold, so the sums stay comparable
            test = np.sort(rng.choice(test, held_out, replace=False))
        scores += _kernel_density_scores(z[train], z[test], _BANDWIDTHS)
    bandwidth = float(_BANDWIDTHS[np.argmax(scores)])  # the first of ties, as GridSearchCV's best_params_
    return KernelDensityBase(torch.as_tensor(z, dtype=INFER_DTYPE), bandwidth)


@torch.no_grad()
def _kernel_density_scores(train: np.ndarray, test: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """``KernelDensity(bandwidth=h).fit(train).score(test)`` for every ``h`` of ``bandwidths``, exactly.

    The engine's :class:`KernelDensityBase` (the density the stack keeps)
    scores the rows: blocks that stay in cache, exact log-sum-exps.  A
    grid search over scikit-learn's ``KernelDensity`` is several times
    slower, and its tree sums fall short where every kernel term of a row
    underflows (small bandwidths, rows far from the fold's training
    rows).  On iris, wine, 2-D moons, a 3-D Student-t and repeated rows
    that left the selection as it was; on the quality benchmark's 10-D
    funnel (heavy tails, 450 rows) it had chosen 1.0 where the exact sums
    choose 0.75, and the stacked estimators' test log-likelihood rose by
    0.003-0.037 nats per row with the exact choice.
    """
    centres, rows = _tensor(train), _tensor(test)
    return np.array([KernelDensityBase(centres, float(h)).log_prob(rows).sum().item() for h in bandwidths])


def refit_kernel_density(
    kde: KernelDensityBase, z: np.ndarray, seed: int, weight: np.ndarray | None = None
) -> KernelDensityBase:
    """A kernel density on the rows ``z`` with the bandwidth of ``kde``."""
    return KernelDensityBase(torch.as_tensor(_resample(z, weight, seed), dtype=INFER_DTYPE), kde.bandwidth)


def _student_t_em(z, weight, df, loc, scale):
    """EM for the location and scale matrix of a multivariate Student-t with fixed ``df``.

    The Student-t is a Gaussian scale mixture, so EM is iteratively
    reweighted mean and covariance, each row weighted by
    ``(df + d) / (df + delta)`` (``delta`` its squared Mahalanobis distance;
    Liu & Rubin, Statistica Sinica 1995).  Returns ``(loc, scale_tril,
    mean log-likelihood)``, where ``scale_tril`` is the Cholesky factor of
    the scale plus the ridge ``_REG_COVAR`` (every M-step recomputes the
    scale from the rows, so a start that carries the ridge does not
    accumulate it).
    """
    n, d = z.shape
    w = weight / weight.sum()
    previous = -np.inf
    for iteration in range(_T_EM_ITERATIONS):
        tril = np.linalg.cholesky(scale + _REG_COVAR * np.eye(d))
        white = solve_triangular(tril, (z - loc).T, lower=True)
        delta = np.einsum("ij,ij->j", white, white)
        log_lik = float(w @ _t_log_density(delta, tril, df, d))
        if log_lik - previous < _T_TOL * max(1.0, abs(log_lik)) or iteration == _T_EM_ITERATIONS - 1:
            break  # (loc, tril) are the parameters log_lik was computed with
        previous = log_lik
        u = w * (df + d) / (df + delta)
        loc = u @ z / u.sum()
        residual = z - loc
        scale = (u[:, None] * residual).T @ residual
    return loc, tril, log_lik


def _t_log_density(delta, tril, df, d):
    """:meth:`MultivariateStudentTBase.log_prob` from squared Mahalanobis distances ``delta`` (numpy)."""
    norm = multivariate_t_log_norm(df, d) - np.log(np.diag(tril)).sum()
    return norm - 0.5 * (df + d) * np.log1p(delta / df)


def _t_rows(z, weight, seed):
    weight = np.ones(z.shape[0]) if weight is None else np.asarray(weight, dtype=np.float64)
    if z.shape[0] > _T_MAX_ROWS:
        rows = np.random.RandomState(seed).choice(z.shape[0], _T_MAX_ROWS, replace=False)
        z, weight = z[rows], weight[rows]
    return z, weight


@_single_threaded
def fit_student_t(z: np.ndarray, seed: int, weight: np.ndarray | None = None) -> MultivariateStudentTBase:
    """The maximum-likelihood multivariate Student-t of the rows ``z`` (row weights optional).

    For each ``df`` of ``_T_DF_GRID`` (from 100 down to 1), location and
    scale by EM, started from the mean and covariance and then from the
    previous ``df``'s fit; the ``df`` with the highest likelihood wins.  With
    few parameters (one ellipsoid and its tail weight) the training rows'
    likelihood is a sound criterion.  In ``base="auto"`` it is the stack's
    heavy-tailed component: where the data have heavy tails it carries the
    rows that the light-tailed components give almost no density.
    """
    z, weight = _t_rows(z, weight, seed)
    w = weight / weight.sum()
    mean = w @ z
    cov = (w[:, None] * (z - mean)).T @ (z - mean)
    best, loc, scale = None, mean, cov
    for df in _T_DF_GRID:  # from light to heavy tails, each EM starting where the last ended
        loc, tril, log_lik = _student_t_em(z, weight, df, loc, scale)
        scale = tril @ tril.T
        if best is None or log_lik > best[2]:
            best = (loc, tril, log_lik, df)
    return MultivariateStudentTBase(_tensor(best[0]), _tensor(best[1]), best[3])


@_single_threaded
def refit_student_t(
    base: MultivariateStudentTBase, z: np.ndarray, seed: int, weight: np.ndarray | None = None
) -> MultivariateStudentTBase:
    """``base`` refitted on the rows ``z`` by EM from its parameters, keeping its ``df``."""
    z, weight = _t_rows(z, weight, seed)
    tril = base.scale_tril.numpy()
    loc, tril, _ = _student_t_em(z, weight, base.df, base.loc.numpy(), tril @ tril.T)
    return MultivariateStudentTBase(_tensor(loc), _tensor(tril), base.df)


def _resample(z: np.ndarray, weight: np.ndarray | None, seed: int) -> np.ndarray:
    """``z``, or a seeded weighted bootstrap of it (EM has no row weights)."""
    if weight is None:
        return z
    rng = np.random.RandomState(seed)
    return z[rng.choice(z.shape[0], size=z.shape[0], p=weight / weight.sum())]


def _student_t(z: np.ndarray) -> tuple[StudentTBase, float]:
    """The maximum-likelihood Student-t base and its BIC (3 parameters per dimension)."""
    base = StudentTBase(z.shape[1]).to(INFER_DTYPE)
    zt = torch.as_tensor(z, dtype=INFER_DTYPE)
    base.data_init(zt)
    with torch.no_grad():
        log_lik = base.log_prob(zt).sum().item()
    n_params = 3 * z.shape[1]
    return base, -2.0 * log_lik + n_params * np.log(z.shape[0])


def _mean_log_prob(base, z: np.ndarray) -> float:
    with torch.no_grad():
        value = base.log_prob(torch.as_tensor(z, dtype=INFER_DTYPE)).mean().item()
    return value if np.isfinite(value) else -np.inf


@_single_threaded
def make_base(
    kind: str,
    n_components,
    n_features: int,
    z: np.ndarray | None,
    seed: int,
    z_val: np.ndarray | None = None,
    weight: np.ndarray | None = None,
):
    """The base distribution ``kind`` in ``n_features`` dimensions, set up on latent rows ``z`` (float64).

    ``z`` is not needed (may be None) for ``kind="normal"``.

    ``z_val`` (latent validation rows, optional) decides ``"auto"``.
    ``weight`` (per row of ``z``): EM has no weights, so the rows are
    resampled in proportion to them (a seeded weighted bootstrap of the same
    size), which fits the weighted likelihood in expectation.
    Returns ``(base, description)``; ``description`` says what was chosen
    (the estimator's ``base_``).
    """
    if kind == "normal":
        return StandardNormal(n_features).to(INFER_DTYPE), "normal"
    d = z.shape[1]
    z = _resample(z, weight, seed)
    if kind == "student_t":
        return _student_t(z)[0], "student_t"
    gmm, gmm_bic = _best_mixture(z, n_components, seed)
    if kind == "auto":
        t_base, t_bic = _student_t(z)
        if gmm is None:
            return t_base, "student_t"
        if z_val is not None and len(z_val) >= _MIN_VALIDATION_ROWS:
            prefer_t = _mean_log_prob(t_base, z_val) > _mean_log_prob(mixture_base(gmm), z_val)
        else:
            prefer_t = t_bic < gmm_bic
        if prefer_t:
            return t_base, "student_t"
    if gmm is None:  # pragma: no cover - EM failed on every candidate
        return StandardNormal(d).to(INFER_DTYPE), "normal"
    return mixture_base(gmm), f"mixture({gmm.n_components}, {gmm.covariance_type})"
