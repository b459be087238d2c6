"""Shared fixtures: fast instances of every skflow estimator."""

import os
from pathlib import Path

import numpy as np
import pytest

import skflow

# Small, quick configurations: the contract does not depend on model size.  n_components=2 is
# what n_components="auto" chooses on iris (the fitted models are bit for bit the same), without
# the search over mixture sizes that took two thirds of each fit of the base="auto" stack.
FAST_PARAMS = {
    "RealNVPDensity": dict(n_layers=2, hidden_dims=(8,), max_iter=5, n_components=2),
    "FerumalFlowDensity": dict(n_layers=2, n_aux_points=10, max_iter=5, n_components=2),
    "SplineFlowDensity": dict(n_layers=2, hidden_dims=(8,), n_bins=4, max_iter=5, n_components=2),
}


def pytest_configure(config):
    # Under pytest-xdist each worker has a core of its own: torch's default of one intra-op
    # thread per core oversubscribes the machine, and its spinning threads made the gallery
    # examples (2 workers on 2 cores) take 13 CPU-minutes instead of 1.5.  The same holds for the
    # OpenMP pool of scikit-learn's own runtime (KMeans starts every GaussianMixture of base="auto"),
    # which torch's setting does not reach: at two threads test_fitted_2d_density_integrates_to_one
    # took 9.9 s instead of 4.3 s on a worker of its own, and 40 s instead of 6-10 s beside another.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(1)
        threadpool_limits(1)


def fast_estimators(**extra):
    """One fast instance of each estimator that exists in this checkout."""
    out = []
    for name, params in FAST_PARAMS.items():
        cls = getattr(skflow, name, None)
        if cls is not None:
            out.append(cls(**params, **extra))
    return out


def estimator_id(est):
    """The class name, and the base distribution when it is not the default."""
    base = getattr(est, "base", "auto")
    return type(est).__name__ + ("" if base == "auto" else f"-{base}")


SHARED_DATA = Path(os.environ.get("SKFLOW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture
def rng():
    return np.random.RandomState(0)
