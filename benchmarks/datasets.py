"""Dataset loaders shared by the skflow benchmarks.

Three kinds of data, each returned as a :class:`Dataset` with a fixed, seeded
train/test split:

``synthetic``
    Densities known in closed form, so every table can show the exact
    ceiling: the mean *true* log-density of the test rows.  (The difference
    between the ceiling and a model's test log-likelihood estimates the
    Kullback-Leibler divergence ``KL(p_true || p_model)``.)

``sklearn``
    Real sets that scikit-learn ships (no download): iris, wine,
    breast_cancer and digits.  Digits are integer grey levels 0..16; we add
    uniform noise ``u ~ U[0, 1)`` to every pixel (*dequantisation*, Uria et
    al. 2013; Theis et al. 2016) so that a continuous density is well
    defined.  Its log-likelihood lower-bounds the log-probability of the
    discrete digits.  The noise is drawn once, with a fixed seed, so every
    method sees the same numbers.

``shared``
    Real continuous sets from ``shared/data/density`` beside the repository
    (``$SKFLOW_SHARED_DATA`` overrides the location); skipped when absent.
    Big ones are subsampled (train and test) to keep the run short.

Nothing is standardised here: every method sees the data in its original
units and reports log-likelihoods in those units (estimators that need
standardised inputs undo it through the log-determinant).

Usage::

    from _datasets import load, available
    ds = load("banana_2d", n_train=2000)
    ds.X_train, ds.X_test, ds.true_log_density(ds.X_test)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import stats
from scipy.special import logsumexp
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.model_selection import train_test_split

__all__ = [
    "Dataset",
    "SHARED_DATA",
    "SYNTHETIC",
    "SKLEARN",
    "SHARED",
    "available",
    "load",
    "synthetic_density",
]

SHARED_DATA = Path(
    os.environ.get("SKFLOW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
# Fraction of rows held out when a data set has no official test split.
TEST_FRACTION = 0.25
# Test rows used at most: the standard error is already small at this size,
# and KernelDensity scoring costs O(n_train) per row.
MAX_TEST_ROWS = 5000
# Seed of every split and of every synthetic draw (train and test are drawn
# from disjoint streams, so changing n_train does not change the test set).
SEED = 0


@dataclass
class Dataset:
    """A train/test split, plus the true log-density when it is known."""

    name: str
    kind: str
    X_train: np.ndarray
    X_test: np.ndarray
    description: str
    true_log_density: Callable[[np.ndarray], np.ndarray] | None = None
    n_train_available: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


# --------------------------------------------------------------- synthetic
class _Synthetic:
    """A density with ``sample(n, rng)`` and an exact ``log_prob(X)``."""

    dim: int
    description: str

    def sample(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        raise NotImplementedError

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _GaussianMixture(_Synthetic):
    def __init__(self, weights, means, covariances, description):
        self.weights = np.asarray(weights, dtype=float)
        self.means = np.asarray(means, dtype=float)
        self.covariances = np.asarray(covariances, dtype=float)
        self.dim = self.means.shape[1]
        self.description = description

    def sample(self, n, rng):
        component = rng.choice(len(self.weights), size=n, p=self.weights)
        out = np.empty((n, self.dim))
        for k in range(len(self.weights)):
            rows = component == k
            out[rows] = rng.multivariate_normal(self.means[k], self.covariances[k], size=rows.sum())
        return out

    def log_prob(self, X):
        per_component = np.stack(
            [
                np.log(w) + stats.multivariate_normal(m, c).logpdf(X)
                for w, m, c in zip(self.weights, self.means, self.covariances)
            ],
            axis=-1,
        )
        return logsumexp(np.atleast_2d(per_component), axis=-1)


class _Banana(_Synthetic):
    """``x1 = s z1``, ``x2 = z2 + b (x1^2 - s^2)`` with ``z ~ N(0, I)``.

    The map is triangular with Jacobian determinant ``s``, so
    ``log p(x) = log N(x1 / s) - log s + log N(x2 - b (x1^2 - s^2))``.
    """

    dim = 2

    def __init__(self, s=2.0, b=0.4):
        self.s, self.b = s, b
        self.description = f"warped Gaussian (banana): x1 = {s} z1, x2 = z2 + {b} (x1^2 - {s}^2)"

    def sample(self, n, rng):
        z = rng.standard_normal((n, 2))
        x1 = self.s * z[:, 0]
        return np.column_stack([x1, z[:, 1] + self.b * (x1**2 - self.s**2)])

    def log_prob(self, X):
        z1 = X[:, 0] / self.s
        z2 = X[:, 1] - self.b * (X[:, 0] ** 2 - self.s**2)
        return stats.norm.logpdf(z1) - np.log(self.s) + stats.norm.logpdf(z2)


class _StudentT(_Synthetic):
    def __init__(self, dim=4, df=3.0, correlation=0.5):
        self.dim, self.df = dim, df
        shape = np.full((dim, dim), correlation) + (1 - correlation) * np.eye(dim)
        self.dist = stats.multivariate_t(loc=np.zeros(dim), shape=shape, df=df)
        self.description = (
            f"heavy-tailed multivariate Student-t, {df:g} degrees of freedom, correlation {correlation}"
        )

    def sample(self, n, rng):
        return np.atleast_2d(self.dist.rvs(size=n, random_state=rng)).reshape(n, self.dim)

    def log_prob(self, X):
        return np.atleast_1d(self.dist.logpdf(X))


def _ring(n_components=16, radius=3.0, sd=0.5):
    angles = 2 * np.pi * np.arange(n_components) / n_components
    means = radius * np.column_stack([np.cos(angles), np.sin(angles)])
    return _GaussianMixture(
        np.full(n_components, 1 / n_components),
        means,
        np.tile(sd**2 * np.eye(2), (n_components, 1, 1)),
        f"ring: equal mixture of {n_components} Gaussians (sd {sd}) on a circle of radius {radius}",
    )


def _mixture_2d():
    return _GaussianMixture(
        [0.5, 0.3, 0.2],
        [[0.0, 0.0], [3.0, 3.0], [-3.0, 2.5]],
        [[[1.0, 0.8], [0.8, 1.0]], [[0.3, 0.0], [0.0, 0.3]], [[0.8, -0.5], [-0.5, 0.6]]],
        "3-component anisotropic Gaussian mixture",
    )


def _mixture_8d():
    rng = np.random.RandomState(1)
    covariances = []
    for _ in range(4):
        A = rng.normal(size=(8, 8)) / np.sqrt(8)
        covariances.append(A @ A.T + 0.1 * np.eye(8))
    return _GaussianMixture(
        [0.4, 0.3, 0.2, 0.1],
        rng.normal(scale=2.5, size=(4, 8)),
        covariances,
        "4-component Gaussian mixture in 8-D with random full covariances",
    )


SYNTHETIC: dict[str, Callable[[], _Synthetic]] = {
    "mixture_2d": _mixture_2d,
    "ring_2d": _ring,
    "banana_2d": _Banana,
    "student_t_4d": _StudentT,
    "mixture_8d": _mixture_8d,
}


def synthetic_density(name: str) -> _Synthetic:
    """The closed-form density behind a synthetic data set."""
    return SYNTHETIC[name]()


def _load_synthetic(name, n_train, n_test):
    density = synthetic_density(name)
    n_train = 2000 if n_train is None else n_train
    n_test = 5000 if n_test is None else n_test
    # Separate seeded streams: the test set is identical for every n_train.
    X_train = density.sample(n_train, np.random.RandomState([SEED, 1]))
    X_test = density.sample(n_test, np.random.RandomState([SEED, 2]))
    return Dataset(
        name=name,
        kind="synthetic",
        X_train=X_train,
        X_test=X_test,
        description=density.description,
        true_log_density=density.log_prob,
        n_train_available=n_train,
    )


# ------------------------------------------------------------------ sklearn
def _digits():
    X = load_digits().data.astype(np.float64)
    return X + np.random.RandomState(SEED).uniform(size=X.shape)


SKLEARN: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "iris": (lambda: load_iris().data, "Iris: 4 flower measurements (cm, 0.1 cm resolution)"),
    "wine": (lambda: load_wine().data, "Wine recognition: 13 chemical measurements"),
    "breast_cancer": (
        lambda: load_breast_cancer().data,
        "Breast cancer Wisconsin: 30 cell-nucleus features",
    ),
    "digits": (_digits, "Digits 8x8, grey levels 0..16 + U[0,1) dequantisation noise"),
}


# ------------------------------------------------------------------- shared
# name -> description; only sets whose columns are all continuous are in the
# default suite (see ``SHARED_EXTRA`` for the rest).
SHARED: dict[str, str] = {
    "power_plant": "UCI combined cycle power plant (5 continuous columns)",
    "kin8nm": "kin8nm robot-arm simulation (9 columns)",
    "magic_gamma": "MAGIC gamma telescope, z-scored (10 columns)",
    "protein": "CASP protein structure (10 columns, heavy tails)",
    "miniboone_maf": "MiniBooNE as preprocessed for MAF; trained on its validation split (43 columns)",
}
# Sets with discrete columns (integer scores, many exact zeros): a continuous
# density can put spikes on them, so their log-likelihoods are not comparable.
SHARED_EXTRA: dict[str, str] = {
    "concrete": "UCI concrete strength (9 columns; many exact zeros, age has 14 values)",
    "wine_quality_red": "UCI red wine quality (12 columns; quality is an integer 3..8)",
}


def _load_shared(name, n_train, n_test):
    path = SHARED_DATA / "density" / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set SKFLOW_SHARED_DATA to shared/data)")
    with np.load(path) as data:
        X = np.asarray(data["X"], dtype=np.float64)
        X_test = np.asarray(data["X_test"], dtype=np.float64) if "X_test" in data else None
    notes = []
    if X_test is None:
        X, X_test = train_test_split(X, test_size=TEST_FRACTION, random_state=SEED)
    else:
        notes.append("official MAF test split; trained on the MAF validation split (~11% of MAF's train)")
    description = {**SHARED, **SHARED_EXTRA}[name]
    return _subsample(name, "shared", X, X_test, n_train, n_test, description, notes)


def _subsample(name, kind, X_train, X_test, n_train, n_test, description, notes):
    rng = np.random.RandomState(SEED)
    available_rows = X_train.shape[0]
    if n_train is not None and n_train < available_rows:
        X_train = X_train[np.sort(rng.choice(available_rows, n_train, replace=False))]
    n_test = MAX_TEST_ROWS if n_test is None else n_test
    if X_test.shape[0] > n_test:
        X_test = X_test[np.sort(rng.choice(X_test.shape[0], n_test, replace=False))]
        notes = [*notes, f"test set subsampled to {n_test} rows"]
    return Dataset(
        name=name,
        kind=kind,
        X_train=X_train,
        X_test=X_test,
        description=description,
        n_train_available=available_rows,
        notes=notes,
    )


# --------------------------------------------------------------------- API
def available(include_extra: bool = False) -> dict[str, list[str]]:
    """Names of the data sets that can be loaded here, by kind."""
    shared = [*SHARED, *(SHARED_EXTRA if include_extra else {})]
    return {
        "synthetic": list(SYNTHETIC),
        "sklearn": list(SKLEARN),
        "shared": [n for n in shared if (SHARED_DATA / "density" / f"{n}.npz").is_file()],
    }


def load(name: str, n_train: int | None = None, n_test: int | None = None) -> Dataset:
    """Load one data set with its fixed split.

    Parameters
    ----------
    name : str
        A key of ``SYNTHETIC``, ``SKLEARN``, ``SHARED`` or ``SHARED_EXTRA``.
    n_train : int or None
        Training rows.  Synthetic: rows drawn (default 2000).  Real: a seeded
        subsample of the training split (default: all of it).
    n_test : int or None
        Test rows.  Synthetic: rows drawn (default 5000).  Real: the test
        split, subsampled to at most this many rows (default 5000).
    """
    if name in SYNTHETIC:
        return _load_synthetic(name, n_train, n_test)
    if name in SKLEARN:
        loader, description = SKLEARN[name]
        X_train, X_test = train_test_split(
            np.asarray(loader(), dtype=np.float64), test_size=TEST_FRACTION, random_state=SEED
        )
        notes = ["dequantised: log-likelihood of the continuous (noisy) pixels"] if name == "digits" else []
        return _subsample(name, "sklearn", X_train, X_test, n_train, n_test, description, notes)
    if name in SHARED or name in SHARED_EXTRA:
        return _load_shared(name, n_train, n_test)
    known = [*SYNTHETIC, *SKLEARN, *SHARED, *SHARED_EXTRA]
    raise KeyError(f"unknown data set {name!r}; known: {', '.join(known)}")
