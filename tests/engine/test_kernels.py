"""Tests for the kernel functions and the Ferumal kernel-machine conditioner."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from skflow.engine.kernels import (
    KERNELS,
    LOG_LENGTH_SCALE_BOUND,
    RATIONAL_QUADRATIC_ALPHA,
    KernelConditioner,
    matern,
    scaled_squared_distance,
)

# Direct formulas of each kernel profile as a function of the scaled distance r.
NUMPY_PROFILES = {
    "rbf": lambda r: np.exp(-0.5 * r**2),
    "matern32": lambda r: (1 + math.sqrt(3) * r) * np.exp(-math.sqrt(3) * r),
    "matern52": lambda r: (1 + math.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-math.sqrt(5) * r),
    "laplacian": lambda r: np.exp(-r),
    "rational_quadratic": lambda r: (1 + r**2 / (2 * RATIONAL_QUADRATIC_ALPHA)) ** -RATIONAL_QUADRATIC_ALPHA,
}


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _is_row_of(points: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """For each point, whether it equals some row of ``x`` exactly."""
    return (points.unsqueeze(1) == x.unsqueeze(0)).all(dim=-1).any(dim=1)


def _conditioner(**kwargs) -> KernelConditioner:
    kwargs.setdefault("n_aux_points", 10)
    in_features = kwargs.pop("in_features", 3)
    out_features = kwargs.pop("out_features", 4)
    torch.manual_seed(0)
    return KernelConditioner(in_features, out_features, **kwargs).double()


# ----------------------------------------------------------------- kernels


def test_registry_keys():
    assert set(KERNELS) == set(NUMPY_PROFILES)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_is_one_on_the_diagonal_symmetric_and_positive(name):
    kernel = KERNELS[name]
    u, v = _randn(7, 3, seed=1), _randn(5, 3, seed=2)
    ones = torch.ones(7, dtype=torch.float64)
    torch.testing.assert_close(torch.diagonal(kernel(u, u, 0.7)), ones, rtol=0, atol=1e-15)
    # Symmetric to rounding, not bit for bit: the distances come from a matrix
    # product centred on the second argument's mean.
    torch.testing.assert_close(kernel(u, v, 0.7), kernel(v, u, 0.7).T, rtol=1e-14, atol=0)
    assert (kernel(u, v * 3, 0.7) > 0).all()


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_decreases_with_distance(name):
    direction = torch.tensor([[0.6, -0.8]], dtype=torch.float64)
    points = torch.linspace(0, 6, 25, dtype=torch.float64).unsqueeze(1) * direction
    values = KERNELS[name](points, torch.zeros(1, 2, dtype=torch.float64), 1.3).squeeze(1)
    assert (values[1:] < values[:-1]).all()


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("per_dimension", [False, True])
def test_kernel_matches_numpy_formula(name, per_dimension):
    u, a = _randn(6, 3, seed=3), _randn(4, 3, seed=4)
    length_scale = torch.tensor([0.5, 1.0, 2.0] if per_dimension else 1.7, dtype=torch.float64)
    un, an, ln = u.numpy(), a.numpy(), length_scale.numpy()
    r = np.sqrt((((un[:, None, :] - an[None, :, :]) / ln) ** 2).sum(-1))
    expected = NUMPY_PROFILES[name](r)
    np.testing.assert_allclose(KERNELS[name](u, a, length_scale).numpy(), expected, rtol=1e-12)


def test_squared_distance_is_exactly_zero_and_never_negative():
    u = _randn(50, 4, seed=5) * 1e3
    d2 = scaled_squared_distance(u, u, 0.3)
    assert (d2 >= 0).all()
    assert (torch.diagonal(d2) == 0).all()


def _difference_form(u: torch.Tensor, a: torch.Tensor, length_scale) -> torch.Tensor:
    return ((u.unsqueeze(1) - a.unsqueeze(0)) / length_scale).square().sum(dim=-1)


def _far_cases(d: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    a = _randn(40, d, seed=seed) * 1e3 + 1e3
    # Distances from 1e-6 to 1e2 between points of norm ~1e3: the expansion
    # |u|^2 - 2 u.a + |a|^2 cancels up to 18 digits there.
    gaps = torch.logspace(-6, 2, 120, dtype=torch.float64).unsqueeze(1)
    return {
        "spread_far": (_randn(120, d, seed=seed + 1) * 1e3 - 5e2, a),
        "near_far_points": (a[torch.arange(120) % 40] + gaps * _randn(120, d, seed=seed + 2), a),
        "offset_cluster": (_randn(120, d, seed=seed + 3) + 1e3, _randn(40, d, seed=seed + 4) + 1e3),
        "far_from_cluster": (_randn(120, d, seed=seed + 5) * 1e3 + 1e4, _randn(40, d, seed=seed + 6)),
    }


@pytest.mark.parametrize("d", [1, 2, 5, 32])
@pytest.mark.parametrize("per_dimension", [False, True])
def test_squared_distance_matches_difference_form_far_from_the_origin(d, per_dimension):
    length_scale = torch.linspace(0.3, 3.0, d, dtype=torch.float64) if per_dimension else 0.7
    for seed in range(3):
        for case, (u, a) in _far_cases(d, 10 * seed).items():
            expected = _difference_form(u, a, length_scale)
            got = scaled_squared_distance(u, a, length_scale)
            assert got.shape == expected.shape
            relative = ((got - expected).abs() / expected).max().item()
            assert relative < 1e-12, (case, seed, relative)


def test_squared_distance_gradient_matches_difference_form():
    u = (_randn(30, 4, seed=20) + 1e2).requires_grad_()
    a = (u.detach()[::3] + 1e-3 * _randn(10, 4, seed=21)).requires_grad_()
    length_scale = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    weight = _randn(30, 10, seed=22)
    grads = []
    for fn in (scaled_squared_distance, _difference_form):
        grads.append(torch.autograd.grad((fn(u, a, length_scale) * weight).sum(), (u, a, length_scale)))
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9 * expected.abs().max().item())


def test_squared_distance_overflow_is_inf_not_nan():
    u = torch.full((2, 3), 1e307, dtype=torch.float64)
    d2 = scaled_squared_distance(u, _randn(4, 3, seed=23) * 100, 1.0)
    assert torch.isinf(d2).all() and (d2 > 0).all()


def test_squared_distance_when_only_the_total_of_the_norms_overflows():
    # Every norm is finite (about 3e306) but their total is not: the overflow branch runs and
    # must leave the distances as they are.
    u = 1e153 * (1.0 + 0.1 * _randn(200, 3, seed=24))
    a = 1e153 * (1.0 + 0.1 * _randn(4, 3, seed=25))
    got = scaled_squared_distance(u, a, 1.0)
    expected = _difference_form(u, a, 1.0)
    assert torch.isfinite(got).all()
    assert ((got - expected).abs() / expected).max().item() < 1e-12


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_gradient_is_finite_where_input_equals_aux_point(name):
    u = _randn(5, 3, seed=6).requires_grad_()
    a = u.detach().clone().requires_grad_()  # every u_i sits exactly on a_i
    length_scale = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    KERNELS[name](u, a, length_scale).sum().backward()
    for tensor in (u, a, length_scale):
        assert torch.isfinite(tensor.grad).all(), name
    # Second derivative through the conditioner's training loss path too.
    (grad_u,) = torch.autograd.grad(KERNELS[name](u, a, 1.0).square().sum(), u, create_graph=True)
    assert torch.isfinite(grad_u).all()


def test_matern_rejects_other_nu():
    with pytest.raises(ValueError, match="nu"):
        matern(_randn(2, 2), _randn(2, 2), 1.0, nu=0.5)


# ----------------------------------------------------------------- conditioner


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_conditioner_starts_at_zero_with_right_shape(name):
    conditioner = _conditioner(kernel=name)
    out = conditioner(_randn(8, 3))
    assert out.shape == (8, 4)
    assert (out == 0).all()


@pytest.mark.parametrize("per_dimension", [False, True])
def test_gradient_reaches_weights_aux_points_and_length_scale(per_dimension):
    conditioner = _conditioner(per_dimension_length_scale=per_dimension)
    x = _randn(20, 3, seed=7)
    conditioner.data_init(x, _gen(0))  # aux points on rows: r = 0 occurs
    target = _randn(20, 4, seed=8)
    (conditioner(x) * target).sum().backward()
    assert conditioner.weight.grad.abs().sum() > 0  # W = 0: only W gets a gradient at first
    assert conditioner.raw_log_length_scale.grad.abs().sum() == 0
    with torch.no_grad():
        conditioner.weight.normal_(generator=_gen(1))
    conditioner.zero_grad()
    (conditioner(x) * target).sum().backward()
    for p in (conditioner.weight, conditioner.aux_points, conditioner.raw_log_length_scale):
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert conditioner.raw_log_length_scale.shape == ((3,) if per_dimension else ())


def test_fixed_aux_points_are_a_buffer_without_gradient():
    conditioner = _conditioner(learnable_aux_points=False)
    names = {name for name, _ in conditioner.named_parameters()}
    assert names == {"weight", "raw_log_length_scale"}
    assert "aux_points" in dict(conditioner.named_buffers())
    with torch.no_grad():
        conditioner.weight.fill_(1.0)
    conditioner(_randn(5, 3)).sum().backward()
    assert conditioner.aux_points.grad is None and not conditioner.aux_points.requires_grad
    assert conditioner.raw_log_length_scale.grad.abs() > 0


@pytest.mark.parametrize("length_scale", [0.05, 0.5, 1.0, 30.0])
def test_length_scale_init_and_soft_bound(length_scale):
    conditioner = _conditioner(length_scale=length_scale)
    # The raw parameter is created in float32, then cast to float64.
    torch.testing.assert_close(conditioner.length_scale.item(), length_scale, rtol=1e-6, atol=0)
    with torch.no_grad():
        conditioner.raw_log_length_scale.fill_(1e4)
        assert conditioner.length_scale.item() <= math.exp(LOG_LENGTH_SCALE_BOUND) * (1 + 1e-12)
        conditioner.raw_log_length_scale.fill_(-1e4)
        assert conditioner.length_scale.item() >= math.exp(-LOG_LENGTH_SCALE_BOUND) * (1 - 1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel": "cosine"},
        {"init": "kmeans"},
        {"length_scale": 0.0},
        {"length_scale": -1.0},
        {"length_scale": 1e3},
        {"length_scale": "median"},
        {"n_aux_points": 0},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        KernelConditioner(3, 4, **kwargs)


def test_extra_repr_and_pickle():
    conditioner = _conditioner(kernel="matern52", init="random")
    text = repr(conditioner)
    for piece in ("in_features=3", "out_features=4", "n_aux_points=10", "'matern52'", "init='random'"):
        assert piece in text
    clone = pickle.loads(pickle.dumps(conditioner))
    x = _randn(4, 3)
    torch.testing.assert_close(clone(x), conditioner(x))


# ----------------------------------------------------------------- data_init


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_data_init_picks_distinct_rows_reproducibly(init):
    # 20 of 25 rows: a draw with replacement would repeat a row.
    conditioner = _conditioner(init=init, n_aux_points=20)
    x = _randn(25, 3, seed=8)
    conditioner.data_init(x, _gen(0))
    points = conditioner.aux_points.detach().clone()
    assert _is_row_of(points, x).all()
    assert torch.unique(points, dim=0).shape[0] == 20
    conditioner.data_init(x, _gen(0))
    assert torch.equal(conditioner.aux_points, points)
    conditioner.data_init(x, _gen(1))
    assert not torch.equal(conditioner.aux_points, points)
    # Still a leaf parameter that trains after the in-place copy.
    assert isinstance(conditioner.aux_points, torch.nn.Parameter) and conditioner.aux_points.requires_grad


def _blobs_hit(init: str, seed: int) -> int:
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]], dtype=torch.float64)
    labels = torch.tensor([0] * 100 + [1] * 10 + [2] * 10)
    x = centres[labels] + _randn(120, 2, seed=100)
    conditioner = _conditioner(in_features=2, n_aux_points=3, init=init)
    conditioner.data_init(x, _gen(seed))
    nearest = torch.cdist(conditioner.aux_points.detach(), centres).argmin(dim=1)
    return len(set(nearest.tolist()))


def test_kmeans_plus_plus_spreads_over_small_clusters():
    kmeans_hits = sum(_blobs_hit("kmeans++", seed) == 3 for seed in range(20))
    random_hits = sum(_blobs_hit("random", seed) == 3 for seed in range(20))
    assert kmeans_hits >= 15
    assert random_hits <= 5


def test_kmeans_plus_plus_never_repeats_a_duplicated_row():
    distinct = _randn(5, 2, seed=9)
    x = distinct.repeat(20, 1)
    for seed in range(10):
        conditioner = _conditioner(in_features=2, n_aux_points=5)
        conditioner.data_init(x, _gen(seed))
        points = conditioner.aux_points.detach()
        assert _is_row_of(points, x).all()
        assert torch.unique(points, dim=0).shape[0] == 5


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_fewer_distinct_rows_than_aux_points_get_jitter(init):
    x = _randn(3, 2, seed=10).repeat(10, 1)  # 30 rows, 3 distinct, N = 10
    conditioner = _conditioner(in_features=2, init=init)
    conditioner.data_init(x, _gen(0))
    points = conditioner.aux_points.detach()
    assert torch.isfinite(points).all()
    assert torch.unique(points, dim=0).shape[0] == 10
    assert _is_row_of(x[:3], points).all()


@pytest.mark.parametrize("init", ["kmeans++", "random"])
@pytest.mark.parametrize("n_rows", [1, 4])
def test_fewer_rows_than_aux_points(init, n_rows):
    x = _randn(n_rows, 3, seed=11)
    conditioner = _conditioner(init=init)
    conditioner.data_init(x, _gen(0))
    points = conditioner.aux_points.detach()
    assert points.shape == (10, 3) and torch.isfinite(points).all()
    assert _is_row_of(x, points).all()  # every row is used
    min_gap = torch.pdist(points).min()
    assert min_gap > 1e-3  # repeats are jittered apart
    assert torch.pdist(points).max() < 10  # jitter stays at the data's scale
    # Repeats cycle through the rows: each row is the source of 10 // n or 10 // n + 1 points.
    counts = torch.bincount(torch.cdist(points, x).argmin(dim=1), minlength=n_rows)
    assert counts.min() >= 10 // n_rows and counts.max() <= -(-10 // n_rows)
    out = conditioner(x)
    assert torch.isfinite(out).all()
    conditioner.data_init(x, _gen(0))
    assert torch.equal(conditioner.aux_points.detach(), points)


def test_data_init_with_no_rows_is_a_no_op():
    conditioner = _conditioner()
    before = conditioner.aux_points.detach().clone()
    conditioner.data_init(torch.empty(0, 3, dtype=torch.float64), _gen(0))
    assert torch.equal(conditioner.aux_points, before)


@pytest.mark.parametrize("per_dimension", [False, True])
def test_auto_length_scale_is_the_median_heuristic(per_dimension):
    x = _randn(60, 3, seed=12) * 4.0
    conditioner = _conditioner(length_scale="auto", per_dimension_length_scale=per_dimension)
    conditioner.data_init(x, _gen(0))
    xn = x.numpy()
    d = np.sqrt(((xn[:, None] - xn[None]) ** 2).sum(-1))
    expected = np.median(d[np.triu_indices(60, k=1)])
    np.testing.assert_allclose(conditioner.length_scale.detach().numpy(), expected, rtol=1e-10)
    assert conditioner.length_scale.shape == ((3,) if per_dimension else ())


def test_fixed_length_scale_is_not_touched_by_data_init():
    conditioner = _conditioner(length_scale=0.5)
    before = conditioner.raw_log_length_scale.detach().clone()
    conditioner.data_init(_randn(60, 3, seed=13) * 4.0, _gen(0))
    assert torch.equal(conditioner.raw_log_length_scale.detach(), before)


def test_auto_length_scale_on_large_input_is_seeded():
    x = _randn(1500, 2, seed=14)
    values = []
    for seed in (0, 0, 1):
        conditioner = _conditioner(in_features=2, length_scale="auto")
        conditioner.data_init(x, _gen(seed))
        values.append(conditioner.length_scale.item())
    assert values[0] == values[1]
    assert 1.0 < values[2] < 2.5  # median distance of 2-d standard normals ~ 1.67
