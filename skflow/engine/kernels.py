"""Kernel functions and the kernel-machine conditioner of the Ferumal flow.

A Ferumal flow replaces the neural network of a coupling layer by a kernel
machine: the conditioner's output is ``K(u, A) @ W``, a linear combination of
kernels centred on ``N`` learnable auxiliary points ``A`` (English, Kirchler
and Lippert, "Kernelised Normalising Flows", ICLR 2024, arXiv 2307.14839);
few parameters, hence data-efficient.

Every kernel is stationary: a function of the length-scaled Euclidean
distance ``r = ||(u - a) / length_scale||``, equal to 1 at ``r = 0`` and
decreasing in ``r``.  Keys of :data:`KERNELS` (the values of the estimator's
``kernel`` parameter):

- ``"rbf"``: squared exponential, ``exp(-r^2 / 2)``;
- ``"matern32"``: Matérn nu=3/2, ``(1 + sqrt(3) r) exp(-sqrt(3) r)``;
- ``"matern52"``: Matérn nu=5/2, ``(1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)``;
- ``"laplacian"``: ``exp(-r)`` (Matérn nu=1/2; Euclidean ``r``, unlike the
  L1 distance of scikit-learn's ``laplacian_kernel``);
- ``"rational_quadratic"``: ``(1 + r^2 / (2 alpha))^(-alpha)``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch import Tensor, nn

from .elementwise import soft_clamp

__all__ = [
    "KERNELS",
    "KernelConditioner",
    "laplacian",
    "matern",
    "rational_quadratic",
    "scaled_squared_distance",
    "squared_exponential",
]

# Floor on the squared distance under a square root: d sqrt(s)/ds is infinite
# at s = 0 and aux points start exactly on data rows; the floor's effect on
# r (1e-18) is below float64 resolution, and below it the gradient is zero.
MIN_SQUARED_DISTANCE = 1e-36
# Fixed shape parameter of the rational-quadratic kernel (alpha -> inf is rbf).
RATIONAL_QUADRATIC_ALPHA = 1.0
# Soft clamp of log(length_scale) to [-B, B] via B * tanh(raw / B): length
# scales in [1e-2, 1e2] cover standardised data, and the bound keeps a bad
# step from collapsing the kernel to a delta or to a constant.
LOG_LENGTH_SCALE_BOUND = math.log(100.0)
# Relative jitter (in units of the data's std per feature) added to aux
# points that duplicate an earlier one, so no two kernel columns coincide.
DUPLICATE_JITTER = 0.1
# The median heuristic looks at the pairwise distances of at most this many
# rows (a seeded random subset): O(rows^2) memory.
MEDIAN_HEURISTIC_MAX_ROWS = 1000
# Squared distances below this fraction of |u|^2 + |a|^2 are recomputed from
# the differences: the expansion |u|^2 - 2 u.a + |a|^2 loses about
# log10(1 / ratio) digits there, and keeps ~12 of float64's 16 elsewhere.
CANCELLATION_RATIO = 1e-3

INITS = ("kmeans++", "random")


def scaled_squared_distance(u: Tensor, a: Tensor, length_scale: float | Tensor = 1.0) -> Tensor:
    """Pairwise ``||(u_i - a_j) / length_scale||^2``, shape ``(n, N)``.

    Computed as ``|u|^2 - 2 u.a + |a|^2`` with one matrix product (no
    ``(n, N, d)`` intermediate), after centring both sets on the mean of
    ``a``: distances do not change, and the norms, hence the round-off of the
    expansion (a few ulps of ``|u|^2 + |a|^2``), stay at the scale of the
    data's spread rather than of its offset.  Entries where the expansion
    cancels badly (``d^2 <= CANCELLATION_RATIO (|u|^2 + |a|^2)``: points
    close to each other relative to their norms) are recomputed from the
    differences, so the result is within a few ``eps / CANCELLATION_RATIO``
    relative of the difference form everywhere (about 1e-13 in float64),
    exactly 0 when ``u_i == a_j`` and never negative.  ``u`` has shape
    ``(n, d)``, ``a`` shape ``(N, d)``; ``length_scale`` is a positive scalar
    or a tensor of shape ``(d,)``.
    """
    # Any fixed centre leaves the distances (and their gradients) unchanged.
    centre = a.detach().mean(dim=0)
    us, as_ = (u - centre) / length_scale, (a - centre) / length_scale
    u_norms, a_norms = us.square().sum(dim=-1, keepdim=True), as_.square().sum(dim=-1)
    norms = u_norms + a_norms
    d2 = torch.addmm(norms, us, as_.mT, alpha=-2.0)
    # addmm's backward does not use its input: ``norms`` becomes the threshold in place.
    close = d2 <= norms.detach().mul_(CANCELLATION_RATIO)
    # The norms are sums of squares: their total is finite unless one is not (or the total overflows,
    # when the check below costs a pass and changes nothing).  Cheaper than two isfinite().all().
    if not math.isfinite(float(u_norms.detach().sum() + a_norms.detach().sum())):
        close |= torch.isnan(d2)  # inf - inf where a norm overflows
    inplace = _owned(d2)
    if close.any():
        rows, cols = close.nonzero(as_tuple=True)
        # From the raw inputs: centring rounds, and u - a is exact for nearby u, a (Sterbenz).
        exact = ((u[rows] - a[cols]) / length_scale).square().sum(dim=-1)
        d2 = d2.index_put_((rows, cols), exact) if inplace else d2.index_put((rows, cols), exact)
    return d2.clamp_min_(0.0) if inplace else d2.clamp_min(0.0)


def _owned(t: Tensor) -> bool:
    """Whether a fresh temporary may be updated in place: no graph is being recorded through it."""
    return not (torch.is_grad_enabled() and t.requires_grad)


def _distance(u: Tensor, a: Tensor, length_scale: float | Tensor) -> Tensor:
    """Scaled Euclidean distance with a finite gradient at ``r = 0``."""
    d2 = scaled_squared_distance(u, a, length_scale)
    if _owned(d2):
        return d2.clamp_min_(MIN_SQUARED_DISTANCE).sqrt_()
    return d2.clamp_min(MIN_SQUARED_DISTANCE).sqrt()


def squared_exponential(u: Tensor, a: Tensor, length_scale: float | Tensor = 1.0) -> Tensor:
    """Squared-exponential (RBF) kernel ``exp(-r^2 / 2)``, shape ``(n, N)``."""
    d2 = scaled_squared_distance(u, a, length_scale)
    return d2.mul_(-0.5).exp_() if _owned(d2) else torch.exp(-0.5 * d2)


def matern(u: Tensor, a: Tensor, length_scale: float | Tensor = 1.0, nu: float = 1.5) -> Tensor:
    """Matérn kernel in closed form for ``nu`` in {1.5, 2.5}, shape ``(n, N)``."""
    if nu == 1.5:
        sr = math.sqrt(3.0) * _distance(u, a, length_scale)
        return (1.0 + sr) * torch.exp(-sr)
    if nu == 2.5:
        sr = math.sqrt(5.0) * _distance(u, a, length_scale)
        return (1.0 + sr + sr.square() / 3.0) * torch.exp(-sr)
    raise ValueError(f"nu must be 1.5 or 2.5, got {nu}")


def laplacian(u: Tensor, a: Tensor, length_scale: float | Tensor = 1.0) -> Tensor:
    """Exponential kernel ``exp(-r)`` (Matérn nu=1/2), shape ``(n, N)``."""
    r = _distance(u, a, length_scale)
    return r.neg_().exp_() if _owned(r) else torch.exp(-r)


def rational_quadratic(
    u: Tensor, a: Tensor, length_scale: float | Tensor = 1.0, alpha: float = RATIONAL_QUADRATIC_ALPHA
) -> Tensor:
    """Rational-quadratic kernel ``(1 + r^2 / (2 alpha))^(-alpha)``, shape ``(n, N)``."""
    return (1.0 + scaled_squared_distance(u, a, length_scale) / (2.0 * alpha)).pow(-alpha)


KERNELS: dict[str, Callable[..., Tensor]] = {
    "rbf": squared_exponential,
    "matern32": functools.partial(matern, nu=1.5),
    "matern52": functools.partial(matern, nu=2.5),
    "laplacian": laplacian,
    "rational_quadratic": rational_quadratic,
}


def _kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """``k`` distinct row indices by D^2 sampling (Arthur & Vassilvitskii, 2007).

    Rows equal to a chosen one have D^2 = 0 and are never drawn while another
    row has positive D^2; when none has, the draw is uniform over unchosen rows.
    """
    n = x.shape[0]
    chosen = torch.zeros(n, dtype=torch.bool, device=x.device)
    first = torch.randint(n, (1,), generator=generator, device=x.device)
    indices = [first]
    chosen[first] = True
    d2 = (x - x[first]).square().sum(dim=-1)
    for _ in range(k - 1):
        weights = d2 if d2.sum() > 0 else (~chosen).to(x.dtype)
        index = torch.multinomial(weights, 1, generator=generator)
        indices.append(index)
        chosen[index] = True
        d2 = torch.minimum(d2, (x - x[index]).square().sum(dim=-1))
    return torch.cat(indices)


class KernelConditioner(nn.Module):
    """Kernel machine ``u -> K(u, A) @ W`` on learnable auxiliary points.

    The conditioner of a Ferumal flow coupling layer.  ``W`` is zero at
    construction so the coupling starts as the identity.  There is no bias:
    the output decays to zero away from the auxiliary points, so the coupling
    reverts to the identity far from the data.

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths.
    n_aux_points : int, default=150
        Number ``N`` of auxiliary points (kernel centres); fixed at
        construction, whatever the size of the data seen by :meth:`data_init`.
    kernel : str, default="rbf"
        A key of :data:`KERNELS`.
    length_scale : float or "auto", default=1.0
        Initial length-scale, in ``(1e-2, 1e2)`` (suits standardised data).
        ``"auto"`` sets it in :meth:`data_init` to the median pairwise
        distance of the rows (the median heuristic).  Always learnable.
    per_dimension_length_scale : bool, default=False
        One length-scale per input feature instead of a shared one.
    learnable_aux_points : bool, default=True
        Train the auxiliary points (a parameter) or fix them (a buffer).
    init : {"kmeans++", "random"}, default="kmeans++"
        How :meth:`data_init` picks the auxiliary points among the rows.

    Attributes
    ----------
    aux_points : Tensor of shape (n_aux_points, in_features)
        The kernel centres; standard normal until :meth:`data_init`.
    weight : Parameter of shape (n_aux_points, out_features)
        Kernel-machine coefficients, zero-initialised.
    raw_log_length_scale : Parameter of shape () or (in_features,)
        Unconstrained; ``log(length_scale) = B tanh(raw / B)``.

    References
    ----------
    E. English, M. Kirchler, C. Lippert, "Kernelised Normalising Flows",
    ICLR 2024, arXiv 2307.14839.

    Examples
    --------
    >>> conditioner = KernelConditioner(2, 4, n_aux_points=10)
    >>> conditioner.data_init(torch.randn(50, 2), torch.Generator().manual_seed(0))
    >>> conditioner(torch.randn(3, 2)).shape
    torch.Size([3, 4])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_aux_points: int = 150,
        kernel: str = "rbf",
        length_scale: float | str = 1.0,
        per_dimension_length_scale: bool = False,
        learnable_aux_points: bool = True,
        init: str = "kmeans++",
    ) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if min(in_features, out_features, n_aux_points) < 1:
            raise ValueError("in_features, out_features and n_aux_points must be >= 1")
        if length_scale == "auto":
            initial = 1.0
        elif isinstance(length_scale, str) or not 1e-2 < length_scale < 1e2:
            raise ValueError(f"length_scale must be in (1e-2, 1e2) or 'auto', got {length_scale!r}")
        else:
            initial = float(length_scale)
        self.in_features = in_features
        self.out_features = out_features
        self.n_aux_points = n_aux_points
        self.kernel = kernel
        self.initial_length_scale = length_scale
        self.per_dimension_length_scale = per_dimension_length_scale
        self.learnable_aux_points = learnable_aux_points
        self.init = init

        aux_points = torch.randn(n_aux_points, in_features)
        if learnable_aux_points:
            self.aux_points = nn.Parameter(aux_points)
        else:
            self.register_buffer("aux_points", aux_points)
        self.weight = nn.Parameter(torch.zeros(n_aux_points, out_features))
        shape = (in_features,) if per_dimension_length_scale else ()
        self.raw_log_length_scale = nn.Parameter(torch.full(shape, self._raw(initial)))

    @staticmethod
    def _raw(length_scale: float) -> float:
        """Inverse of the soft clamp: the raw value giving ``length_scale``."""
        return LOG_LENGTH_SCALE_BOUND * math.atanh(math.log(length_scale) / LOG_LENGTH_SCALE_BOUND)

    @property
    def length_scale(self) -> Tensor:
        """Positive length-scale(s) in ``(1e-2, 1e2)``, shape () or (in_features,)."""
        bound = LOG_LENGTH_SCALE_BOUND
        return torch.exp(soft_clamp(self.raw_log_length_scale, bound))

    def forward(self, x: Tensor) -> Tensor:
        """``K(x, A) @ W``: shape ``(n, in_features) -> (n, out_features)``."""
        return KERNELS[self.kernel](x, self.aux_points, self.length_scale) @ self.weight

    @torch.no_grad()
    def data_init(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """Place the auxiliary points on rows of ``x`` (and the length-scale if "auto").

        ``init="kmeans++"`` picks ``N`` distinct rows by D^2 sampling, which
        spreads them over the data (small clusters get centres too);
        ``"random"`` picks a uniform subset without replacement.  With fewer
        than ``N`` rows, every row is used and the rest repeat rows
        (cycling through a seeded permutation).  Any point equal to an earlier
        one gets a seeded jitter of ``DUPLICATE_JITTER`` times the feature's
        std (or the length-scale where the std is 0, e.g. for a single row).
        """
        x, n, k = x.detach(), x.shape[0], self.n_aux_points
        if n == 0:
            return
        if self.initial_length_scale == "auto" and n >= 2:
            self._median_heuristic(x, generator)
        if n < k:
            perm = torch.randperm(n, generator=generator, device=x.device)
            fill = perm[torch.arange(k - n, device=x.device) % n]
            indices = torch.cat([torch.arange(n, device=x.device), fill])
        elif self.init == "kmeans++":
            indices = _kmeans_plus_plus(x, k, generator)
        else:
            indices = torch.randperm(n, generator=generator, device=x.device)[:k]
        points = x[indices].clone()

        equal = (points.unsqueeze(1) == points.unsqueeze(0)).all(dim=-1)
        duplicate = torch.tril(equal, diagonal=-1).any(dim=1)
        if duplicate.any():
            std = x.std(dim=0, correction=0)
            scale = torch.where(std > 0, std, self.length_scale.to(x).expand_as(std))
            noise = torch.randn(points.shape, generator=generator, dtype=x.dtype, device=x.device)
            points[duplicate] += (DUPLICATE_JITTER * scale * noise)[duplicate]
        self.aux_points.copy_(points)

    def _median_heuristic(self, x: Tensor, generator: torch.Generator | None) -> None:
        """Set the length-scale to the median pairwise distance of (a subset of) rows."""
        if x.shape[0] > MEDIAN_HEURISTIC_MAX_ROWS:
            keep = torch.randperm(x.shape[0], generator=generator, device=x.device)
            x = x[keep[:MEDIAN_HEURISTIC_MAX_ROWS]]
        median = torch.quantile(torch.pdist(x), 0.5).item()
        if median > 0:
            # Stay strictly inside the soft clamp so atanh is finite.
            log_bound = 0.99 * LOG_LENGTH_SCALE_BOUND
            log_median = min(max(math.log(median), -log_bound), log_bound)
            self.raw_log_length_scale.fill_(self._raw(math.exp(log_median)))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"n_aux_points={self.n_aux_points}, kernel={self.kernel!r}, "
            f"length_scale={self.initial_length_scale!r}, "
            f"per_dimension_length_scale={self.per_dimension_length_scale}, "
            f"learnable_aux_points={self.learnable_aux_points}, init={self.init!r}"
        )
