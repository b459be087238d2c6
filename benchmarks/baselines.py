"""The one baseline factory of the skflow benchmarks.

Every method is built by a factory ``(n_train, seed) -> model`` where the
model has ``fit(X)``, ``score_samples(X)`` (log-density in the data's
original units) and ``sample(n, random_state)``:

- every skflow estimator present in the installed version, at its defaults
  (:func:`skflow_estimators`);
- ``GaussianMixture`` and ``KernelDensity`` tuned by cross-validation over
  ONE grid each (:func:`make_gmm`, :func:`make_kde`), fitted on standardised
  features (:class:`Standardized`);
- zuko's ``NSF`` and ``MAF`` (:class:`ZukoDensity`), trained by skflow's own
  :class:`skflow.engine.training.Trainer` with skflow's default budget, when
  ``zuko`` is importable (``pip install ".[benchmark]"``).

Examples
--------
>>> import numpy as np
>>> from benchmarks.baselines import make_kde
>>> X = np.random.RandomState(0).normal(size=(60, 2))
>>> make_kde(60, seed=0).fit(X).score_samples(X[:3]).shape
(3,)
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KernelDensity

import skflow
from skflow.engine.training import Trainer

__all__ = [
    "GMM",
    "GMM_GRID",
    "KDE",
    "KDE_GRID",
    "SKFLOW_ESTIMATORS",
    "Standardized",
    "ZukoDensity",
    "available_methods",
    "make_gmm",
    "make_kde",
    "skflow_estimators",
    "zuko_available",
]

SKFLOW_ESTIMATORS = ("FerumalFlowDensity", "RealNVPDensity", "SplineFlowDensity", "TransformerFlowDensity")
GMM = "GaussianMixture"
KDE = "KernelDensity"

# The one grid of each baseline.  GaussianMixture: components x covariance
# type by 3-fold CV, capped so every fold keeps ~5 rows per component.
GMM_GRID = {
    "n_components": (1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
    "covariance_type": ("full", "diag", "tied", "spherical"),
}
GMM_FOLDS = 3
# KernelDensity: one Gaussian bandwidth (standardised units) by 5-fold CV.
KDE_GRID = {"bandwidth": tuple(np.logspace(-1.5, 0.5, 21))}
KDE_FOLDS = 5


class Standardized:
    """A scikit-learn density search fitted on standardised data, scored in original units.

    KernelDensity has one bandwidth for all features and GaussianMixture an
    absolute ``reg_covar``: both need comparable feature scales.  The change
    of variables ``z = (x - loc) / scale`` adds ``-sum(log scale)`` to every
    log-density, exactly as the flows' internal standardisation does.
    """

    def __init__(self, search):
        self.search = search

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.loc_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        with warnings.catch_warnings():
            # A GaussianMixture candidate too big for a CV fold fails; CV then ranks it last.
            warnings.simplefilter("ignore")
            self.search.fit((X - self.loc_) / self.scale_)
        self.best_ = self.search.best_estimator_
        self.refit_seconds_ = self.search.refit_time_
        self.selected_ = ", ".join(f"{k}={_fmt_param(v)}" for k, v in self.search.best_params_.items())
        if isinstance(self.best_, GaussianMixture):
            self.n_parameters_ = int(self.best_._n_parameters())
            self.parameters_note_ = ""
        else:
            # Non-parametric: the model *is* the stored training set (plus one bandwidth).
            self.n_parameters_ = int(self.best_.tree_.data.size)
            self.parameters_note_ = "stored training values"
        return self

    def score_samples(self, X):
        return self.best_.score_samples((X - self.loc_) / self.scale_) - np.log(self.scale_).sum()

    def sample(self, n_samples=1, random_state=0):
        if isinstance(self.best_, GaussianMixture):
            Z = self.best_.sample(n_samples)[0]  # seeded by the estimator's random_state
        else:
            Z = self.best_.sample(n_samples, random_state=random_state)
        return Z * self.scale_ + self.loc_


def _fmt_param(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def make_kde(n_train, seed=0):
    """KernelDensity, bandwidth over :data:`KDE_GRID` by shuffled 5-fold CV."""
    grid = {k: list(v) for k, v in KDE_GRID.items()}
    cv = KFold(KDE_FOLDS, shuffle=True, random_state=seed)
    return Standardized(GridSearchCV(KernelDensity(), grid, cv=cv))


def make_gmm(n_train, seed=0):
    """GaussianMixture over :data:`GMM_GRID` by shuffled 3-fold CV."""
    cap = max(1, int(n_train * (GMM_FOLDS - 1) / GMM_FOLDS) // 5)
    grid = {
        "n_components": [k for k in GMM_GRID["n_components"] if k <= cap],
        "covariance_type": list(GMM_GRID["covariance_type"]),
    }
    search = GridSearchCV(
        GaussianMixture(random_state=seed, n_init=1, max_iter=200),
        grid,
        cv=KFold(GMM_FOLDS, shuffle=True, random_state=seed),
        error_score=-np.inf,
    )
    return Standardized(search)


# ------------------------------------------------------------------- zuko
def zuko_available() -> bool:
    try:
        import zuko  # noqa: F401
    except ImportError:
        return False
    return True


class _ZukoModule(torch.nn.Module):
    """A zuko flow as a module whose ``log_prob(x)`` is what skflow's Trainer needs."""

    def __init__(self, flow):
        super().__init__()
        self.flow = flow

    def log_prob(self, x):
        return self.flow().log_prob(x)


class ZukoDensity:
    """A zuko flow trained like skflow's estimators at their defaults.

    Standardised inputs (undone through the log-determinant, so
    log-likelihoods are in the original units), float32 training with
    :class:`skflow.engine.training.Trainer` (AdamW, cosine schedule, gradient
    clipping, early stopping on a seeded validation split, best state
    restored), skflow's default budget (read from ``RealNVPDensity()``) and
    ``batch_size="auto"``; float64 scoring and sampling.  zuko's own
    architecture defaults are kept (3 transforms, hidden (64, 64), NSF with
    8 bins).

    Parameters
    ----------
    flow : {"NSF", "MAF"}
        Which ``zuko.flows`` class to build.
    random_state : int
        Seeds initialisation, split and batch order.
    **flow_kwargs
        Passed to the zuko flow constructor.
    """

    def __init__(self, flow="NSF", *, random_state=0, **flow_kwargs):
        self.flow = flow
        self.random_state = random_state
        self.flow_kwargs = flow_kwargs

    def fit(self, X):
        import zuko

        budget = skflow.RealNVPDensity().get_params()
        X = np.asarray(X, dtype=np.float64)
        n, d = X.shape
        self.loc_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        Z = (X - self.loc_) / self.scale_
        rng = np.random.RandomState(self.random_state)
        order = rng.permutation(n)
        n_val = int(round(budget["validation_fraction"] * n))
        val, train = order[:n_val], order[n_val:]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.randint(2**31 - 1)))
            model = _ZukoModule(getattr(zuko.flows, self.flow)(d, **self.flow_kwargs)).float()
        generator = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
        trainer = Trainer(model, learning_rate=budget["learning_rate"], weight_decay=budget["weight_decay"])
        # skflow's batch_size="auto": at least ~8 steps per epoch on small data sets.
        batch_size = min(train.size, 256, max(32, train.size // 8))
        result = trainer.fit(
            torch.tensor(Z[train], dtype=torch.float32),
            x_val=torch.tensor(Z[val], dtype=torch.float32),
            max_iter=budget["max_iter"],
            batch_size=batch_size,
            n_iter_no_change=budget["n_iter_no_change"],
            tol=budget["tol"],
            generator=generator,
        )
        self.model_ = model.double().eval()
        self.n_iter_ = result.n_iter
        self.loss_curve_ = result.loss_curve
        self.validation_scores_ = result.validation_scores
        self.n_parameters_ = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return self

    def score_samples(self, X):
        Z = (np.asarray(X, dtype=np.float64) - self.loc_) / self.scale_
        with torch.no_grad():
            log_prob = self.model_.log_prob(torch.tensor(Z)).numpy()
        return log_prob - np.log(self.scale_).sum()

    def sample(self, n_samples=1, random_state=None):
        seed = np.random.RandomState(random_state).randint(2**31 - 1)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(int(seed))
            Z = self.model_.flow().sample((n_samples,)).numpy()
        return Z * self.scale_ + self.loc_


# --------------------------------------------------------------- registry
def skflow_estimators() -> dict[str, type]:
    """Name -> class of every skflow density estimator present in the installed version."""
    out = {name: getattr(skflow, name, None) for name in SKFLOW_ESTIMATORS}
    return {name: cls for name, cls in out.items() if cls is not None}


def available_methods() -> dict:
    """Name -> factory ``(n_train, seed) -> model`` for every method that can run here."""
    methods = {
        name: (lambda n, seed, cls=cls: cls(random_state=seed)) for name, cls in skflow_estimators().items()
    }
    methods[GMM] = make_gmm
    methods[KDE] = make_kde
    if zuko_available():
        methods["zuko NSF"] = lambda n, seed: ZukoDensity("NSF", random_state=seed)
        methods["zuko MAF"] = lambda n, seed: ZukoDensity("MAF", random_state=seed)
    return methods
