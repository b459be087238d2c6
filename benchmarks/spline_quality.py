"""Held-out log-likelihood of SplineFlowDensity vs the other skflow estimators.

Usage::

    python -m benchmarks.spline_quality [--quick] [--sweep] [--seeds N] [--out DIR]

Prints a markdown table (data set x model: held-out mean log-likelihood, fit
seconds) and writes ``spline_quality.json`` (or ``spline_sweep.json``) under
``benchmarks/results/`` (git-ignored).

Protocol
--------
- Data sets and their seeded train/test splits come from :mod:`benchmarks.datasets`:
  closed-form synthetic densities (2000 training rows; the ``truth`` column
  is the mean true log-density of the test rows), scikit-learn's iris, wine,
  breast_cancer and dequantised digits, and ``shared/data/density`` sets
  (power_plant, kin8nm, magic_gamma, protein; at most ``--max-train`` rows).
- Every model runs at its defaults with ``random_state=seed``, except that
  RealNVP is also run at the spline's depth (``RealNVP (L=...)``) for an
  equal-depth comparison.  Scores are in the units of the data (higher is
  better); "+-" is the standard error over seeds (one seed: over test rows).
- ``--sweep`` varies one SplineFlowDensity parameter at a time around the
  defaults on the sets with 2000+ training rows; that is how the defaults
  were chosen.
- ``--quick`` runs three small sets with a capped ``max_iter`` (< 3 min).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import skflow  # noqa: E402
from skflow import RealNVPDensity, SplineFlowDensity  # noqa: E402

from . import RESULTS  # noqa: E402
from .datasets import available, load  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

DEFAULT_LAYERS = SplineFlowDensity().n_layers

FULL_SETS = [
    "mixture_2d",
    "ring_2d",
    "banana_2d",
    "student_t_4d",
    "mixture_8d",
    "iris",
    "wine",
    "breast_cancer",
    "digits",
    "power_plant",
    "kin8nm",
    "magic_gamma",
    "protein",
]
QUICK_SETS = ["banana_2d", "wine", "power_plant"]
# Sets with at least 2000 training rows: where the defaults are chosen.
SWEEP_SETS = ["mixture_8d", "power_plant", "kin8nm", "magic_gamma", "protein"]

SWEEP = {
    "defaults": {},
    "n_layers=3": dict(n_layers=3),
    "n_layers=8": dict(n_layers=8),
    "hidden_dims=(32, 32)": dict(hidden_dims=(32, 32)),
    "hidden_dims=(128, 128)": dict(hidden_dims=(128, 128)),
    "n_bins=4": dict(n_bins=4),
    "n_bins=16": dict(n_bins=16),
    "tail_bound=5": dict(tail_bound=5.0),
    "n_bins=4, tail_bound=5": dict(n_bins=4, tail_bound=5.0),
    "mixing=alternate": dict(mixing="alternate"),
    "mixing=random": dict(mixing="random"),
    "autoregressive": dict(architecture="autoregressive"),
}


def models(quick: bool) -> dict:
    out = {
        f"RealNVP (L={DEFAULT_LAYERS})": RealNVPDensity(n_layers=DEFAULT_LAYERS),
        "RealNVP (defaults)": RealNVPDensity(),
    }
    if hasattr(skflow, "FerumalFlowDensity"):
        out["Ferumal (defaults)"] = skflow.FerumalFlowDensity()
    out["Spline coupling"] = SplineFlowDensity()
    out["Spline autoregressive"] = SplineFlowDensity(architecture="autoregressive")
    if quick:
        out = {name: est.set_params(max_iter=60) for name, est in out.items()}
    return out


def evaluate(est, ds, seed: int) -> dict:
    est = clone(est).set_params(random_state=seed)
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        est.fit(ds.X_train)
    seconds = time.perf_counter() - tic
    scores = est.score_samples(ds.X_test)
    return dict(
        seed=seed,
        test=float(np.mean(scores)),
        test_sem=float(np.std(scores) / np.sqrt(scores.size)),
        seconds=seconds,
        n_iter=int(est.n_iter_),
        n_parameters=int(est.n_parameters_),
    )


def summarise(runs: list[dict]) -> tuple[float, float, float]:
    values = np.array([r["test"] for r in runs])
    sem = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else runs[0]["test_sem"]
    return float(values.mean()), float(sem), float(np.mean([r["seconds"] for r in runs]))


def table(results: dict, columns: list[str], truth: dict) -> str:
    lines = ["| data set | n_train x d | truth | " + " | ".join(columns) + " |"]
    lines.append("|---|---|---:|" + "---:|" * len(columns))
    for name, by_model in results.items():
        shape = by_model.pop("_shape")
        best = max(summarise(runs)[0] for runs in by_model.values())
        cells = []
        for column in columns:
            mean, sem, seconds = summarise(by_model[column])
            text = f"{mean:.3f} +- {sem:.3f} ({seconds:.0f} s)"
            cells.append(f"**{text}**" if mean == best else text)
        by_model["_shape"] = shape
        true = f"{truth[name]:.3f}" if name in truth else ""
        lines.append(f"| {name} | {shape} | {true} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 small sets, capped max_iter (< 3 min)")
    parser.add_argument("--sweep", action="store_true", help="one-at-a-time sweep around the defaults")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--max-train", type=int, default=4000, help="training rows of the shared sets")
    parser.add_argument("--sets", nargs="*", help="restrict to these data sets")
    parser.add_argument("--configs", nargs="*", help="with --sweep: restrict to these labels")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    shared = set(available()["shared"])
    names = QUICK_SETS if args.quick else (SWEEP_SETS if args.sweep else FULL_SETS)
    real = ("power_plant", "kin8nm", "magic_gamma", "protein")
    names = [n for n in (args.sets or names) if n not in real or n in shared]
    if args.sweep:
        labels = args.configs or list(SWEEP)
        estimators = {label: SplineFlowDensity(**SWEEP[label]) for label in labels}
    else:
        estimators = models(args.quick)

    results, truth = {}, {}
    for name in names:
        n_train = 1000 if args.quick else (args.max_train if name in shared else None)
        ds = load(name, n_train=n_train)
        if ds.true_log_density is not None:
            truth[name] = float(np.mean(ds.true_log_density(ds.X_test)))
        results[name] = {"_shape": f"{ds.X_train.shape[0]} x {ds.n_features}"}
        for label, est in estimators.items():
            runs = [evaluate(est, ds, seed) for seed in range(args.seeds)]
            results[name][label] = runs
            mean, sem, seconds = summarise(runs)
            print(f"{name:14s} {label:24s} {mean:9.3f} +- {sem:.3f}  ({seconds:.0f} s)", flush=True)

    print()
    print(table(results, list(estimators), truth))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "spline_sweep" if args.sweep else ("spline_quality_quick" if args.quick else "spline_quality")
    path = args.out / f"{stem}.json"
    meta = dict(
        quick=args.quick,
        seeds=args.seeds,
        max_train=args.max_train,
        torch=torch.__version__,
        python=sys.version.split()[0],
        machine=platform.machine(),
        estimators={label: repr(est) for label, est in estimators.items()},
    )
    path.write_text(json.dumps(dict(meta=meta, truth=truth, results=results), indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
