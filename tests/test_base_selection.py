"""The classical densities that base="auto" stacks with the flows: selection, then refit on every row."""

import numpy as np
import pytest
import torch

from skflow import FerumalFlowDensity
from skflow._base_selection import (
    cv_kernel_density,
    cv_mixture,
    mixture_base,
    refit_kernel_density,
    refit_mixture,
)


def _blobs(n, seed=0):
    rng = np.random.RandomState(seed)
    centres = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    return centres[rng.randint(3, size=n)] + rng.randn(n, 2) @ np.array([[0.6, 0.2], [0.0, 0.4]])


def test_refit_mixture_keeps_the_selection_and_raises_the_likelihood_of_all_rows():
    z_all = _blobs(600)
    z = z_all[:400]
    gmm = cv_mixture(z, "auto", seed=0)
    before = {k: v.copy() for k, v in vars(gmm).items() if k.endswith("_") and isinstance(v, np.ndarray)}
    refit = refit_mixture(gmm, z_all, seed=0)
    assert (refit.n_components, refit.covariance_type) == (gmm.n_components, gmm.covariance_type)
    assert refit is not gmm and not gmm.warm_start
    for key, value in before.items():  # the selected mixture is untouched
        np.testing.assert_array_equal(getattr(gmm, key), value)
    # EM started from the selected parameters only climbs on the new rows.
    assert refit.score(z_all) >= gmm.score(z_all) - 1e-12
    assert not np.allclose(refit.means_, gmm.means_)
    # The engine's mixture has the same density as scikit-learn's.
    with torch.no_grad():
        engine = mixture_base(refit).log_prob(torch.tensor(z_all)).numpy()
    np.testing.assert_allclose(engine, refit.score_samples(z_all), rtol=1e-10)


def test_refit_mixture_with_weights_is_a_seeded_weighted_bootstrap():
    z_all = _blobs(300, seed=1)
    weight = np.r_[np.zeros(100), np.ones(200)]
    gmm = cv_mixture(z_all[100:], "auto", seed=0)
    a, b = (refit_mixture(gmm, z_all, seed=3, weight=weight) for _ in range(2))
    np.testing.assert_array_equal(a.means_, b.means_)
    # EM runs on the seeded weighted bootstrap (EM takes no row weights): rows of weight 0 are never drawn.
    rng = np.random.RandomState(3)
    drawn = z_all[rng.choice(300, size=300, p=weight / weight.sum())]
    np.testing.assert_allclose(a.means_, refit_mixture(gmm, drawn, seed=3).means_, rtol=1e-12)


def test_refit_kernel_density_keeps_the_bandwidth_on_the_new_rows():
    z_all = _blobs(400)
    kde = cv_kernel_density(z_all[:300], seed=0)
    refit = refit_kernel_density(kde, z_all, seed=0)
    assert refit.bandwidth == kde.bandwidth
    np.testing.assert_array_equal(refit.points.numpy(), z_all)
    assert kde.points.shape[0] == 300


def test_auto_stack_refits_the_classical_components_on_training_and_validation_rows():
    X = _blobs(500)
    model = FerumalFlowDensity(n_layers=2, n_aux_points=10, max_iter=5, random_state=0).fit(X)
    names = model.stack_components_
    kde = model._stack[names.index(next(n for n in names if n.startswith("kernel density"))) - 1].base
    # validation_fraction=0.1: the weights came from a fit on 450 rows, the stacked component keeps all 500.
    assert kde.points.shape[0] == X.shape[0]
    mixture = model._stack[names.index(next(n for n in names if n.startswith("Gaussian mixture"))) - 1]
    with torch.no_grad():
        z = mixture.preprocess(torch.tensor(X)).numpy()
    centred = np.abs(mixture.base.means.detach().numpy()[:, None, :] - z[None, :, :]).sum(-1).min(1)
    assert centred.max() < 1.0  # every component sits on the data, none was lost in the refit
    assert model.stack_weights_.sum() == pytest.approx(1.0)
