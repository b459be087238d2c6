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
    "packed_rational_quadratic_spline",
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


def _interior_knots(unnormalized: Tensor, min_fraction: float, tail_bound: float, dim: int = 0) -> Tensor:
    """The ``K - 1`` interior knots along ``dim`` (of ``K`` bins), increasing, strictly inside ``(-B, B)``.

    Bin ``k`` takes the fraction ``m + (1 - m K) softmax(u)_k`` of ``[-B, B]``
    (``m = min_fraction``).  The softmax normalisation is folded into one
    fused multiply-add after the cumulative sum.
    """
    n_bins = unnormalized.shape[dim]
    if n_bins < 2:
        raise ValueError(f"a spline needs at least 2 bins, got {n_bins}.")
    if min_fraction * n_bins >= 1.0:
        raise ValueError(f"{n_bins} bins cannot each take a fraction {min_fraction} of the interval.")
    # Shifted by the max so exp cannot overflow; softmax is shift-invariant, so no gradient flows there.
    weights = torch.exp(unnormalized - unnormalized.detach().amax(dim=dim, keepdim=True))
    # One split, not slices: a slice's backward allocates and zero-fills the whole input.  (A
    # cumulative sum, not a product with a triangle of ones: it adds in the same order whatever
    # the layout, so the knots do not depend on how the parameters are batched.)
    partial, total = torch.cumsum(weights, dim=dim).split([n_bins - 1, 1], dim=dim)
    shape = [1] * unnormalized.dim()
    shape[dim] = n_bins - 1
    step = 2.0 * tail_bound * min_fraction
    floors = weights.new_tensor([step * j - tail_bound for j in range(1, n_bins)]).view(shape)
    return torch.addcdiv(floors, partial, total, value=2.0 * tail_bound * (1.0 - min_fraction * n_bins))


def _knots(unnormalized: Tensor, min_fraction: float, tail_bound: float, dim: int = -1) -> Tensor:
    """All ``K + 1`` knots along ``dim``, exactly ``-B`` to ``B``; bins at least ``2B * min_fraction``."""
    interior = _interior_knots(unnormalized.movedim(dim, 0), min_fraction, tail_bound)
    # The ends are pinned exactly: round-off in the cumsum must not move the joints with the tails.
    low = interior.new_full((1,) + interior.shape[1:], -tail_bound)
    return torch.cat([low, interior, -low]).movedim(0, dim)


def _slopes(unnormalized_derivatives: Tensor) -> Tensor:
    """Interior knot slopes: ``MIN_DERIVATIVE + softplus(u + DERIVATIVE_OFFSET)`` (1 at ``u = 0``)."""
    return MIN_DERIVATIVE + F.softplus(unnormalized_derivatives + DERIVATIVE_OFFSET)


def _derivatives(unnormalized_derivatives: Tensor, dim: int = -1) -> Tensor:
    """Slopes at all ``K + 1`` knots; the two boundary slopes are 1 to match the identity tails."""
    interior = _slopes(unnormalized_derivatives.movedim(dim, 0))
    ones = interior.new_ones((1,) + interior.shape[1:])
    return torch.cat([ones, interior, ones]).movedim(0, dim)


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
        Bin widths before softmax (``K >= 2`` bins); each bin gets at least
        ``MIN_BIN_WIDTH`` of the interval ``[-B, B]``.
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
    The computation runs in the bins-first layout of
    :func:`packed_rational_quadratic_spline`; this function copies its
    arguments into it.

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
    n_bins = unnormalized_widths.shape[-1]
    params = torch.cat([unnormalized_widths, unnormalized_heights, unnormalized_derivatives], dim=-1)
    return packed_rational_quadratic_spline(
        inputs, params.movedim(-1, 0).contiguous(), n_bins, inverse=inverse, tail_bound=tail_bound
    )


def packed_rational_quadratic_spline(
    inputs: Tensor,
    params: Tensor,
    n_bins: int,
    *,
    inverse: bool = False,
    tail_bound: float = 3.0,
) -> tuple[Tensor, Tensor]:
    """:func:`rational_quadratic_spline` with its parameters packed bins first.

    Parameters
    ----------
    inputs : Tensor of shape S
        Points to transform: ``x`` for the forward map, ``y`` if ``inverse``.
    params : Tensor of shape (3K - 1,) + S
        Rows ``[0, K)`` are the unnormalised widths, ``[K, 2K)`` the heights
        and ``[2K, 3K - 1)`` the interior derivatives, as in
        :func:`rational_quadratic_spline`.
    n_bins : int
        Number of bins ``K`` (at least 2).
    inverse : bool, default=False
        Evaluate the inverse map.
    tail_bound : float, default=3.0
        Half-width ``B`` of the interval where the spline acts.

    Returns
    -------
    outputs, logabsdet : Tensor of shape S
        As :func:`rational_quadratic_spline`.

    Notes
    -----
    Bins first, every step over the bins (softmax, cumulative sum, bin
    search) is an element-wise pass along the contiguous trailing
    dimensions; over a short last dimension the same steps are several times
    slower on the CPU.  Widths and heights go through those steps together,
    and only the two ends of each element's bin are gathered: a handful of
    passes over the parameters plus about 30 element-wise operations.  At
    training batch sizes the fixed cost of each operation dominates, so the
    code favours fused ones (``addcmul``, ``addcdiv``).
    """
    bound = float(tail_bound)
    k = n_bins
    if params.shape[0] != 3 * k - 1:
        raise ValueError(f"params has {params.shape[0]} rows; {k} bins need {3 * k - 1}.")
    widths_heights, raw_derivatives = params.split([2 * k, k - 1])
    if MIN_BIN_WIDTH == MIN_BIN_HEIGHT:
        # Widths and heights share every step: (2, K) + S -> (2, K - 1) + S knots.
        knots = _interior_knots(widths_heights.unflatten(0, (2, k)), MIN_BIN_WIDTH, bound, dim=1)
    else:  # pragma: no cover - the constants are equal
        widths, heights = widths_heights.split([k, k])
        knots = torch.stack(
            [_interior_knots(widths, MIN_BIN_WIDTH, bound), _interior_knots(heights, MIN_BIN_HEIGHT, bound)]
        )

    # The spline maps +-B to +-B with slope 1, exactly the tails' values: taking the identity
    # there is exact, whereas solving the inverse's quadratic at y = +-B is only good to round-off.
    inside = inputs.abs() < bound
    # The spline only ever sees values in [-B, B]: out-of-bound inputs would make NaNs that
    # torch.where hides in the forward pass but not in the backward pass (0 * NaN = NaN).
    z = inputs.clamp(-bound, bound)

    # The bin is the number of interior knots <= z (searchsorted with right=True): a point on
    # a knot goes into the bin on its right.  Bins first, this is one vectorised comparison.
    index = (knots[1 if inverse else 0] <= z.detach()).sum(dim=0)
    # Gather only the two ends of each element's bin, (left, right) of (x, y) and of the raw slope,
    # then pin the outer knots exactly to -B and B and their slopes exactly to 1; the slopes'
    # softplus runs on 2 values per element rather than K - 1.  (Padding the K - 1 interior
    # values into a (K + 1)-row table first costs a copy of it: slower on large inputs.)
    ends = torch.stack([(index - 1).clamp(min=0), index.clamp(max=k - 2)])
    edge = torch.stack([index == 0, index == k - 1])
    knot_ends = knots.gather(1, ends.expand((2,) + ends.shape))
    pinned = knot_ends.new_tensor([-bound, bound]).view((2,) + (1,) * z.dim())
    low, high = torch.where(edge, pinned, knot_ends).unbind(1)
    (x0, y0), (width, height) = low.unbind(0), (high - low).unbind(0)
    d0, d1 = torch.where(edge, 1.0, _slopes(raw_derivatives.gather(0, ends))).unbind(0)

    # Fewest operations: at training batch sizes their fixed cost, not arithmetic, dominates.
    slope = height / width
    curvature = torch.add(d0 + d1, slope, alpha=-2.0)
    if inverse:
        # Solve a xi^2 + b xi - c = 0 (c = slope * dy >= 0) for the root in [0, 1].  The form
        # 2c / (b + sqrt(b^2 + 4ac)) avoids the cancellation of (-b + sqrt(...)) / 2a; its
        # denominator is bounded away from 0 because the map is strictly increasing.
        dy = z - y0
        dy_curvature = dy * curvature
        a = torch.addcmul(dy_curvature, height, slope - d0)
        b = torch.addcmul(-dy_curvature, height, d0)
        c = slope * dy
        # Round-off can push the discriminant of a simple root slightly below 0.
        discriminant = torch.addcmul(b * b, a, c, value=4.0).clamp(min=0.0)
        xi = (2.0 * c / (b + torch.sqrt(discriminant))).clamp(0.0, 1.0)
    else:
        # In [0, 1] without a clamp: x0 <= z < x1 by the bin search (z < B inside), and rounding
        # is monotone, so 0 <= fl(z - x0) <= fl(x1 - x0).
        xi = (z - x0) / width
    one_minus_xi = 1.0 - xi
    xi_one_minus_xi = xi * one_minus_xi
    xi_squared = xi * xi
    # At least slope / 2 > 0, because xi (1 - xi) <= 1/4.
    denominator = torch.addcmul(slope, curvature, xi_one_minus_xi)
    # dy/dx = slope^2 numerator / denominator^2 (eq. 5 of Durkan et al.); every term is positive,
    # so there is no cancellation however uneven the slopes.
    numerator = torch.addcmul(
        torch.addcmul(d1 * xi_squared, slope, xi_one_minus_xi, value=2.0), d0, one_minus_xi.square()
    )
    # Two logs, not the log of a product: with extreme parameters the product under- or overflows.
    log_derivative = torch.add(torch.log(numerator), torch.log(slope / denominator), alpha=2.0)
    if inverse:
        spline_out, spline_ladj = torch.addcmul(x0, xi, width), -log_derivative
    else:
        rise = torch.addcmul(slope * xi_squared, d0, xi_one_minus_xi) / denominator
        spline_out, spline_ladj = torch.addcmul(y0, height, rise), log_derivative
    return torch.where(inside, spline_out, inputs), torch.where(inside, spline_ladj, 0.0)
