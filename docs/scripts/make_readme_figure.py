"""Regenerate ``docs/_static/densities.png`` (the figure in the README and on the docs front page).

It runs ``examples/plot_density_2d.py`` and saves its first figure (the densities).
That example fits every flow at its defaults, so the figure shows what ``fit``
returns; rerun this script whenever a default changes (about a minute of CPU)::

    OMP_NUM_THREADS=1 .venv/bin/python docs/scripts/make_readme_figure.py
"""

import runpy
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

runpy.run_path(str(REPO / "examples" / "plot_density_2d.py"), run_name="__main__")
figure = plt.figure(plt.get_fignums()[0])
out = REPO / "docs" / "_static" / "densities.png"
figure.savefig(out, dpi=100, bbox_inches="tight")
print(f"wrote {out}")
