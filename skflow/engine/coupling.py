"""Coupling transform: mask + conditioner + element-wise bijection.

The features are split by a boolean mask into a conditioning part ``x_c``
(passed through unchanged) and a transformed part ``x_t``, which goes through
an element-wise bijection whose parameters come from ``conditioner(x_c)``
(Dinh et al., RealNVP, arXiv 1605.08803).  The Jacobian is triangular, so
``log|det J|`` is the sum of the element-wise log-derivatives and both
directions cost one conditioner pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .elementwise import ElementwiseMap, soft_clamp
from .transforms import Transform

__all__ = ["Coupling", "alternating_mask", "coupling_stack", "soft_clamp"]


def _as_slice(index: Tensor) -> slice | None:
    """``index`` (sorted positions) as an equivalent slice, or None if it is not evenly spaced."""
    positions = index.tolist()
    step = positions[1] - positions[0] if len(positions) > 1 else 1
    if step < 1 or positions != list(range(positions[0], positions[-1] + 1, step)):
        return None
    return slice(positions[0], positions[-1] + 1, step)


def alternating_mask(features: int, parity: int) -> Tensor:
    """Boolean mask selecting the transformed half: every other feature.

    ``parity`` 0 transforms the odd positions, 1 the even ones, so two
    consecutive layers with different parity transform every feature.
    """
    return torch.arange(features) % 2 != parity


class Coupling(Transform):
    """Coupling layer.

    Parameters
    ----------
    mask : bool Tensor of shape (features,)
        ``True`` marks the transformed features; at least one feature must be
        on each side.
    conditioner : nn.Module
        Maps ``(n, n_conditioning)`` to ``(n, n_transformed * map.n_params)``.
    elementwise_map : ElementwiseMap
        The element-wise bijection applied to the transformed features.
    input_bound : float, optional
        If given, the conditioner sees ``soft_clamp(x_c, input_bound)``: far
        from the data it then gives the parameters it gives at the edge of
        the data instead of extrapolating to extreme ones.  The conditioner
        need not be invertible, so the coupling stays an exact bijection.
    """

    def __init__(
        self,
        mask: Tensor,
        conditioner: nn.Module,
        elementwise_map: ElementwiseMap,
        input_bound: float | None = None,
    ) -> None:
        super().__init__()
        self.input_bound = input_bound
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.all() or not mask.any():
            raise ValueError("a coupling needs features on both sides of the mask")
        self.register_buffer("transformed", torch.nonzero(mask).flatten())
        self.register_buffer("conditioning", torch.nonzero(~mask).flatten())
        self.conditioner = conditioner
        self.map = elementwise_map
        self._set_slices()

    def _set_slices(self) -> None:
        # Alternating (or half/half) masks are strided slices: views instead of
        # gathers, and one slice write instead of ``index_copy``.
        self._slices = _as_slice(self.transformed), _as_slice(self.conditioning)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "_slices" not in self.__dict__:  # pickled before the slices existed
            self._set_slices()

    def _params(self, x_cond: Tensor) -> Tensor:
        out = self.conditioner(soft_clamp(x_cond, self.input_bound))
        return out.view(x_cond.shape[0], self.transformed.numel(), self.map.n_params)

    def _couple(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        step = self.map.inverse if inverse else self.map.forward
        transformed, conditioning = self._slices
        if transformed is None or conditioning is None:
            y_t, ladj = step(x[:, self.transformed], self._params(x[:, self.conditioning]))
            return x.index_copy(1, self.transformed, y_t), ladj.sum(dim=-1)
        y_t, ladj = step(x[:, transformed], self._params(x[:, conditioning]))
        y = x.clone()
        y[:, transformed] = y_t
        return y, ladj.sum(dim=-1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(x, inverse=False)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(y, inverse=True)

    @torch.no_grad()
    def data_init(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        init = getattr(self.conditioner, "data_init", None)
        if init is not None:
            init(x[:, self.conditioning], generator)

    def extra_repr(self) -> str:
        return f"transformed={self.transformed.tolist()}"


def coupling_stack(
    features: int,
    n_layers: int,
    make_conditioner,
    elementwise_map_factory,
    mixing: str = "alternate",
    generator: torch.Generator | None = None,
    input_bound: float | None = None,
) -> list[Transform]:
    """The layers of a RealNVP/Glow-style coupling flow.

    Each layer is ``ActNorm -> mixing -> Coupling`` (see
    :func:`~skflow.engine.stacks.layer_stack`); masks alternate between
    layers so that every feature is transformed.  A random permutation comes
    once per pair of couplings: the pair's masks are complementary in the
    same coordinates, so no feature escapes being transformed.

    Parameters
    ----------
    features : int
        Data dimension.
    n_layers : int
        Number of coupling layers.
    make_conditioner : callable ``(in_features, out_features) -> nn.Module``
        Builds one conditioner (layers share nothing).
    elementwise_map_factory : callable ``() -> ElementwiseMap``
        Builds the element-wise bijection of one layer.
    mixing : {"alternate", "reverse", "random", "lu"}
        What mixes features between couplings (:func:`~skflow.engine.transforms.mixing_layer`).
    generator : torch.Generator, optional
        Seeds random permutations.
    input_bound : float, optional
        Soft bound on what each conditioner sees (see :class:`Coupling`).
    """
    from .stacks import layer_stack

    def make_layer(i: int, elementwise_map: ElementwiseMap) -> Transform:
        mask = alternating_mask(features, i % 2)
        n_transformed = int(mask.sum())
        conditioner = make_conditioner(features - n_transformed, n_transformed * elementwise_map.n_params)
        return Coupling(mask, conditioner, elementwise_map, input_bound)

    return layer_stack(
        features, n_layers, make_layer, elementwise_map_factory, mixing, generator, random_every=2
    )
