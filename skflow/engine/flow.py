"""A normalising flow: preprocessing, a trainable bijection and a base distribution.

``p(x) = q(f(g(x))) |det J_f(g(x))| |det J_g(x)|`` where

- ``g`` is the **preprocessing**, a fixed bijection (skflow standardises the
  columns; :class:`~skflow.engine.transforms.FixedAffine`), kept inside the
  flow so densities are reported in the units of the input;
- ``f`` is the trainable **transform** (the body: a
  :class:`~skflow.engine.transforms.Compose` of layers);
- ``q`` is the **base** distribution (:mod:`skflow.engine.bases`).

Training only touches ``f`` and ``q`` on preprocessed rows: :meth:`Flow.core`
returns that part (sharing its modules), so it is trained once and the whole
flow is up to date.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .bases import Base, StandardNormal, standard_normal_log_prob
from .transforms import Transform

__all__ = ["Flow", "standard_normal_log_prob"]


class Flow(nn.Module):
    """Density ``p(x) = q(f(g(x))) |det J|`` (see the module docstring).

    Parameters
    ----------
    transform : Transform
        The trainable bijection ``f`` (data -> latent direction).
    base : Base or int
        The base distribution ``q``; an int ``d`` means ``StandardNormal(d)``.
    preprocessing : Transform, optional
        A fixed bijection ``g`` applied before ``transform``.

    Examples
    --------
    >>> import torch
    >>> from skflow.engine import ActNorm
    >>> flow = Flow(ActNorm(2), 2)
    >>> flow.log_prob(torch.zeros(3, 2)).shape, flow.sample(4).shape
    (torch.Size([3]), torch.Size([4, 2]))
    """

    def __init__(
        self, transform: Transform, base: Base | int, preprocessing: Transform | None = None
    ) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        self.transform = transform
        self.base = StandardNormal(base) if isinstance(base, int) else base

    @property
    def features(self) -> int:
        return self.base.features

    def core(self) -> Flow:
        """The trainable part (``transform`` and ``base``), sharing this flow's modules."""
        return self if self.preprocessing is None else Flow(self.transform, self.base)

    def preprocess(self, x: Tensor) -> Tensor:
        """``g(x)``: the rows as the trainable part sees them."""
        return x if self.preprocessing is None else self.preprocessing(x)[0]

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ladj = x.new_zeros(x.shape[0])
        if self.preprocessing is not None:
            x, ladj = self.preprocessing(x)
        z, body_ladj = self.transform(x)
        return z, ladj + body_ladj

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density of each row of ``x``."""
        z, ladj = self._forward(x)
        return self.base.log_prob(z) + ladj

    def to_latent(self, x: Tensor) -> Tensor:
        """Base-space coordinates of ``x`` (distributed as ``base`` if the model fits)."""
        return self._forward(x)[0]

    def from_latent(self, z: Tensor) -> Tensor:
        """Data-space point whose base-space coordinates are ``z``."""
        x = self.transform.inverse(z)[0]
        return x if self.preprocessing is None else self.preprocessing.inverse(x)[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` rows; a local ``generator`` keeps the global RNG untouched."""
        return self.from_latent(self.base.sample(n, generator))

    @torch.no_grad()
    def data_init(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """Data-dependent initialisation of every layer, then of the base.

        Each layer is set up on the rows as it will receive them
        (:meth:`Transform.data_init`); the base then sees the latent rows.
        """
        x = self.preprocess(x)
        self.transform.data_init(x, generator)
        self.base.data_init(self.transform(x)[0], generator)
