"""Element-wise parametrised bijections and their unconditional transform.

An *element-wise map* is a family of scalar bijections indexed by a parameter
vector: ``forward(x, params)`` with ``x`` of shape ``(n, k)`` and ``params``
of shape ``(n, k, n_params)`` returns ``(y, ladj)`` with the element-wise
log-derivatives ``ladj`` of shape ``(n, k)``.  All-zero parameters give the
identity, so a freshly built flow is the identity map.

Coupling and autoregressive transforms produce ``params`` from a conditioner;
:class:`Elementwise` learns them as free parameters (the fallback when there
is nothing to condition on, e.g. a single feature).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .splines import (
    MIN_BIN_HEIGHT,
    MIN_BIN_WIDTH,
    _derivatives,
    _knots,
    packed_rational_quadratic_spline,
)
from .transforms import Transform

__all__ = ["ElementwiseMap", "AffineMap", "SplineMap", "Elementwise", "soft_clamp"]


def soft_clamp(x: Tensor, bound: float | None) -> Tensor:
    """``bound * tanh(x / bound)`` (``x`` itself if ``bound`` is None): near-identity for ``|x| << bound``.

    Computed as ``2 bound sigmoid(2 x / bound) - bound``, the same function
    (to ~1e-16 absolute in float64): torch's CPU ``tanh`` takes 3-4 times
    as long as its ``sigmoid``, and the affine couplings clamp every
    log-scale, in training and in inference.
    """
    if bound is None:
        return x
    if not torch.is_grad_enabled():  # inference: the same operations in place on one temporary
        return x.mul(2.0 / bound).sigmoid_().mul_(2.0 * bound).sub_(bound)
    return torch.sigmoid(x * (2.0 / bound)) * (2.0 * bound) - bound


# Without gradients (inference) a spline is evaluated in blocks of about this many elements:
# a block's temporaries (~30 vectors plus ~5K knot values per element) then stay in cache and
# in reused heap memory; on 65536 x 8 inputs, fresh memory for each op made it 2-3x slower.
SPLINE_BLOCK_ELEMENTS = 8192

# Soft bound on an affine layer's log-scale: one layer can scale by at most
# exp(+-3) (~20x), which keeps early training steps from exploding.
LOG_SCALE_BOUND = 3.0


class ElementwiseMap(nn.Module):
    """Base class: a parametrised family of monotone scalar bijections."""

    n_params: int

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError


class AffineMap(ElementwiseMap):
    """``y = x * exp(s) + t`` with a soft-clamped log-scale ``s``.

    ``params[..., 0]`` is the shift ``t``, ``params[..., 1]`` the raw
    log-scale, mapped through ``B * tanh(raw / B)`` with
    ``B = log_scale_bound`` (default ``LOG_SCALE_BOUND``).
    """

    n_params = 2

    def __init__(self, log_scale_bound: float = LOG_SCALE_BOUND) -> None:
        super().__init__()
        if not log_scale_bound > 0:
            raise ValueError(f"log_scale_bound must be positive, got {log_scale_bound!r}.")
        self.log_scale_bound = float(log_scale_bound)

    def _unpack(self, params: Tensor) -> tuple[Tensor, Tensor]:
        return params[..., 0], soft_clamp(params[..., 1], self.log_scale_bound)

    def extra_repr(self) -> str:
        return f"log_scale_bound={self.log_scale_bound}"

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._unpack(params)
        if torch.is_grad_enabled():
            return x * torch.exp(log_scale) + shift, log_scale
        return torch.addcmul(shift, x, torch.exp(log_scale)), log_scale

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._unpack(params)
        if torch.is_grad_enabled():
            return (y - shift) * torch.exp(-log_scale), -log_scale
        log_scale = log_scale.neg_()  # soft_clamp's own temporary at inference (the bound is set)
        return (y - shift).mul_(torch.exp(log_scale)), log_scale


class SplineMap(ElementwiseMap):
    """Monotone rational-quadratic spline on ``[-B, B]``, identity outside.

    ``params`` holds ``n_bins`` unnormalised widths, ``n_bins`` unnormalised
    heights and ``n_bins - 1`` unnormalised interior derivatives (the two
    boundary derivatives are 1 so the linear tails join smoothly).
    """

    def __init__(self, n_bins: int = 8, tail_bound: float = 3.0) -> None:
        super().__init__()
        self.n_bins = n_bins
        self.tail_bound = float(tail_bound)
        self.n_params = 3 * n_bins - 1

    def _evaluate(self, inputs: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        def spline(x: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
            # One copy into the bins-first layout the spline computes in (much faster than
            # reducing over a short last dimension).
            packed = p.movedim(-1, 0).contiguous()
            return packed_rational_quadratic_spline(
                x, packed, self.n_bins, inverse=inverse, tail_bound=self.tail_bound
            )

        if torch.is_grad_enabled() or inputs.dim() == 0:
            return spline(inputs, params)
        rows = max(1, SPLINE_BLOCK_ELEMENTS // max(1, math.prod(inputs.shape[1:])))
        if inputs.shape[0] <= rows:
            return spline(inputs, params)
        outputs, logabsdet = torch.empty_like(inputs), torch.empty_like(inputs)
        for start in range(0, inputs.shape[0], rows):
            block = slice(start, start + rows)
            outputs[block], logabsdet[block] = spline(inputs[block], params[block])
        return outputs, logabsdet

    def knots(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The spline's knots ``(x_k, y_k)`` and slopes ``d_k``, each of shape ``S + (n_bins + 1,)``.

        For inspection and plots; ``params`` has shape ``S + (n_params,)``.
        """
        k = self.n_bins
        widths, heights, derivatives = params.split([k, k, k - 1], dim=-1)
        return (
            _knots(widths, MIN_BIN_WIDTH, self.tail_bound),
            _knots(heights, MIN_BIN_HEIGHT, self.tail_bound),
            _derivatives(derivatives),
        )

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._evaluate(x, params, inverse=False)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._evaluate(y, params, inverse=True)

    def extra_repr(self) -> str:
        return f"n_bins={self.n_bins}, tail_bound={self.tail_bound}"


class Elementwise(Transform):
    """Unconditional element-wise bijection with free, zero-initialised parameters."""

    def __init__(self, features: int, elementwise_map: ElementwiseMap) -> None:
        super().__init__()
        self.features = features
        self.map = elementwise_map
        self.params = nn.Parameter(torch.zeros(features, elementwise_map.n_params))

    def _params(self, n: int) -> Tensor:
        return self.params.unsqueeze(0).expand(n, -1, -1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, ladj = self.map(x, self._params(x.shape[0]))
        return y, ladj.sum(dim=-1)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x, ladj = self.map.inverse(y, self._params(y.shape[0]))
        return x, ladj.sum(dim=-1)

    def extra_repr(self) -> str:
        return f"features={self.features}"
