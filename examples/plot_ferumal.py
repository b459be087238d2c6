"""
============================================
Where a Ferumal flow puts its kernel centres
============================================

:class:`~skflow.FerumalFlowDensity` is a coupling flow whose couplings are
*kernel machines* (English, Kirchler and Lippert, *Kernelised Normalising
Flows*, arXiv:2307.14839).  Each coupling passes one part of its input, ``u``,
through unchanged and maps the other part ``v`` to
``v * exp(s(u)) + t(u)``, where

.. math::

    s(u) = \\sum_i k(u, a_i)\\, A_i, \\qquad t(u) = \\sum_i k(u, a_i)\\, B_i

are sums of kernels centred on ``N`` learned auxiliary points ``a_i``
(50 by default).  In 2-D, ``u`` is a single coordinate, so every ``a_i`` is a
number, and the data points that a coupling sees at ``u = a_i`` form a curve.
We fit the flow to two moons and to two rings, draw those curves over the
fitted density, and plot one coupling's ``s(u)`` and ``t(u)``.
"""

# %%
# Two data sets, two fits
# -----------------------
# One flow each, on a Gaussian-mixture base (``base="mixture"``; the
# default ``base="auto"`` would stack it with a second flow and two
# classical densities, see the user guide), otherwise default settings:
# four couplings, each after an ActNorm and a learned
# LU-parametrised linear map, with 50 auxiliary points each.  A second
# sample from the same distribution gives a held-out score.  The three fits
# (two Ferumal flows and a RealNVP flow for scale, below) are independent:
# joblib runs them in two processes.
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.datasets import make_circles, make_moons

from skflow import FerumalFlowDensity, RealNVPDensity
from skflow.engine import Coupling


def make_data(name, random_state):
    if name == "two moons":
        return make_moons(n_samples=600, noise=0.08, random_state=random_state)[0]
    return make_circles(n_samples=600, noise=0.05, factor=0.5, random_state=random_state)[0]


names = ("two moons", "two rings")
train = {name: make_data(name, random_state=0) for name in names}
test = {name: make_data(name, random_state=1) for name in names}


def fit_timed(model, X):
    tic = time.perf_counter()
    model.fit(X)
    return model, time.perf_counter() - tic


jobs = [FerumalFlowDensity(base="mixture", random_state=0) for _ in names]
jobs.append(RealNVPDensity(base="mixture", random_state=0))
fitted = Parallel(n_jobs=2, batch_size=1)(
    delayed(fit_timed)(model, X) for model, X in zip(jobs, [*train.values(), train["two moons"]])
)
models = {}
for name, (model, seconds) in zip(names, fitted):
    models[name] = model
    print(
        f"{name}: {model.n_iter_} epochs in {seconds:.1f} s, "
        f"{model.n_parameters_} parameters, mean log-likelihood "
        f"{model.score(train[name]):.3f} (train), {model.score(test[name]):.3f} (held out)"
    )

# %%
# For scale, :class:`~skflow.RealNVPDensity` with its default neural-network
# conditioners, on the moons.
realnvp = fitted[-1][0]
print(
    f"RealNVP on two moons: {realnvp.n_parameters_} parameters, mean log-likelihood "
    f"{realnvp.score(test['two moons']):.3f} (held out)"
)

# %%
# What each coupling sees
# -----------------------
# The fitted flow ``model.flow_`` (float64) is a list of layers: a fixed
# standardisation, then ``ActNorm -> LULinear -> Coupling`` four times.
# Running points through the layers before coupling ``k`` gives that
# coupling's input; its ``conditioning`` entry is the coordinate ``u_k`` the
# kernel machine reads, and its auxiliary points live in the same units.


def couplings(model):
    return [layer for layer in model.flow_.transform.transforms if isinstance(layer, Coupling)]


def conditioning_coordinate(model, X, k):
    """``u_k`` at the rows of ``X``: the input of coupling ``k`` (0-based), exactly."""
    x = torch.as_tensor(X, dtype=torch.float64)
    target = couplings(model)[k]
    with torch.no_grad():
        for layer in model.flow_.transform.transforms:
            if layer is target:
                return x[:, layer.conditioning].numpy().ravel()
            x, _ = layer(x)


def aux_points(coupling):
    return coupling.conditioner.aux_points.detach().numpy().ravel()


# %%
# The auxiliary points in data space
# ----------------------------------
# For coupling ``k`` and each auxiliary point ``a_i`` we draw the curve
# ``u_k(x) = a_i``: the centre line of that coupling's ``i``-th kernel.  At a
# point ``x`` the coupling's scale and shift are weighted sums over the
# curves within a few length-scales (in ``u_k``) of ``x``; beyond the
# outermost curves every kernel fades and the coupling is the identity, so
# the curves mark where that coupling can bend the space.  k-means++ starts
# the points on training rows spread over the data; training then moves them.
#
# Everything before the first coupling is affine, so its curves (orange) are
# parallel straight lines.  The second coupling's curves (blue) are bent by
# the first: on the moons they already follow the arcs.  Where curves bunch
# together, the layers before have stretched the space across them.
COLOURS = ("tab:orange", "tab:blue")

fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1.25, 1]})
for ax, name in zip(axes, names):
    model, X = models[name], train[name]
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    density = np.exp(model.score_samples(grid)).reshape(xx.shape)
    ax.pcolormesh(xx, yy, density, cmap="Greys", vmax=0.8 * density.max(), shading="auto")
    ax.scatter(X[:, 0], X[:, 1], s=0.5, color="tab:green", label="training rows")
    for k, colour in enumerate(COLOURS):
        u = conditioning_coordinate(model, grid, k).reshape(xx.shape)
        levels = np.sort(aux_points(couplings(model)[k]))
        ax.contour(xx, yy, u, levels=levels, colors=colour, linewidths=0.5, linestyles="solid")
        ax.plot([], [], color=colour, label=f"coupling {k + 1}: $u_{k + 1}(x) = a_i$")
    ax.set(title=f"{name}: density and auxiliary points", xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.9, markerscale=6)
fig.tight_layout()

# %%
# One coupling's scale and shift
# ------------------------------
# Given the points ``(u, 0)`` in its own coordinates, an affine coupling
# returns ``0 * exp(s(u)) + t(u) = t(u)`` in its transformed coordinate and
# ``log|det J| = s(u)``: the two kernel machines, computed by the engine
# itself (including its soft clamp of ``s`` to ``[-3, 3]``).  Both start at
# zero and vanish a few length-scales beyond the outermost auxiliary points
# (the ticks); in between they vary on the scale of the learned
# length-scale, however densely the points lie.
model, X, k = models["two moons"], train["two moons"], 1
coupling = couplings(model)[k]
aux = aux_points(coupling)
length_scale = coupling.conditioner.length_scale.item()
u_data = conditioning_coordinate(model, X, k)
u = np.linspace(
    min(aux.min(), u_data.min()) - 3 * length_scale, max(aux.max(), u_data.max()) + 3 * length_scale, 600
)
points = torch.zeros(len(u), 2, dtype=torch.float64)
points[:, coupling.conditioning] = torch.as_tensor(u)[:, None]
with torch.no_grad():
    out, log_det = coupling(points)
shift, log_scale = out[:, coupling.transformed].numpy().ravel(), log_det.numpy()

fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(u, log_scale, color="tab:red", lw=2, label="log-scale $s(u)$")
ax.plot(u, shift, color="tab:purple", lw=2, label="shift $t(u)$")
ax.plot(aux, np.zeros_like(aux), "|", color=COLOURS[k], ms=12, label=f"{len(aux)} auxiliary points $a_i$")
ax.axhline(0, color="grey", lw=0.5)
ax.set(
    xlabel=f"$u$ (conditioning coordinate of coupling {k + 1})",
    ylabel="$s(u)$, $t(u)$",
    title=f"two moons, coupling {k + 1}: $s$ and $t$ (rbf kernel, length-scale {length_scale:.2f})",
)
ax.legend(loc="lower left", fontsize=8)
# Where the training rows meet this coupling, on an axis of its own, behind the curves.
rows = ax.twinx()
counts = rows.hist(u_data, bins=60, color="0.85")[0]
rows.set(yticks=[], ylim=(0, 2.2 * counts.max()))
rows.set_ylabel("training rows' $u$ (histogram)", color="0.45")
ax.set_zorder(rows.get_zorder() + 1)
ax.patch.set_visible(False)
fig.tight_layout()
plt.show()
