"""Tests for the masked autoregressive transform (MADE + MAF)."""

from __future__ import annotations

import pytest
import torch

from skflow.engine.autoregressive import MADE, MaskedAutoregressive
from skflow.engine.elementwise import AffineMap, SplineMap
from skflow.engine.testing import assert_log_det_matches_autograd, assert_round_trip

TAIL_BOUND = 3.0


def _perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Move every parameter (the zero output layer included) to random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


def _inputs(n: int, features: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g, dtype=torch.float64)


# How far the random weights move from the initialisation, per element-wise
# map.  A spline driven by a MADE perturbed by 0.5 gets |params| ~ 15 and bin
# slopes ~ 1e-7; its inverse then has cond(J) ~ 1e11-1e14 and *no* algorithm
# can round-trip to 1e-10 (checked over 200 seeds: 64% exceed it, always within
# ||J^-1|| * eps * |y|).  At 0.2 all 200 seeds stay below 2e-14, while the
# parameters (|p| ~ 2) still bend the spline well away from the identity.
AFFINE_SCALE = 0.5
SPLINE_SCALE = 0.2


def _maps():
    return [
        pytest.param(AffineMap, {}, AFFINE_SCALE, id="affine"),
        pytest.param(
            SplineMap, {"n_bins": 8, "tail_bound": TAIL_BOUND}, SPLINE_SCALE, id="spline"
        ),
    ]


def _made_jacobian(made: MADE, x_row: torch.Tensor) -> torch.Tensor:
    # (features, n_params, features): d params[i, p] / d x[j]
    return torch.autograd.functional.jacobian(lambda r: made(r.unsqueeze(0))[0], x_row)


@pytest.mark.parametrize("hidden_dims", [(), (7,), (16, 16)])
@pytest.mark.parametrize("features", [1, 2, 5])
def test_made_is_autoregressive(features, hidden_dims):
    made = _perturb(MADE(features, hidden_dims, 3, torch.Generator().manual_seed(0)).double())
    x = _inputs(4, features)
    for row in x:
        jac = _made_jacobian(made, row)
        assert jac.shape == (features, 3, features)
        for i in range(features):
            # Exact zeros: the masks, not small weights, remove the dependence.
            assert torch.all(jac[i, :, i:] == 0), f"feature {i} sees inputs >= {i}"
    if features > 1:
        # Not vacuous: the allowed connections do carry information.
        jac = _made_jacobian(made, x[0])
        assert torch.any(jac[features - 1, :, : features - 1] != 0)


def test_made_respects_custom_order():
    order = [2, 0, 3, 1]
    made = _perturb(MADE(4, (16,), 2, torch.Generator().manual_seed(0), order=order).double())
    jac = _made_jacobian(made, _inputs(1, 4)[0])
    position = {feature: k for k, feature in enumerate(order)}
    for i in range(4):
        for j in range(4):
            if position[j] >= position[i]:
                assert torch.all(jac[i, :, j] == 0), (i, j)
    assert torch.any(jac[order[-1]] != 0)


def test_made_rejects_bad_order():
    with pytest.raises(ValueError, match="permutation"):
        MADE(3, (8,), n_params=2, order=[0, 0, 1])


def test_made_generator_is_reproducible():
    a = MADE(3, (8, 8), 2, generator=torch.Generator().manual_seed(3))
    b = MADE(3, (8, 8), 2, generator=torch.Generator().manual_seed(3))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("map_cls, kwargs, scale", _maps())
def test_identity_at_init(map_cls, kwargs, scale):
    transform = MaskedAutoregressive(4, (16,), map_cls(**kwargs)).double()
    x = _inputs(10, 4) * 2
    y, ladj = transform(x)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(ladj, torch.zeros(10, dtype=torch.float64), rtol=0, atol=1e-12)
    x_back, ladj_inv = transform.inverse(x)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(ladj_inv, torch.zeros(10, dtype=torch.float64), rtol=0, atol=1e-12)


def _random_transform(map_cls, kwargs, scale, features=4, hidden_dims=(16, 16), order=None):
    generator = torch.Generator().manual_seed(0)  # hidden-layer init: the test is deterministic
    transform = MaskedAutoregressive(
        features, hidden_dims, map_cls(**kwargs), order=order, generator=generator
    )
    return _perturb(transform.double(), scale=scale)


def _test_points(features: int) -> torch.Tensor:
    # Scaled so the spline sees both its interior and its linear tails.
    x = _inputs(12, features) * 2.5
    x[0] = 4.0
    x[1] = -5.0
    assert (x.abs() < TAIL_BOUND).any() and (x.abs() > TAIL_BOUND).any()
    return x


@pytest.mark.parametrize("order", [None, [3, 1, 0, 2]], ids=["natural", "custom"])
@pytest.mark.parametrize("map_cls, kwargs, scale", _maps())
def test_round_trip_random_weights(map_cls, kwargs, scale, order):
    transform = _random_transform(map_cls, kwargs, scale, order=order)
    x = _test_points(4)
    y, _ = transform(x)
    assert not torch.allclose(y, x), "perturbed transform should not be the identity"
    assert_round_trip(transform, x, atol=1e-10)


@pytest.mark.parametrize("map_cls, kwargs, scale", _maps())
def test_log_det_matches_autograd(map_cls, kwargs, scale):
    transform = _random_transform(map_cls, kwargs, scale)
    x = _test_points(4)
    assert_log_det_matches_autograd(transform, x)
    with torch.no_grad():
        y, _ = transform(x)
    assert_log_det_matches_autograd(transform, y, inverse=True)


@pytest.mark.parametrize("map_cls, kwargs, scale", _maps())
def test_single_feature(map_cls, kwargs, scale):
    transform = _random_transform(map_cls, kwargs, scale, features=1)
    x = _test_points(1)
    y, _ = transform(x)
    assert not torch.allclose(y, x)
    assert_round_trip(transform, x, atol=1e-10)
    assert_log_det_matches_autograd(transform, x)


@pytest.mark.parametrize("map_cls, kwargs, scale", _maps())
def test_no_hidden_layers(map_cls, kwargs, scale):
    transform = _random_transform(map_cls, kwargs, scale, features=3, hidden_dims=())
    assert len(transform.made.hidden) == 0
    x = _test_points(3)
    assert_round_trip(transform, x, atol=1e-10)
    assert_log_det_matches_autograd(transform, x)


def test_gradients_reach_every_layer():
    # Training must be able to move the zero-initialised output layer.
    transform = MaskedAutoregressive(3, (8,), AffineMap()).double()
    y, ladj = transform(_inputs(16, 3))
    (y.square().sum() - ladj.sum()).backward()
    assert transform.made.output.weight.grad.abs().sum() > 0


def test_repr_mentions_shapes():
    text = repr(MaskedAutoregressive(3, (8,), AffineMap()))
    assert "features=3" in text and "hidden_dims=(8,)" in text
