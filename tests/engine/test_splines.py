"""The rational-quadratic spline: identity at zero, exact inverse, exact log-derivative."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skflow.engine.splines import (
    MIN_BIN_HEIGHT,
    MIN_BIN_WIDTH,
    _derivatives,
    _knots,
    rational_quadratic_spline,
)

BOUND = 3.0
N_BINS = 8
F64 = torch.float64


def make_params(shape, n_bins=N_BINS, scale=3.0, seed=0, dtype=F64):
    """Random ``(widths, heights, derivatives)`` for inputs of ``shape``."""
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(shape)
    w = scale * torch.randn(shape + (n_bins,), generator=gen, dtype=dtype)
    h = scale * torch.randn(shape + (n_bins,), generator=gen, dtype=dtype)
    d = scale * torch.randn(shape + (n_bins - 1,), generator=gen, dtype=dtype)
    return w, h, d


def spline(x, params, inverse=False, bound=BOUND):
    return rational_quadratic_spline(x, *params, inverse=inverse, tail_bound=bound)


def assert_all_finite(*tensors):
    for t in tensors:
        assert torch.isfinite(t).all(), t


def conditioned(err, ladj_first):
    """Round-trip error relative to the conditioning of the first map.

    Where that map is flat (slope ``exp(ladj_first)`` below 1), inverting it
    amplifies the unavoidable rounding of its output by ``1 / slope``; no
    algorithm does better, so the error is scaled down by that factor.
    """
    return err / torch.clamp(torch.exp(-ladj_first), min=1.0)


def round_trip_inputs(kind, n=64, seed=1):
    """Inputs of shape ``(n, 3)``; for ``"knots"`` they are filled in by the test."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return (2 * torch.rand(n, 3, generator=gen, dtype=F64) - 1) * BOUND
    if kind == "far":
        far = torch.tensor([1e3, -1e3, 1e300, -1e300, BOUND + 1e-12, -BOUND - 1e-12], dtype=F64)
        return far[torch.randint(len(far), (n, 3), generator=gen)]
    if kind == "bounds":
        return BOUND * torch.where(torch.rand(n, 3, generator=gen) < 0.5, -1.0, 1.0).to(F64)
    if kind == "random":
        return 4 * torch.randn(n, 3, generator=gen, dtype=F64)
    raise ValueError(kind)


def knot_inputs(knots, seed=1):
    """One interior knot per element, picked at random, shape ``knots.shape[:-1]``."""
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(1, knots.shape[-1] - 1, knots.shape[:-1] + (1,), generator=gen)
    return knots.gather(-1, index).squeeze(-1)


def test_zero_params_is_identity():
    x = torch.cat([torch.linspace(-10, 10, 2001, dtype=F64), torch.tensor([1e300, -1e300, BOUND, -BOUND])])
    params = tuple(torch.zeros(x.shape + (k,), dtype=F64) for k in (N_BINS, N_BINS, N_BINS - 1))
    assert (_derivatives(params[2]) == 1.0).all()
    outside = x.abs() > BOUND
    for inverse in (False, True):
        y, ladj = spline(x, params, inverse=inverse)
        assert torch.equal(y[outside], x[outside]) and (ladj[outside] == 0).all()
        # Inside, uniform bins with unit slopes reduce to y = x up to a few ulps of round-off.
        torch.testing.assert_close(y, x, rtol=0, atol=4e-15)
        torch.testing.assert_close(ladj, torch.zeros_like(ladj), rtol=0, atol=4e-15)


@pytest.mark.parametrize("kind", ["uniform", "far", "bounds", "knots", "random"])
@pytest.mark.parametrize("inverse_first", [False, True])
def test_round_trip(kind, inverse_first):
    params = make_params((64, 3))
    if kind == "knots":
        # Exactly the knots the spline itself uses: x-knots going forward, y-knots going back.
        if inverse_first:
            x = knot_inputs(_knots(params[1], MIN_BIN_HEIGHT, BOUND))
        else:
            x = knot_inputs(_knots(params[0], MIN_BIN_WIDTH, BOUND))
        assert (x.abs() < BOUND).all()
    else:
        x = round_trip_inputs(kind)
    y, ladj = spline(x, params, inverse=inverse_first)
    x_back, ladj_back = spline(y, params, inverse=not inverse_first)
    assert_all_finite(y, ladj, x_back, ladj_back)
    assert (x_back - x).abs().max() <= 1e-9
    assert (ladj + ladj_back).abs().max() <= 1e-9
    if kind in ("far", "bounds"):
        # Out of bounds or on +-B the map is the identity with unit slope.
        torch.testing.assert_close(y, x, rtol=1e-15, atol=1e-14)
        # On +-B the inverse finds xi = 1 up to round-off, where a steep last bin bends fast.
        torch.testing.assert_close(ladj, torch.zeros_like(ladj), rtol=0, atol=1e-9)


def test_knots_are_pinned_and_floored():
    w = make_params((100,), scale=20.0)[0]
    knots = _knots(w, MIN_BIN_WIDTH, BOUND)
    assert (knots[..., 0] == -BOUND).all() and (knots[..., -1] == BOUND).all()
    assert (knots.diff(dim=-1) >= 2 * BOUND * MIN_BIN_WIDTH * (1 - 1e-9)).all()
    with pytest.raises(ValueError, match="bins"):
        _knots(torch.zeros(1000), MIN_BIN_WIDTH, BOUND)


@pytest.mark.parametrize("inverse", [False, True])
def test_log_derivative_matches_autograd(inverse):
    params = make_params((200, 2), seed=3)
    x = 2 * BOUND * torch.randn(200, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    x.requires_grad_(True)
    y, ladj = spline(x, params, inverse=inverse)
    # Element-wise map: the Jacobian is diagonal, so the gradient of sum(y) is the derivative.
    (dy_dx,) = torch.autograd.grad(y.sum(), x)
    assert (dy_dx > 0).all()
    torch.testing.assert_close(ladj.detach(), dy_dx.log(), rtol=1e-10, atol=1e-10)


def test_gradcheck_all_arguments():
    params = tuple(p.requires_grad_(True) for p in make_params((4,), n_bins=4, scale=1.0, seed=5))
    x = torch.tensor([-2.9, 0.1, 1.3, 4.0], dtype=F64, requires_grad=True)
    for inverse in (False, True):
        assert torch.autograd.gradcheck(
            lambda *a: spline(a[0], a[1:], inverse=inverse), (x, *params), fast_mode=True
        )


def test_monotone_and_maps_bound_onto_itself():
    n = 20001
    x = torch.linspace(-2 * BOUND, 2 * BOUND, n, dtype=F64).unsqueeze(1).expand(n, 4)
    params = tuple(p.expand(n, 4, -1) for p in make_params((1, 4), seed=6))
    y, _ = spline(x, params)
    assert (y.diff(dim=0) > 0).all()
    ends, _ = spline(torch.tensor([[-BOUND], [BOUND]], dtype=F64).expand(2, 4), tuple(p[:2] for p in params))
    torch.testing.assert_close(ends[0], torch.full((4,), -BOUND, dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(ends[1], torch.full((4,), BOUND, dtype=F64), rtol=0, atol=1e-14)
    x_back, _ = spline(ends, tuple(p[:2] for p in params), inverse=True)
    torch.testing.assert_close(x_back, ends, rtol=0, atol=1e-14)


def test_c1_at_tail_bound():
    params = make_params((50,), seed=7)
    eps = 1e-8
    for inverse in (False, True):
        just_inside = torch.where(torch.arange(50) % 2 == 0, BOUND - eps, -BOUND + eps).to(F64)
        _, ladj = spline(just_inside, params, inverse=inverse)
        # The slope is 1 + O(eps) just inside, the same as in the tails.
        assert ladj.abs().max() < 1e-4
        _, ladj_at_bound = spline(just_inside.sign() * BOUND, params, inverse=inverse)
        assert ladj_at_bound.abs().max() < 1e-9


@pytest.mark.parametrize("scale", [3.0, 1e3])
@pytest.mark.parametrize("inverse", [False, True])
def test_finite_for_extreme_inputs_and_params(scale, inverse):
    values = [0.0, BOUND, -BOUND, 1e300, -1e300, 1e-300, -1e-300, 1e3, np.nextafter(BOUND, 0), 1.0, -2.5]
    x = torch.tensor(values, dtype=F64).repeat(20).requires_grad_(True)
    params = tuple(p.requires_grad_(True) for p in make_params(x.shape, scale=scale, seed=8))
    y, ladj = spline(x, params, inverse=inverse)
    grads = torch.autograd.grad((y + ladj).sum(), (x, *params))
    assert_all_finite(y, ladj, *grads)


@pytest.mark.parametrize("inverse", [False, True])
def test_finite_for_extreme_params_inside(inverse):
    x = torch.linspace(-BOUND, BOUND, 1001, dtype=F64).requires_grad_(True)
    params = tuple(p.requires_grad_(True) for p in make_params(x.shape, scale=1e3, seed=9))
    y, ladj = spline(x, params, inverse=inverse)
    grads = torch.autograd.grad((y + ladj).sum(), (x, *params))
    assert_all_finite(y, ladj, *grads)
    # Interior slopes can reach ~1e-10 here, so only the conditioned error is small.
    x_back, _ = spline(y.detach(), params, inverse=not inverse)
    assert conditioned((x_back - x).abs(), ladj).max() <= 1e-10


@settings(max_examples=200, deadline=None)
@given(
    x=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=8),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([0.0, 0.1, 1.0, 3.0, 10.0]),
    bound=st.sampled_from([0.5, 3.0, 10.0]),
)
def test_round_trip_property(x, seed, scale, bound):
    x = torch.tensor(x, dtype=F64)
    params = make_params(x.shape, n_bins=6, scale=scale, seed=seed)
    y, ladj = spline(x, params, bound=bound)
    x_back, ladj_back = spline(y, params, inverse=True, bound=bound)
    _, ladj_at_x_back = spline(x_back, params, bound=bound)
    assert_all_finite(y, ladj, x_back, ladj_back)
    # Large parameters make interior slopes as small as ~1e-7, where any inverse loses
    # digits of x; the conditioned error and the log-det bookkeeping stay exact regardless.
    assert conditioned((x_back - x).abs(), ladj).max() <= 1e-10
    assert (ladj_back + ladj_at_x_back).abs().max() <= 1e-9
    if scale <= 1.0:
        assert (x_back - x).abs().max() <= 1e-9
        assert (ladj + ladj_back).abs().max() <= 1e-9


def test_batched_shapes():
    params = make_params((2, 3, 4), n_bins=3, seed=10)
    x = torch.randn(2, 3, 4, dtype=F64, generator=torch.Generator().manual_seed(11))
    y, ladj = spline(x, params)
    assert y.shape == ladj.shape == x.shape
    # Each element depends only on its own parameters.
    y_flat, _ = spline(x.reshape(-1), tuple(p.reshape(24, -1) for p in params))
    torch.testing.assert_close(y_flat.reshape(x.shape), y, rtol=0, atol=0)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_float32_round_trip(scale):
    params = make_params((500, 3), scale=scale, seed=12, dtype=torch.float32)
    x = 4 * torch.randn(500, 3, generator=torch.Generator().manual_seed(13))
    y, ladj = spline(x, params)
    x_back, ladj_back = spline(y, params, inverse=True)
    assert y.dtype == ladj.dtype == x_back.dtype == torch.float32
    assert conditioned((x_back - x).abs(), ladj).max() <= 1e-4
    if scale == 1.0:
        # Moderate parameters keep every slope above ~1e-3: plain float32 accuracy.
        assert (x_back - x).abs().max() <= 2e-4
        assert (ladj + ladj_back).abs().max() <= 1e-3


def test_float32_zero_params_is_identity():
    x = 4 * torch.randn(500, 3, generator=torch.Generator().manual_seed(14))
    zeros = tuple(torch.zeros(500, 3, k) for k in (N_BINS, N_BINS, N_BINS - 1))
    # softplus rounds in float32, so the unit slopes are 1 only to within an ulp.
    assert (_derivatives(zeros[2]) - 1).abs().max() <= 1e-7
    for inverse in (False, True):
        y, ladj = spline(x, zeros, inverse=inverse)
        torch.testing.assert_close(y, x, rtol=0, atol=2e-6)
        assert ladj.abs().max() <= 1e-6
