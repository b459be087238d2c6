"""Regenerate the static figures of the method pages (``docs/methods/*.rst``).

The docs are built in CI without running the gallery, so a figure a method
page cannot do without is made here and committed to ``docs/_static/``::

    OMP_NUM_THREADS=1 .venv/bin/python docs/scripts/make_method_figures.py
    OMP_NUM_THREADS=1 .venv/bin/python docs/scripts/make_method_figures.py --only spline

Each figure is one ``<name>_figure(out_dir)`` function listed in ``FIGURES``;
every one is seeded, so a rerun gives the same picture.
"""

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import make_circles, make_moons  # noqa: E402

from skflow import FerumalFlowDensity, SplineFlowDensity  # noqa: E402
from skflow.engine import Coupling  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DPI = 110


def bimodal_sample(random_state=0):
    """The 1-D two-mode data of ``examples/plot_spline.py``, shape ``(2000, 1)``."""
    rng = np.random.RandomState(random_state)
    return np.concatenate([rng.normal(-2.0, 0.6, 1400), rng.normal(1.5, 0.35, 600)])[:, None]


def _shade_outside(ax, low, high, label=None):
    """Grey out where the spline is the identity: everything outside ``[low, high]``."""
    left, right = ax.get_xlim()
    ax.axvspan(left, low, color="0.92", lw=0, zorder=0, label=label)
    ax.axvspan(high, right, color="0.92", lw=0, zorder=0)
    ax.set_xlim(left, right)


def _plot_monotone_map(ax, t, s, knots, bound, color, curve_label):
    """A spline ``s(t)`` (solid on ``[-bound, bound]``, dashed on the identity tails) and its knots."""
    ax.plot(t, t, ":", color="grey", lw=1, label="identity")
    inside = np.abs(t) <= bound
    ax.plot(t[inside], s[inside], color=color, lw=2, label=curve_label)
    ax.plot(t[t < -bound], s[t < -bound], color=color, lw=2, ls="--", label="identity tails")
    ax.plot(t[t > bound], s[t > bound], color=color, lw=2, ls="--")
    ax.plot(*knots, "o", color="C3", ms=5, zorder=3, label=f"{len(knots[0])} knots")
    ax.set_xlim(t[0], t[-1])
    ax.set_ylim(t[0], t[-1])
    ax.set_aspect("equal")
    _shade_outside(ax, -bound, bound, label=f"outside $[-B, B]$, $B = {bound:g}$")
    ax.legend(loc="upper left", fontsize=8)


def spline_figure(out_dir):
    """``spline_learned.png``: a fitted one-layer spline flow, its spline, inverse and density."""
    X = bimodal_sample()
    # One layer (standardisation, ActNorm, one spline): the spline alone shapes the density.
    model = SplineFlowDensity(n_layers=1, n_bins=8, learning_rate=1e-2, random_state=0).fit(X)
    standardise, actnorm, spline = model.flow_.transform.transforms
    bound = spline.map.tail_bound

    with torch.no_grad():
        x_knots, y_knots, _ = (k[0].numpy() for k in spline.map.knots(spline.params))
        grid = torch.linspace(-bound - 1.5, bound + 1.5, 1201, dtype=torch.float64)
        y_grid = spline(grid[:, None])[0].ravel()
        # The inverse on its own grid of y, by the engine's analytic inverse (not by swapping axes).
        x_of_y = spline.inverse(grid[:, None])[0].ravel()
        # Round trip on the grid, exactly on the knots (including +-B) and far in the tails.
        far = torch.tensor([-1e300, -1e3, -10.0, 10.0, 1e3, 1e300], dtype=torch.float64)
        x_check = torch.cat([grid, torch.from_numpy(x_knots.copy()), far])[:, None]
        y_check, ladj = spline(x_check)
        x_back, ladj_back = spline.inverse(y_check)
        round_trip = (x_back - x_check).abs().max().item()
        log_det_gap = (ladj + ladj_back).abs().max().item()
        # Where +-B of the spline's input lies in the units of the data.
        ends = torch.tensor([[-bound], [bound]], dtype=torch.float64)
        data_bounds = standardise.inverse(actnorm.inverse(ends)[0])[0]
    print(
        f"spline round trip (float64, {len(x_check)} points: grid on [-B-1.5, B+1.5], knots, "
        f"+-10, +-1e3, +-1e300): max |f^-1(f(x)) - x| = {round_trip:.1e}, "
        f"max |log f'(x) + log (f^-1)'(f(x))| = {log_det_gap:.1e}"
    )
    grid = grid.numpy()

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    ax = axes[0]
    _plot_monotone_map(ax, grid, y_grid.numpy(), (x_knots, y_knots), bound, "C0", "$y = f(x)$ on $[-B, B]$")
    ax.set(xlabel="x (spline input)", ylabel="y (latent)", title="(a) learned spline $y = f(x)$")
    ax = axes[1]
    _plot_monotone_map(
        ax, grid, x_of_y.numpy(), (y_knots, x_knots), bound, "C1", "$x = f^{-1}(y)$ on $[-B, B]$"
    )
    ax.set(xlabel="y (latent)", ylabel="x (spline input)", title="(b) its analytic inverse $x = f^{-1}(y)$")
    ax.text(
        0.97,
        0.04,
        f"max $|f^{{-1}}(f(x)) - x|$\n= {round_trip:.1e} (float64)",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=8,
        bbox=dict(boxstyle="round", fc="white", ec="0.7"),
    )

    ax = axes[2]
    data = X.ravel()
    xs = np.linspace(data.min() - 1.5, data.max() + 1.5, 600)
    ax.hist(data, bins=60, density=True, color="0.7", label=f"data (n={len(data)})")
    ax.plot(xs, np.exp(model.score_samples(xs[:, None])), color="C0", lw=2, label="fitted density")
    ax.set_xlim(xs[0], xs[-1])
    _shade_outside(ax, *data_bounds.ravel().tolist(), label="spline input outside $[-B, B]$")
    ax.set(xlabel="data value", ylabel="density", title="(c) fitted density")
    ax.legend(loc="upper right", fontsize=8)

    fig.tight_layout()
    out = Path(out_dir) / "spline_learned.png"
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {out}")


def _save_palette_png(fig, out):
    """Save ``fig`` as a 256-colour (palette) PNG.

    A hundred anti-aliased curves over a shaded density take ~650 kB as RGBA
    and ~175 kB with a palette, with no visible difference.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, bbox_inches="tight")
    image = Image.open(buffer).convert("RGB")
    image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, optimize=True)


def two_moons_and_rings(random_state=0):
    """The 2-D data of ``examples/plot_ferumal.py``: 1000 rows each."""
    return {
        "two moons": make_moons(n_samples=1000, noise=0.08, random_state=random_state)[0],
        "two rings": make_circles(n_samples=1000, noise=0.05, factor=0.5, random_state=random_state)[0],
    }


def _couplings(model):
    return [layer for layer in model.flow_.transform.transforms if isinstance(layer, Coupling)]


def _conditioning_coordinate(model, X, k):
    """Coordinate ``u`` that coupling ``k`` (0-based) conditions on, at the rows of ``X`` (float64)."""
    x = torch.as_tensor(X, dtype=torch.float64)
    target = _couplings(model)[k]
    with torch.no_grad():
        for layer in model.flow_.transform.transforms:
            if layer is target:
                return x[:, layer.conditioning].numpy().ravel()
            x, _ = layer(x)


def _kernel_machines(coupling, u):
    """``(s(u), t(u))`` of a 2-D affine coupling: its output at the points ``(u, 0)``.

    In its transformed coordinate ``0 * exp(s) + t = t``; its log-determinant is
    ``s``, soft clamp included.
    """
    points = torch.zeros(len(u), 2, dtype=torch.float64)
    points[:, coupling.conditioning] = torch.as_tensor(u, dtype=torch.float64)[:, None]
    with torch.no_grad():
        out, log_det = coupling(points)
    return log_det.numpy(), out[:, coupling.transformed].numpy().ravel()


AUX_COLOURS = ("tab:orange", "tab:blue")


def _plot_aux_curves(ax, model, X, n_couplings=2):
    """Fitted density, data, and the curves ``u_k(x) = a_i`` of the first couplings."""
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    density = np.exp(model.score_samples(grid)).reshape(xx.shape)
    ax.pcolormesh(xx, yy, density, cmap="Greys", vmax=0.8 * density.max(), shading="auto")
    ax.scatter(X[:, 0], X[:, 1], s=0.5, color="tab:green", label="training rows")
    for k, colour in zip(range(n_couplings), AUX_COLOURS):
        levels = np.sort(_couplings(model)[k].conditioner.aux_points.detach().numpy().ravel())
        u = _conditioning_coordinate(model, grid, k).reshape(xx.shape)
        ax.contour(xx, yy, u, levels=levels, colors=colour, linewidths=0.5, linestyles="solid")
        ax.plot([], [], color=colour, label=f"coupling {k + 1}: $u_{k + 1}(x) = a_i$")
    ax.set_aspect("equal")
    ax.set(xlabel="$x_1$", ylabel="$x_2$")


def ferumal_figure(out_dir):
    """``ferumal_aux_points.png``: auxiliary points of a fitted Ferumal flow, in data space and in 1-D."""
    data = two_moons_and_rings()
    models = {name: FerumalFlowDensity(random_state=0).fit(X) for name, X in data.items()}

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1.25, 1, 1.25]})
    for ax, (tag, name) in zip(axes, [("a", "two moons"), ("b", "two rings")]):
        _plot_aux_curves(ax, models[name], data[name])
        ax.set_title(f"({tag}) {name}: density and auxiliary points")
        ax.legend(loc="upper right", fontsize=7, framealpha=0.9, markerscale=6)

    ax = axes[2]
    model, X, k = models["two moons"], data["two moons"], 1
    coupling = _couplings(model)[k]
    aux = coupling.conditioner.aux_points.detach().numpy().ravel()
    length_scale = coupling.conditioner.length_scale.item()
    u_data = _conditioning_coordinate(model, X, k)
    u = np.linspace(
        min(aux.min(), u_data.min()) - 3 * length_scale, max(aux.max(), u_data.max()) + 3 * length_scale, 600
    )
    log_scale, shift = _kernel_machines(coupling, u)
    ax.plot(u, log_scale, color="tab:red", lw=2, label="log-scale $s(u)$")
    ax.plot(u, shift, color="tab:purple", lw=2, label="shift $t(u)$")
    rug = f"{len(aux)} auxiliary points $a_i$"
    ax.plot(aux, np.zeros_like(aux), "|", color=AUX_COLOURS[k], ms=12, label=rug)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(
        xlabel=f"$u$ (conditioning coordinate of coupling {k + 1})",
        ylabel="$s(u)$, $t(u)$",
        title=f"(c) two moons, coupling {k + 1}: $s$ and $t$ (length-scale {length_scale:.2f})",
    )
    ax.legend(loc="lower left", fontsize=7)
    # The training rows' u on an axis of its own, behind the curves.
    rows = ax.twinx()
    counts = rows.hist(u_data, bins=60, color="0.85")[0]
    rows.set(yticks=[], ylim=(0, 2.2 * counts.max()))
    rows.set_ylabel("training rows' $u$ (histogram)", color="0.45")
    ax.set_zorder(rows.get_zorder() + 1)
    ax.patch.set_visible(False)

    fig.tight_layout()
    out = Path(out_dir) / "ferumal_aux_points.png"
    _save_palette_png(fig, out)
    plt.close(fig)
    print(f"wrote {out}")


# name -> function(out_dir)
FIGURES = {"spline": spline_figure, "ferumal": ferumal_figure}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FIGURES), help="make only this figure")
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs" / "_static", help="where to write")
    args = parser.parse_args(argv)
    for name, make in FIGURES.items():
        if args.only in (None, name):
            make(args.out_dir)


if __name__ == "__main__":
    main()
