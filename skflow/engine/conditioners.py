"""Conditioners: networks that map the conditioning features to parameters.

A conditioner maps ``(n, in_features)`` to ``(n, out_features)``; a coupling
layer reshapes the output into per-feature parameters of its element-wise
map.  The last layer is zero-initialised so a fresh coupling is the identity.
The kernel-machine conditioner of the Ferumal flow lives in
:mod:`skflow.engine.kernels`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "MLP"]

# Hidden-layer activations of the perceptron conditioners, by name.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _activate_(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` for an activation module of :data:`ACTIVATIONS`, computed in place on ``x``."""
    if isinstance(module, nn.GELU):
        return torch.ops.aten.gelu_(x, approximate=module.approximate)
    if isinstance(module, nn.ReLU):
        return torch.relu_(x)
    if isinstance(module, nn.SiLU):
        return F.silu(x, inplace=True)
    if isinstance(module, nn.Tanh):
        return x.tanh_()
    return module(x)


def activation_module(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (a key of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


class MLP(nn.Module):
    """Multi-layer perceptron with a zero-initialised output layer.

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths.
    hidden_dims : tuple of int
        Widths of the hidden layers; ``()`` gives a single linear layer.
    activation : {"relu", "gelu", "silu", "tanh"}, default="gelu"
        Activation after every hidden layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_dims: tuple[int, ...] = (64, 64),
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), activation_module(activation)]
            width = hidden
        output = nn.Linear(width, out_features)
        # Zero output: the coupling starts as the identity and the initial
        # loss is the (data-initialised) base density, a stable start.
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        layers.append(output)
        self.network = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return self.network(x)
        # Without gradients each activation overwrites the fresh output of the linear layer before
        # it: one (rows, width) temporary fewer per hidden layer at inference.
        for layer in self.network:
            x = layer(x) if isinstance(layer, nn.Linear) else _activate_(layer, x)
        return x
