"""Exactness of the generic bijections: round trip, log-det, identity at init."""

import pickle

import pytest
import torch

from skflow.engine import (
    ActNorm,
    AffineMap,
    Compose,
    Coupling,
    Elementwise,
    FixedAffine,
    Flow,
    LULinear,
    Permutation,
    alternating_mask,
)
from skflow.engine.conditioners import MLP
from skflow.engine.coupling import coupling_stack
from skflow.engine.testing import assert_log_det_matches_autograd, assert_round_trip

D = 5


def perturb(module, scale=0.5, seed=0):
    """Move every parameter away from its (identity) initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def affine_coupling(features=D, parity=0):
    mask = alternating_mask(features, parity)
    n_t = int(mask.sum())
    return Coupling(mask, MLP(features - n_t, 2 * n_t, (16, 16)), AffineMap())


def masked_coupling(mask):
    mask = torch.tensor(mask)
    n_t = int(mask.sum())
    return Coupling(mask, MLP(D - n_t, 2 * n_t, (16, 16)), AffineMap())


FACTORIES = {
    "fixed_affine": lambda: FixedAffine(torch.randn(D), torch.rand(D) + 0.1),
    "actnorm": lambda: ActNorm(D),
    "reverse": lambda: Permutation.reverse(D),
    "random_perm": lambda: Permutation.random(D, torch.Generator().manual_seed(3)),
    "lu": lambda: LULinear(D),
    "coupling_even": lambda: affine_coupling(parity=0),
    "coupling_odd": lambda: affine_coupling(parity=1),
    "coupling_halves": lambda: masked_coupling([False, False, True, True, True]),
    "coupling_irregular": lambda: masked_coupling([True, True, False, True, False]),
    "elementwise": lambda: Elementwise(D, AffineMap()),
    "stack": lambda: Compose(
        coupling_stack(D, 3, lambda i, o: MLP(i, o, (8,)), AffineMap, mixing="lu")
    ),
}


@pytest.fixture(params=sorted(FACTORIES))
def transform(request):
    torch.manual_seed(0)
    return perturb(FACTORIES[request.param]().double())


def x64(n=7, seed=1, scale=2.0):
    return scale * torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_round_trip(transform):
    assert_round_trip(transform, x64(64), atol=1e-10)
    assert_round_trip(transform, x64(16, scale=50.0), atol=1e-9)


def test_log_det_matches_autograd(transform):
    assert_log_det_matches_autograd(transform, x64())
    assert_log_det_matches_autograd(transform, x64(), inverse=True)


@pytest.mark.parametrize("name", ["actnorm", "lu", "coupling_even", "elementwise", "stack"])
def test_identity_at_initialisation(name):
    torch.manual_seed(0)
    transform = FACTORIES[name]().double()
    x = x64(32)
    y, ladj = transform(x)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    torch.testing.assert_close(ladj, torch.zeros(32, dtype=torch.float64), rtol=0, atol=0)


def test_actnorm_data_init_standardises():
    x = 3.0 + 5.0 * x64(500)
    layer = ActNorm(D).double()
    layer.data_init(x)
    y, _ = layer(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(D, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(y.std(0), torch.ones(D, dtype=torch.float64), atol=1e-12, rtol=0)


def test_lu_parameters_are_its_degrees_of_freedom():
    layer = LULinear(D)
    assert sum(p.numel() for p in layer.parameters()) == D * D
    # Every free entry reaches the matrix: a perturbation of any one changes W.
    x = torch.eye(D, dtype=torch.float64)
    layer = perturb(layer.double())
    base = layer(x)[0]
    for p in layer.parameters():
        for i in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[i] += 0.1
            assert not torch.allclose(layer(x)[0], base)
            with torch.no_grad():
                p.view(-1)[i] -= 0.1


def test_coupling_leaves_conditioning_half_unchanged():
    layer = perturb(affine_coupling().double())
    x = x64()
    y, _ = layer(x)
    cond = layer.conditioning
    torch.testing.assert_close(y[:, cond], x[:, cond], rtol=0, atol=0)
    assert not torch.allclose(y[:, layer.transformed], x[:, layer.transformed])


@pytest.mark.parametrize(
    "mask", [[True, False] * 2 + [True], [False] * 2 + [True] * 3, [True, True, False, True, False]]
)
def test_coupling_slices_are_the_gathers(mask):
    """Evenly spaced masks run on strided slices; the result is bit-identical to gathering."""
    layer = perturb(masked_coupling(mask).double())
    sliced = None not in layer._slices
    assert sliced == (mask != [True, True, False, True, False])
    x = x64(64)
    y, ladj = layer(x)
    back, ladj_back = layer.inverse(y)
    layer._slices = (None, None)
    torch.testing.assert_close(layer(x), (y, ladj), rtol=0, atol=0)
    torch.testing.assert_close(layer.inverse(y), (back, ladj_back), rtol=0, atol=0)


def test_coupling_pickled_before_the_slices_gets_them():
    layer = perturb(masked_coupling([True, False] * 2 + [True]).double())
    expected = layer(x64(16))
    state = layer.__getstate__()
    del state["_slices"]  # what a coupling pickled before the slices holds
    old = Coupling.__new__(Coupling)
    old.__setstate__(state)
    assert old._slices == layer._slices
    torch.testing.assert_close(old(x64(16)), expected, rtol=0, atol=0)
    restored = pickle.loads(pickle.dumps(layer))
    torch.testing.assert_close(restored(x64(16)), expected, rtol=0, atol=0)


def test_coupling_rejects_one_sided_mask():
    with pytest.raises(ValueError, match="both sides"):
        Coupling(torch.ones(3, dtype=torch.bool), MLP(1, 6, ()), AffineMap())


def test_permutation_rejects_non_permutation():
    with pytest.raises(ValueError, match="not a permutation"):
        Permutation(torch.tensor([0, 0, 1]))


@pytest.mark.parametrize("bound", [None, 1.0, 0.25])
def test_affine_log_scale_is_soft_clamped(bound):
    affine = AffineMap() if bound is None else AffineMap(log_scale_bound=bound)
    params = torch.zeros(2, 1, 2, dtype=torch.float64)
    params[0, :, 1], params[1, :, 1] = 1e6, -1e6
    _, ladj = affine(torch.ones(2, 1, dtype=torch.float64), params)
    expected = 3.0 if bound is None else bound
    torch.testing.assert_close(ladj.ravel(), torch.tensor([expected, -expected], dtype=torch.float64))
    # Bounded, yet still an exact bijection with the right log-det.
    layer = perturb(Coupling(alternating_mask(D, 0), MLP(D - D // 2, 2 * (D // 2), (8,)), affine).double())
    assert_round_trip(layer, x64(32, scale=5.0), atol=1e-10)
    assert_log_det_matches_autograd(layer, x64())


def test_affine_log_scale_bound_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        AffineMap(log_scale_bound=0.0)


def test_realnvp_couplings_use_its_tighter_bound():
    import numpy as np

    from skflow import RealNVPDensity

    model = RealNVPDensity(n_layers=2, hidden_dims=(4,), max_iter=1).fit(np.random.RandomState(0).randn(40, 3))
    bounds = {layer.map.log_scale_bound for layer in model.flow_.transform.transforms if isinstance(layer, Coupling)}
    assert bounds == {1.0}


@pytest.mark.parametrize("features", [2, 5, 13, 64])
def test_random_mixing_transforms_every_feature_in_every_pair_of_couplings(features):
    layers = coupling_stack(
        features, 6, lambda i, o: MLP(i, o, ()), AffineMap, mixing="random",
        generator=torch.Generator().manual_seed(0),
    )
    # Follow where each original feature sits through the permutations.
    position = torch.arange(features)  # position[j] = current index of original feature j
    transformed = []
    for layer in layers:
        if isinstance(layer, Permutation):
            position = layer.inverse_permutation[position]
        elif isinstance(layer, Coupling):
            is_transformed = torch.zeros(features, dtype=torch.bool)
            is_transformed[layer.transformed] = True
            transformed.append(is_transformed[position])
    assert len(transformed) == 6
    for first, second in zip(transformed[::2], transformed[1::2]):
        assert torch.all(first ^ second)  # complementary halves: each feature exactly once per pair
    # and the pairs differ, so features meet different partners
    assert not torch.equal(transformed[0], transformed[2]) or features == 2


def test_coupling_stack_one_feature_is_elementwise():
    layers = coupling_stack(1, 2, lambda i, o: MLP(i, o, (4,)), AffineMap)
    assert any(isinstance(layer, Elementwise) for layer in layers)
    assert not any(isinstance(layer, Coupling) for layer in layers)
    flow = perturb(Compose(layers).double())
    x = torch.randn(9, 1, dtype=torch.float64)
    assert_round_trip(flow, x)
    assert_log_det_matches_autograd(flow, x)


def test_flow_density_integrates_to_one_2d():
    torch.manual_seed(0)
    layers = coupling_stack(2, 4, lambda i, o: MLP(i, o, (16,)), AffineMap, mixing="lu")
    flow = perturb(Flow(Compose(layers), 2).double(), scale=0.3)
    grid = torch.linspace(-12, 12, 801, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    with torch.no_grad():
        density = flow.log_prob(pts).exp()
    cell = (grid[1] - grid[0]) ** 2
    assert density.sum().item() * cell.item() == pytest.approx(1.0, abs=0.01)


def test_flow_sample_uses_local_generator_only():
    flow = Flow(Compose([perturb(ActNorm(3).double())]), 3)
    state = torch.random.get_rng_state()
    a = flow.sample(10, torch.Generator().manual_seed(0))
    b = flow.sample(10, torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(flow.from_latent(flow.to_latent(a)), a)


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
def test_mlp_without_gradients_matches_with_gradients(activation):
    # Inference runs the activations in place; the values are the same, and the input is untouched.
    from skflow.engine.conditioners import MLP

    torch.manual_seed(0)
    mlp = MLP(3, 4, (8, 8), activation=activation).double()
    for p in mlp.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(20, 3, dtype=torch.float64)
    before = x.clone()
    with torch.no_grad():
        fast = mlp(x)
    torch.testing.assert_close(fast, mlp(x).detach(), rtol=0, atol=0)
    assert torch.equal(x, before)
