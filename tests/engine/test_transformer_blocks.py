"""Transformer spline blocks: exactness, causality, identity at initialisation, token layouts."""

from __future__ import annotations

import math

import pytest
import torch

from skflow.engine import ActNorm, Compose, Flow
import skflow.engine.transformer as transformer
from skflow.engine.elementwise import SplineMap
from skflow.engine.testing import assert_log_det_matches_autograd, assert_round_trip
from skflow.engine.transformer import (
    CONDITIONER_INPUT_BOUND,
    CausalTransformer,
    TransformerBlock,
    token_layout,
    transformer_stack,
)

F64 = torch.float64
BOUND = 3.0
N_BINS = 6
# Random moves of every weight away from the initialisation: large enough that each block
# bends its splines far from the identity (raw spline parameters up to ~2; checked below),
# small enough that the flow stays well conditioned.  At 0.3 the transformer's weights are
# 15x their initial scale, cond(J) reaches ~1e6 at some points, and no algorithm could
# round-trip those to 1e-10; at 0.15, cond(J) ~ 50.
PERTURBATION = 0.15

LAYOUTS = {
    "tabular": (6, None, None),
    "patches": (12, (2, 6), (1, 3)),  # 4 tokens of 3 features
    "single": (1, None, None),
}


def _stack(features, image_shape=None, patch_shape=None, n_layers=3, seed=0, perturb=True) -> Compose:
    g = torch.Generator().manual_seed(seed)
    layout = token_layout(features, image_shape, patch_shape)
    spline = lambda: SplineMap(N_BINS, BOUND)  # noqa: E731
    layers = transformer_stack(features, n_layers, layout, spline, embed_dim=16, depth=2, n_heads=2, generator=g)
    flow = Compose(layers).to(F64)
    if perturb:
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(PERTURBATION * torch.randn(p.shape, generator=g, dtype=F64))
    return flow


def _points(features: int, seed: int = 1) -> torch.Tensor:
    """Inside the bound, exactly on it, far outside it (1e3 and 1e6) and zero."""
    g = torch.Generator().manual_seed(seed)
    inside = (2 * torch.rand(30, features, generator=g, dtype=F64) - 1) * BOUND
    far = torch.tensor([1e3, -1e3, 1e6, -1e6, 40.0, -7.5], dtype=F64)
    far = far[torch.randint(len(far), (10, features), generator=g)]
    signs = torch.where(torch.rand(6, features, generator=g) < 0.5, -1.0, 1.0).to(F64)
    mixed = inside[:10].clone()
    mixed[:, ::2] = 1e3  # far-away earlier tokens conditioning in-bound later ones
    return torch.cat([inside, far, BOUND * signs, mixed, torch.zeros(1, features, dtype=F64)])


# ------------------------------------------------------------------ layout
def test_token_layout():
    assert token_layout(3).tolist() == [[0], [1], [2]]
    # 4x4 image in 2x2 patches: C order over the patch grid, then within each patch.
    assert token_layout(16, (4, 4), (2, 2)).tolist() == [
        [0, 1, 4, 5],
        [2, 3, 6, 7],
        [8, 9, 12, 13],
        [10, 11, 14, 15],
    ]
    assert token_layout(64, (8, 8), (2, 2)).shape == (16, 4)
    assert token_layout(12, (2, 2, 3), (1, 2, 3)).tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    for args, match in [
        ((16, None, (2, 2)), "needs image_shape"),
        ((15, (4, 4), (2, 2)), "does not hold"),
        ((16, (4, 4), (3, 2)), "does not tile"),
        ((16, (4, 4), (2,)), "does not tile"),
        ((10, (4, 4), None), "does not hold"),
    ]:
        with pytest.raises(ValueError, match=match):
            token_layout(*args)


def test_block_rejects_a_bad_layout_and_heads():
    with pytest.raises(ValueError, match="every feature"):
        TransformerBlock(torch.tensor([[0], [0]]), SplineMap(4))
    with pytest.raises(ValueError, match="multiple of n_heads"):
        CausalTransformer(3, 1, 11, embed_dim=10, n_heads=4)


def test_stack_structure_and_orders():
    flow = _stack(12, (2, 6), (1, 3), n_layers=3, perturb=False)
    kinds = [type(t) for t in flow.transforms]
    assert kinds == [ActNorm, TransformerBlock] * 3
    blocks = [t for t in flow.transforms if isinstance(t, TransformerBlock)]
    layout = token_layout(12, (2, 6), (1, 3))
    assert blocks[0].order.tolist() == layout.flatten().tolist()
    assert blocks[1].order.tolist() == layout.flip(0).flatten().tolist()
    assert blocks[2].order.tolist() == layout.flatten().tolist()
    assert (blocks[0].n_tokens, blocks[0].token_size) == (4, 3)


# --------------------------------------------------------------- exactness
def test_identity_at_initialisation():
    for features, image_shape, patch_shape in LAYOUTS.values():
        flow = _stack(features, image_shape, patch_shape, perturb=False)
        x = _points(features)
        with torch.no_grad():
            y, ladj = flow(x)
            x_back, ladj_inv = flow.inverse(x)
        # Zero spline parameters give the identity up to a few ulps (the knot slopes are
        # softplus(offset) + floor, one rounding away from 1).
        torch.testing.assert_close(y, x, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(x_back, x, rtol=1e-14, atol=1e-14)
        assert ladj.abs().max() < 1e-12 and ladj_inv.abs().max() < 1e-12


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_round_trip_near_and_far(layout):
    features, image_shape, patch_shape = LAYOUTS[layout]
    flow = _stack(features, image_shape, patch_shape)
    x = _points(features)
    with torch.no_grad():
        y, _ = flow(x[:30])
    assert (y - x[:30]).abs().max() > 0.3, "the perturbed flow should be far from the identity"
    # In-bound rows alone to 1e-10 absolute; with far rows, relative to their magnitude.
    assert_round_trip(flow, x[:30], atol=1e-10)
    assert_round_trip(flow, x, atol=1e-10)
    far = x[30:40]
    with torch.no_grad():
        far_back = flow.inverse(flow(far)[0])[0]
    assert ((far_back - far).abs() / far.abs().clamp_min(1.0)).max() < 1e-12
    assert_round_trip(flow, torch.full((1, features), 1e300, dtype=F64), atol=1e-10)


@pytest.mark.parametrize("layout", ["tabular", "patches"])
def test_log_det_matches_autograd(layout):
    features, image_shape, patch_shape = LAYOUTS[layout]
    flow = _stack(features, image_shape, patch_shape)
    x = _points(features)[::12]  # inside, far, and far-then-inside rows
    assert_log_det_matches_autograd(flow, x)
    with torch.no_grad():
        z, _ = flow(x)
    # The inverse goes through the token-by-token decoder (with grad: concatenating cache).
    assert_log_det_matches_autograd(flow, z, inverse=True)


def test_block_jacobian_is_causal_over_tokens():
    """d y_t / d x_s = 0 for every token s after t, and diagonal within token t."""
    features, image_shape, patch_shape = LAYOUTS["patches"]
    flow = _stack(features, image_shape, patch_shape, n_layers=2)
    for block in (t for t in flow.transforms if isinstance(t, TransformerBlock)):
        x = _points(features)[3]
        jac = torch.autograd.functional.jacobian(lambda r: block(r.unsqueeze(0))[0][0], x)
        # Rows and columns in the block's token order: (token, feature in token).
        jac = jac[block.order][:, block.order].reshape(4, 3, 4, 3)
        for t in range(4):
            for s in range(4):
                sub = jac[t, :, s, :]
                if s > t:
                    assert torch.all(sub == 0)
                elif s == t:
                    assert torch.all(sub[~torch.eye(3, dtype=torch.bool)] == 0)
                    assert torch.all(sub.diagonal() > 0)
                else:
                    # Earlier tokens do condition later ones (the test would pass vacuously otherwise).
                    assert sub.abs().max() > 0
        # The first token is transformed too: conditioned on the learned start token.
        assert not torch.allclose(jac[0, :, 0, :].diagonal(), torch.ones(3, dtype=F64))


def test_conditioner_sees_bounded_inputs():
    """Beyond ~a few clamp widths, moving an earlier token no longer changes later parameters."""
    flow = _stack(6)
    block = flow.transforms[1]
    x = torch.zeros(2, 6, dtype=F64)
    x[0, 0], x[1, 0] = 1e3, 1e6
    with torch.no_grad():
        params = block.conditioner(block._tokens(x))
    # tanh(1e3 / c) == tanh(1e6 / c) == 1 in float64: identical parameters for all later tokens.
    assert CONDITIONER_INPUT_BOUND * 50 < 1e3
    torch.testing.assert_close(params[0, 1:], params[1, 1:], rtol=0, atol=0)


def test_cached_decoding_matches_full_pass():
    flow = _stack(12, (2, 6), (1, 3))
    block = flow.transforms[1]
    x = _points(12)[:20]
    with torch.no_grad():
        tokens = block._tokens(x)
        full = block.conditioner(tokens)
        cache, previous = block.conditioner.new_cache(), None
        for t in range(block.n_tokens):
            step = block.conditioner.step(previous, t, cache, x.shape[0])
            torch.testing.assert_close(step, full[:, t], rtol=1e-12, atol=1e-12)
            previous = tokens[:, t]


def test_chunked_inference_matches_one_pass(monkeypatch):
    # Chunks of 100 rows (2 heads x 6^2 attention weights per row).
    monkeypatch.setattr(transformer, "ATTENTION_ELEMENTS", 2 * 36 * 100)
    flow = _stack(6, n_layers=1)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1037, 6, generator=g, dtype=F64)
    with torch.no_grad():
        y, ladj = flow(x)
        y_small, ladj_small = flow(x[-50:])
        x_back, _ = flow.inverse(y)
    torch.testing.assert_close(y[-50:], y_small, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(ladj[-50:], ladj_small, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-10)


def test_density_integrates_to_one_in_2d():
    flow = Flow(_stack(2, n_layers=2, perturb=False), 2).to(F64)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(PERTURBATION * torch.randn(p.shape, generator=g, dtype=F64))
        # Far from a standard normal, so the check is not that of the base alone.
        z = torch.randn(2000, 2, generator=g, dtype=F64)
        assert (flow.log_prob(z) - Flow(Compose([]), 2).log_prob(z)).abs().mean() > 0.05
        grid = torch.linspace(-8.0, 8.0, 401, dtype=F64)
        points = torch.cartesian_prod(grid, grid)
        mass = flow.log_prob(points).exp().sum() * (grid[1] - grid[0]) ** 2
    assert math.isclose(mass.item(), 1.0, abs_tol=2e-3)


def test_trains_in_float32_and_stays_exact_after_training():
    """A few optimiser steps on correlated data, then float64 round trips near and far."""
    g = torch.Generator().manual_seed(5)
    base = torch.randn(512, 4, generator=g)
    x = torch.stack([base[:, 0], base[:, 0] ** 2 + 0.3 * base[:, 1], base[:, 2], base[:, 2] * base[:, 3]], 1)
    flow = Flow(_stack(4, n_layers=2, perturb=False).float(), 4)
    flow.data_init(x)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = -flow.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first - 0.3
    transform = flow.transform.to(F64)
    assert_round_trip(transform, x.to(F64), atol=1e-10)
    assert_round_trip(transform, _points(4), atol=1e-10)
