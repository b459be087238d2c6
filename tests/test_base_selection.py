"""The classical densities that base="auto" stacks with the flows: selection, then refit on every row."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skflow import FerumalFlowDensity
from skflow._base_selection import (
    cv_kernel_density,
    cv_mixtures,
    fit_student_t,
    mixture_base,
    refit_kernel_density,
    refit_mixture,
    refit_student_t,
)


def _blobs(n, seed=0):
    rng = np.random.RandomState(seed)
    centres = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    return centres[rng.randint(3, size=n)] + rng.randn(n, 2) @ np.array([[0.6, 0.2], [0.0, 0.4]])


def test_refit_mixture_keeps_the_selection_and_raises_the_likelihood_of_all_rows():
    z_all = _blobs(600)
    z = z_all[:400]
    gmm = cv_mixtures(z, "auto", seed=0)[0]
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
    gmm = cv_mixtures(z_all[100:], "auto", seed=0)[0]
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


def _t_rows(df, n, seed=0):
    from scipy.stats import multivariate_t

    shape = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, -0.4], [0.0, -0.4, 0.5]])
    return multivariate_t(loc=[1.0, 0.0, -1.0], shape=shape, df=df).rvs(n, random_state=seed), shape


@pytest.mark.parametrize("df, low, high", [(2.0, 2.0, 2.0), (5.0, 3.0, 10.0), (np.inf, 30.0, 100.0)])
def test_fit_student_t_recovers_the_tails_and_the_ellipsoid(df, low, high):
    z, shape = _t_rows(df, 4000)
    base = fit_student_t(z, seed=0)
    assert low <= base.df <= high
    np.testing.assert_allclose(base.loc.numpy(), [1.0, 0.0, -1.0], atol=0.1)
    tril = base.scale_tril.numpy()
    # The fitted scale matrix is the shape (df > 30 fits a scale slightly below the covariance).
    np.testing.assert_allclose(tril @ tril.T, shape, atol=0.2)


def test_fit_student_t_row_weights_are_repeated_rows():
    z, _ = _t_rows(3.0, 300, seed=1)
    weight = np.r_[np.full(100, 2.0), np.ones(200)]
    weighted = fit_student_t(z, seed=0, weight=weight)
    repeated = fit_student_t(np.concatenate([z[:100], z]), seed=0)
    assert weighted.df == repeated.df
    np.testing.assert_allclose(weighted.loc.numpy(), repeated.loc.numpy(), rtol=1e-8)
    np.testing.assert_allclose(weighted.scale_tril.numpy(), repeated.scale_tril.numpy(), rtol=1e-8)


def test_refit_student_t_keeps_df_and_raises_the_likelihood_of_all_rows():
    z_all, _ = _t_rows(2.0, 1500, seed=2)
    base = fit_student_t(z_all[:300], seed=0)
    refit = refit_student_t(base, z_all, seed=0)
    assert refit.df == base.df
    with torch.no_grad():
        before, after = (b.log_prob(torch.tensor(z_all)).mean().item() for b in (base, refit))
    assert after > before


def test_auto_stack_gives_heavy_tailed_rows_a_heavy_tailed_component():
    from scipy.stats import multivariate_t

    X = multivariate_t(loc=np.zeros(4), shape=np.eye(4), df=2.0).rvs(600, random_state=0)
    model = FerumalFlowDensity(n_layers=2, n_aux_points=10, max_iter=5, random_state=0).fit(X)
    t_name = next(n for n in model.stack_components_ if n.startswith("Student-t"))
    t_index = model.stack_components_.index(t_name)
    student_t = model._stack[t_index - 1].base
    assert student_t.df <= 3.0
    # Rows far out: the stack's log-density decays like the Student-t's (polynomially), which
    # bounds it from below through the component's weight.
    far = np.array([[40.0, -40.0, 40.0, 0.0], [0.0, 0.0, 0.0, 300.0]])
    with torch.no_grad():
        t_log_density = model._stack[t_index - 1].log_prob(torch.tensor(far)).numpy()
    assert np.all(model.score_samples(far) >= np.log(model.stack_weights_[t_index]) + t_log_density - 1e-9)
    assert np.all(model.score_samples(far) > -60.0)


def test_cv_mixtures_try_as_many_components_as_a_cross_validated_search():
    # A ring of 16 separated Gaussians: more modes than the flows' start may use (10).
    rng = np.random.RandomState(0)
    angles = 2 * np.pi * rng.randint(16, size=1600) / 16
    z = np.c_[np.cos(angles), np.sin(angles)] * 4 + 0.15 * rng.randn(1600, 2)
    gmm = cv_mixtures(z, "auto", seed=0)[0]
    assert gmm.n_components == 16
    # An explicit size is kept.
    assert [m.n_components for m in cv_mixtures(z[:200], 3, seed=0, n_best=2)] == [3, 3]


def test_cv_mixtures_are_the_search_best_candidates_in_order():
    from sklearn.model_selection import KFold, cross_val_score

    z = _blobs(400)
    best, second = cv_mixtures(z, "auto", seed=0, n_best=2)
    (first,) = cv_mixtures(z, "auto", seed=0)
    assert (best.n_components, best.covariance_type) == (first.n_components, first.covariance_type)
    np.testing.assert_allclose(best.means_, first.means_)
    assert (second.n_components, second.covariance_type) != (best.n_components, best.covariance_type)
    # Ranked by the same 5-fold cross-validated score, each refitted on all the rows.
    folds = KFold(5, shuffle=True, random_state=0)
    scores = [cross_val_score(clone(m), z, cv=folds).mean() for m in (best, second)]
    assert scores[0] >= scores[1]
    assert second.converged_ and second.n_features_in_ == 2
    # Below the cross-validation threshold only the BIC choice is there.
    assert len(cv_mixtures(z[:15], "auto", seed=0, n_best=2)) == 1


def test_fold_scores_are_scikit_learns_without_its_overhead(monkeypatch):
    from scipy.special import logsumexp
    from sklearn.mixture import GaussianMixture
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
    from sklearn.neighbors import KernelDensity

    from skflow._base_selection import _BANDWIDTHS, _cross_validated_score, _kernel_density_scores

    z = _blobs(200, seed=2)
    folds = KFold(5, shuffle=True, random_state=1)
    splits = list(folds.split(z))
    for candidate in (
        GaussianMixture(1, covariance_type="full", random_state=0),
        GaussianMixture(3, covariance_type="diag", random_state=0),
    ):
        expected = cross_val_score(candidate, z, cv=folds, error_score=-np.inf).mean()
        assert _cross_validated_score(candidate, z, splits) == expected
    # A candidate that fails on every fold (more components than a fold has rows) scores -inf, where
    # cross_val_score raises.
    assert _cross_validated_score(GaussianMixture(170), z, splits) == -np.inf

    # The kernel densities' fold scores: scikit-learn's grid search where its tree sums are exact,
    # the exact sums (log-sum-exp of the squared distances) everywhere.
    search = GridSearchCV(KernelDensity(), {"bandwidth": _BANDWIDTHS}, cv=folds).fit(z)
    scores = np.mean([_kernel_density_scores(z[tr], z[te], _BANDWIDTHS) for tr, te in splits], axis=0)
    assert np.argmax(scores) == search.best_index_
    broad = _BANDWIDTHS >= 0.5  # no kernel term underflows at these bandwidths
    np.testing.assert_allclose(scores[broad], search.cv_results_["mean_test_score"][broad], rtol=1e-10)
    train, test = splits[0]
    for h, score in zip(_BANDWIDTHS, _kernel_density_scores(z[train], z[test], _BANDWIDTHS)):
        distance = ((z[test][:, None, :] - z[train][None, :, :]) ** 2).sum(axis=2)
        log_density = logsumexp(-0.5 * distance / h**2, axis=1) - np.log(len(train) * 2 * np.pi * h**2)
        assert score == pytest.approx(log_density.sum(), rel=1e-12)
    # The stack's kernel density takes the best of them.
    kde = cv_kernel_density(z, seed=1)
    assert kde.bandwidth == _BANDWIDTHS[np.argmax(scores)]
    # Blocks of test rows (here one row per block) change nothing but the memory.
    import skflow.engine.bases as bases

    whole = _kernel_density_scores(z[train], z[test], _BANDWIDTHS)
    monkeypatch.setattr(bases, "KERNEL_DENSITY_BLOCK_ELEMENTS", 7)
    np.testing.assert_allclose(_kernel_density_scores(z[train], z[test], _BANDWIDTHS), whole, rtol=1e-13)


def test_bandwidth_search_scores_a_subsample_of_the_held_out_rows_on_many_rows(monkeypatch):
    from sklearn.model_selection import KFold

    import skflow._base_selection as selection

    z = _blobs(3000, seed=3)
    folds = list(KFold(5, shuffle=True, random_state=0).split(z))
    full = sum(selection._kernel_density_scores(z[tr], z[te], selection._BANDWIDTHS) for tr, te in folds)
    sizes = []

    def recorded(train, test, bandwidths):
        sizes.append((train.shape[0], test.shape[0]))
        return scores(train, test, bandwidths)

    scores = selection._kernel_density_scores
    monkeypatch.setattr(selection, "_kernel_density_scores", recorded)
    monkeypatch.setattr(selection, "_KDE_CV_HELD_OUT", 1000)
    kde = selection.cv_kernel_density(z, seed=0)
    # Every training row of each fold is a kernel centre; 200 of its 600 held-out rows are scored.
    assert sizes == [(2400, 200)] * 5
    # The same bandwidth as the search on every held-out row.
    assert kde.bandwidth == selection._BANDWIDTHS[np.argmax(full)]
