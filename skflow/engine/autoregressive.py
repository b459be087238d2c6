"""Masked autoregressive transform (MAF) and its masked network (MADE).

:class:`MADE` is a feed-forward network whose weight masks make the
parameters of feature ``i`` depend only on the features that come before it
in a fixed order.  :class:`MaskedAutoregressive` feeds those parameters to an
element-wise map, so the Jacobian is triangular and its log-determinant is
the sum of the element-wise log-derivatives.  The forward pass (data ->
latent, what training evaluates) is one network call; the inverse (sampling)
needs one call per feature.

References: Germain et al., "MADE: Masked Autoencoder for Distribution
Estimation", ICML 2015 (arXiv:1502.03509); Papamakarios et al., "Masked
Autoregressive Flow for Density Estimation", NeurIPS 2017 (arXiv:1705.07057).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .conditioners import activation_module
from .coupling import soft_clamp
from .elementwise import ElementwiseMap
from .transforms import Transform

__all__ = ["MaskedLinear", "MADE", "MaskedAutoregressive", "autoregressive_stack"]


class MaskedLinear(nn.Linear):
    """Linear layer ``y = x (W * M)^T + b`` with a fixed 0/1 connectivity mask ``M``.

    Parameters
    ----------
    mask : Tensor of shape (out_features, in_features)
        Boolean; ``mask[o, i]`` allows input ``i`` to reach output ``o``.
    """

    def __init__(self, mask: Tensor) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features)
        # A buffer (not a parameter): it moves with .to()/.double() and is
        # saved in the state dict, but the optimiser never touches it.
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked network: ``(n, features) -> (n, features, n_params)``, autoregressive.

    Output ``[:, i, :]`` depends only on inputs whose degree is below the
    degree of feature ``i``.  Input degrees follow ``order`` (natural order
    ``0..d-1`` by default); hidden degrees cycle over ``0..d-2``, so the
    masks are deterministic.  The output layer is zero-initialised, so a
    fresh network outputs all-zero parameters (the identity map).

    Parameters
    ----------
    features : int
        Number of input features ``d``.
    hidden_dims : tuple of int
        Widths of the hidden layers; ``()`` gives a single masked linear layer.
    n_params : int
        Number of parameters produced per feature.
    generator : torch.Generator, optional
        Seeds the initialisation of the hidden layers; the global RNG if None.
    order : sequence of int, optional
        ``order[k]`` is the feature in position ``k`` of the autoregressive
        order (a permutation of ``0..d-1``).
    input_bound : float, optional
        Soft bound on the inputs (see :class:`~skflow.engine.coupling.Coupling`).
    activation : {"relu", "gelu", "silu", "tanh"}, default="relu"
        Activation after every hidden layer.
    """

    def __init__(
        self,
        features: int,
        hidden_dims: tuple[int, ...],
        n_params: int,
        generator: torch.Generator | None = None,
        order: Sequence[int] | Tensor | None = None,
        input_bound: float | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.input_bound = input_bound
        self.features = features
        self.hidden_dims = tuple(hidden_dims)
        self.n_params = n_params
        if order is None:
            order = torch.arange(features)
        order = torch.as_tensor(order, dtype=torch.long)
        if not torch.equal(torch.sort(order).values, torch.arange(features)):
            raise ValueError(f"order must be a permutation of 0..{features - 1}")
        in_degrees = torch.empty(features, dtype=torch.long)
        in_degrees[order] = torch.arange(features)
        self.register_buffer("degrees", in_degrees)

        layers: list[nn.Module] = []
        prev = in_degrees
        for width in self.hidden_dims:
            # max(.., 1): with one feature there is no degree below d-1, and the
            # hidden units are unused anyway (the output only sees its bias).
            hidden = torch.arange(width) % max(features - 1, 1)
            layers += [MaskedLinear(hidden[:, None] >= prev[None, :]), activation_module(activation)]
            prev = hidden
        # Each feature's n_params outputs share its degree; strict inequality
        # is what removes the dependence of feature i on itself.
        out = in_degrees.repeat_interleave(n_params)
        self.hidden = nn.Sequential(*layers)
        self.output = MaskedLinear(out[:, None] > prev[None, :])

        with torch.no_grad():
            for layer in self.hidden:
                if isinstance(layer, MaskedLinear):
                    bound = 1.0 / math.sqrt(layer.in_features)
                    nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
            # Zero output => zero params => the flow starts as the identity.
            self.output.weight.zero_()
            self.output.bias.zero_()

    def _hidden(self, x: Tensor) -> Tensor:
        return self.hidden(soft_clamp(x, self.input_bound))

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self._hidden(x)).reshape(x.shape[0], self.features, self.n_params)

    def feature_params(self, x: Tensor, feature: int) -> Tensor:
        """``forward(x)[:, feature]``, ``(n, n_params)``, computing only that feature's outputs.

        The output layer is most of the network (``features * n_params``
        outputs); the inverse pass, which needs one feature at a time, skips
        the other rows of it.
        """
        rows = slice(feature * self.n_params, (feature + 1) * self.n_params)
        weight = self.output.weight[rows] * self.output.mask[rows]
        return F.linear(self._hidden(x), weight, self.output.bias[rows])

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, hidden_dims={self.hidden_dims}, "
            f"n_params={self.n_params}"
        )


class MaskedAutoregressive(Transform):
    """Masked autoregressive transform ``y_i = f(x_i; theta_i(x_{<i}))`` (MAF).

    Parameters
    ----------
    features : int
        Number of features ``d``.
    hidden_dims : tuple of int
        Hidden widths of the :class:`MADE` conditioner.
    elementwise_map : ElementwiseMap
        The scalar bijection ``f``, e.g. ``AffineMap()`` or ``SplineMap()``.
    order : sequence of int, optional
        Autoregressive order (a permutation); natural order if None.  Stacked
        layers should alternate it (e.g. reversed) so every feature gets to
        condition on every other; a :class:`Permutation` between layers does
        the same job.
    generator : torch.Generator, optional
        Seeds the conditioner's initialisation.
    input_bound : float, optional
        Soft bound on what the MADE sees.
    activation : {"relu", "gelu", "silu", "tanh"}, default="relu"
        Activation of the MADE's hidden layers.

    References
    ----------
    Papamakarios, Pavlakou & Murray, "Masked Autoregressive Flow for Density
    Estimation", NeurIPS 2017, arXiv:1705.07057.

    Examples
    --------
    >>> import torch
    >>> from skflow.engine.elementwise import AffineMap
    >>> t = MaskedAutoregressive(3, (16,), AffineMap())
    >>> y, ladj = t(torch.randn(5, 3))
    >>> y.shape, ladj.shape
    (torch.Size([5, 3]), torch.Size([5]))
    """

    def __init__(
        self,
        features: int,
        hidden_dims: tuple[int, ...],
        elementwise_map: ElementwiseMap,
        order: Sequence[int] | Tensor | None = None,
        generator: torch.Generator | None = None,
        input_bound: float | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.features = features
        self.map = elementwise_map
        self.made = MADE(
            features, hidden_dims, elementwise_map.n_params, generator, order, input_bound, activation
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, ladj = self.map(x, self.made(x))
        return y, ladj.sum(dim=-1)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.zeros_like(y)
        ladj = y.new_zeros(y.shape[0])
        # Pass k solves the one feature of degree k: its parameters only read
        # features of lower degree, all exact by then, so they (and its
        # log-derivative) are final.  Not-yet-solved features are kept at zero
        # rather than at an arbitrary estimate, so nothing ever blows up.  Only
        # that feature's parameters are computed, and the element-wise map
        # runs on that one column.
        for feature in torch.argsort(self.made.degrees).tolist():
            column = torch.tensor([feature], device=y.device)
            params = self.made.feature_params(x, feature).unsqueeze(1)
            x_i, ladj_i = self.map.inverse(y.index_select(1, column), params)
            x = x.index_copy(1, column, x_i)
            ladj = ladj + ladj_i.squeeze(1)
        return x, ladj

    def extra_repr(self) -> str:
        return f"features={self.features}"


def autoregressive_stack(
    features: int,
    n_layers: int,
    hidden_dims: tuple[int, ...],
    elementwise_map_factory,
    mixing: str = "lu",
    generator: torch.Generator | None = None,
    input_bound: float | None = None,
    activation: str = "relu",
) -> list[Transform]:
    """The layers of a masked autoregressive flow (MAF / autoregressive NSF).

    Each layer is ``ActNorm -> mixing -> MaskedAutoregressive`` (see
    :func:`~skflow.engine.stacks.layer_stack`).  With ``"alternate"`` or
    ``"lu"`` mixing the autoregressive order is reversed every other layer,
    so even the freshly built (identity) mixing lets every feature condition
    on every other across two layers; a permutation already reorders the
    features, and reversing on top of a reversal would undo it.

    Parameters
    ----------
    features : int
        Data dimension.
    n_layers : int
        Number of autoregressive layers.
    hidden_dims : tuple of int
        Hidden widths of each layer's :class:`MADE`.
    elementwise_map_factory : callable ``() -> ElementwiseMap``
        Builds the element-wise bijection of one layer.
    mixing : {"alternate", "reverse", "random", "lu"}
        What mixes features between layers (:func:`~skflow.engine.transforms.mixing_layer`).
    generator : torch.Generator, optional
        Seeds the MADE initialisation and random permutations.
    input_bound : float, optional
        Soft bound on what each MADE sees (see :class:`~skflow.engine.coupling.Coupling`).
    activation : {"relu", "gelu", "silu", "tanh"}, default="relu"
        Activation of the MADEs' hidden layers.
    """
    from .stacks import layer_stack

    natural = torch.arange(features)

    def make_layer(i: int, elementwise_map: ElementwiseMap) -> Transform:
        alternate = mixing in ("alternate", "lu") and i % 2 == 1
        order = natural.flip(0) if alternate else natural
        return MaskedAutoregressive(
            features, hidden_dims, elementwise_map, order, generator, input_bound, activation
        )

    return layer_stack(features, n_layers, make_layer, elementwise_map_factory, mixing, generator)
