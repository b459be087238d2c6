"""DensityOutlierDetector: sklearn's outlier conventions, preprocessing guards, real data."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skflow import DensityOutlierDetector, FerumalFlowDensity, RealNVPDensity
from skflow._outlier import _fit_member
from skflow._preprocessing import _TabularPreprocessor

FAST_FLOW = dict(n_layers=2, hidden_dims=(16,), max_iter=30)
THREADS_BEFORE = torch.get_num_threads()


def planted(rng, n_inliers=300, n_outliers=15, d=2):
    """Gaussian inliers and outliers uniform on a shell far outside them; y = 1 for outliers."""
    inliers = rng.normal(size=(n_inliers, d))
    direction = rng.normal(size=(n_outliers, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    outliers = direction * rng.uniform(5, 7, size=(n_outliers, 1))
    X = np.vstack([inliers, outliers])
    y = np.r_[np.zeros(n_inliers, int), np.ones(n_outliers, int)]
    return X, y


def kde_detector(**params):
    return DensityOutlierDetector(KernelDensity(bandwidth=0.5), random_state=0, **params)


@pytest.fixture
def data(rng):
    return planted(rng)


def test_sign_conventions(data):
    X, y = data
    det = kde_detector(contamination=0.05).fit(X)
    pred = det.predict(X)
    assert set(np.unique(pred)) == {-1, 1}
    assert pred.dtype.kind == "i"
    dec = det.decision_function(X)
    np.testing.assert_allclose(dec, det.score_samples(X) - det.offset_)
    np.testing.assert_array_equal(pred, np.where(dec < 0, -1, 1))
    # Higher score = more normal: the planted outliers score lowest.
    assert det.score_samples(X)[y == 1].max() < np.median(det.score_samples(X)[y == 0])
    np.testing.assert_array_equal(det.fit_predict(X), pred)


@pytest.mark.parametrize("contamination", [0.01, 0.1, 0.25, 0.5])
def test_contamination_fraction(data, contamination):
    X, _ = data
    pred = kde_detector(contamination=contamination).fit_predict(X)
    n_out = np.sum(pred == -1)
    assert abs(n_out - contamination * X.shape[0]) <= 1


def test_auto_contamination_is_tukey_fence(data):
    X, y = data
    det = kde_detector().fit(X)
    scores = det.score_samples(X)
    q1, q3 = np.percentile(scores, [25, 75])
    assert det.offset_ == pytest.approx(q1 - 1.5 * (q3 - q1))
    flagged = det.predict(X) == -1
    # The planted outliers are all beyond the fence, and few inliers are.
    assert flagged[y == 1].all()
    assert flagged[y == 0].mean() < 0.05


@pytest.mark.parametrize(
    "estimator",
    [KernelDensity(bandwidth=0.5), GaussianMixture(n_components=2), RealNVPDensity(**FAST_FLOW)],
    ids=lambda e: type(e).__name__,
)
def test_wraps_any_density_and_finds_planted_outliers(data, estimator):
    X, y = data
    det = DensityOutlierDetector(estimator, n_estimators=1, random_state=0).fit(X)
    assert type(det.estimator_) is type(estimator)
    assert det.estimator_ is not estimator
    assert roc_auc_score(y, -det.score_samples(X)) > 0.95
    assert roc_auc_score(y, -det.decision_function(X)) > 0.95


def test_not_fitted_and_wrong_n_features(data):
    X, _ = data
    det = kde_detector()
    for method in (det.predict, det.decision_function, det.score_samples):
        with pytest.raises(NotFittedError):
            method(X)
    det.fit(X)
    with pytest.raises(ValueError, match="features"):
        det.predict(X[:, :1])
    with pytest.raises(ValueError, match="features"):
        det.score_samples(np.hstack([X, X]))


def test_pipeline(data):
    X, y = data
    pipe = make_pipeline(StandardScaler(), kde_detector(contamination=0.05)).fit(X)
    assert pipe.predict(X).shape == (X.shape[0],)
    assert roc_auc_score(y, -pipe.decision_function(X)) > 0.95
    assert roc_auc_score(y, -pipe.score_samples(X)) > 0.95


def test_grid_search_with_a_supervised_scorer(data):
    X, y = data
    # sklearn's convention: +1 inlier, -1 outlier.  The "roc_auc" scorer takes
    # decision_function (higher = more normal) with the greater label (+1,
    # inlier) as positive, so the labels must be mapped this way.
    y_sk = np.where(y == 1, -1, 1)
    # Without the robust members: with them, both bandwidths rank the
    # planted outliers perfectly (a tie), and the search has nothing to find.
    search = GridSearchCV(
        kde_detector(trim_fraction=0.0),
        {"estimator__bandwidth": [0.01, 0.5]},
        scoring="roc_auc",
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(X, y_sk)
    assert search.best_params_ == {"estimator__bandwidth": 0.5}
    assert search.best_score_ > 0.95


def test_default_estimator_is_a_ferumal_flow(rng):
    X = rng.normal(size=(60, 2))
    det = DensityOutlierDetector(n_estimators=1, random_state=0).fit(X)
    assert isinstance(det.estimator_, FerumalFlowDensity)
    assert det.estimator_.base == "normal"
    assert det.estimator is None  # the parameter is left untouched
    assert np.isfinite(det.score_samples(X)).all()


def test_ensemble_subsamples_and_seeds(rng):
    X = rng.normal(size=(200, 3))
    det = DensityOutlierDetector(RealNVPDensity(**FAST_FLOW), n_estimators=3, max_samples=50, random_state=0)
    det.fit(X)
    assert det.max_samples_ == 50 and len(det.estimators_) == 3
    seeds = {est.random_state for est in det.estimators_}
    assert len(seeds) == 3 and all(isinstance(s, (int, np.integer)) for s in seeds)
    Z = det._preprocessed(X)
    members = [est.score_samples(Z) for est in det.estimators_]
    # n_neighbors="auto": each member's rows also give a k-NN density, k = round(sqrt(50)).
    assert [knn.n_neighbors_ for knn in det.neighbor_densities_] == [7, 7, 7]
    neighbors = [knn.score_samples(Z) for knn in det.neighbor_densities_]
    expected = (np.mean(members, axis=0) + np.mean(neighbors, axis=0)) / 2
    np.testing.assert_allclose(det.score_samples(X), expected)
    flows_only = clone(det).set_params(n_neighbors=None).fit(X)
    assert flows_only.neighbor_densities_ == []
    np.testing.assert_allclose(flows_only.score_samples(X), np.mean(members, axis=0))
    assert DensityOutlierDetector(KernelDensity(), max_samples=0.25).fit(X).max_samples_ == 50
    assert DensityOutlierDetector(KernelDensity(), max_samples=10_000).fit(X).max_samples_ == 200


def test_same_seed_same_scores(rng):
    X = rng.normal(size=(100, 2))
    det = DensityOutlierDetector(RealNVPDensity(**FAST_FLOW), n_estimators=1, random_state=0)
    a = clone(det).fit(X).score_samples(X)
    np.testing.assert_array_equal(a, clone(det).fit(X).score_samples(X))
    assert not np.array_equal(a, clone(det).set_params(random_state=1).fit(X).score_samples(X))


def test_robust_standardisation_and_constant_columns(rng):
    X = np.c_[rng.normal(5.0, 3.0, size=500), np.full(500, 7.0), rng.normal(size=500)]
    X[:5, 0] = 1e6  # extreme rows move neither the median nor the IQR much
    det = kde_detector().fit(X)
    np.testing.assert_array_equal(det.support_, [True, False, True])
    assert det.location_[0] == pytest.approx(5.0, abs=0.5)
    assert det.scale_[0] == pytest.approx(3.0, rel=0.15)
    # The dropped column does not reach the estimator.
    assert det.estimator_.n_features_in_ == 2
    with pytest.raises(ValueError, match="constant"):
        kde_detector().fit(np.ones((10, 3)))


def test_discrete_columns_are_detected_and_dequantised(rng):
    n = 400
    X = np.c_[rng.normal(size=n), rng.randint(0, 5, size=n) * 2.0, rng.randint(0, 2, size=n)]
    det = kde_detector().fit(X)
    step = det.dequantization_step_
    assert step[0] == 0.0  # continuous: left alone
    # Grid steps (2 and 1 in input units) in standardised units.
    np.testing.assert_allclose(step[1:] * det.scale_[1:], [2.0, 1.0])
    assert np.all(kde_detector(dequantize=False).fit(X).dequantization_step_ == 0)


def binary_codes_with_a_rare_group(rng, n_inliers=300, n_outliers=10, n_features=8, n_shared=3):
    """Binary codes; the outliers share a code no inlier takes in ``n_shared`` columns.

    Dequantised, the outliers' cells hold ~4x less mass than the inliers'
    (they are rarer), but without noise they are exact ties in three columns.
    """
    X = rng.randint(0, 2, size=(n_inliers + n_outliers, n_features)).astype(float)
    X[n_inliers:, :n_shared] = 3.0
    y = np.r_[np.zeros(n_inliers, int), np.ones(n_outliers, int)]
    return X, y


def test_dequantisation_stops_a_collapse_onto_tied_values(rng):
    X, y = binary_codes_with_a_rare_group(rng)
    gmm = GaussianMixture(n_components=3, reg_covar=1e-6)
    # Dequantisation alone, without the robust members (trim_fraction=0).
    naive = DensityOutlierDetector(gmm, dequantize=False, trim_fraction=0.0, random_state=0).fit(X)
    guarded = DensityOutlierDetector(gmm, trim_fraction=0.0, random_state=0).fit(X)
    # Without noise a component collapses onto the outliers' tied values:
    # they become the most typical rows.
    assert roc_auc_score(y, -naive.score_samples(X)) < 0.2
    assert roc_auc_score(y, -guarded.score_samples(X)) > 0.95
    # The robust members never see the rows collapsed onto (an isolation
    # forest isolates the rare code first): the ranking holds without noise.
    robust = DensityOutlierDetector(gmm, dequantize=False, random_state=0).fit(X)
    assert roc_auc_score(y, -robust.score_samples(X)) > 0.95


def test_sample_weight(rng):
    X = rng.normal(size=(60, 2))
    w = rng.randint(0, 3, size=60)
    # Without the isolation forest (it subsamples rows, so weights are not
    # repetitions there), weights act as repeated rows everywhere.
    det = DensityOutlierDetector(KernelDensity(), contamination=0.1, dequantize=False, trim_fraction=0.0)
    weighted = clone(det).fit(X, sample_weight=w)
    repeated = clone(det).fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(weighted.decision_function(X), repeated.decision_function(X))
    # Rows of zero weight are ignored, by the isolation forest too.
    det = DensityOutlierDetector(KernelDensity(), random_state=0)
    np.testing.assert_array_equal(
        clone(det).fit(X, sample_weight=w).score_samples(X),
        clone(det).fit(X[w > 0], sample_weight=w[w > 0]).score_samples(X),
    )
    with pytest.raises(ValueError, match="sample_weight"):
        DensityOutlierDetector(GaussianMixture()).fit(X, sample_weight=w)


def test_on_real_categorical_data(shared_data):
    # lympho (ODDS): 148 rows, 18 categorical codes, 6 anomalies.  Measured
    # (random_state 0..4): 0.91-0.94 dequantised, 0.22-0.62 without noise.
    data = np.load(shared_data / "anomaly" / "lympho.npz")
    X, y = data["X"], data["y"]
    gmm = GaussianMixture(n_components=3, reg_covar=1e-6)
    # Dequantisation alone, without the robust members (trim_fraction=0).
    det = DensityOutlierDetector(gmm, trim_fraction=0.0, random_state=0)
    auc = roc_auc_score(y, -clone(det).fit(X).score_samples(X))
    naive = clone(det).set_params(dequantize=False).fit(X).score_samples(X)
    assert auc > 0.85
    assert roc_auc_score(y, -naive) < 0.5


def test_preprocessor_is_deterministic_and_noise_fits_the_grid(rng):
    n = 300
    X = np.c_[rng.normal(size=n), rng.randint(0, 4, size=n) * 0.5, np.full(n, 2.0)]
    pre = _TabularPreprocessor().fit(X)
    np.testing.assert_array_equal(pre.support_, [True, True, False])
    Z = pre.transform(X)
    assert Z.shape == (n, 2)
    np.testing.assert_array_equal(Z, pre.transform(X))
    noise = pre.dequantization_noise(n, random_state=0)
    np.testing.assert_array_equal(noise, pre.dequantization_noise(n, random_state=0))
    assert np.all(noise[:, 0] == 0)  # continuous column: no noise
    # Half a grid step (0.5 in input units) either side, and it is used.
    half_step = 0.25 / pre.scale_[1]
    assert np.abs(noise[:, 1]).max() <= half_step
    assert np.abs(noise[:, 1]).max() > 0.9 * half_step
    # Noisy rows never leave their grid cell: the rounding recovers them.
    back = (Z[:, 1] + noise[:, 1]) * pre.scale_[1] + pre.location_[1]
    np.testing.assert_allclose(np.round(back * 2) / 2, X[:, 1])


def test_detector_and_benchmark_share_one_preprocessing(rng):
    X = np.c_[rng.normal(size=(200, 2)), rng.randint(0, 3, size=200)]
    det = kde_detector().fit(X)
    pre = _TabularPreprocessor().fit(X)
    np.testing.assert_array_equal(det.preprocessor_.transform(X), pre.transform(X))
    np.testing.assert_array_equal(det.dequantization_step_, pre.dequantization_step_)


def test_n_jobs_gives_the_same_scores(rng):
    X = rng.normal(size=(120, 2))
    det = DensityOutlierDetector(RealNVPDensity(**FAST_FLOW), n_estimators=2, max_samples=60, random_state=0)
    serial = clone(det).fit(X).score_samples(X)
    np.testing.assert_array_equal(serial, clone(det).set_params(n_jobs=2).fit(X).score_samples(X))


class _ThreadRecorder(KernelDensity):
    """A KernelDensity that records how many torch threads its fit ran with."""

    def fit(self, X, y=None, sample_weight=None):
        self.torch_threads_ = torch.get_num_threads()
        return super().fit(X, y, sample_weight)


def test_parallel_members_run_on_one_thread_and_restore_it(rng):
    X = rng.normal(size=(50, 2))
    torch.set_num_threads(2)
    try:
        member = _fit_member(_ThreadRecorder(), X, None, True)
        assert member.torch_threads_ == 1
        assert torch.get_num_threads() == 2  # the caller's setting is back
        assert _fit_member(_ThreadRecorder(), X, None, False).torch_threads_ == 2
    finally:
        torch.set_num_threads(THREADS_BEFORE)


def test_every_second_member_leaves_out_the_rows_isolated_first(data):
    X, y = data
    det = kde_detector(n_estimators=3, trim_fraction=0.1).fit(X)
    Z = det._preprocessed(X)
    # A KDE holds its training rows: members 0 and 2 hold all rows, member 1
    # the 90% an isolation forest isolates last, none of the planted outliers.
    sizes = [est.tree_.data.shape[0] for est in det.estimators_]
    assert sizes[0] == sizes[2] == X.shape[0]
    assert sizes[1] == X.shape[0] - int(np.ceil(0.1 * X.shape[0]))
    held = {tuple(row) for row in np.asarray(det.estimators_[1].tree_.data)}
    assert not any(tuple(row) in held for row in Z[y == 1])
    # With trim_fraction=0, or with a single member, every member holds all rows.
    for plain in (kde_detector(n_estimators=3, trim_fraction=0.0), kde_detector(n_estimators=1)):
        assert all(est.tree_.data.shape[0] == X.shape[0] for est in plain.fit(X).estimators_)


def test_robust_members_unmask_a_cluster_of_anomalies(rng):
    # Ten near-identical rows far from the inliers (a repeated faulty
    # reading): a KDE fitted to all rows gives them a mode of their own.
    X = np.vstack([rng.normal(size=(300, 2)), [6.0, 6.0] + 0.01 * rng.normal(size=(10, 2))])
    y = np.r_[np.zeros(300, int), np.ones(10, int)]

    def auc(**params):
        return roc_auc_score(y, -kde_detector(n_estimators=2, **params).fit(X).score_samples(X))

    assert auc(trim_fraction=0.0, n_neighbors=None) < 0.9
    assert auc(n_neighbors=None) == 1.0
    # Without the robust members, the k-NN densities beside the KDEs unmask
    # it too: their k = round(sqrt(310)) = 18 neighbours reach past the ten
    # rows.  With k below the cluster's size they cannot.
    assert auc(trim_fraction=0.0) == 1.0
    assert auc(trim_fraction=0.0, n_neighbors=5) < 0.9


@parametrize_with_checks([_TabularPreprocessor()])
def test_preprocessor_is_a_scikit_learn_transformer(estimator, check):
    check(estimator)
