"""Regenerate ``docs/_static/densities.png`` (the figure in the README and on the docs front page).

Every flow at its defaults (``base="auto"``: the stacked density, early
stopping included, no tuning) next to a KernelDensity and a 10-component
GaussianMixture, on 1000 rows of two moons and of two rings: the data of the
gallery example ``plot_density_2d.py``, which shows two of the flows on 500
rows.  Rerun this script whenever a default changes (a few minutes on two
cores; the fits run in two joblib processes)::

    .venv/bin/python docs/scripts/make_readme_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.datasets import make_circles, make_moons  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.neighbors import KernelDensity  # noqa: E402

import skflow  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = {
    "moons": make_moons(n_samples=1000, noise=0.06, random_state=0)[0],
    "rings": make_circles(n_samples=1000, noise=0.05, factor=0.5, random_state=0)[0],
}
MODELS = {
    "RealNVP": lambda: skflow.RealNVPDensity(random_state=0),
    "Ferumal flow": lambda: skflow.FerumalFlowDensity(random_state=0),
    "Spline flow": lambda: skflow.SplineFlowDensity(random_state=0),
    "KernelDensity": lambda: KernelDensity(bandwidth=0.08),
    "GaussianMixture": lambda: GaussianMixture(n_components=10, random_state=0),
}

jobs = [(data, name) for name in MODELS for data in DATA]
fitted = Parallel(n_jobs=2, batch_size=1)(delayed(MODELS[name]().fit)(DATA[data]) for data, name in jobs)
models = dict(zip(jobs, fitted))

fig, axes = plt.subplots(len(DATA), len(MODELS) + 1, figsize=(2.3 * (len(MODELS) + 1), 2.3 * len(DATA)))
for row, (data, X) in enumerate(DATA.items()):
    lo, hi = X.min(axis=0) - 0.4, X.max(axis=0) + 0.4
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 150), np.linspace(lo[1], hi[1], 150))
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    axes[row, 0].scatter(X[:, 0], X[:, 1], s=2, color="k")
    axes[row, 0].set_ylabel(data)
    for col, name in enumerate(MODELS, start=1):
        density = np.exp(models[data, name].score_samples(grid)).reshape(xx.shape)
        axes[row, col].pcolormesh(xx, yy, density, cmap="viridis", shading="auto")
        if row == 0:
            axes[row, col].set_title(name, fontsize=9)
    axes[0, 0].set_title("training data")
    for ax in axes[row]:
        ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xticks=[], yticks=[])
fig.tight_layout()
out = REPO / "docs" / "_static" / "densities.png"
fig.savefig(out, dpi=100, bbox_inches="tight")
print(f"wrote {out}")
