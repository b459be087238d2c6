"""Base distributions: the density a flow pushes its latent space onto.

A flow ``p(x) = q(f(x)) |det J_f(x)|`` needs a base density ``q`` with an
exact ``log_prob`` and exact sampling.  Every base is an ``nn.Module`` with

- ``features``: the dimension;
- ``log_prob(z)``: one log-density per row;
- ``sample(n, generator=None)``: ``n`` rows, drawn with a local generator so
  the global torch RNG is untouched;
- ``data_init(z, generator=None)``: optional data-dependent set-up from
  latent rows (the default does nothing).

Three bases:

- :class:`StandardNormal`: ``N(0, I)``, the classic choice (no parameters);
- :class:`GaussianMixtureBase`: a learnable mixture of full-covariance
  Gaussians.  A bijection of one Gaussian must tear space apart to make
  separated modes, while a mixture has them for free; initialised from an EM
  fit, a flow with identity-initialised layers *is* that mixture;
- :class:`StudentTBase`: independent Student-t marginals with a learnable
  location, scale and degrees of freedom per dimension (tail-adaptive flows,
  Jaini et al., ICML 2020, arXiv:1907.04481): a Lipschitz flow cannot turn
  light Gaussian tails into heavy ones, a heavy-tailed base can.

Two fixed densities serve as components of a stacked density
(:class:`~skflow.engine.stacking.DensityMixture`) rather than as bases of a
trained flow: :class:`KernelDensityBase` and
:class:`MultivariateStudentTBase`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BASES",
    "Base",
    "GaussianMixtureBase",
    "KernelDensityBase",
    "MultivariateStudentTBase",
    "StandardNormal",
    "StudentTBase",
    "multivariate_t_log_norm",
    "standard_normal_log_prob",
]

_LOG_2PI = math.log(2 * math.pi)
# GaussianMixtureBase without gradients evaluates (K d, rows) blocks of about this many elements
# (1 MB in float64: in L2 cache; 4 times the 32768 it had, whose 40 blocks per 8192-row chunk of a
# 10-component 16-D mixture spent as long dispatching operations as computing).
MIXTURE_BLOCK_ELEMENTS = 131072
# ... and KernelDensityBase blocks of (rows, points) (larger: a loop step per row would cost more).
KERNEL_DENSITY_BLOCK_ELEMENTS = 131072
# Degrees of freedom stay above this: below 1 the Student-t has no mean and a
# few latent rows would carry most of the likelihood gradient.
MIN_DF = 1.0
# Degrees of freedom tried per dimension by StudentTBase.data_init (a grid:
# the likelihood in df is flat and non-convex for large df); training refines.
_DF_GRID = (1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0, 50.0)
# EM iterations for location and scale at each df (converges linearly; 30 is
# plenty for an initialisation).
_EM_ITERATIONS = 30
# Floor on a mixture component's Cholesky diagonal: a component collapsed
# onto one row would have an unbounded likelihood.
_MIN_LOG_SCALE = math.log(1e-4)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """Log density of ``N(0, I)``, one value per row."""
    return -0.5 * (z * z).sum(dim=-1) - 0.5 * z.shape[-1] * _LOG_2PI


def _block_rows(z: Tensor, rows: int) -> int:
    """Rows per block of an inference loop: ``rows`` (at least 1) on the CPU, all of ``z`` elsewhere.

    Blocks keep a CPU's temporaries in cache; on a GPU they would only add kernel launches.
    """
    return max(1, rows) if z.device.type == "cpu" else max(1, z.shape[0])


def _exp_floor(dtype: torch.dtype) -> float:
    """Floor on ``x - max(x)`` in :func:`_logsumexp_`: ``exp`` of it is still a normal number.

    A little above the log of the smallest normal number: -700.4 in float64, -79.3 in float32 (which
    underflows below -87.3, where a float64 floor would be no help).
    """
    return math.log(torch.finfo(dtype).tiny) + 8.0


def _logsumexp_(x: Tensor, out: Tensor, dim: int = 1) -> Tensor:
    """``torch.logsumexp(x, dim)`` of a 2-D ``x`` into ``out``, overwriting ``x``; far-below terms floored.

    ``x - max`` is floored at ``_exp_floor`` (about -700 in float64, -79 in
    float32): those terms contribute less than 1e-304 (1e-34) of the largest
    one, and torch's vectorised ``exp`` takes a slow path (2.5-6 times
    slower) where its result underflows, which is most of a kernel density's
    terms at a point far from most of its data.
    """
    top = x.amax(dim=dim, keepdim=True)
    finite = torch.isfinite(top)
    shift = torch.where(finite, top, 0.0)
    torch.sum(x.sub_(shift).clamp_min_(_exp_floor(x.dtype)).exp_(), dim=dim, out=out)
    out.log_().add_(shift.squeeze(dim))
    # Rows whose largest term is -inf, inf or NaN: that term is the answer, as for torch.logsumexp.
    return torch.where(finite.squeeze(dim), out, top.squeeze(dim), out=out)


class Base(nn.Module):
    """A base distribution (see the module docstring for the contract)."""

    features: int

    def log_prob(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def data_init(self, z: Tensor, generator: torch.Generator | None = None) -> None:
        """Data-dependent set-up from latent rows ``z``; the default does nothing."""

    def extra_repr(self) -> str:
        return f"features={self.features}"


class StandardNormal(Base):
    """``N(0, I)`` in ``features`` dimensions; no parameters."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        # Carries dtype and device through .to(); not saved.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: Tensor) -> Tensor:
        return standard_normal_log_prob(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        like = self._anchor
        return torch.randn(n, self.features, generator=generator, dtype=like.dtype, device=like.device)


class GaussianMixtureBase(Base):
    """Learnable mixture of ``K`` full-covariance Gaussians.

    ``q(z) = sum_k pi_k N(z; mu_k, L_k L_k^T)`` with ``pi = softmax(logits)``
    and lower-triangular ``L_k`` whose diagonal is ``exp(log_diag)`` (floored
    at 1e-4), so every parameter value is a valid mixture.

    Parameters
    ----------
    weights : Tensor of shape (K,)
        Mixing proportions (positive; normalised here).
    means : Tensor of shape (K, d)
        Component means.
    covariances : Tensor of shape (K, d, d)
        Symmetric positive-definite component covariances.

    Examples
    --------
    >>> import torch
    >>> base = GaussianMixtureBase(torch.tensor([0.5, 0.5]), torch.tensor([[-2.0], [2.0]]),
    ...                            torch.ones(2, 1, 1))
    >>> base.log_prob(torch.zeros(1, 1)).shape, base.sample(3).shape
    (torch.Size([1]), torch.Size([3, 1]))
    """

    def __init__(self, weights: Tensor, means: Tensor, covariances: Tensor) -> None:
        super().__init__()
        means = torch.as_tensor(means)
        n_components, features = means.shape
        self.features = features
        self.n_components = n_components
        weights = torch.as_tensor(weights, dtype=means.dtype)
        cholesky = torch.linalg.cholesky(torch.as_tensor(covariances, dtype=means.dtype))
        diag = torch.diagonal(cholesky, dim1=-2, dim2=-1)
        index = torch.tril_indices(features, features, -1)
        self.logits = nn.Parameter(torch.log(weights / weights.sum()))
        self.means = nn.Parameter(means.clone())
        self.log_diag = nn.Parameter(torch.log(diag).clamp_min(_MIN_LOG_SCALE))
        self.lower_entries = nn.Parameter(cholesky[:, index[0], index[1]].clone())
        self.register_buffer("_lower_index", index, persistent=False)

    def scale_tril(self) -> Tensor:
        """The Cholesky factors ``L_k``, shape ``(K, d, d)``."""
        d = self.features
        diag = torch.exp(self.log_diag.clamp_min(_MIN_LOG_SCALE))
        tril = torch.diag_embed(diag)
        if d > 1:
            rows, cols = self._lower_index
            tril[:, rows, cols] = self.lower_entries
        return tril

    @torch.no_grad()
    def typical_scale(self) -> float:
        """Weighted geometric mean of the components' marginal standard deviations.

        Marginal (the square roots of the covariances' diagonals), not the
        Cholesky diagonals: those are conditional deviations, small for
        strongly correlated features even when the components are wide.
        """
        log_std = 0.5 * torch.log(self.scale_tril().square().sum(dim=-1)).mean(dim=-1)
        return torch.exp((F.softmax(self.logits, dim=0) * log_std).sum()).item()

    def _whitening(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Stacked inverse factors ``(K d, d)``, whitened means ``(K d,)`` and the constant terms ``(K,)``.

        The constants are ``log pi_k - log|L_k| - (d/2) log(2 pi)``.
        """
        d, k = self.features, self.n_components
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        inverse = torch.linalg.solve_triangular(self.scale_tril(), eye, upper=False)  # (K, d, d)
        white_means = (inverse @ self.means.unsqueeze(-1)).reshape(k * d)
        log_det = self.log_diag.clamp_min(_MIN_LOG_SCALE).sum(dim=-1)
        offset = F.log_softmax(self.logits, dim=0) - log_det - 0.5 * d * _LOG_2PI
        return inverse.reshape(k * d, d), white_means, offset

    def component_log_prob(self, z: Tensor) -> Tensor:
        """``log pi_k + log N(z; mu_k, Sigma_k)``, shape ``(n, K)``."""
        if not torch.is_grad_enabled():
            return self._component_log_prob_by_column(z).T
        # Whitened residuals L_k^-1 (z - mu_k) for every k from one (n, d) x (d, K d)
        # product with the stacked inverse factors (K d x d solves, not K n):
        # 3-4x faster than a batched triangular solve of the (K, d, n) residuals.
        n, d, k = z.shape[0], self.features, self.n_components
        factors, white_means, offset = self._whitening(z)
        white = torch.addmm(white_means, z, factors.T, beta=-1)  # (n, K d)
        return offset - 0.5 * white.view(n, k, d).square().sum(dim=-1)

    def _component_log_prob_by_column(self, z: Tensor) -> Tensor:
        """``component_log_prob(z).T``, shape ``(K, n)``, computed without gradients.

        Component-major: the sums over the ``d`` coordinates and then over
        the ``K`` components run along whole rows of ``n`` values, which
        torch vectorises, where an ``(n, K, d)`` layout sums ``n K`` short
        runs (2-4 times slower for small ``d`` or ``K``).  The residuals come
        in ``(K d, rows)`` blocks that stay in cache, updated in place: on
        8192 rows of a 32-component mixture in 16-D, a fresh 32 MB temporary
        per operation made the mixture cost as much as a six-layer flow.

        A tied mixture (every ``L_k`` the same, as scikit-learn's
        ``covariance_type="tied"`` gives) whitens each row once, ``w = L^-1
        z``, and gets its squared distances to the K whitened means from one
        ``(K, d) x (d, rows)`` product, ``|w - m_k|^2 = |w|^2 - 2 m_k.w +
        |m_k|^2`` (clamped at 0; w and the means are centred on the means'
        average first, so the rounding of the expansion, a few ulps of
        ``|w|^2 + |m_k|^2``, stays at the scale of the mixture's spread), in
        place of a ``(K d, d) x (d, rows)`` one: 10 times less work at K = 32.
        """
        n, d, k = z.shape[0], self.features, self.n_components
        factors, white_means, offset = self._whitening(z)
        out = torch.empty(k, n, dtype=z.dtype, device=z.device)
        # Tied (from three components; below that the general path costs about as much, without cancellation).
        if k > 2 and torch.equal(factors.view(k, d, d), factors[:d].expand(k, d, d)):
            means = white_means.view(k, d)
            centre = means.mean(dim=0, keepdim=True)
            means = means - centre
            norms = means.square().sum(dim=1, keepdim=True)
            rows = _block_rows(z, MIXTURE_BLOCK_ELEMENTS // (k + d))
            for start in range(0, n, rows):
                white = torch.mm(factors[:d], z[start : start + rows].T).sub_(centre.T)  # (d, rows)
                distance = torch.addmm(norms, means, white, alpha=-2.0)
                out[:, start : start + rows] = distance.add_(white.square_().sum(dim=0)).clamp_min_(0.0)
        else:
            white_means = white_means.unsqueeze(1)
            rows = _block_rows(z, MIXTURE_BLOCK_ELEMENTS // (k * d))
            for start in range(0, n, rows):
                white = torch.mm(factors, z[start : start + rows].T).sub_(white_means)
                torch.sum(white.square_().view(k, d, -1), dim=1, out=out[:, start : start + rows])
        return out.mul_(-0.5).add_(offset.unsqueeze(1))

    def log_prob(self, z: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return torch.logsumexp(self.component_log_prob(z), dim=-1)
        log_probs = self._component_log_prob_by_column(z)
        return _logsumexp_(log_probs, torch.empty(z.shape[0], dtype=z.dtype, device=z.device), dim=0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        probs = F.softmax(self.logits.detach(), dim=0)
        # multinomial draws on the CPU with the CPU generator; move after.
        component = torch.multinomial(probs.cpu(), n, replacement=True, generator=generator).to(probs.device)
        noise = torch.randn(n, self.features, generator=generator, dtype=probs.dtype, device=probs.device)
        tril = self.scale_tril()
        out = torch.empty_like(noise)
        # One matrix product per component (not an (n, d, d) stack of per-row factors).
        for k in range(self.n_components):
            rows = torch.nonzero(component == k).flatten()
            if rows.numel():
                out[rows] = self.means[k] + noise[rows] @ tril[k].T
        return out

    def extra_repr(self) -> str:
        return f"features={self.features}, n_components={self.n_components}"


class KernelDensityBase(Base):
    """Gaussian kernel density: ``(1/n) sum_i N(z; x_i, h^2 I)`` over stored rows ``x_i``.

    The mixture of :class:`GaussianMixtureBase` with one isotropic component
    per row and equal weights, evaluated through squared distances
    ``|z|^2 - 2 z.x_i + |x_i|^2`` (clamped at 0) instead of per-component
    triangular solves, so scoring costs one ``(n, n_rows)`` matrix product.
    Exact ``log_prob`` and exact sampling (a stored row plus ``h`` times
    Gaussian noise).  The rows and the bandwidth are fixed (buffers).

    Parameters
    ----------
    points : Tensor of shape (n_rows, features)
        The kernel centres.
    bandwidth : float
        The kernel's standard deviation ``h``.

    Examples
    --------
    >>> import torch
    >>> kde = KernelDensityBase(torch.zeros(1, 2, dtype=torch.float64), 1.0)
    >>> torch.allclose(kde.log_prob(torch.ones(3, 2, dtype=torch.float64)),
    ...                standard_normal_log_prob(torch.ones(3, 2, dtype=torch.float64)))
    True
    """

    def __init__(self, points: Tensor, bandwidth: float) -> None:
        super().__init__()
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth!r}.")
        self.features = points.shape[1]
        self.bandwidth = float(bandwidth)
        self.register_buffer("points", points.clone())
        # Derived from the points: cached for scoring, not saved.
        self.register_buffer("_norms", (points * points).sum(dim=1), persistent=False)

    def log_prob(self, z: Tensor) -> Tensor:
        points, norms = self.points.to(z.dtype), self._norms.to(z.dtype)
        n, d = points.shape
        log_norm = math.log(n) + d * math.log(self.bandwidth) + 0.5 * d * _LOG_2PI
        if torch.is_grad_enabled():
            distance = (z * z).sum(dim=1, keepdim=True) - 2.0 * z @ points.T + norms
            scaled = -0.5 * distance.clamp_min(0.0) / self.bandwidth**2
            return torch.logsumexp(scaled, dim=1) - log_norm
        # Without gradients, as GaussianMixtureBase: (rows, points) blocks that stay in cache,
        # updated in place, instead of several (8192, points) temporaries per chunk of rows.
        out = torch.empty(z.shape[0], dtype=z.dtype, device=z.device)
        rows = _block_rows(z, KERNEL_DENSITY_BLOCK_ELEMENTS // n)
        for start in range(0, z.shape[0], rows):
            block = z[start : start + rows]
            distance = torch.addmm(norms, block, points.T, alpha=-2.0)
            distance.add_(block.square().sum(dim=1, keepdim=True)).clamp_min_(0.0)
            _logsumexp_(distance.mul_(-0.5 / self.bandwidth**2), out[start : start + rows])
        return out.sub_(log_norm)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        rows = torch.randint(self.points.shape[0], (n,), generator=generator)
        noise = torch.randn(n, self.features, generator=generator, dtype=self.points.dtype)
        return self.points[rows] + self.bandwidth * noise

    def extra_repr(self) -> str:
        return f"features={self.features}, n_points={self.points.shape[0]}, bandwidth={self.bandwidth:.4g}"


def multivariate_t_log_norm(df: float, d: int) -> float:
    """``log G((df + d) / 2) - log G(df / 2) - (d / 2) log(df pi)``: the t density's constant at ``L = I``."""
    return math.lgamma(0.5 * (df + d)) - math.lgamma(0.5 * df) - 0.5 * d * math.log(df * math.pi)


class MultivariateStudentTBase(Base):
    """Multivariate Student-t: ``t_nu(z; loc, L L^T)``, one heavy-tailed ellipsoid.

    ``log q(z) = log G((nu + d) / 2) - log G(nu / 2) - (d / 2) log(nu pi)
    - log|det L| - ((nu + d) / 2) log(1 + |L^-1 (z - loc)|^2 / nu)``.  Its
    tails decay polynomially, not like ``exp(-|z|^2 / 2)``, so rows far out
    in every direction keep a log-density of order ``-(nu + d) log |z|``
    instead of ``-|z|^2 / 2``.  Sampling is exact: ``loc + L g sqrt(nu / s)``
    with ``g ~ N(0, I)`` and ``s ~ chi2(nu)``.  The parameters are fixed
    (buffers): they are fitted by EM outside the module.

    Parameters
    ----------
    loc : Tensor of shape (d,)
        Location (the mean when ``df > 1``).
    scale_tril : Tensor of shape (d, d)
        Lower-triangular Cholesky factor ``L`` of the scale matrix, positive
        diagonal (the covariance is ``df / (df - 2) L L^T`` when ``df > 2``).
    df : float
        Degrees of freedom ``nu > 0``.

    Examples
    --------
    >>> import torch
    >>> t = MultivariateStudentTBase(torch.zeros(2), torch.eye(2), df=3.0)
    >>> t.log_prob(torch.zeros(1, 2)).shape, t.sample(5, torch.Generator().manual_seed(0)).shape
    (torch.Size([1]), torch.Size([5, 2]))
    """

    def __init__(self, loc: Tensor, scale_tril: Tensor, df: float) -> None:
        super().__init__()
        if not df > 0:
            raise ValueError(f"df must be positive, got {df!r}.")
        loc = torch.as_tensor(loc)
        scale_tril = torch.as_tensor(scale_tril, dtype=loc.dtype)
        if not bool((torch.diagonal(scale_tril) > 0).all()):
            raise ValueError("scale_tril must have a positive diagonal.")
        self.features = loc.shape[0]
        self.df = float(df)
        self.register_buffer("loc", loc.clone())
        self.register_buffer("scale_tril", torch.tril(scale_tril))

    def log_prob(self, z: Tensor) -> Tensor:
        d, df = self.features, self.df
        tril = self.scale_tril.to(z.dtype)
        white = torch.linalg.solve_triangular(tril, (z - self.loc.to(z.dtype)).T, upper=False)
        norm = multivariate_t_log_norm(df, d) - torch.log(torch.diagonal(tril)).sum()
        return norm - 0.5 * (df + d) * torch.log1p(white.square().sum(dim=0) / df)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        dtype = self.loc.dtype
        gaussian = torch.randn(n, self.features, generator=generator, dtype=dtype)
        # torch's chi-square sampler draws from the global generator: seed a private fork of it
        # from ``generator`` so the caller's global random state is left as it was.
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            chi2 = torch.distributions.Chi2(torch.tensor(self.df, dtype=dtype)).sample((n,))
        return self.loc + (gaussian @ self.scale_tril.T) * torch.sqrt(self.df / chi2).unsqueeze(1)

    def extra_repr(self) -> str:
        return f"features={self.features}, df={self.df:.4g}"


def _student_t_log_prob(x: Tensor, df: Tensor) -> Tensor:
    """Element-wise log-density of the standard Student-t with ``df`` degrees of freedom."""
    half = 0.5 * (df + 1.0)
    return (
        torch.lgamma(half)
        - torch.lgamma(0.5 * df)
        - 0.5 * torch.log(df * math.pi)
        - half * torch.log1p(x * x / df)
    )


def _student_t_sample(df: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """``(n, d)`` standard Student-t draws by Bailey's polar method (exact; uniforms only).

    Draw ``U, V`` uniform on ``(-1, 1)`` until ``W = U^2 + V^2 < 1``; then
    ``U sqrt(df (W^(-2/df) - 1) / W)`` is Student-t (Bailey, Math. Comp. 1994).
    Acceptance is pi/4 per element, so a few rounds fill every entry.
    """
    d = df.numel()
    out = torch.empty(n, d, dtype=df.dtype)
    todo = torch.ones(n, d, dtype=torch.bool)
    df_cpu = df.detach().cpu().expand(n, d)
    while todo.any():
        m = int(todo.sum())
        u = 2.0 * torch.rand(m, generator=generator, dtype=df.dtype) - 1.0
        v = 2.0 * torch.rand(m, generator=generator, dtype=df.dtype) - 1.0
        w = u * u + v * v
        ok = (w < 1.0) & (w > 0.0)
        nu = df_cpu[todo]
        value = u * torch.sqrt(nu * (w.pow(-2.0 / nu) - 1.0) / w)
        filled = todo.clone()
        filled[todo] = ok
        out[filled] = value[ok]
        todo &= ~filled
    return out.to(df.device)


class StudentTBase(Base):
    """Independent Student-t marginals with learnable location, scale and tails.

    ``q(z) = prod_i t_{nu_i}((z_i - loc_i) / scale_i) / scale_i`` with
    ``nu_i = 1 + softplus(raw_i)``: each dimension learns how heavy its tails
    are (tail-adaptive flows).  Starts as ``loc = 0``, ``scale = 1``,
    ``nu = 30`` until :meth:`data_init`.

    Parameters
    ----------
    features : int
        Dimension.

    Examples
    --------
    >>> import torch
    >>> base = StudentTBase(2)
    >>> base.data_init(torch.distributions.StudentT(3.0).sample((500, 2)).double())
    >>> base.sample(4, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 2])
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.loc = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.raw_df = nn.Parameter(torch.full((features,), self._raw(30.0)))

    @staticmethod
    def _raw(df: float) -> float:
        """Inverse of ``df = MIN_DF + softplus(raw)``."""
        return math.log(math.expm1(df - MIN_DF))

    @property
    def df(self) -> Tensor:
        """Degrees of freedom per dimension, above ``MIN_DF``."""
        return MIN_DF + F.softplus(self.raw_df)

    def log_prob(self, z: Tensor) -> Tensor:
        x = (z - self.loc) * torch.exp(-self.log_scale)
        return (_student_t_log_prob(x, self.df) - self.log_scale).sum(dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        t = _student_t_sample(self.df.detach(), n, generator)
        return self.loc + torch.exp(self.log_scale) * t

    @torch.no_grad()
    def data_init(self, z: Tensor, generator: torch.Generator | None = None) -> None:
        """Maximum-likelihood marginals: for each ``nu`` of a grid, location and scale by EM.

        For fixed ``nu`` the Student-t is a scale mixture of Gaussians, and EM
        (iteratively reweighted means and variances with weights
        ``(nu + 1) / (nu + r^2)``) converges to the maximum-likelihood location
        and scale; each dimension then keeps the ``nu`` of the grid with the
        highest likelihood.  All dimensions are fitted at once.
        """
        z = z.detach().to(torch.float64)
        if z.shape[0] < 2:
            return
        best = None
        for df in _DF_GRID:
            loc = z.median(dim=0).values
            var = (z - loc).square().mean(dim=0).clamp_min(1e-12)
            for _ in range(_EM_ITERATIONS):
                weights = (df + 1.0) / (df + (z - loc).square() / var)
                loc = (weights * z).sum(0) / weights.sum(0)
                var = (weights * (z - loc).square()).mean(0).clamp_min(1e-12)
            log_scale = 0.5 * torch.log(var)
            nu = torch.tensor(df, dtype=z.dtype)
            ll = (_student_t_log_prob((z - loc) * torch.exp(-log_scale), nu) - log_scale).mean(0)
            if best is None:
                best = [ll, loc, log_scale, torch.full_like(ll, self._raw(df))]
            else:
                better = ll > best[0]
                for i, value in enumerate((ll, loc, log_scale, torch.full_like(ll, self._raw(df)))):
                    best[i] = torch.where(better, value, best[i])
        _, loc, log_scale, raw_df = best
        if all(torch.isfinite(t).all() for t in (loc, log_scale, raw_df)):
            self.loc.copy_(loc)
            self.log_scale.copy_(log_scale)
            self.raw_df.copy_(raw_df)


# The base distributions an estimator can choose (its ``base`` parameter).
BASES = ("normal", "mixture", "student_t")
