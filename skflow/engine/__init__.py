"""The torch engine of skflow: bijections, base distributions, flows and training.

Nothing in this package imports scikit-learn; the estimators in
:mod:`skflow` are a thin layer over it.  ``__all__`` below is the public
boundary: everything else is internal.

- bijections (one contract, :class:`Transform`): :class:`Compose`,
  :class:`FixedAffine`, :class:`ActNorm`, :class:`Permutation`,
  :class:`LULinear`, :class:`Coupling`, :class:`MaskedAutoregressive`,
  :class:`TransformerBlock`, :class:`Elementwise` with the element-wise maps
  :class:`AffineMap` and :class:`SplineMap`;
- conditioners: :class:`MLP`, :class:`MADE`, :class:`KernelConditioner`;
- base distributions: :class:`StandardNormal`, :class:`GaussianMixtureBase`,
  :class:`StudentTBase`, and for stacking :class:`KernelDensityBase` and
  :class:`MultivariateStudentTBase`;
- :class:`Flow` = preprocessing + trainable transform + base;
- stacking: :class:`DensityMixture` (a convex combination of densities) and
  :func:`stacking_weights` (its weights, fitted on held-out rows);
- named flows over one generic :func:`layer_stack`: :func:`real_nvp_flow`,
  :func:`ferumal_flow`, :func:`neural_spline_flow`, :func:`transformer_stack`;
- training: :class:`Trainer` (with :class:`AdamW`), :class:`TrainingResult`,
  :class:`TrainingStatus`.
"""

from .autoregressive import MADE, MaskedAutoregressive, autoregressive_stack
from .bases import (
    BASES,
    Base,
    GaussianMixtureBase,
    KernelDensityBase,
    MultivariateStudentTBase,
    StandardNormal,
    StudentTBase,
)
from .conditioners import MLP
from .coupling import Coupling, alternating_mask, coupling_stack
from .elementwise import AffineMap, Elementwise, ElementwiseMap, SplineMap
from .flow import Flow, standard_normal_log_prob
from .flows import ferumal_flow, neural_spline_flow, real_nvp_flow
from .kernels import KERNELS, KernelConditioner
from .optim import AdamW
from .stacking import DensityMixture, stacking_weights
from .stacks import layer_stack
from .training import Trainer, TrainingResult, TrainingStatus
from .transformer import TransformerBlock, token_layout, transformer_stack
from .transforms import MIXINGS, ActNorm, Compose, FixedAffine, LULinear, Permutation, Transform

__all__ = [
    "BASES",
    "KERNELS",
    "MADE",
    "MIXINGS",
    "MLP",
    "ActNorm",
    "AdamW",
    "AffineMap",
    "Base",
    "Compose",
    "Coupling",
    "DensityMixture",
    "Elementwise",
    "ElementwiseMap",
    "FixedAffine",
    "Flow",
    "GaussianMixtureBase",
    "KernelConditioner",
    "KernelDensityBase",
    "MultivariateStudentTBase",
    "LULinear",
    "MaskedAutoregressive",
    "Permutation",
    "SplineMap",
    "StandardNormal",
    "StudentTBase",
    "Trainer",
    "TrainingResult",
    "TrainingStatus",
    "Transform",
    "TransformerBlock",
    "alternating_mask",
    "autoregressive_stack",
    "coupling_stack",
    "ferumal_flow",
    "layer_stack",
    "neural_spline_flow",
    "real_nvp_flow",
    "stacking_weights",
    "standard_normal_log_prob",
    "token_layout",
    "transformer_stack",
]
