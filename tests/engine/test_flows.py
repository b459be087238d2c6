"""Named flow builders: their defaults are the estimators' defaults, and they build exact flows."""

import inspect

import pytest
import torch

from skflow import FerumalFlowDensity, RealNVPDensity, SplineFlowDensity
from skflow.engine import Compose, ferumal_flow, neural_spline_flow, real_nvp_flow
from skflow.engine.conditioners import ACTIVATIONS
from skflow.engine.testing import assert_log_det_matches_autograd, assert_round_trip

PAIRS = [
    (real_nvp_flow, RealNVPDensity),
    (ferumal_flow, FerumalFlowDensity),
    (neural_spline_flow, SplineFlowDensity),
]


def _assert_exact_when_perturbed(flow, features, g):
    """Data-initialise ``flow``, perturb every parameter (no layer stays the identity), check exactness."""
    x = torch.randn(64, features, generator=g, dtype=torch.float64)
    flow.data_init(x, g)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    assert_round_trip(flow, x)
    assert_round_trip(flow, 1e3 * x)
    assert_log_det_matches_autograd(flow, x[:5])


@pytest.mark.parametrize("builder, estimator", PAIRS, ids=lambda x: getattr(x, "__name__", ""))
def test_engine_and_estimator_defaults_agree(builder, estimator):
    signature = inspect.signature(builder).parameters
    engine = {k: p.default for k, p in signature.items() if k != "features"}
    params = estimator().get_params()
    shared = set(engine) & set(params)
    assert shared >= {"n_layers"}
    assert {k: engine[k] for k in shared} == {k: params[k] for k in shared}
    # Every builder argument but the generator is an estimator parameter.
    assert set(engine) - {"generator"} <= set(params)


@pytest.mark.parametrize("builder", [b for b, _ in PAIRS], ids=lambda b: b.__name__)
@pytest.mark.parametrize("features", [1, 3])
def test_named_flows_are_exact(builder, features):
    g = torch.Generator().manual_seed(0)
    _assert_exact_when_perturbed(Compose(builder(features, n_layers=2, generator=g)).double(), features, g)


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
@pytest.mark.parametrize(
    "builder, kwargs",
    [
        (real_nvp_flow, {}),
        (neural_spline_flow, {"architecture": "coupling"}),
        (neural_spline_flow, {"architecture": "autoregressive"}),
    ],
    ids=["realnvp", "spline-coupling", "spline-autoregressive"],
)
def test_every_activation_builds_an_exact_flow(builder, kwargs, activation):
    g = torch.Generator().manual_seed(1)
    flow = Compose(builder(3, n_layers=2, activation=activation, generator=g, **kwargs)).double()
    assert any(type(m) is ACTIVATIONS[activation] for m in flow.modules())
    _assert_exact_when_perturbed(flow, 3, g)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        real_nvp_flow(3, activation="swish")


@pytest.mark.parametrize(
    "architecture, expected", [("coupling", torch.nn.GELU), ("autoregressive", torch.nn.ReLU)]
)
def test_spline_activation_auto_follows_the_architecture(architecture, expected):
    flow = Compose(neural_spline_flow(3, n_layers=2, architecture=architecture))
    activations = [m for m in flow.modules() if isinstance(m, tuple(ACTIVATIONS.values()))]
    assert activations and all(type(m) is expected for m in activations)
