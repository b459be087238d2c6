"""A normalising flow: a composed bijection onto a standard normal base."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .transforms import Transform

__all__ = ["Flow", "standard_normal_log_prob"]


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """Log density of ``N(0, I)``, one value per row."""
    return -0.5 * (z * z).sum(dim=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


class Flow(nn.Module):
    """Density ``p(x) = N(f(x); 0, I) |det J_f(x)|`` for a bijection ``f``.

    Parameters
    ----------
    transform : Transform
        Maps data to latent space (the density direction).
    features : int
        Dimension of the data.
    """

    def __init__(self, transform: Transform, features: int) -> None:
        super().__init__()
        self.transform = transform
        self.features = features

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density of each row of ``x``."""
        z, ladj = self.transform(x)
        return standard_normal_log_prob(z) + ladj

    def to_latent(self, x: Tensor) -> Tensor:
        """Latent (standard normal) coordinates of ``x``."""
        return self.transform(x)[0]

    def from_latent(self, z: Tensor) -> Tensor:
        """Data-space point whose latent coordinates are ``z``."""
        return self.transform.inverse(z)[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples; a local ``generator`` keeps the global RNG untouched."""
        param = next(self.parameters(), None)
        dtype = param.dtype if param is not None else torch.get_default_dtype()
        device = param.device if param is not None else None
        z = torch.randn(n, self.features, generator=generator, dtype=dtype, device=device)
        return self.from_latent(z)

    @torch.no_grad()
    def data_init(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """Data-dependent initialisation of every layer (see ``Transform.data_init``)."""
        self.transform.data_init(x, generator)

    def extra_repr(self) -> str:
        return f"features={self.features}"
