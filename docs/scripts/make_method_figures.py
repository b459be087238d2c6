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
import runpy
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from skflow import SplineFlowDensity  # noqa: E402

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
    model = SplineFlowDensity(n_layers=1, base="normal", n_bins=8, learning_rate=1e-2, random_state=0).fit(X)
    actnorm, spline = model.flow_.transform.transforms
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


def ferumal_figure(out_dir):
    """``ferumal_aux_points.png`` and ``ferumal_kernel_machines.png``: the two figures of ``examples/plot_ferumal.py``.

    The example is run as it is, so the docs show exactly what the gallery does.
    """
    plt.close("all")
    runpy.run_path(str(REPO / "examples" / "plot_ferumal.py"), run_name="__main__")
    for number, name in zip(plt.get_fignums(), ("ferumal_aux_points.png", "ferumal_kernel_machines.png")):
        out = Path(out_dir) / name
        _save_palette_png(plt.figure(number), out)
        print(f"wrote {out}")
    plt.close("all")


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
