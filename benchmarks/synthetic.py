"""Synthetic densities with a closed-form log-density, for the benchmark registry.

Each density has ``dim``, ``description``, ``sample(n, rng)`` and an exact
``log_prob(X)``, so a benchmark can report the *truth*: the mean true
log-density of the test rows.  The gap between the truth and a model's mean
test log-likelihood estimates ``KL(p_true || p_model)``.

:data:`SYNTHETIC` maps a data-set name to a factory; the registry in
:mod:`benchmarks.datasets` draws the train and test rows.

Examples
--------
>>> import numpy as np
>>> from benchmarks.synthetic import SYNTHETIC
>>> density = SYNTHETIC["funnel_10d"]()
>>> X = density.sample(5, np.random.RandomState(0))
>>> density.log_prob(X).shape
(5,)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import special, stats
from scipy.special import logsumexp

__all__ = ["SYNTHETIC", "Synthetic", "GaussianMixtureDensity"]

LOG_2PI = np.log(2 * np.pi)


class Synthetic:
    """A density with ``sample(n, rng)`` and an exact ``log_prob(X)``."""

    dim: int
    description: str

    def sample(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        raise NotImplementedError

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class GaussianMixtureDensity(Synthetic):
    """A finite mixture of full-covariance Gaussians."""

    def __init__(self, weights, means, covariances, description):
        self.weights = np.asarray(weights, dtype=float)
        self.means = np.asarray(means, dtype=float)
        self.chols = np.linalg.cholesky(np.asarray(covariances, dtype=float))
        self.dim = self.means.shape[1]
        self.description = description

    def sample(self, n, rng):
        component = rng.choice(len(self.weights), size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        return self.means[component] + np.einsum("nij,nj->ni", self.chols[component], z)

    def log_prob(self, X):
        X = np.atleast_2d(X)
        out = []
        for w, m, c in zip(self.weights, self.means, self.chols):
            sol = np.linalg.solve(c, (X - m).T)
            logdet = 2 * np.log(np.diag(c)).sum()
            out.append(np.log(w) - 0.5 * (sol**2).sum(0) - 0.5 * logdet - 0.5 * self.dim * LOG_2PI)
        return logsumexp(np.stack(out), axis=0)


def _random_covariances(rng, k, d, floor):
    """``k`` random SPD matrices ``A A^T + floor I`` with unit-scale entries."""
    covariances = []
    for _ in range(k):
        a = rng.normal(size=(d, d)) / np.sqrt(d)
        covariances.append(a @ a.T + floor * np.eye(d))
    return np.array(covariances)


def random_mixture(d, k, seed, scale=3.0, floor=0.3):
    """A fixed random Gaussian mixture: Dirichlet(3) weights, N(0, scale^2) means."""
    rng = np.random.RandomState(seed)
    means = rng.normal(scale=scale, size=(k, d))
    covariances = _random_covariances(rng, k, d, floor)
    weights = rng.dirichlet(np.full(k, 3.0))
    return GaussianMixtureDensity(weights, means, covariances, f"{k}-component random Gaussian mixture in {d}-D")


def separated_modes(d, k, seed, separation=8.0):
    """``k`` Gaussians with means on a random simplex ``separation`` apart (unit-scale covariances)."""
    rng = np.random.RandomState(seed)
    # Orthogonal directions times separation / sqrt(2): every pair of means is `separation` apart.
    basis = np.linalg.qr(rng.normal(size=(d, k)))[0].T
    means = basis * separation / np.sqrt(2)
    covariances = _random_covariances(rng, k, d, floor=0.2)
    weights = np.linspace(2.0, 1.0, k) / np.linspace(2.0, 1.0, k).sum()
    return GaussianMixtureDensity(
        weights, means, covariances,
        f"{k} separated Gaussian modes in {d}-D (means {separation:g} apart, random covariances, "
        "unequal weights)",
    )


class Banana(Synthetic):
    """``x1 = s z1``, ``x2 = z2 + b (x1^2 - s^2)`` with ``z ~ N(0, I)``.

    The map is triangular with Jacobian determinant ``s``, so
    ``log p(x) = log N(x1 / s) - log s + log N(x2 - b (x1^2 - s^2))``.
    """

    dim = 2

    def __init__(self, s=2.0, b=0.4):
        self.s, self.b = s, b
        self.description = f"warped Gaussian (banana): x1 = {s} z1, x2 = z2 + {b} (x1^2 - {s}^2)"

    def sample(self, n, rng):
        z = rng.standard_normal((n, 2))
        x1 = self.s * z[:, 0]
        return np.column_stack([x1, z[:, 1] + self.b * (x1**2 - self.s**2)])

    def log_prob(self, X):
        z1 = X[:, 0] / self.s
        z2 = X[:, 1] - self.b * (X[:, 0] ** 2 - self.s**2)
        return stats.norm.logpdf(z1) - np.log(self.s) + stats.norm.logpdf(z2)


class StudentT(Synthetic):
    """Multivariate Student-t with equicorrelated shape matrix."""

    def __init__(self, dim=4, df=3.0, correlation=0.5):
        self.dim, self.df = dim, df
        shape = np.full((dim, dim), correlation) + (1 - correlation) * np.eye(dim)
        self.dist = stats.multivariate_t(loc=np.zeros(dim), shape=shape, df=df)
        self.description = (
            f"heavy-tailed {dim}-D Student-t, {df:g} degrees of freedom, correlation {correlation}"
        )

    def sample(self, n, rng):
        return np.atleast_2d(self.dist.rvs(size=n, random_state=rng)).reshape(n, self.dim)

    def log_prob(self, X):
        return np.atleast_1d(self.dist.logpdf(X))


class Funnel(Synthetic):
    """Neal's funnel: ``v ~ N(0, sigma^2)``, ``x_i | v ~ N(0, exp(v))`` for ``i = 1..dim-1``.

    Neal, "Slice sampling", Annals of Statistics 31 (2003): scales vary by
    orders of magnitude along ``v``, which no fixed affine map can undo.
    """

    def __init__(self, dim=10, sigma=3.0):
        self.dim, self.sigma = dim, sigma
        self.description = f"Neal's funnel in {dim}-D: v ~ N(0, {sigma:g}^2), x_i | v ~ N(0, exp(v))"

    def sample(self, n, rng):
        v = self.sigma * rng.standard_normal(n)
        x = rng.standard_normal((n, self.dim - 1)) * np.exp(v / 2)[:, None]
        return np.column_stack([v, x])

    def log_prob(self, X):
        v, x = X[:, 0], X[:, 1:]
        log_v = stats.norm.logpdf(v, scale=self.sigma)
        # x_i | v has variance exp(v): log N(x; 0, e^v) = -(x^2 e^-v + v + log 2 pi) / 2.
        log_x = -0.5 * ((x**2).sum(1) * np.exp(-v) + (self.dim - 1) * (v + LOG_2PI))
        return log_v + log_x


class Moons(Synthetic):
    """Two moons (angle uniform on [0, pi], as ``make_moons``) plus Gaussian noise.

    The density is a 1-D integral over the angle, done by a 4000-node midpoint rule.
    """

    dim = 2

    def __init__(self, noise=0.1):
        self.noise = noise
        self.description = f"two moons with Gaussian noise (sd {noise:g})"
        t = (np.arange(4000) + 0.5) * np.pi / 4000
        self.nodes = np.concatenate(self._centres(t))

    @staticmethod
    def _centres(t):
        outer = np.stack([np.cos(t), np.sin(t)], -1)
        inner = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], -1)
        return outer, inner

    def sample(self, n, rng):
        t = rng.uniform(0, np.pi, size=n)
        outer, inner = self._centres(t)
        pick = rng.rand(n) < 0.5
        return np.where(pick[:, None], outer, inner) + self.noise * rng.normal(size=(n, 2))

    def log_prob(self, X):
        out = []
        for start in range(0, len(X), 500):  # bounded (500, 8000) intermediates
            d2 = ((X[start : start + 500, None, :] - self.nodes[None]) ** 2).sum(-1)
            log_k = -0.5 * d2 / self.noise**2 - np.log(2 * np.pi * self.noise**2)
            out.append(logsumexp(log_k, axis=1) - np.log(len(self.nodes)))
        return np.concatenate(out)


class ConcentricRings(Synthetic):
    """Concentric rings, weight proportional to radius, uniform angle, Gaussian noise.

    The angular integral of a Gaussian is a Bessel ``I0``: closed form.
    """

    dim = 2

    def __init__(self, radii=(1.0, 2.0, 3.0), noise=0.15):
        self.radii, self.noise = np.asarray(radii), noise
        self.weights = self.radii / self.radii.sum()
        self.description = f"{len(radii)} concentric rings (radii {', '.join(map(str, radii))}, sd {noise:g})"

    def sample(self, n, rng):
        ring = rng.choice(len(self.radii), size=n, p=self.weights)
        t = rng.uniform(0, 2 * np.pi, size=n)
        pts = self.radii[ring, None] * np.stack([np.cos(t), np.sin(t)], -1)
        return pts + self.noise * rng.normal(size=(n, 2))

    def log_prob(self, X):
        rho = np.linalg.norm(X, axis=1)[:, None]
        s2 = self.noise**2
        arg = rho * self.radii[None] / s2
        # log[exp(-(rho^2 + r^2) / 2 s2) I0(rho r / s2)] with I0 = i0e * exp(arg)
        log_terms = -((rho - self.radii[None]) ** 2) / (2 * s2) + np.log(special.i0e(arg)) - np.log(2 * np.pi * s2)
        return logsumexp(log_terms + np.log(self.weights)[None], axis=1)


def _ring(n_components=16, radius=3.0, sd=0.5):
    angles = 2 * np.pi * np.arange(n_components) / n_components
    means = radius * np.column_stack([np.cos(angles), np.sin(angles)])
    return GaussianMixtureDensity(
        np.full(n_components, 1 / n_components),
        means,
        np.tile(sd**2 * np.eye(2), (n_components, 1, 1)),
        f"ring: equal mixture of {n_components} Gaussians (sd {sd}) on a circle of radius {radius}",
    )


def _mixture_2d():
    return GaussianMixtureDensity(
        [0.5, 0.3, 0.2],
        [[0.0, 0.0], [3.0, 3.0], [-3.0, 2.5]],
        [[[1.0, 0.8], [0.8, 1.0]], [[0.3, 0.0], [0.0, 0.3]], [[0.8, -0.5], [-0.5, 0.6]]],
        "3-component anisotropic Gaussian mixture",
    )


def _modes_2d():
    # Five anisotropic modes on a pentagon of radius 5: gaps of ~6 standard deviations.
    angles = 2 * np.pi * np.arange(5) / 5
    means = 5.0 * np.column_stack([np.cos(angles), np.sin(angles)])
    covariances = []
    for a in angles:
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        covariances.append(rot @ np.diag([0.6, 0.15]) @ rot.T)
    weights = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    return GaussianMixtureDensity(
        weights, means, covariances,
        "5 separated anisotropic Gaussian modes on a pentagon of radius 5 (weights 0.3..0.1)",
    )


def _mixture_8d():
    rng = np.random.RandomState(1)
    covariances = _random_covariances(rng, 4, 8, floor=0.1)
    return GaussianMixtureDensity(
        [0.4, 0.3, 0.2, 0.1],
        rng.normal(scale=2.5, size=(4, 8)),
        covariances,
        "4-component Gaussian mixture in 8-D with random full covariances",
    )


SYNTHETIC: dict[str, Callable[[], Synthetic]] = {
    # run.py's suite
    "mixture_2d": _mixture_2d,
    "ring_2d": _ring,
    "banana_2d": Banana,
    "student_t_4d": StudentT,
    "mixture_8d": _mixture_8d,
    # ferumal_vs_realnvp.py's low-data sets
    "moons_2d": Moons,
    "rings_2d": ConcentricRings,
    "gmm_4d": lambda: random_mixture(4, 4, seed=4),
    "gmm_8d": lambda: random_mixture(8, 5, seed=8),
    # quality.py (issue 11): separated modes, funnel, heavy tails
    "modes_2d": _modes_2d,
    "modes_16d": lambda: separated_modes(16, 6, seed=16),
    "funnel_10d": Funnel,
    "student_t_8d": lambda: StudentT(dim=8, df=3.0, correlation=0.5),
}
