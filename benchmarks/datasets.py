"""The one data-set registry of the skflow benchmarks.

Three kinds of density data, each returned as a :class:`Dataset` with a
fixed, seeded train/test split, plus the labelled anomaly sets:

``synthetic``
    Densities known in closed form (:mod:`benchmarks.synthetic`), so every
    table can show the exact ceiling: the mean *true* log-density of the
    test rows.  Train rows are drawn from a stream seeded by ``seed``, test
    rows from a separate fixed stream: the test set is the same for every
    ``n_train`` and every seed.

``sklearn``
    Real sets that scikit-learn ships (no download): iris, wine,
    breast_cancer and digits, split 75/25 with a fixed seed.  Digits are
    integer grey levels 0..16; uniform noise ``u ~ U[0, 1)`` is added to
    every pixel once, with a fixed seed (*dequantisation*, Uria et al. 2013;
    Theis et al. 2016), so that a continuous density is well defined.  Its
    log-likelihood lower-bounds the log-probability of the discrete digits.

``shared``
    Real continuous sets from ``shared/data/density`` beside the repository
    (``$SKFLOW_SHARED_DATA`` overrides the location); skipped when absent.

Nothing is standardised here: every method sees the data in its original
units and reports log-likelihoods in those units.  With ``n_train`` below
the training split's size, real sets are subsampled with ``seed``.

Examples
--------
>>> from benchmarks import datasets
>>> ds = datasets.load("banana_2d", n_train=200, n_test=100)
>>> ds.X_train.shape, ds.X_test.shape, ds.true_log_density(ds.X_test).shape
((200, 2), (100, 2), (100,))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.model_selection import train_test_split

from .synthetic import SYNTHETIC

__all__ = [
    "ANOMALY",
    "Dataset",
    "SHARED",
    "SHARED_DATA",
    "SHARED_EXTRA",
    "SKLEARN",
    "SYNTHETIC",
    "available",
    "kind",
    "load",
    "load_anomaly",
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
# Seed of every split, of the test draws and of the digits' dequantisation noise.
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


def synthetic_density(name: str):
    """The closed-form density behind a synthetic data set."""
    return SYNTHETIC[name]()


def _load_synthetic(name, n_train, n_test, seed):
    density = synthetic_density(name)
    n_train = 2000 if n_train is None else n_train
    n_test = MAX_TEST_ROWS if n_test is None else n_test
    # Separate seeded streams: the test set is identical for every n_train and seed.
    X_train = density.sample(n_train, np.random.RandomState([seed, 1]))
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
# default suites (see ``SHARED_EXTRA`` for the rest).
SHARED: dict[str, str] = {
    "power_plant": "UCI combined cycle power plant (5 continuous columns)",
    "kin8nm": "kin8nm robot-arm simulation (9 columns)",
    "magic_gamma": "MAGIC gamma telescope, z-scored (10 columns)",
    "protein": "CASP protein structure (10 columns, heavy tails)",
    "miniboone_maf": "MiniBooNE as preprocessed for MAF; trained on its validation split (43 columns)",
}
# Sets with discrete columns (integer scores, many exact zeros): a continuous
# density can put spikes on them, so their log-likelihoods mean little.
SHARED_EXTRA: dict[str, str] = {
    "concrete": "UCI concrete strength (9 columns; many exact zeros, age has 14 values)",
    "wine_quality_red": "UCI red wine quality (12 columns; quality is an integer 3..8)",
}


def _load_shared(name, n_train, n_test, seed):
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
    return _subsample(name, "shared", X, X_test, n_train, n_test, seed, description, notes)


def _subsample(name, kind_, X_train, X_test, n_train, n_test, seed, description, notes):
    available_rows = X_train.shape[0]
    if n_train is not None and n_train < available_rows:
        rows = np.random.RandomState([seed, 1]).choice(available_rows, n_train, replace=False)
        X_train = X_train[np.sort(rows)]
    n_test = MAX_TEST_ROWS if n_test is None else n_test
    if X_test.shape[0] > n_test:
        rows = np.random.RandomState([SEED, 2]).choice(X_test.shape[0], n_test, replace=False)
        X_test = X_test[np.sort(rows)]
        notes = [*notes, f"test set subsampled to {n_test} rows"]
    return Dataset(
        name=name,
        kind=kind_,
        X_train=X_train,
        X_test=X_test,
        description=description,
        n_train_available=available_rows,
        notes=notes,
    )


# -------------------------------------------------------------------- anomaly
# The 20 labelled ODDS sets in shared/data/anomaly (X, y with 1 = anomaly).
ANOMALY = (
    "annthyroid", "breastw", "cardio", "glass", "ionosphere", "letter", "lympho", "mammography", "musk",
    "optdigits", "pendigits", "pima", "satellite", "satimage-2", "shuttle", "thyroid", "vertebral",
    "vowels", "wbc", "wine",
)


def load_anomaly(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (float64) and ``y`` (int, 1 = anomaly) of one ODDS set from ``shared/data/anomaly``.

    Raises ``FileNotFoundError`` when the shared data are absent.
    """
    path = SHARED_DATA / "anomaly" / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set SKFLOW_SHARED_DATA to shared/data)")
    with np.load(path) as data:
        return np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"]).astype(int)


# --------------------------------------------------------------------- API
def kind(name: str) -> str:
    """``"synthetic"``, ``"sklearn"`` or ``"shared"``."""
    if name in SYNTHETIC:
        return "synthetic"
    if name in SKLEARN:
        return "sklearn"
    if name in SHARED or name in SHARED_EXTRA:
        return "shared"
    known = [*SYNTHETIC, *SKLEARN, *SHARED, *SHARED_EXTRA]
    raise KeyError(f"unknown data set {name!r}; known: {', '.join(known)}")


def available(include_extra: bool = False) -> dict[str, list[str]]:
    """Names of the data sets that can be loaded here, by kind (and ``"anomaly"``)."""
    shared = [*SHARED, *(SHARED_EXTRA if include_extra else {})]
    return {
        "synthetic": list(SYNTHETIC),
        "sklearn": list(SKLEARN),
        "shared": [n for n in shared if (SHARED_DATA / "density" / f"{n}.npz").is_file()],
        "anomaly": [n for n in ANOMALY if (SHARED_DATA / "anomaly" / f"{n}.npz").is_file()],
    }


def load(name: str, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """Load one density data set with its fixed split.

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
    seed : int
        Seeds the training draw (synthetic) or subsample (real); the test
        rows never depend on it.

    Returns
    -------
    Dataset
    """
    kind_ = kind(name)
    if kind_ == "synthetic":
        return _load_synthetic(name, n_train, n_test, seed)
    if kind_ == "sklearn":
        loader, description = SKLEARN[name]
        X_train, X_test = train_test_split(
            np.asarray(loader(), dtype=np.float64), test_size=TEST_FRACTION, random_state=SEED
        )
        notes = ["dequantised: log-likelihood of the continuous (noisy) pixels"] if name == "digits" else []
        return _subsample(name, "sklearn", X_train, X_test, n_train, n_test, seed, description, notes)
    return _load_shared(name, n_train, n_test, seed)
