"""Monotone rational-quadratic splines with linear tails.

The element-wise bijection of Neural Spline Flows: on ``[-B, B]`` a monotone
rational-quadratic spline through ``K + 1`` knots, the identity outside.  The
two boundary derivatives are fixed to 1, so the map is C^1 where the spline
meets the tails.  Both directions are analytic; the inverse solves one
quadratic per element.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "rational_quadratic_spline",
    "MIN_BIN_WIDTH",
    "MIN_BIN_HEIGHT",
    "MIN_DERIVATIVE",
    "DERIVATIVE_OFFSET",
]

# A collapsed bin would make xi = (x - x_k) / w_k divide by ~0 and its slope h / w explode.
MIN_BIN_WIDTH = 1e-3
# A flat bin is not invertible: the inverse would divide by ~0 there.
MIN_BIN_HEIGHT = 1e-3
# A zero slope at a knot gives log-derivative -inf and an infinitely steep inverse.
MIN_DERIVATIVE = 1e-3
# softplus(offset) + MIN_DERIVATIVE == 1 (float64; one ulp off in float32): zero parameters give the identity.
DERIVATIVE_OFFSET = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def _knots(unnormalized: Tensor, min_fraction: float, tail_bound: float) -> Tensor:
    """Knots, shape ``S + (K + 1,)``, from ``-B`` to ``B``; no bin narrower than ``2B * min_fraction``."""
    n_bins = unnormalized.shape[-1]
    if min_fraction * n_bins >= 1.0:
        raise ValueError(f"{n_bins} bins cannot each take a fraction {min_fraction} of the interval.")
    fractions = min_fraction + (1.0 - min_fraction * n_bins) * torch.softmax(unnormalized, dim=-1)
    interior = 2.0 * tail_bound * torch.cumsum(fractions[..., :-1], dim=-1) - tail_bound
    # Pin the ends exactly: round-off in the cumsum must not move the joints with the tails.
    low = interior.new_full(interior.shape[:-1] + (1,), -tail_bound)
    return torch.cat([low, interior, -low], dim=-1)


def _derivatives(unnormalized_derivatives: Tensor) -> Tensor:
    """Slopes at all ``K + 1`` knots; the two boundary slopes are 1 to match the identity tails."""
    interior = MIN_DERIVATIVE + F.softplus(unnormalized_derivatives + DERIVATIVE_OFFSET)
    ones = interior.new_ones(interior.shape[:-1] + (1,))
    return torch.cat([ones, interior, ones], dim=-1)


def _log_derivative(xi: Tensor, slope: Tensor, d0: Tensor, d1: Tensor, denominator: Tensor) -> Tensor:
    """``log dy/dx`` inside a bin (eq. 5 of Durkan et al.); every term of the numerator is positive."""
    numerator = slope**2 * (d1 * xi**2 + 2.0 * slope * xi * (1.0 - xi) + d0 * (1.0 - xi) ** 2)
    return torch.log(numerator) - 2.0 * torch.log(denominator)


def rational_quadratic_spline(
    inputs: Tensor,
    unnormalized_widths: Tensor,
    unnormalized_heights: Tensor,
    unnormalized_derivatives: Tensor,
    *,
    inverse: bool = False,
    tail_bound: float = 3.0,
) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline on ``[-B, B]``, identity outside.

    Parameters
    ----------
    inputs : Tensor of shape S
        Points to transform: ``x`` for the forward map, ``y`` if ``inverse``.
    unnormalized_widths : Tensor of shape S + (K,)
        Bin widths before softmax; each bin gets at least ``MIN_BIN_WIDTH``
        of the interval ``[-B, B]``.
    unnormalized_heights : Tensor of shape S + (K,)
        Bin heights before softmax, floored likewise by ``MIN_BIN_HEIGHT``.
    unnormalized_derivatives : Tensor of shape S + (K - 1,)
        Slopes at the interior knots before softplus.  The slopes at ``-B``
        and ``B`` are fixed to 1, so the map is C^1 with the linear tails.
    inverse : bool, default=False
        Evaluate the inverse map (analytic, one quadratic per element).
    tail_bound : float, default=3.0
        Half-width ``B`` of the interval where the spline acts.

    Returns
    -------
    outputs : Tensor of shape S
        ``y = f(x)``, or ``x = f^{-1}(y)`` if ``inverse``.
    logabsdet : Tensor of shape S
        ``log dy/dx`` at ``x``, or ``log dx/dy`` at ``y`` if ``inverse``;
        0 outside ``[-B, B]``.

    Notes
    -----
    All-zero parameters give uniform bins and unit slopes: the identity.
    Any finite input gives finite outputs, log-derivatives and gradients.

    References
    ----------
    .. [1] C. Durkan, A. Bekasov, I. Murray and G. Papamakarios, "Neural Spline
       Flows", NeurIPS 2019, arXiv:1906.04032.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([-5.0, 0.5, 2.0])
    >>> w, h, d = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 3)
    >>> y, ladj = rational_quadratic_spline(x, w, h, d)
    >>> x_back, ladj_inv = rational_quadratic_spline(y, w, h, d, inverse=True)
    >>> torch.allclose(x_back, x, atol=1e-5), y[0].item()
    (True, -5.0)
    """
    bound = float(tail_bound)
    n_bins = unnormalized_widths.shape[-1]
    x_knots = _knots(unnormalized_widths, MIN_BIN_WIDTH, bound)
    y_knots = _knots(unnormalized_heights, MIN_BIN_HEIGHT, bound)
    derivatives = _derivatives(unnormalized_derivatives)

    inside = (inputs >= -bound) & (inputs <= bound)
    # The spline only ever sees values in [-B, B]: out-of-bound inputs would make NaNs that
    # torch.where hides in the forward pass but not in the backward pass (0 * NaN = NaN).
    z = inputs.clamp(-bound, bound)

    # right=True puts a point on a knot into the bin on its right, which for +B is bin K:
    # one past the end, so clamp it back into the last bin (where xi = 1).
    knots = y_knots if inverse else x_knots
    index = torch.searchsorted(knots.contiguous(), z.unsqueeze(-1).contiguous(), right=True) - 1
    index = index.clamp(0, n_bins - 1)
    x0, x1 = x_knots.gather(-1, index).squeeze(-1), x_knots.gather(-1, index + 1).squeeze(-1)
    y0, y1 = y_knots.gather(-1, index).squeeze(-1), y_knots.gather(-1, index + 1).squeeze(-1)
    d0, d1 = derivatives.gather(-1, index).squeeze(-1), derivatives.gather(-1, index + 1).squeeze(-1)
    width, height = x1 - x0, y1 - y0
    slope = height / width
    curvature = d0 + d1 - 2.0 * slope

    if inverse:
        # Solve a xi^2 + b xi + c = 0 for the root in [0, 1].  The form 2c / (-b - sqrt(disc))
        # avoids the cancellation of (-b + sqrt(disc)) / 2a; its denominator is bounded away
        # from 0 because the map is strictly increasing.
        dy = z - y0
        a = height * (slope - d0) + dy * curvature
        b = height * d0 - dy * curvature
        c = -slope * dy
        # Round-off can push the discriminant of a simple root slightly below 0.
        discriminant = (b**2 - 4.0 * a * c).clamp(min=0.0)
        xi = (2.0 * c / (-b - torch.sqrt(discriminant))).clamp(0.0, 1.0)
    else:
        # The clamp only absorbs round-off of a point on a knot.
        xi = ((z - x0) / width).clamp(0.0, 1.0)

    # At least slope / 2 > 0, because xi (1 - xi) <= 1/4.
    denominator = slope + curvature * xi * (1.0 - xi)
    log_derivative = _log_derivative(xi, slope, d0, d1, denominator)
    if inverse:
        spline_out, spline_ladj = x0 + xi * width, -log_derivative
    else:
        spline_out = y0 + height * (slope * xi**2 + d0 * xi * (1.0 - xi)) / denominator
        spline_ladj = log_derivative

    outputs = torch.where(inside, spline_out, inputs)
    logabsdet = torch.where(inside, spline_ladj, torch.zeros_like(spline_ladj))
    return outputs, logabsdet
