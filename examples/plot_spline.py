"""
====================================
What a neural spline flow has learnt
====================================

:class:`~skflow.SplineFlowDensity` transforms each feature with monotone
rational-quadratic splines (Durkan et al., *Neural Spline Flows*,
arXiv:1906.04032): on ``[-tail_bound, tail_bound]`` a smooth increasing
curve through ``n_bins + 1`` knots, the identity outside.  With a single
feature there is nothing to condition on, so each layer is one free spline,
and we can look at it directly.

We fit a one-layer flow to bimodal data and plot the learnt spline with its
knots, its inverse (which the flow uses to sample, in closed form), and the
fitted density.
"""

# %%
# A bimodal sample and a one-layer spline flow
# --------------------------------------------
# One layer is a data-initialised ActNorm followed by one spline with 8 bins.
import matplotlib.pyplot as plt
import numpy as np
import torch

from skflow import SplineFlowDensity

rng = np.random.RandomState(0)
X = np.concatenate([rng.normal(-2.0, 0.6, 1400), rng.normal(1.5, 0.35, 600)])[:, None]

model = SplineFlowDensity(n_layers=1, base="normal", n_bins=8, learning_rate=1e-2, random_state=0).fit(X)
print(f"{model.n_iter_} epochs, {model.n_parameters_} parameters, "
      f"mean log-likelihood {model.score(X):.3f}")

# %%
# The learnt spline
# -----------------
# The fitted flow is a standardisation (``flow_.preprocessing``), then
# ActNorm and the spline (an
# :class:`~skflow.engine.Elementwise` layer).  The spline maps the
# normalised data ``u`` to the latent ``z``, which should look standard
# normal.  Its parameters give the knots directly.
actnorm, spline = model.flow_.transform.transforms
bound = spline.map.tail_bound
with torch.no_grad():
    x_knots, y_knots, slopes = (k[0].numpy() for k in spline.map.knots(spline.params))
    u = torch.linspace(-bound - 1.5, bound + 1.5, 801, dtype=torch.float64)[:, None]
    z, log_slope = spline(u)
    u_back, _ = spline.inverse(z)
u, z = u.numpy().ravel(), z.numpy().ravel()
print(f"largest round-trip error over the grid: {np.abs(u_back.numpy().ravel() - u).max():.1e}")

fig, axes = plt.subplots(1, 3, figsize=(13, 4))
ax = axes[0]
ax.plot(u, z, color="C0", label="spline $z = f(u)$")
ax.plot(x_knots, y_knots, "o", color="C3", label="knots")
ax.plot(u, u, ":", color="grey", label="identity")
for edge in (-bound, bound):
    ax.axvline(edge, color="grey", lw=0.5)
ax.set(xlabel="u (normalised data)", ylabel="z (latent)", title="learnt spline")
ax.legend(loc="upper left")

ax = axes[1]
ax.plot(z, u, color="C1", label="inverse $u = f^{-1}(z)$")
ax.plot(y_knots, x_knots, "o", color="C3", label="knots")
ax.plot(u, u, ":", color="grey")
for edge in (-bound, bound):
    ax.axvline(edge, color="grey", lw=0.5)
ax.set(xlabel="z (latent)", ylabel="u (normalised data)", title="its inverse (used to sample)")
ax.legend(loc="upper left")

# %%
# The fitted density
# ------------------
# Steep parts of the spline spread a data region over much of the latent
# Gaussian (high density); flat parts squeeze it (low density), so one
# monotone curve can make two modes.
grid = np.linspace(X.min() - 1.5, X.max() + 1.5, 600)[:, None]
ax = axes[2]
ax.hist(X.ravel(), bins=60, density=True, color="lightgrey", label="data")
ax.plot(grid.ravel(), np.exp(model.score_samples(grid)), color="C0", label="fitted density")
ax.hist(model.sample(5000, random_state=1).ravel(), bins=60, density=True, histtype="step",
        color="C1", label="5000 samples")
ax.set(xlabel="x", title="density")
ax.legend(loc="upper right")
fig.tight_layout()
plt.show()
