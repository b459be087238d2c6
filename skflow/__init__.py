"""skflow: normalising-flow density estimators for scikit-learn."""

from ._ferumal import FerumalFlowDensity
from ._outlier import DensityOutlierDetector
from ._realnvp import RealNVPDensity
from ._spline import SplineFlowDensity
from ._transformer import TransformerFlowDensity
from .base import BaseFlowDensity

__version__ = "0.1.0"

__all__ = [
    "BaseFlowDensity",
    "DensityOutlierDetector",
    "FerumalFlowDensity",
    "RealNVPDensity",
    "SplineFlowDensity",
    "TransformerFlowDensity",
    "__version__",
]
