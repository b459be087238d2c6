"""Named flows: each wires building blocks into the layers of a flow body.

Every builder returns the list of layers (acting on standardised data) that
the estimators wrap; its defaults are the estimators' defaults (a test
checks that they agree).  All of them go through
:func:`~skflow.engine.stacks.layer_stack`.
"""

from __future__ import annotations

import torch

from .autoregressive import autoregressive_stack
from .conditioners import MLP
from .coupling import coupling_stack
from .elementwise import AffineMap, SplineMap
from .kernels import KernelConditioner
from .transforms import Transform

__all__ = ["ferumal_flow", "neural_spline_flow", "real_nvp_flow", "resolve_ferumal_mixing"]

# RealNVP's soft bound on each coupling's log-scale (|s| < 1: at most a factor e per layer; ActNorm
# and LU layers still scale freely).  With 3, perceptron conditioners learned near-saturated scales
# on small, near-degenerate data and six layers compounded them off the data (held-out means of
# -99,091 nats on digits with 500 rows instead of -132; see RealNVPDensity's Notes).
REAL_NVP_LOG_SCALE_BOUND = 1.0
# Ferumal's mixing="auto" learns LU mixing up to this many features and permutes at random beyond,
# where the n_features**2 parameters per LU layer over-fit small data sets.
FERUMAL_AUTO_LU_MAX_FEATURES = 32
# A spline conditioner sees its inputs soft-clamped to this multiple of the tail bound: data (within
# a few standard deviations) pass nearly unchanged, while far rows get the parameters of the edge of
# the data instead of extrapolated, extreme ones whose near-flat bins compound over layers into a
# map that float64 cannot invert (round trips off by up to 1.9 at 50 standard deviations).
SPLINE_INPUT_BOUND_FACTOR = 2.0


def real_nvp_flow(
    features: int,
    n_layers: int = 6,
    hidden_dims: tuple[int, ...] = (64, 64),
    mixing: str = "lu",
    activation: str = "gelu",
    generator: torch.Generator | None = None,
) -> list[Transform]:
    """RealNVP/Glow: affine couplings with MLP conditioners (arXiv 1605.08803, 1807.03039)."""
    hidden = tuple(int(h) for h in hidden_dims)
    return coupling_stack(
        features,
        n_layers,
        lambda n_in, n_out: MLP(n_in, n_out, hidden, activation),
        lambda: AffineMap(REAL_NVP_LOG_SCALE_BOUND),
        mixing=mixing,
        generator=generator,
    )


def resolve_ferumal_mixing(mixing: str, features: int) -> str:
    """``"auto"``: LU up to ``FERUMAL_AUTO_LU_MAX_FEATURES`` features, random permutations beyond."""
    if mixing != "auto":
        return mixing
    return "lu" if features <= FERUMAL_AUTO_LU_MAX_FEATURES else "random"


def ferumal_flow(
    features: int,
    n_layers: int = 4,
    n_aux_points: int = 50,
    kernel: str = "rbf",
    length_scale: float | str = "auto",
    per_dimension_length_scale: bool = False,
    learnable_aux_points: bool = True,
    aux_init: str = "kmeans++",
    mixing: str = "auto",
    generator: torch.Generator | None = None,
) -> list[Transform]:
    """Ferumal flow: affine couplings with kernel-machine conditioners (arXiv 2307.14839).

    The kernel machines decay to zero away from their auxiliary points, so
    far from the data every coupling is the identity: no input bound needed.
    """

    def make_conditioner(n_in: int, n_out: int) -> KernelConditioner:
        return KernelConditioner(
            n_in,
            n_out,
            n_aux_points=int(n_aux_points),
            kernel=kernel,
            length_scale=length_scale if length_scale == "auto" else float(length_scale),
            per_dimension_length_scale=per_dimension_length_scale,
            learnable_aux_points=learnable_aux_points,
            init=aux_init,
        )

    return coupling_stack(
        features,
        n_layers,
        make_conditioner,
        AffineMap,
        mixing=resolve_ferumal_mixing(mixing, features),
        generator=generator,
    )


def neural_spline_flow(
    features: int,
    n_layers: int = 5,
    n_bins: int = 8,
    tail_bound: float = 3.0,
    hidden_dims: tuple[int, ...] = (64, 64),
    architecture: str = "autoregressive",
    mixing: str = "lu",
    activation: str = "auto",
    generator: torch.Generator | None = None,
) -> list[Transform]:
    """Neural spline flow: rational-quadratic splines, autoregressive or coupling (arXiv 1906.04032).

    ``activation="auto"``: GELU in the coupling conditioners, ReLU in the MADEs.
    """
    hidden = tuple(int(h) for h in hidden_dims)
    if activation == "auto":
        activation = "gelu" if architecture == "coupling" else "relu"
    n_bins, tail_bound = int(n_bins), float(tail_bound)
    input_bound = SPLINE_INPUT_BOUND_FACTOR * tail_bound

    def spline() -> SplineMap:
        return SplineMap(n_bins, tail_bound)

    if architecture == "autoregressive":
        return autoregressive_stack(
            features, n_layers, hidden, spline, mixing=mixing, generator=generator, input_bound=input_bound,
            activation=activation,
        )
    if architecture != "coupling":
        raise ValueError(f"architecture must be 'coupling' or 'autoregressive', got {architecture!r}")
    return coupling_stack(
        features,
        n_layers,
        lambda n_in, n_out: MLP(n_in, n_out, hidden, activation),
        spline,
        mixing=mixing,
        generator=generator,
        input_bound=input_bound,
    )
