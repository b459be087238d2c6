"""The one generic stack builder behind every named flow.

A flow body is ``n_layers`` repetitions of ``ActNorm -> mixing -> layer``:
ActNorm (data-initialised per-feature affine, Glow) keeps each layer's input
standardised, the mixing (:func:`~skflow.engine.transforms.mixing_layer`)
lets every feature interact with every other across layers, and the layer
is a coupling, an autoregressive transform or a transformer block.  With a
single feature there is nothing to condition on, and each layer becomes an
unconditional :class:`~skflow.engine.elementwise.Elementwise` bijection (as
zuko's couplings do).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .elementwise import Elementwise, ElementwiseMap
from .transforms import MIXINGS, ActNorm, Transform, mixing_layer

__all__ = ["layer_stack"]


def layer_stack(
    features: int,
    n_layers: int,
    make_layer: Callable[[int, ElementwiseMap], Transform],
    elementwise_map_factory: Callable[[], ElementwiseMap],
    mixing: str = "lu",
    generator: torch.Generator | None = None,
    random_every: int = 1,
) -> list[Transform]:
    """``n_layers`` x ``ActNorm -> mixing -> make_layer(i, elementwise_map)``.

    Parameters
    ----------
    features : int
        Data dimension.
    n_layers : int
        Number of conditioned layers.
    make_layer : callable ``(i, elementwise_map) -> Transform``
        Builds layer ``i`` around a fresh element-wise map.
    elementwise_map_factory : callable ``() -> ElementwiseMap``
        Builds the element-wise bijection of one layer.
    mixing : {"alternate", "reverse", "random", "lu"}
        What comes before each layer (``"alternate"``: nothing).
    generator : torch.Generator, optional
        Seeds random permutations.
    random_every : int, default=1
        With ``mixing="random"``, draw a new permutation only before every
        ``random_every``-th layer (2 for couplings, whose pairs of masks are
        complementary in the same coordinates).
    """
    if mixing not in MIXINGS:
        raise ValueError(f"unknown mixing {mixing!r}")
    layers: list[Transform] = []
    for i in range(n_layers):
        layers.append(ActNorm(features))
        elementwise_map = elementwise_map_factory()
        if features == 1:
            layers.append(Elementwise(1, elementwise_map))
            continue
        if mixing != "random" or i % random_every == 0:
            mixer = mixing_layer(mixing, features, generator)
            if mixer is not None:
                layers.append(mixer)
        layers.append(make_layer(i, elementwise_map))
    return layers
