"""The k-nearest-neighbour density behind DensityOutlierDetector's ``n_neighbors``."""

import math

import numpy as np
import pytest
from scipy.special import gammaln
from sklearn.exceptions import NotFittedError

from skflow._neighbors import _KNeighborsDensity


def brute_force(X, Q, k):
    """log(k / n) - log V_d - d log r_k, with r_k from the sorted distance matrix."""
    n, d = X.shape
    r = np.sort(np.linalg.norm(Q[:, None, :] - X[None, :, :], axis=-1), axis=1)[:, k - 1]
    log_ball = d / 2 * math.log(math.pi) - gammaln(d / 2 + 1)
    return math.log(k / n) - log_ball - d * np.log(r)


@pytest.mark.parametrize("k", [1, 4, "auto"])
def test_matches_the_formula(rng, k):
    X, Q = rng.normal(size=(50, 3)), rng.normal(size=(20, 3))
    knn = _KNeighborsDensity(k).fit(X)
    assert knn.n_neighbors_ == (7 if k == "auto" else k)  # round(sqrt(50))
    np.testing.assert_allclose(knn.score_samples(Q), brute_force(X, Q, knn.n_neighbors_), rtol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_recovers_a_uniform_density(rng, d):
    # Uniform on the unit cube: log-density 0.  Rows away from the edges,
    # whose balls lie inside the cube, estimate it without bias.
    X = rng.uniform(size=(20_000, d))
    inside = rng.uniform(0.3, 0.7, size=(500, d))
    scores = _KNeighborsDensity().fit(X).score_samples(inside)
    assert abs(np.median(scores)) < 0.05
    # As many rows again on the half x_0 < 1/2: three times the density there.
    extra = rng.uniform(size=(20_000, d)) * np.r_[0.5, np.ones(d - 1)]
    knn = _KNeighborsDensity().fit(np.vstack([X, extra]))
    low, high = inside.copy(), inside.copy()
    low[:, 0] -= 0.2  # x_0 in (0.1, 0.5)
    high[:, 0] += 0.2  # x_0 in (0.5, 0.9)
    low, high = low[low[:, 0] < 0.4], high[high[:, 0] > 0.6]
    gap = np.median(knn.score_samples(low)) - np.median(knn.score_samples(high))
    assert abs(gap - math.log(3)) < 0.1


def test_weights_count_repetitions(rng):
    X, Q = rng.normal(size=(40, 2)), rng.normal(size=(30, 2))
    w = rng.randint(0, 4, size=40)
    for k in (3, "auto"):
        weighted = _KNeighborsDensity(k).fit(X, sample_weight=w)
        repeated = _KNeighborsDensity(k).fit(np.repeat(X, w, axis=0))
        assert weighted.n_neighbors_ == repeated.n_neighbors_
        np.testing.assert_allclose(weighted.score_samples(Q), repeated.score_samples(Q), rtol=1e-12)
        np.testing.assert_allclose(weighted.min_radius_, repeated.min_radius_, rtol=1e-12)
    # Fractional weights: the radius holds weight k, the log-density is finite.
    scores = _KNeighborsDensity(2).fit(X, sample_weight=rng.uniform(0.1, 1.0, size=40)).score_samples(Q)
    assert np.isfinite(scores).all()


def test_repeated_rows_have_a_finite_density(rng):
    # Ten copies of one row and k = 5: r_k would be 0 at the copies.
    X = np.vstack([rng.normal(size=(100, 2)), np.ones((10, 2))])
    knn = _KNeighborsDensity(5).fit(X)
    scores = knn.score_samples(X)
    assert np.isfinite(scores).all()
    assert knn.min_radius_ > 0
    assert scores[-1] == scores.max()  # still the densest place


def test_k_is_capped_by_the_rows(rng):
    X = rng.normal(size=(3, 2))
    knn = _KNeighborsDensity(10).fit(X)
    assert knn.n_neighbors_ == 3
    assert np.isfinite(knn.score_samples(rng.normal(size=(4, 2)))).all()


def test_errors(rng):
    with pytest.raises(NotFittedError):
        _KNeighborsDensity().score_samples(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="n_neighbors"):
        _KNeighborsDensity(0).fit(rng.normal(size=(5, 2)))
    with pytest.raises(ValueError, match="non-zero"):
        _KNeighborsDensity().fit(rng.normal(size=(5, 2)), sample_weight=np.zeros(5))
    knn = _KNeighborsDensity().fit(rng.normal(size=(5, 2)))
    with pytest.raises(ValueError, match="features"):
        knn.score_samples(np.zeros((1, 3)))
