"""Issue 11's quality benchmark: skflow's estimators at their defaults against tuned baselines.

Usage::

    python -m benchmarks.quality --quick               # a few minutes on 2 cores
    python -m benchmarks.quality --jobs 2              # the full grid
    python -m benchmarks.quality --tasks funnel_10d iris --sizes 500 --methods FerumalFlowDensity GaussianMixture
    python -m benchmarks.quality --ablation --set base=normal --set base=mixture,n_components=4
    python -m benchmarks.quality --from-json benchmarks/results/quality.json --docs
    python -m benchmarks.quality --from-json after.json --before before.json [--ablation-json abl.json] --docs

Tasks: separated Gaussian modes in 2-D (``modes_2d``) and 16-D
(``modes_16d``), a ring of 16 Gaussians (``ring_2d``), Neal's funnel in 10-D
(``funnel_10d``) and an 8-D Student-t with 3 degrees of freedom
(``student_t_8d``), each at 100, 500 and 2000 training rows with one fixed
2000-row test set and its true log-density; and scikit-learn's iris, wine,
breast_cancer and digits (fixed 75/25 split).  ``--tasks`` also takes the
shared density sets (``power_plant``, ``kin8nm``, ``magic_gamma``,
``protein``, ...; ``SKFLOW_SHARED_DATA``), subsampled to ``--sizes`` rows:
tasks the defaults were not tuned on.  Methods (:mod:`benchmarks.baselines`):
every skflow estimator at its defaults, CV-tuned GaussianMixture and
KernelDensity, zuko NSF and MAF.

Per row (task x training size): held-out mean log-likelihood (nats/row) ±
standard error; each skflow estimator's paired difference to the CV-GMM;
fit seconds and their ratio to the CV-GMM's (grid search included).  The
summary gives issue 11's targets: (a) the fraction of rows where the best
skflow estimator beats every one of CV-GMM, CV-KDE, zuko NSF and zuko MAF;
(b) the fraction where FerumalFlowDensity alone beats the CV-GMM; (c) the
rows where a skflow estimator is worse than the CV-GMM by more than 2 paired
standard errors; (d) catastrophic rows, whose mean held-out log-likelihood
is more than 1 nat below the 1%-trimmed mean of the same scores.

``--ablation`` runs the skflow estimators (``--estimators``) once per
``--set`` configuration (comma-separated ``key=value`` pairs, applied with
``set_params``) next to the CV-GMM, and reports the same tables per
configuration.  ``--before`` (with ``--docs``) writes instead a page that
compares this run with an earlier one, with ``--ablation-json``'s tables at
the end.  With several seeds, the standard error combines the spread over
seeds and over test rows.  The figures live in the generated page
``docs/quality_results.rst`` (``--docs``), not here.
"""

from __future__ import annotations

import os

# One thread per process, before numpy/torch start their pools (joblib workers inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import ast  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import trim_mean  # noqa: E402

from . import RESULTS, datasets  # noqa: E402
from .baselines import GMM, available_methods, skflow_estimators  # noqa: E402
from .quality_report import load_payload, write_comparison_page, write_reports  # noqa: E402
from .report import machine_info, mean_se, paired_difference  # noqa: E402

__all__ = ["QUICK", "TASKS", "SIZES", "main", "parse_config", "run"]

TASKS = ("modes_2d", "modes_16d", "ring_2d", "funnel_10d", "student_t_8d", "iris", "wine", "breast_cancer",
         "digits")
SIZES = (100, 500, 2000)
N_TEST = 2000
QUICK = {"tasks": ("modes_2d", "funnel_10d", "iris"), "sizes": (500,)}
# Trimmed fraction and margin of the catastrophe test (d).
TRIM, CATASTROPHE_NATS = 0.01, 1.0


def parse_config(text: str) -> dict:
    """``"base=mixture,n_components=4"`` -> ``{"base": "mixture", "n_components": 4}``."""
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def _label(name, config):
    return f"{name} [{', '.join(f'{k}={v}' for k, v in config.items())}]" if config else name


def build_methods(args) -> dict[str, tuple[str, dict]]:
    """Label -> (method name, parameter overrides), in report order."""
    available = available_methods()
    if args.ablation:
        configs = [parse_config(c) for c in (args.set or [""])]
        names = args.estimators or list(skflow_estimators())
        out = {_label(n, c): (n, c) for c in configs for n in names}
        for baseline in args.methods or [GMM]:
            out[baseline] = (baseline, {})
    else:
        out = {m: (m, {}) for m in (args.methods or available)}
    unknown = {name for name, _ in out.values()} - set(available)
    if unknown:
        raise SystemExit(f"unknown or unavailable methods {sorted(unknown)}; available: {list(available)}")
    return out


def _cells(args):
    tasks = args.tasks or (QUICK["tasks"] if args.quick else TASKS)
    sizes = args.sizes or (QUICK["sizes"] if args.quick else SIZES)
    present = set(sum(datasets.available().values(), []))
    for task in tasks:
        if task not in present:
            print(f"skipping {task}: not available here", file=sys.stderr)
            continue
        # The large shared sets (not in the default grid) are subsampled like the synthetic ones: a
        # check on tasks the defaults were not tuned on.
        for n in sizes if datasets.kind(task) in ("synthetic", "shared") else (None,):
            yield task, n


def _job(task, n_train, n_test, seed, label, name, config):
    """Fit one method on one (task, size, seed) and score the test rows."""
    import torch

    torch.set_num_threads(1)
    ds = datasets.load(task, n_train=n_train, n_test=n_test, seed=seed)
    n = ds.X_train.shape[0]
    model = available_methods()[name](n, seed)
    if config:
        model.set_params(**config)
    out = {"task": task, "n_train": n, "seed": seed, "label": label}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tic = time.perf_counter()
            model.fit(ds.X_train)
            out["fit_seconds"] = time.perf_counter() - tic
            out["scores"] = model.score_samples(ds.X_test)
        except Exception as exc:  # a failure is a result, not the end of the run
            out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    out["n_iter"] = getattr(model, "n_iter_", None)
    out["selected"] = getattr(model, "selected_", "")
    out["n_parameters"] = getattr(model, "n_parameters_", None)
    out["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:100]}" for w in caught})
    return out


def _combine(per_seed):
    """Mean over seeds of (mean, se) pairs; the SE adds the spread over seeds to the test-row SE."""
    means = np.array([m for m, _ in per_seed])
    ses = np.array([s for _, s in per_seed])
    if means.size == 1:
        return float(means[0]), float(ses[0])
    between = means.std(ddof=1) / np.sqrt(means.size)
    return float(means.mean()), float(np.sqrt(between**2 + np.mean(ses**2) / means.size))


def aggregate(jobs, methods, n_test) -> list[dict]:
    """One record per (task, size): per-method statistics and all paired differences."""
    rows = {}
    for job in jobs:
        rows.setdefault((job["task"], job["n_train"]), []).append(job)
    out = []
    for (task, n_train), cell in rows.items():
        ds = datasets.load(task, n_train=n_train, n_test=n_test)
        row = {"task": task, "kind": ds.kind, "n_train": n_train, "n_test": int(ds.X_test.shape[0]),
               "n_features": ds.n_features, "description": ds.description, "truth": None, "methods": {},
               "paired": {}}
        if ds.true_log_density is not None:
            row["truth"] = list(mean_se(ds.true_log_density(ds.X_test))[:2])
        by = {label: sorted((j for j in cell if j["label"] == label), key=lambda j: j["seed"]) for label in methods}
        ok = {label: runs for label, runs in by.items() if runs and all("scores" in j for j in runs)}
        for label, runs in by.items():
            if not runs:
                continue
            if label not in ok:
                row["methods"][label] = {"error": next(j["error"] for j in runs if "error" in j)}
                continue
            stats = [mean_se(j["scores"]) for j in runs]
            mean, se = _combine([s[:2] for s in stats])
            row["methods"][label] = {
                "loglik": mean,
                "se": se,
                "n_nonfinite": sum(s[2] for s in stats),
                "trimmed": float(np.mean([trim_mean(np.nan_to_num(j["scores"], neginf=-1e300), TRIM)
                                          for j in runs])),
                "fit_seconds": float(np.mean([j["fit_seconds"] for j in runs])),
                "n_iter": runs[0]["n_iter"],
                "selected": runs[0]["selected"],
                "n_parameters": runs[0]["n_parameters"],
                "warnings": sorted({w for j in runs for w in j["warnings"]}),
            }
        for a in ok:
            for b in ok:
                if a != b:
                    pairs = [paired_difference(ja["scores"], jb["scores"]) for ja, jb in zip(ok[a], ok[b])]
                    row["paired"].setdefault(a, {})[b] = list(_combine(pairs))
        gmm = row["methods"].get(GMM, {}).get("fit_seconds")
        for stats in row["methods"].values():
            if gmm and "fit_seconds" in stats:
                stats["fit_ratio_gmm"] = stats["fit_seconds"] / gmm
        out.append(row)
    return out


def _checkpoint(folder: Path, job) -> Path:
    task, n, _, seed, label = job[:5]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{task}_{n}_{seed}_{label}")
    return folder / f"{safe}.npz"


def run(args, methods, stem) -> list[dict]:
    """Every (task, size, seed, method) job, in ``args.jobs`` worker processes.

    Each finished job is saved under ``<out>/<stem>_jobs/``; ``--resume`` reuses them.
    """
    from joblib import Parallel, delayed

    folder = args.out / f"{stem}_jobs"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(task, n, args.n_test, seed, label, name, config)
            for task, n in _cells(args) for seed in range(args.seeds)
            for label, (name, config) in methods.items()]
    results, todo = [], []
    for job in jobs:
        path = _checkpoint(folder, job)
        if args.resume and path.is_file():
            with np.load(path) as saved:
                done = json.loads(str(saved["meta"]))
                if "scores" in saved:
                    done["scores"] = saved["scores"]
            results.append(done)
        else:
            todo.append(job)
    print(f"{len(todo)} fits to run, {len(results)} resumed ({len(methods)} methods, {args.jobs} process(es))",
          file=sys.stderr)
    parallel = Parallel(n_jobs=args.jobs, return_as="generator")
    for job, done in zip(todo, parallel(delayed(_job)(*job) for job in todo)):
        results.append(done)
        meta = {k: v for k, v in done.items() if k != "scores"}
        extra = {"scores": done["scores"]} if "scores" in done else {}
        np.savez(_checkpoint(folder, job), meta=json.dumps(meta), **extra)
        status = done.get("error") or (f"{np.mean(done['scores']):10.3f} nats {done['fit_seconds']:6.1f} s")
        print(f"  {done['task']:14s} n={done['n_train']:5d} seed={done['seed']} {done['label']:28s} {status}",
              file=sys.stderr, flush=True)
    return aggregate(results, methods, args.n_test)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 tasks at 500 rows (a few minutes)")
    parser.add_argument("--tasks", nargs="+", help=f"data sets (default: {' '.join(TASKS)})")
    parser.add_argument("--sizes", nargs="+", type=int, help="training rows of the synthetic tasks")
    parser.add_argument("--n-test", type=int, default=N_TEST, help="test rows (synthetic: drawn; real: at most)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per cell (training draw and model)")
    parser.add_argument("--methods", nargs="+", help="methods (with --ablation: the baselines, default the CV-GMM)")
    parser.add_argument("--ablation", action="store_true", help="skflow estimators x --set configurations")
    parser.add_argument("--set", action="append", metavar="K=V[,K=V]",
                        help="with --ablation: one configuration of set_params overrides (repeatable)")
    parser.add_argument("--estimators", nargs="+", help="with --ablation: skflow estimators (default all)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes, one torch thread each")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default=None, help="output stem (default quality, or quality_ablation)")
    parser.add_argument("--docs", action="store_true", help="also write docs/quality_results.rst")
    parser.add_argument("--resume", action="store_true", help="reuse the finished jobs of an interrupted run")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. the skflow commit)")
    parser.add_argument("--from-json", type=Path, metavar="PATH", help="rebuild the tables from a saved JSON")
    parser.add_argument("--before", type=Path, metavar="PATH",
                        help="with --docs: a saved JSON of an earlier run; the page compares it with this one")
    parser.add_argument("--ablation-json", type=Path, metavar="PATH",
                        help="with --docs and --before: a saved --ablation JSON shown on the same page")
    args = parser.parse_args(argv)
    stem = args.name or ("quality_ablation" if args.ablation else "quality")
    if args.from_json:
        payload = json.loads(args.from_json.read_text())
    else:
        methods = build_methods(args)
        tic = time.perf_counter()
        rows = run(args, methods, stem)
        info = machine_info("python -m benchmarks.quality", seeds=args.seeds, jobs=args.jobs, note=args.note,
                            total_seconds=time.perf_counter() - tic)
        payload = {"info": info, "ablation": bool(args.ablation),
                   "methods": {label: {"method": n, "params": c} for label, (n, c) in methods.items()},
                   "rows": rows}
    print(write_reports(payload, args.out, stem, docs=args.docs and not args.before))
    if args.docs and args.before:
        ablation = load_payload(args.ablation_json) if args.ablation_json else None
        write_comparison_page(payload, load_payload(args.before), ablation)
    return 0


if __name__ == "__main__":
    # Run the imported module, not __main__, so that joblib workers unpickle _job by reference.
    from benchmarks.quality import main as _main

    sys.exit(_main())
