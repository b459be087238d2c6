"""The bijection contract, composition and the generic layers.

Every bijection in skflow is a :class:`Transform`: ``forward(x)`` returns
``(y, log|det J_f(x)|)`` and ``inverse(y)`` returns ``(x, log|det J_{f^-1}(y)|)``,
one log-determinant per row.  Composition, tests and log-det bookkeeping are
written once against that contract (the design of nflows' and zuko's
transforms).

Transforms that need to see data before training (ActNorm's data-dependent
initialisation, the auxiliary points of a kernel conditioner) implement
:meth:`Transform.data_init`; :class:`Compose` propagates the data through the
layers so each layer is initialised on what it will actually receive.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "Transform",
    "Compose",
    "FixedAffine",
    "ActNorm",
    "Permutation",
    "LULinear",
    "MIXINGS",
    "mixing_layer",
]

# Floor on a standard deviation used to initialise a scale: a constant
# column must not produce log(0).
_MIN_SCALE = 1e-6


class Transform(nn.Module):
    """A bijection ``R^d -> R^d`` with a tractable log-determinant."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        """Map ``x`` to ``y``; return ``(y, log|det dy/dx|)`` per row."""
        raise NotImplementedError

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        """Map ``y`` back to ``x``; return ``(x, log|det dx/dy|)`` per row."""
        raise NotImplementedError

    @torch.no_grad()
    def data_init(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """Initialise data-dependent state from a batch ``x`` of inputs.

        The default does nothing.  Called once, before training.
        """


class Compose(Transform):
    """Composition of transforms, applied in list order (first to last)."""

    def __init__(self, transforms: list[Transform]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for transform in self.transforms:
            x, ladj = transform(x)
            total = total + ladj
        return x, total

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        total = y.new_zeros(y.shape[0])
        for transform in reversed(self.transforms):
            y, ladj = transform.inverse(y)
            total = total + ladj
        return y, total

    @torch.no_grad()
    def data_init(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        for transform in self.transforms:
            transform.data_init(x, generator)
            x, _ = transform(x)


class _PerFeatureAffine(Transform):
    """``y = (x - loc) * exp(-log_scale)`` per feature; subclasses own ``loc`` and ``log_scale``."""

    loc: Tensor
    log_scale: Tensor

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = (x - self.loc) * torch.exp(-self.log_scale)
        return y, (-self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = y * torch.exp(self.log_scale) + self.loc
        return x, self.log_scale.sum().expand(y.shape[0])

    def extra_repr(self) -> str:
        return f"features={self.loc.numel()}"


class FixedAffine(_PerFeatureAffine):
    """Non-trainable ``y = (x - loc) / scale``; used for standardisation.

    Kept inside the flow so that densities are reported in the units of the
    input: the standardisation enters through its log-determinant.
    """

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        super().__init__()
        if torch.any(scale <= 0):
            raise ValueError("scale must be positive")
        self.register_buffer("loc", loc.clone())
        self.register_buffer("log_scale", torch.log(scale))


class ActNorm(_PerFeatureAffine):
    """Per-feature affine normalisation with data-dependent init (Glow).

    ``y = (x - loc) * exp(-log_scale)``, the map of :class:`FixedAffine`
    with learnable ``loc`` and ``log_scale``.  Starts as the identity;
    :meth:`data_init` sets ``loc``/``log_scale`` so that the initialisation
    batch leaves with zero mean and unit variance.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.loc = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))

    @torch.no_grad()
    def data_init(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        if x.shape[0] < 2:
            return
        std = x.std(dim=0).clamp_min(_MIN_SCALE)
        self.loc.copy_(x.mean(dim=0))
        self.log_scale.copy_(torch.log(std))


class Permutation(Transform):
    """Fixed permutation of the features (volume preserving)."""

    def __init__(self, permutation: Tensor) -> None:
        super().__init__()
        permutation = torch.as_tensor(permutation, dtype=torch.long)
        if not torch.equal(
            torch.sort(permutation).values, torch.arange(permutation.numel())
        ):
            raise ValueError("not a permutation")
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    @classmethod
    def reverse(cls, features: int) -> Permutation:
        """The permutation that reverses the order of the features."""
        return cls(torch.arange(features - 1, -1, -1))

    @classmethod
    def random(cls, features: int, generator: torch.Generator) -> Permutation:
        """A seeded random permutation."""
        return cls(torch.randperm(features, generator=generator))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.permutation], x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y[:, self.inverse_permutation], y.new_zeros(y.shape[0])

    def extra_repr(self) -> str:
        return f"features={self.permutation.numel()}"


class LULinear(Transform):
    """Invertible linear map ``y = x W^T`` with ``W = L U`` (Glow, Sec. 3.2).

    ``L`` is unit lower triangular and ``U`` upper triangular with a positive
    diagonal ``exp(log_diag)``, so ``log|det W| = sum(log_diag)`` costs O(d)
    and ``W^-1 = U^-1 L^-1`` comes from two d x d triangular solves.  Either
    direction is then one product with the rows.  Only the free entries are
    parameters (``d (d - 1) / 2`` below and above the diagonal, ``d`` on it:
    ``d**2`` in all), so parameter counts are the map's degrees of freedom.
    Starts as the identity; a fixed permutation in front (``P`` in Glow) is a
    separate :class:`Permutation`.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        n_off = features * (features - 1) // 2
        self.lower_entries = nn.Parameter(torch.zeros(n_off))
        self.upper_entries = nn.Parameter(torch.zeros(n_off))
        self.log_diag = nn.Parameter(torch.zeros(features))
        self.register_buffer("_lower_index", torch.tril_indices(features, features, -1), persistent=False)
        self.register_buffer("_upper_index", torch.triu_indices(features, features, 1), persistent=False)

    def _factors(self) -> tuple[Tensor, Tensor]:
        d = self.features
        eye = torch.eye(d, dtype=self.log_diag.dtype, device=self.log_diag.device)
        lower = eye.index_put(tuple(self._lower_index), self.lower_entries)
        upper = torch.diag(torch.exp(self.log_diag)).index_put(tuple(self._upper_index), self.upper_entries)
        return lower, upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        lower, upper = self._factors()
        y = x @ (lower @ upper).T  # one (n, d) x (d, d) product; W itself costs O(d^3)
        return y, self.log_diag.sum().expand(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        lower, upper = self._factors()
        # W^-1 = U^-1 L^-1 from two d x d triangular solves, then one product with
        # the rows (faster than two triangular solves with n right-hand sides).
        eye = torch.eye(self.features, dtype=y.dtype, device=y.device)
        lower_inv = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        inverse = torch.linalg.solve_triangular(upper, lower_inv, upper=True)
        return y @ inverse.T, (-self.log_diag.sum()).expand(y.shape[0])

    def extra_repr(self) -> str:
        return f"features={self.features}"


# How a flow mixes its features between layers (see :func:`mixing_layer`).
MIXINGS = ("alternate", "reverse", "random", "lu")


def mixing_layer(mixing: str, features: int, generator: torch.Generator | None = None) -> Transform | None:
    """The layer that mixes the features between two flow layers.

    ``"reverse"``: reverse their order; ``"random"``: a seeded random
    :class:`Permutation`; ``"lu"``: a learned :class:`LULinear`;
    ``"alternate"``: none (``None``), the flow's masks or orders alternate
    instead.
    """
    if mixing == "reverse":
        return Permutation.reverse(features)
    if mixing == "random":
        return Permutation.random(features, generator)
    if mixing == "lu":
        return LULinear(features)
    if mixing == "alternate":
        return None
    raise ValueError(f"unknown mixing {mixing!r}")
