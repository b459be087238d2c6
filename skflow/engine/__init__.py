"""The torch engine of skflow: bijections, flows and training.

Nothing in this package imports scikit-learn; the estimators in
:mod:`skflow` are a thin layer over it.
"""

from .coupling import Coupling, alternating_mask
from .elementwise import AffineMap, Elementwise, ElementwiseMap, SplineMap
from .bases import BASES, Base, GaussianMixtureBase, StandardNormal, StudentTBase
from .flow import Flow, standard_normal_log_prob
from .training import Trainer, TrainingResult, TrainingStatus
from .transformer import TransformerBlock
from .transforms import ActNorm, Compose, FixedAffine, LULinear, Permutation, Transform

__all__ = [
    "ActNorm",
    "BASES",
    "Base",
    "AffineMap",
    "Compose",
    "Coupling",
    "Elementwise",
    "ElementwiseMap",
    "FixedAffine",
    "GaussianMixtureBase",
    "Flow",
    "LULinear",
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
    "standard_normal_log_prob",
]
