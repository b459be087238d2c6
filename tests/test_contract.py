"""Contract points scikit-learn's checks cannot see: exactness far from the data, constant
columns, atomic failures, convergence warnings, optimiser state, base distributions."""

import gc
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import skflow
from conftest import estimator_id
from skflow import FerumalFlowDensity, RealNVPDensity, SplineFlowDensity
from skflow.engine import GaussianMixtureBase, StandardNormal, StudentTBase


def _correlated(n=600, seed=0):
    """4-D correlated data with a skewed column (|x|^1.5), as in the report of far-probe failures."""
    rng = np.random.RandomState(seed)
    a = rng.randn(n, 3) @ np.array([[1.0, 0.6, 0.2], [0.0, 0.8, 0.5], [0.0, 0.0, 0.6]])
    return np.c_[a, np.abs(a[:, 0]) ** 1.5 + 0.1 * rng.randn(n)]


TRAINED = [
    FerumalFlowDensity(max_iter=40, random_state=0),
    RealNVPDensity(max_iter=40, random_state=0),
    SplineFlowDensity(architecture="coupling", max_iter=40, random_state=0),
    SplineFlowDensity(max_iter=40, random_state=0),
]
if hasattr(skflow, "TransformerFlowDensity"):
    TRAINED.append(skflow.TransformerFlowDensity(max_iter=20, random_state=0))


def _far_probes(X, seed=1):
    """Rows at 1 to 1000 training standard deviations, in every direction, plus mixed rows."""
    rng = np.random.RandomState(seed)
    scale = X.std(axis=0)
    out = []
    for radius in (1.0, 10.0, 50.0, 1e3):
        out.append(X.mean(0) + radius * scale * rng.randn(50, X.shape[1]))
    mixed = X[:50].copy()
    mixed[:, :-1] += 1e3 * scale[:-1] * rng.randn(50, X.shape[1] - 1)  # far in all but one column
    return np.vstack(out + [mixed])


@pytest.mark.parametrize("est", TRAINED, ids=lambda e: f"{estimator_id(e)}-{getattr(e, 'architecture', '')}")
@pytest.mark.parametrize("base", ["normal", "auto"])
def test_round_trip_far_from_the_data_after_training(est, base):
    X = _correlated()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # n_components=5 is what "auto" chooses here (the same fitted models), without the search.
        model = clone(est).set_params(base=base, n_components=5).fit(X)
    assert model.n_iter_ > 0
    probes = _far_probes(X)
    Z = model.transform(probes)
    assert np.isfinite(Z).all()
    back = model.inverse_transform(Z)
    magnitude = np.maximum(1.0, np.abs(probes).max(axis=1, keepdims=True))
    rel = np.abs(back - probes) / magnitude
    assert rel.max() < 1e-9, f"worst relative round-trip error {rel.max():.2e}"
    near = model.inverse_transform(model.transform(X))
    np.testing.assert_allclose(near, X, rtol=0, atol=1e-10 * np.abs(X).max())


def _banana(n=600, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n)
    return np.c_[x, 0.5 * x**2 + 0.3 * rng.randn(n)]


# The base="auto" stack of two small flows, with a fixed mixture size, and a patience short
# enough that early stopping (not max_iter) ends training.
POINT_MASS = dict(n_layers=2, n_components=3, max_iter=30, n_iter_no_change=5, random_state=0)


@pytest.mark.parametrize(
    "est",
    [FerumalFlowDensity(**POINT_MASS), RealNVPDensity(**POINT_MASS), SplineFlowDensity(**POINT_MASS)],
    ids=estimator_id,
)
def test_constant_column_is_a_point_mass(est):
    X = _banana()
    Xc = np.c_[X[:, :1], np.full(len(X), 4.2), X[:, 1:]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with_col = clone(est).fit(Xc)
    messages = [str(w.message) for w in caught]
    assert any("point masses" in m for m in messages)
    assert not any("diverged" in m for m in messages)
    without = clone(est).fit(X)
    assert with_col.n_iter_ == without.n_iter_ > 0
    assert without.n_iter_ < without.max_iter  # early stopping, not max_iter, ended both fits
    # The other features are learned exactly as without the column.
    np.testing.assert_allclose(with_col.score_samples(Xc), without.score_samples(X), rtol=1e-12)
    np.testing.assert_array_equal(with_col.constant_features_, [1])
    # Off the point mass the density is 0; the same value in float32 still matches.
    off = Xc.copy()
    off[:5, 1] = 4.3
    assert np.isneginf(with_col.score_samples(off)[:5]).all()
    assert np.isfinite(with_col.score_samples(Xc.astype(np.float32))).all()
    # Samples carry the constant; its latent coordinate is 0 and maps back to it.
    assert np.all(with_col.sample(20, random_state=0)[:, 1] == 4.2)
    Z = with_col.transform(Xc)
    assert np.all(Z[:, 1] == 0.0)
    np.testing.assert_allclose(with_col.inverse_transform(Z), Xc, atol=1e-10)


def test_all_constant_columns_raise():
    with pytest.raises(ValueError, match="All 2 features are constant"):
        RealNVPDensity().fit(np.ones((10, 2)))


@pytest.mark.parametrize("warm", [False, True])
def test_failed_fit_leaves_the_estimator_as_it_was(warm, monkeypatch):
    import skflow._fitting

    X = _banana(200)
    model = RealNVPDensity(
        n_layers=2, hidden_dims=(8,), max_iter=3, n_components=3, random_state=0, warm_start=warm
    ).fit(X)
    before = {k: v for k, v in vars(model).items() if k.endswith("_")}
    state = {k: v.clone() for k, v in model.flow_.state_dict().items()}
    scores = model.score_samples(X)
    monkeypatch.setattr(skflow._fitting, "map_rows", lambda fn, X, *a, **k: np.full(X.shape[0], np.nan))
    with pytest.raises(ValueError, match="could not fit"):
        model.fit(X + 1.0)
    monkeypatch.undo()
    assert {k: v for k, v in vars(model).items() if k.endswith("_")}.keys() == before.keys()
    assert all(model.__dict__[k] is v for k, v in before.items())
    for k, v in model.flow_.state_dict().items():
        assert torch.equal(v, state[k])
    np.testing.assert_array_equal(model.score_samples(X), scores)


def test_max_iter_warns_without_verbose():
    X = _banana(200)
    est = RealNVPDensity(n_layers=2, hidden_dims=(8,), max_iter=2, early_stopping=False, verbose=0)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        est.fit(X)


@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_optimiser_state_is_kept_between_calls(how):
    X = _banana(200)
    est = FerumalFlowDensity(n_layers=2, n_aux_points=10, max_iter=2, random_state=0)
    if how == "partial_fit":
        est.partial_fit(X)
        optimizer = est._trainer.optimizer
        steps = optimizer.steps
        est.partial_fit(X)
    else:
        est.set_params(warm_start=True, early_stopping=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X)
            optimizer = est._trainer.optimizer
            steps = optimizer.steps
            est.fit(X)
    assert est._trainer.optimizer.steps > steps > 0
    # The optimiser still drives the estimator's own (not a copy's) parameters.
    trained = {id(p) for p in est.flow_.parameters()}
    assert {id(p) for p in est._trainer.optimizer.params} <= trained
    # The fitted flow carries no gradients (they would double what a pickle holds).
    assert all(p.grad is None for p in est.flow_.parameters())


def _blobs(n=400, seed=0):
    rng = np.random.RandomState(seed)
    centres = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
    return centres[rng.randint(3, size=n)] + 0.4 * rng.randn(n, 2)


@pytest.mark.parametrize("base, kind", [("normal", StandardNormal), ("mixture", GaussianMixtureBase),
                                        ("student_t", StudentTBase)])
def test_base_parameter_chooses_the_base(base, kind):
    est = FerumalFlowDensity(n_layers=2, n_aux_points=10, max_iter=3, base=base, random_state=0).fit(_blobs())
    assert isinstance(est.flow_.base, kind)
    assert est.base_.startswith(base)
    samples = est.sample(500, random_state=0)
    assert samples.shape == (500, 2) and np.isfinite(est.score_samples(samples)).all()


def test_mixture_base_finds_the_modes_and_fixed_size_is_honoured():
    X = _blobs()
    auto = FerumalFlowDensity(n_layers=2, n_aux_points=10, max_iter=3, base="mixture", random_state=0).fit(X)
    assert auto.flow_.base.n_components == 3
    fixed = clone(auto).set_params(n_components=2).fit(X)
    assert fixed.flow_.base.n_components == 2
    # Three separated blobs: the mixture start beats one Gaussian by a wide margin.
    normal = clone(auto).set_params(base="normal").fit(X)
    assert auto.score(X) > normal.score(X) + 0.5


def test_student_t_base_for_heavy_tails():
    rng = np.random.RandomState(0)
    X = rng.standard_t(2.5, size=(600, 2))
    est = RealNVPDensity(n_layers=2, hidden_dims=(16,), max_iter=30, random_state=0, base="auto").fit(X)
    assert est.base_ == "student_t"
    assert (est.flow_.base.df < 6).all()


def test_training_is_single_threaded_for_small_models():
    """The thread policy runs small fits on one thread: identical results whatever torch's setting."""
    X = _banana(300)
    # The base="auto" stack with a fixed mixture size (the size search runs no torch).
    est = SplineFlowDensity(n_layers=2, hidden_dims=(16,), max_iter=5, n_components=3, random_state=0)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = clone(est).fit(X).score_samples(X)
        torch.set_num_threads(2)
        two = clone(est).fit(X).score_samples(X)
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize(
    "est",
    [FerumalFlowDensity(n_layers=2, n_aux_points=10, max_iter=5, n_components=3, random_state=0),
     SplineFlowDensity(n_layers=2, hidden_dims=(16,), max_iter=5, n_components=3, random_state=0)],
    ids=estimator_id,
)
def test_float32_inference_is_close_and_leaves_the_exact_flow(est):
    X = _banana(300)
    model = clone(est).fit(X)
    exact = model.score_samples(X), model.transform(X)
    model.set_params(inference_dtype="float32")
    fast = model.score_samples(X), model.transform(X)
    np.testing.assert_allclose(fast[0], exact[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fast[1], exact[1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.inverse_transform(fast[1]), X, atol=1e-4)
    assert all(p.dtype == torch.float64 for p in model.flow_.parameters())
    assert model.sample(5, random_state=0).dtype == np.float64


def test_float32_copy_is_made_once_per_fit_and_outside_the_estimator():
    X = _banana(300)
    model = RealNVPDensity(n_layers=2, hidden_dims=(16,), max_iter=5, n_components=3, random_state=0)
    model.set_params(inference_dtype="float32").fit(X)
    before = dict(model.__dict__)
    first = model.score_samples(X)
    assert model.__dict__.keys() == before.keys() and all(model.__dict__[k] is v for k, v in before.items())
    # The copy is reused (not rebuilt): a parameter changed in place on it shows in the next scores.
    from skflow.base import _FLOAT32_MODELS

    (_, stacked), = [v for k, v in _FLOAT32_MODELS[model].items() if k]
    np.testing.assert_array_equal(model.score_samples(X), first)
    with torch.no_grad():
        for p in stacked.parameters():
            p.add_(0.5)
    assert not np.allclose(model.score_samples(X), first)
    # A new fit (other rows) gets a new copy: float32 scores follow the exact ones of the new model.
    model.fit(X[::-1] * 2.0)
    fast = model.score_samples(X)
    exact = model.set_params(inference_dtype="float64").score_samples(X)
    np.testing.assert_allclose(fast, exact, rtol=1e-4, atol=1e-4)
    # The copies go with the estimator.
    held = len(_FLOAT32_MODELS)
    del model, stacked
    gc.collect()
    assert len(_FLOAT32_MODELS) == held - 1


def test_auto_base_stacks_two_flows_and_a_cross_validated_mixture():
    X = _blobs(600)
    params = dict(n_layers=2, n_aux_points=10, max_iter=5, random_state=0)
    auto = FerumalFlowDensity(**params).fit(X)
    assert auto.base_.startswith("mixture")  # three separated blobs
    names, weights = auto.stack_components_, auto.stack_weights_
    # Two flows, the two best mixtures of the cross-validated search, (2-D: cheap) the kernel density
    # and the Student-t.
    assert len(names) == len(weights) == 6 and len(auto._stack) == 5
    assert names[0] == f"flow ({auto.base_} base)" and names[1].startswith("flow (")
    assert names[2].startswith("Gaussian mixture (") and names[3].startswith("Gaussian mixture (")
    assert names[2] != names[3] and names[4].startswith("kernel density")
    assert names[5].startswith("Student-t (df ")
    assert np.all(weights[2:] > 0) and weights.sum() == pytest.approx(1.0)
    # Three Gaussian blobs: the flows do not beat the classical densities by the required 3 nats on the
    # validation rows, so they are dropped (weight exactly 0) and the classical weights refitted alone.
    assert weights[0] == weights[1] == 0.0
    counted = (auto.flow_, *auto._stack[1:])  # flow_ is always counted, the dropped flow is not
    assert auto.n_parameters_ == sum(p.numel() for m in counted for p in m.parameters())
    # The density is exactly the weighted sum of the components' densities.
    X_new = _blobs(200, seed=1)
    with torch.no_grad():
        parts = [m.log_prob(torch.tensor(X_new)).numpy() for m in (auto.flow_, *auto._stack)]
    expected = np.log(sum(w * np.exp(p) for w, p in zip(weights, parts)))
    np.testing.assert_allclose(auto.score_samples(X_new), expected, rtol=1e-10, atol=1e-10)
    # transform is the primary flow's bijection: exact round trips.
    np.testing.assert_allclose(auto.inverse_transform(auto.transform(X_new)), X_new, rtol=0, atol=1e-9)
    # Samples come from every component, and reproducibly.
    samples = auto.sample(2000, random_state=0)
    np.testing.assert_array_equal(samples, auto.sample(2000, random_state=0))
    assert np.isfinite(auto.score_samples(samples)).all()
    # An explicit base is one flow, as before.
    single = FerumalFlowDensity(base="mixture", **params).fit(X)
    assert single._stack == [] and single.stack_weights_.tolist() == [1.0]
    np.testing.assert_allclose(
        single.score_samples(X_new), single.flow_.log_prob(torch.tensor(X_new)).detach().numpy(), rtol=1e-12
    )
