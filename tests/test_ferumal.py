"""FerumalFlowDensity: the kernelised coupling flow and its parameters."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.utils._param_validation import InvalidParameterError

from skflow import FerumalFlowDensity, RealNVPDensity
from skflow.engine import Compose, Coupling
from skflow.engine.kernels import KERNELS, KernelConditioner
from skflow.engine.testing import assert_log_det_matches_autograd, assert_round_trip

# n_components=2 is what "auto" chooses on iris (the same fitted models), without the search.
FAST = dict(n_layers=2, n_aux_points=10, max_iter=5, n_components=2, random_state=0)


@pytest.fixture(scope="module")
def iris():
    return load_iris().data


def _conditioners(model_or_layers):
    layers = model_or_layers.flow_.transform.transforms if hasattr(model_or_layers, "flow_") else model_or_layers
    return [layer.conditioner for layer in layers if isinstance(layer, Coupling)]


def _built(est, X, seed=0):
    """The estimator's layers, data-initialised on standardised ``X`` as in ``fit``."""
    generator = torch.Generator().manual_seed(seed)
    layers = est._build_transforms(X.shape[1], generator)
    x = torch.tensor((X - X.mean(0)) / X.std(0))
    flow = Compose(layers).double()
    flow.data_init(x, torch.Generator().manual_seed(seed + 1))
    return flow, x


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_every_kernel_fits_and_scores_finite(kernel, iris):
    model = FerumalFlowDensity(kernel=kernel, **FAST).fit(iris)
    assert np.isfinite(model.score_samples(iris)).all()
    assert all(c.kernel == kernel for c in _conditioners(model))


@pytest.mark.parametrize("aux_init", ["kmeans++", "random"])
def test_aux_points_start_on_rows_of_the_propagated_data(aux_init, rng):
    # Continuous rows: no duplicates, so no point is jittered.
    X = rng.standard_normal((200, 5)) @ rng.standard_normal((5, 5))
    est = FerumalFlowDensity(n_layers=4, n_aux_points=30, aux_init=aux_init, mixing="random")
    flow, x = _built(est, X)
    n_couplings = 0
    with torch.no_grad():
        for layer in flow.transforms:
            if isinstance(layer, Coupling):
                points, rows = layer.conditioner.aux_points, x[:, layer.conditioning]
                on_row = (points.unsqueeze(1) == rows.unsqueeze(0)).all(-1)
                assert on_row.any(1).all(), "every auxiliary point is a row of this layer's input"
                assert len(set(on_row.int().argmax(1).tolist())) == 30, "distinct rows"
                n_couplings += 1
            x = layer(x)[0]
    assert n_couplings == 4


def _flow_parameters(model):
    return sum(p.numel() for p in model.flow_.parameters() if p.requires_grad)


def test_aux_points_are_learned_only_when_learnable(iris):
    params = dict(n_layers=2, n_aux_points=20, max_iter=20, n_components=2, random_state=0)
    fixed = FerumalFlowDensity(learnable_aux_points=False, **params).fit(iris)
    learned = FerumalFlowDensity(learnable_aux_points=True, **params).fit(iris)
    # Same seed, same initialisation: the fixed points are where the learned ones started.
    for a, b in zip(_conditioners(fixed), _conditioners(learned)):
        assert "aux_points" in dict(a.named_buffers()) and "aux_points" in dict(b.named_parameters())
        assert not torch.allclose(a.aux_points, b.aux_points)
        assert torch.isfinite(b.aux_points).all()
    # Two couplings, 20 points in 2-D (in flow_; base="auto" stacks a second flow, which has them too).
    assert _flow_parameters(learned) - _flow_parameters(fixed) == 2 * 20 * 2


def test_fewer_rows_than_aux_points(rng):
    X = rng.standard_normal((12, 3))
    model = FerumalFlowDensity(n_layers=2, n_aux_points=50, max_iter=10, random_state=0).fit(X)
    assert np.isfinite(model.score_samples(X)).all()
    for conditioner in _conditioners(model):
        points = conditioner.aux_points
        assert points.shape[0] == 50
        # Repeats of rows are jittered apart: no two kernel columns coincide.
        assert torch.unique(points, dim=0).shape[0] == 50


def test_single_feature_is_elementwise(iris):
    model = FerumalFlowDensity(n_layers=3, max_iter=20, random_state=0).fit(iris[:, :1])
    assert not _conditioners(model)
    base = sum(p.numel() for p in model.flow_.base.parameters())
    assert _flow_parameters(model) - base == 3 * (2 + 2)  # ActNorm + free affine per layer
    assert np.isfinite(model.score_samples(iris[:, :1])).all()


@pytest.mark.parametrize("n_features", [2, 4, 5, 8, 9, 12, 13, 30, 43, 64])
def test_default_has_at_most_half_the_parameters_of_realnvp(n_features, rng):
    """At the defaults, on data shaped like every benchmark set (iris 4, wine 13, digits 64, ...)."""
    X = rng.standard_normal((100, n_features))
    ferumal = FerumalFlowDensity(max_iter=1, random_state=0).fit(X)
    realnvp = RealNVPDensity(max_iter=1, random_state=0).fit(X)
    assert ferumal.n_parameters_ <= 0.5 * realnvp.n_parameters_


@pytest.mark.parametrize("mixing", ["alternate", "reverse", "random", "lu"])
@pytest.mark.parametrize("kernel", ["rbf", "matern32", "laplacian"])
def test_perturbed_flow_round_trip_and_log_det(mixing, kernel, rng):
    X = rng.standard_normal((60, 5)) * [1, 2, 3, 0.5, 1] + 1
    est = FerumalFlowDensity(n_layers=3, n_aux_points=8, kernel=kernel, mixing=mixing, per_dimension_length_scale=True)
    flow, x = _built(est, X)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    # The kernel machines really moved the data: not an identity flow.
    assert (flow(x)[0] - x).abs().max() > 0.1
    assert_round_trip(flow, x)
    assert_log_det_matches_autograd(flow, x[:10])
    assert_log_det_matches_autograd(flow, flow(x[:10])[0], inverse=True)


def test_structure_follows_parameters(iris):
    model = FerumalFlowDensity(
        n_layers=3, n_aux_points=7, kernel="matern52", length_scale=0.5, per_dimension_length_scale=True,
        max_iter=2, random_state=0,
    ).fit(iris)
    conditioners = _conditioners(model)
    assert len(conditioners) == 3 and all(isinstance(c, KernelConditioner) for c in conditioners)
    for c in conditioners:
        assert c.aux_points.shape == (7, 2) and c.weight.shape == (7, 4)
        assert c.length_scale.shape == (2,)
    auto = FerumalFlowDensity(length_scale="auto", **FAST).fit(iris)
    assert not all(torch.allclose(c.length_scale, torch.tensor(1.0, dtype=torch.float64)) for c in _conditioners(auto))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(kernel="gaussian"), "kernel"),
        (dict(n_aux_points=0), "n_aux_points"),
        (dict(n_aux_points="many"), "n_aux_points"),
        (dict(length_scale=0.0), "length_scale"),
        (dict(length_scale=1e3), "length_scale"),
        (dict(aux_init="uniform"), "aux_init"),
        (dict(mixing="shuffle"), "mixing"),
        (dict(learnable_aux_points="yes"), "learnable_aux_points"),
    ],
)
def test_parameter_validation(params, match, iris):
    with pytest.raises(InvalidParameterError, match=match):
        FerumalFlowDensity(**{**FAST, **params}).fit(iris)


def test_clone_keeps_parameters():
    est = FerumalFlowDensity(kernel="laplacian", n_aux_points=33, length_scale="auto")
    assert clone(est).get_params() == est.get_params()
