"""SplineFlowDensity: numerically exact spline flows, coupling and autoregressive.

Engine-level tests build the estimator's own layers (``_build_transforms``) and
move every parameter away from the identity initialisation; estimator-level
tests go through ``fit`` and the public methods.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_iris, make_moons

import skflow.engine.elementwise as elementwise
from skflow import SplineFlowDensity
from skflow.engine import ActNorm, Compose, Coupling, Elementwise, LULinear, Permutation
from skflow.engine.autoregressive import MaskedAutoregressive, autoregressive_stack
from skflow.engine.elementwise import SplineMap
from skflow.engine.splines import (
    MIN_BIN_HEIGHT,
    MIN_BIN_WIDTH,
    _interior_knots,
    packed_rational_quadratic_spline,
    rational_quadratic_spline,
)
from skflow.engine.testing import assert_log_det_matches_autograd, assert_round_trip

F64 = torch.float64
BOUND = 3.0
N_BINS = 8
ARCHITECTURES = ["coupling", "autoregressive"]

# How far the random weights move from the identity initialisation.  A spline flow whose
# conditioners are perturbed by 0.5 gets raw spline parameters of ~15: bins and slopes
# down to ~1e-7, so the inverse is so ill-conditioned (cond(J) ~ 1e11-1e14) that *no*
# algorithm round-trips to 1e-10 (the error stays within ||J^-1|| eps |y|).  At 0.2 the
# parameters (~2) still bend every spline far from the identity, and the flow is
# well-conditioned enough for a 1e-10 round trip to be a fair test of the algorithm.
PERTURBATION = 0.2


def _flow(architecture: str, n_features: int = 5, n_layers: int = 3, seed: int = 0, **params) -> Compose:
    est = SplineFlowDensity(
        n_layers=n_layers,
        hidden_dims=(16, 16),
        n_bins=N_BINS,
        tail_bound=BOUND,
        architecture=architecture,
        **params,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = est._build_transforms(n_features, torch.Generator().manual_seed(seed))
    flow = Compose(layers).to(F64)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(PERTURBATION * torch.randn(p.shape, generator=g, dtype=F64))
    return flow


def _points(n_features: int, seed: int = 2) -> torch.Tensor:
    """Inside the bound, far outside it, exactly on it, and zero."""
    g = torch.Generator().manual_seed(seed)
    inside = (2 * torch.rand(40, n_features, generator=g, dtype=F64) - 1) * BOUND
    far = torch.tensor([1e3, -1e3, 1e6, -1e6, 40.0, -7.5], dtype=F64)
    far = far[torch.randint(len(far), (12, n_features), generator=g)]
    signs = torch.where(torch.rand(8, n_features, generator=g) < 0.5, -1.0, 1.0).to(F64)
    return torch.cat([inside, far, BOUND * signs, torch.zeros(1, n_features, dtype=F64)])


def _identity_first_layers(flow: Compose) -> None:
    """Reset the layers before the first spline, so it sees the inputs unchanged."""
    with torch.no_grad():
        for layer in flow.transforms:
            if isinstance(layer, (Coupling, MaskedAutoregressive, Elementwise)):
                return
            for p in layer.parameters():
                p.zero_()


# ----------------------------------------------------------------- engine
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_layers_are_the_documented_stack(architecture):
    flow = _flow(architecture, n_features=4, n_layers=2)
    kinds = [type(t) for t in flow.transforms]
    block = Coupling if architecture == "coupling" else MaskedAutoregressive
    assert kinds == [ActNorm, LULinear, block] * 2
    assert all(isinstance(t.map, SplineMap) for t in flow.transforms if isinstance(t, block))
    one = _flow(architecture, n_features=1, n_layers=2)
    assert [type(t) for t in one.transforms] == [ActNorm, Elementwise] * 2


def test_autoregressive_orders_alternate():
    flow = _flow("autoregressive", n_features=4, n_layers=2, mixing="alternate")
    first, second = (t for t in flow.transforms if isinstance(t, MaskedAutoregressive))
    assert first.made.degrees.tolist() == [0, 1, 2, 3]
    assert second.made.degrees.tolist() == [3, 2, 1, 0]
    # A reversal permutation already reorders the features: the order must not flip back.
    flow = _flow("autoregressive", n_features=4, n_layers=2, mixing="reverse")
    assert any(isinstance(t, Permutation) for t in flow.transforms)
    layers = [t for t in flow.transforms if isinstance(t, MaskedAutoregressive)]
    assert all(t.made.degrees.tolist() == [0, 1, 2, 3] for t in layers)
    with pytest.raises(ValueError, match="mixing"):
        autoregressive_stack(3, 1, (8,), SplineMap, mixing="shuffle")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_round_trip_is_exact(architecture):
    flow = _flow(architecture)
    x = _points(5)
    y, _ = flow(x)
    assert (y - x).abs().max() > 0.1, "the perturbed flow should be far from the identity"
    # Relative to the largest magnitude in the batch (1e6): 1e-10 * 1e6 = 1e-4 absolute at
    # most, while the in-bound rows alone must come back to 1e-10 absolute.
    assert_round_trip(flow, x, atol=1e-10)
    assert_round_trip(flow, x[:40], atol=1e-10)
    assert_round_trip(flow, torch.tensor([[1e300, -1e300, 0.0, 1e300, -1e300]], dtype=F64), atol=1e-10)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_round_trip_on_bound_and_knots_of_first_spline(architecture):
    """Inputs that the first spline sees exactly on +-B and exactly on its own knots."""
    flow = _flow(architecture, n_features=4)
    _identity_first_layers(flow)
    spline_layer = next(t for t in flow.transforms if isinstance(t, (Coupling, MaskedAutoregressive)))
    g = torch.Generator().manual_seed(5)
    x = (2 * torch.rand(64, 4, generator=g, dtype=F64) - 1) * BOUND
    with torch.no_grad():
        if architecture == "coupling":
            columns = spline_layer.transformed
            knots = _all_knots(spline_layer._params(x[:, spline_layer.conditioning]))
        else:
            # The first feature's parameters read no input (degree 0): its knots are fixed.
            columns = torch.nonzero(spline_layer.made.degrees == 0).flatten()
            knots = _all_knots(spline_layer.made(x))[..., columns, :]
        pick = torch.randint(0, N_BINS + 1, knots.shape[1:-1] + (1,), generator=g)
        x_knots, y_knots = knots.gather(-1, pick.expand((2,) + pick.shape)).squeeze(-1)
    x[:, columns] = x_knots
    assert (x[:, columns].abs() == BOUND).any() and (x[:, columns].abs() < BOUND).any()
    assert_round_trip(flow, x, atol=1e-10)
    # A point exactly on an x-knot lands exactly on the matching y-knot (xi = 0 exactly).
    with torch.no_grad():
        y, _ = spline_layer(x)
    assert torch.equal(y[:, columns], y_knots)


def _all_knots(params: torch.Tensor) -> torch.Tensor:
    """x and y knots ``(2,) + S + (K + 1,)`` of ``params`` (S + (3K - 1,)), computed as the flow does.

    Same layout and shapes as inside :class:`SplineMap`, so the same (vectorised)
    arithmetic: bitwise the knots the spline uses.
    """
    assert MIN_BIN_WIDTH == MIN_BIN_HEIGHT  # else the engine computes them separately
    packed = params.movedim(-1, 0).contiguous()
    interior = _interior_knots(packed[: 2 * N_BINS].unflatten(0, (2, N_BINS)), MIN_BIN_WIDTH, BOUND, dim=1)
    ends = torch.full_like(interior[:, :1], BOUND)
    return torch.cat([-ends, interior, ends], dim=1).movedim(1, -1)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_log_det_matches_autograd(architecture):
    flow = _flow(architecture, n_features=4)
    x = _points(4)[::3]
    assert_log_det_matches_autograd(flow, x)
    with torch.no_grad():
        z, _ = flow(x)
    assert_log_det_matches_autograd(flow, z, inverse=True)


@pytest.mark.parametrize("inverse", [False, True])
def test_packed_spline_matches_public_layout_bitwise(inverse):
    g = torch.Generator().manual_seed(3)
    x = 4 * torch.randn(50, 3, generator=g, dtype=F64)
    params = 2 * torch.randn(50, 3, 3 * N_BINS - 1, generator=g, dtype=F64)
    w, h, d = params.split([N_BINS, N_BINS, N_BINS - 1], dim=-1)
    expected = rational_quadratic_spline(x, w, h, d, inverse=inverse)
    got = packed_rational_quadratic_spline(x, params.movedim(-1, 0).contiguous(), N_BINS, inverse=inverse)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="rows"):
        packed_rational_quadratic_spline(x, params.movedim(-1, 0)[:-1], N_BINS)
    with pytest.raises(ValueError, match="at least 2 bins"):
        packed_rational_quadratic_spline(x, torch.zeros(2, 50, 3, dtype=F64), 1)


def test_blocked_inference_matches_unblocked(monkeypatch):
    spline = SplineMap(N_BINS, BOUND)
    g = torch.Generator().manual_seed(4)
    x = 4 * torch.randn(301, 3, generator=g, dtype=F64)
    params = 2 * torch.randn(301, 3, spline.n_params, generator=g, dtype=F64)
    with torch.no_grad():
        whole = spline(x, params), spline.inverse(x, params)
        monkeypatch.setattr(elementwise, "SPLINE_BLOCK_ELEMENTS", 10)
        blocked = spline(x, params), spline.inverse(x, params)
    # Vectorised and scalar tails of exp/log may differ by an ulp, so not bitwise.
    for a, b in zip(whole, blocked):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


def test_made_feature_params_match_full_pass():
    flow = _flow("autoregressive", n_features=4)
    made = next(t for t in flow.transforms if isinstance(t, MaskedAutoregressive)).made
    x = _points(4)
    with torch.no_grad():
        full = made(x)
        for feature in range(4):
            torch.testing.assert_close(made.feature_params(x, feature), full[:, feature], rtol=1e-13, atol=1e-13)


# -------------------------------------------------------------- estimator
@pytest.fixture(scope="module")
def iris():
    return load_iris().data


@pytest.fixture(scope="module", params=ARCHITECTURES)
def fitted(request, iris):
    # n_components=2 is what "auto" chooses on iris (the same fitted models), without the search.
    return SplineFlowDensity(
        n_layers=2, hidden_dims=(16,), architecture=request.param, max_iter=30, n_components=2, random_state=0
    ).fit(iris)


def test_fits_and_scores_finite(fitted, iris):
    scores = fitted.score_samples(iris)
    assert np.isfinite(scores).all()
    # Learnt something: independent Gaussians per feature (the flow at initialisation) give
    # -4.94 nats per row on iris, a full-covariance Gaussian -2.53.
    assert fitted.score(iris) > -3.0
    assert fitted.n_iter_ >= 1 and np.isfinite(fitted.loss_curve_).all()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_flow_on_its_own_learns_the_dependencies(architecture, iris):
    # The stacked default holds a Gaussian mixture and a kernel density that clear -3.0 without the
    # flow.  One flow on N(0, I) starts at -4.94 nats per row (independent Gaussians).
    flow_only = SplineFlowDensity(
        n_layers=2, hidden_dims=(16,), architecture=architecture, max_iter=30, base="normal", random_state=0
    ).fit(iris)
    assert flow_only.stack_weights_.tolist() == [1.0]
    assert flow_only.score(iris) > -3.0


def test_extreme_inputs_never_give_nan(fitted, iris):
    """Any finite input, through score_samples, transform and inverse_transform."""
    loc, scale = iris.mean(0), iris.std(0)
    rng = np.random.RandomState(0)
    standardised = rng.choice([0.0, BOUND, -BOUND, 1e-300, 1e10, -1e10], size=(40, 4))
    X = loc + scale * standardised
    huge = rng.choice([1e300, -1e300, 0.0], size=(20, 4))
    huge[0] = 1e300
    X = np.vstack([X, huge, np.full((1, 4), -1e300)])
    scores = fitted.score_samples(X)
    assert not np.isnan(scores).any() and (scores < np.inf).all()
    # Only where |z|^2 overflows may the log-density be -inf (the honest log of 0).
    assert np.isfinite(scores[:40]).all()
    Z = fitted.transform(X)
    assert np.isfinite(Z).all()
    X_back = fitted.inverse_transform(Z)
    assert np.isfinite(X_back).all()
    # Exact to float64 precision relative to the magnitudes in each row.
    size = np.maximum(1.0, np.abs(X).max(axis=1, keepdims=True))
    assert (np.abs(X_back - X) / size).max() < 1e-12
    for latent in ([1e300] * 4, [-1e300] * 4, [0.0] * 4, [BOUND, -BOUND, BOUND, -BOUND]):
        X_latent = fitted.inverse_transform(np.array([latent]))
        assert np.isfinite(X_latent).all()
        assert not np.isnan(fitted.score_samples(X_latent)).any()


def test_round_trip_on_data_and_samples(fitted, iris):
    np.testing.assert_allclose(fitted.inverse_transform(fitted.transform(iris)), iris, rtol=0, atol=1e-10)
    S = fitted.sample(500, random_state=0)
    assert S.shape == (500, 4) and np.isfinite(S).all()
    np.testing.assert_allclose(fitted.inverse_transform(fitted.transform(S)), S, rtol=0, atol=1e-9)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_samples_follow_the_fitted_density(architecture):
    """Sampling (inverse) and scoring (forward) describe the same distribution.

    The probability of a region computed by integrating ``exp(score_samples)``
    on a grid must match the fraction of samples falling in it (the standard
    error of a fraction of 10000 samples is below 0.005).
    """
    X, _ = make_moons(500, noise=0.1, random_state=0)
    # The base="auto" stack; 6 components, as its flows' mixture base chooses here.
    model = SplineFlowDensity(
        n_layers=3, hidden_dims=(16,), architecture=architecture, n_components=6, max_iter=25,
        random_state=0,
    ).fit(X)
    lo, hi = X.min(0) - 2.5, X.max(0) + 2.5
    gx, gy = np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200)
    grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    mass = np.exp(model.score_samples(grid)) * (gx[1] - gx[0]) * (gy[1] - gy[0])
    assert mass.sum() == pytest.approx(1.0, abs=0.02)
    S = model.sample(10000, random_state=1)
    regions = [
        lambda P: P[:, 0] < 0.5,
        lambda P: P[:, 1] > 0.25,
        lambda P: (P[:, 0] > 1.0) & (P[:, 1] < 0.0),
    ]
    for region in regions:
        assert region(S).mean() == pytest.approx(mass[region(grid)].sum(), abs=0.02)
    np.testing.assert_allclose(model.inverse_transform(model.transform(S)), S, rtol=0, atol=1e-9)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_single_feature(architecture, iris):
    X = iris[:, 2:3]
    model = SplineFlowDensity(n_layers=2, architecture=architecture, max_iter=20, random_state=0).fit(X)
    assert all(
        not isinstance(t, (Coupling, MaskedAutoregressive)) for t in model.flow_.transform.transforms
    )
    assert np.isfinite(model.score_samples(X)).all()
    np.testing.assert_allclose(model.inverse_transform(model.transform(X)), X, rtol=0, atol=1e-10)
    S = model.sample(10, random_state=0)
    assert S.shape == (10, 1)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(architecture="flow"), "architecture"),
        (dict(mixing="shuffle"), "mixing"),
        (dict(n_bins=1), "n_bins"),
        (dict(tail_bound=0.0), "tail_bound"),
        (dict(hidden_dims=[8]), "hidden_dims"),
        (dict(hidden_dims=(8, 0)), "hidden_dims"),
    ],
)
def test_invalid_parameters(params, match, iris):
    with pytest.raises(ValueError, match=match):
        SplineFlowDensity(max_iter=1, **params).fit(iris)


def test_parameters_change_the_model(iris):
    # n_components=2 is what "auto" chooses on iris (the same fitted models), without the search.
    base = SplineFlowDensity(n_layers=2, hidden_dims=(8,), max_iter=3, n_components=2, random_state=0)
    n_params = {
        "defaults": clone(base).fit(iris).n_parameters_,
        "bins": clone(base).set_params(n_bins=4).fit(iris).n_parameters_,
        "coupling": clone(base).set_params(architecture="coupling").fit(iris).n_parameters_,
    }
    assert len(set(n_params.values())) == 3
    # One flow (base="mixture"): in the default stack the flows may not earn a place after 3 epochs.
    single = clone(base).set_params(base="mixture")
    wide = clone(single).set_params(tail_bound=10.0).fit(iris)
    assert not np.array_equal(wide.score_samples(iris), clone(single).fit(iris).score_samples(iris))
