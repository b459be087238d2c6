"""skflow: normalising-flow density estimators for scikit-learn."""

from ._realnvp import RealNVPDensity
from .base import BaseFlowDensity

__version__ = "0.1.0"

__all__ = ["BaseFlowDensity", "RealNVPDensity", "__version__"]
