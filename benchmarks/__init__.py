"""skflow's benchmarks: one small package, scripts run as ``python -m benchmarks.<name>``.

Shared parts:

- :mod:`benchmarks.datasets` (with :mod:`benchmarks.synthetic`): the one
  data-set registry;
- :mod:`benchmarks.baselines`: the one factory of methods (skflow estimators,
  CV-tuned GaussianMixture and KernelDensity, zuko flows);
- :mod:`benchmarks.report`: tables (markdown, RST), JSON, paired standard
  errors and win counts.

Scripts: ``run`` (the suite), ``quality`` (issue 11's quality targets),
``ferumal_vs_realnvp``, ``spline_quality``, ``spline_speed``, ``memory`` and
``anomaly``.  Results go to ``benchmarks/results/`` (git-ignored); the
figures live in the generated docs pages (``docs/*_results.rst``), not here.
"""

from pathlib import Path

__all__ = ["REPO", "RESULTS"]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
