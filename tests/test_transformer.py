"""TransformerFlowDensity: the estimator contract, token layouts and exactness after training."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_moons
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skflow import TransformerFlowDensity
from skflow.engine.transformer import TransformerBlock

# n_components=2 is what n_components="auto" chooses on iris (the fitted models are bit for bit
# the same), without the search over mixture sizes that was most of a small fit.
SMALL = dict(n_layers=2, depth=1, embed_dim=16, n_heads=2, n_bins=6, n_components=2)


def _blocks(model):
    return [t for t in model.flow_.transform.transforms if isinstance(t, TransformerBlock)]


@pytest.fixture(scope="module")
def iris():
    return load_iris().data


@pytest.fixture(scope="module")
def fitted(iris):
    return TransformerFlowDensity(**SMALL, max_iter=40, random_state=0).fit(iris)


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data[:400].astype(np.float64)
    return X + np.random.RandomState(0).uniform(size=X.shape)


def test_fits_and_learns(fitted, iris):
    assert np.isfinite(fitted.score_samples(iris)).all()
    # Independent Gaussians per feature (the flow at initialisation) give -4.94 nats per row on
    # iris and a full-covariance Gaussian -2.53: the flow must have learnt the dependencies.
    assert fitted.score(iris) > -2.6
    assert fitted.n_iter_ >= 1 and np.isfinite(fitted.loss_curve_).all()
    assert len(fitted.validation_scores_) == fitted.n_iter_
    assert [b.n_tokens for b in _blocks(fitted)] == [4, 4]


def test_the_flow_on_its_own_learns_the_dependencies(iris):
    # The stacked default above holds a Gaussian mixture and a kernel density that clear -2.6 without
    # the flow (the stack scores -1.2 on its training rows).  One flow on N(0, I) starts at -4.94.
    flow_only = TransformerFlowDensity(**SMALL, base="normal", max_iter=40, random_state=0).fit(iris)
    assert flow_only.stack_weights_.tolist() == [1.0]
    assert flow_only.score(iris) > -2.6


def test_round_trip_after_training_near_and_far(fitted, iris):
    """Data, samples, and points up to 1e3 standardised units from the data, to ~1e-10 in float64."""
    np.testing.assert_allclose(fitted.inverse_transform(fitted.transform(iris)), iris, rtol=0, atol=1e-10)
    S = fitted.sample(300, random_state=0)
    assert S.shape == (300, 4) and np.isfinite(S).all()
    np.testing.assert_allclose(fitted.inverse_transform(fitted.transform(S)), S, rtol=0, atol=1e-10)
    loc, scale = iris.mean(0), iris.std(0)
    rng = np.random.RandomState(0)
    standardised = rng.choice([1e3, -1e3, 300.0, -50.0, 3.0, -3.0, 0.0, 0.7], size=(200, 4))
    X = loc + scale * standardised
    Z = fitted.transform(X)
    assert np.isfinite(Z).all() and np.isfinite(fitted.score_samples(X)).all()
    error = np.abs(fitted.inverse_transform(Z) - X) / scale
    assert error.max() < 1e-10, error.max()


def test_extreme_inputs_never_give_nan(fitted):
    X = np.array([[1e300, -1e300, 0.0, 1e300], [-1e300] * 4, [1e-300] * 4])
    scores = fitted.score_samples(X)
    assert not np.isnan(scores).any() and (scores < np.inf).all()
    Z = fitted.transform(X)
    assert np.isfinite(Z).all()
    size = np.maximum(1.0, np.abs(X).max(axis=1, keepdims=True))
    assert (np.abs(fitted.inverse_transform(Z) - X) / size).max() < 1e-12


def test_image_patches(digits):
    # The token layout is the flow's: one flow (base="normal"), not the base="auto" stack.
    model = TransformerFlowDensity(
        **SMALL, image_shape=(8, 8), patch_shape=(2, 2), max_iter=3, base="normal", random_state=0
    ).fit(digits)
    first, second = _blocks(model)
    assert (first.n_tokens, first.token_size) == (16, 4)
    # Token 0 is the top-left 2x2 patch; the second block reads the patches in reverse.
    assert first.order[:4].tolist() == [0, 1, 8, 9]
    assert second.order[:4].tolist() == [54, 55, 62, 63]
    S = model.sample(20, random_state=0)
    assert S.shape == (20, 64) and np.isfinite(S).all()
    np.testing.assert_allclose(model.inverse_transform(model.transform(digits)), digits, rtol=0, atol=1e-10)
    # The same estimator without a layout has one token per pixel: more tokens, another model.
    pixels = clone(model).set_params(image_shape=None, patch_shape=None).fit(digits)
    assert _blocks(pixels)[0].n_tokens == 64


def test_samples_follow_the_fitted_density():
    """Grid integral of exp(score_samples) is 1 and region masses match sample fractions."""
    X, _ = make_moons(500, noise=0.1, random_state=0)
    # The base="auto" stack; 6 components, as its flows' mixture base chooses here.
    params = {**SMALL, "n_components": 6}
    model = TransformerFlowDensity(**params, max_iter=25, random_state=0).fit(X)
    lo, hi = X.min(0) - 2.5, X.max(0) + 2.5
    gx, gy = np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200)
    grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    mass = np.exp(model.score_samples(grid)) * (gx[1] - gx[0]) * (gy[1] - gy[0])
    assert mass.sum() == pytest.approx(1.0, abs=0.02)
    S = model.sample(5000, random_state=1)
    # The standard error of a fraction of 5000 samples is below 0.0071.
    for region in (lambda P: P[:, 0] < 0.5, lambda P: P[:, 1] > 0.25, lambda P: (P[:, 0] > 1) & (P[:, 1] < 0)):
        assert region(S).mean() == pytest.approx(mass[region(grid)].sum(), abs=0.03)


def test_single_feature(iris):
    X = iris[:, 2:3]
    model = TransformerFlowDensity(**SMALL, max_iter=20, random_state=0).fit(X)
    assert _blocks(model)[0].n_tokens == 1
    assert np.isfinite(model.score_samples(X)).all()
    np.testing.assert_allclose(model.inverse_transform(model.transform(X)), X, rtol=0, atol=1e-10)
    assert model.sample(10, random_state=0).shape == (10, 1)


def test_same_seed_is_bit_identical_and_persists(fitted, iris, tmp_path):
    again = clone(fitted).fit(iris)
    np.testing.assert_array_equal(again.score_samples(iris), fitted.score_samples(iris))
    np.testing.assert_array_equal(again.sample(20, random_state=1), fitted.sample(20, random_state=1))
    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.score_samples(iris), fitted.score_samples(iris))
    np.testing.assert_array_equal(loaded.sample(5, random_state=2), fitted.sample(5, random_state=2))


def test_not_fitted():
    model = TransformerFlowDensity()
    for method in ("score_samples", "score", "transform", "inverse_transform"):
        with pytest.raises(NotFittedError):
            getattr(model, method)(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        model.sample(2)


def test_sklearn_workflows_and_partial_fit(iris):
    est = TransformerFlowDensity(**SMALL, max_iter=4, random_state=0)
    search = GridSearchCV(est, {"embed_dim": [8, 16]}, cv=3).fit(iris)
    assert search.best_params_["embed_dim"] in (8, 16)
    pipe = make_pipeline(StandardScaler(), clone(est)).fit(iris)
    assert np.isfinite(pipe.score(iris))
    stream = clone(est)
    for chunk in np.array_split(iris[np.random.RandomState(0).permutation(150)], 3):
        stream.partial_fit(chunk)
    assert stream.n_iter_ == 3 and np.isfinite(stream.score_samples(iris)).all()
    with pytest.raises(ValueError, match="4 features"):
        stream.partial_fit(iris[:, :2])


def test_device_auto_and_cuda(iris):
    model = TransformerFlowDensity(**SMALL, max_iter=2, random_state=0, device="auto").fit(iris)
    assert next(model.flow_.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    cuda = TransformerFlowDensity(**SMALL, max_iter=2, random_state=0, device="cuda").fit(iris)
    assert next(cuda.flow_.parameters()).device.type == "cpu"
    assert np.isfinite(cuda.score_samples(iris)).all()


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(embed_dim=10, n_heads=4), "multiple of n_heads"),
        (dict(patch_shape=(2, 2)), "needs image_shape"),
        (dict(image_shape=(3, 3)), "needs 9 features"),
        (dict(image_shape=(2, 2), patch_shape=(3, 1)), "does not tile"),
        (dict(image_shape=(2, 2), patch_shape=(2, 0)), "patch_shape"),
        (dict(image_shape=[2, 2]), "image_shape"),
        (dict(n_bins=1), "n_bins"),
        (dict(tail_bound=0.0), "tail_bound"),
        (dict(depth=0), "depth"),
    ],
)
def test_invalid_parameters(params, match, iris):
    with pytest.raises(ValueError, match=match):
        TransformerFlowDensity(max_iter=1, **params).fit(iris)


def test_parameters_change_the_model(iris):
    base = TransformerFlowDensity(**SMALL, max_iter=2, random_state=0)
    sizes = {
        clone(base).fit(iris).n_parameters_,
        clone(base).set_params(depth=2).fit(iris).n_parameters_,
        clone(base).set_params(embed_dim=8).fit(iris).n_parameters_,
        clone(base).set_params(n_bins=4).fit(iris).n_parameters_,
    }
    assert len(sizes) == 4
    # One flow (base="mixture"): in the default stack the flows may not earn a place after 2 epochs.
    single = clone(base).set_params(base="mixture")
    wide = clone(single).set_params(tail_bound=10.0).fit(iris)
    assert not np.array_equal(wide.score_samples(iris), clone(single).fit(iris).score_samples(iris))


def test_float32_inference_agrees_with_float64(fitted, iris):
    fast = clone(fitted).set_params(inference_dtype="float32").fit(iris)
    exact = fitted.score_samples(iris)
    np.testing.assert_allclose(fast.score_samples(iris), exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())
    np.testing.assert_allclose(fast.inverse_transform(fast.transform(iris)), iris, rtol=1e-4, atol=1e-4)


def test_image_layout_with_constant_pixels_says_what_to_do():
    from sklearn.datasets import load_digits

    X = load_digits().data[:200]  # some pixels are always 0: point masses
    with pytest.raises(ValueError, match="dequantise"):
        TransformerFlowDensity(image_shape=(8, 8), patch_shape=(2, 2), max_iter=1).fit(X)
