"""FerumalFlowDensity vs RealNVPDensity (and GMM / KDE baselines) in the low-data regime.

Usage::

    python -m benchmarks.ferumal_vs_realnvp [--quick] [--seeds N] [--jobs N] [--out DIR] [--docs]
    python -m benchmarks.ferumal_vs_realnvp --from-json benchmarks/results/ferumal_vs_realnvp.json

Prints a markdown table (data set x train size: held-out mean log-likelihood
+- standard error, fit seconds and trainable parameters of each model), the
k-means++ vs random auxiliary-point initialisation comparison, and writes
``ferumal_vs_realnvp.json``, ``ferumal_vs_realnvp.md`` and
``ferumal_vs_realnvp_convergence.png`` under ``benchmarks/results/``
(git-ignored).  The figures live in the generated page
``docs/ferumal_results.rst`` (``--docs``).

Protocol
--------
- Data sets and splits come from :mod:`benchmarks.datasets`: every model sees
  the same ``n_train`` rows (drawn, or subsampled from the training split,
  with the seed) and is scored on the same fixed held-out rows (at most
  2000; in the units of the data; higher is better).
- Flows run at their defaults with ``random_state=seed``; GaussianMixture
  and KernelDensity are the CV-tuned baselines of :mod:`benchmarks.baselines`.
- Synthetic sets have a known density, shown in the ``truth`` column;
  digits are dequantised by the registry.
- "+-" is the standard error over seeds of the per-seed mean (with one
  seed: over the test rows).
- Real sets from ``shared/data/density`` are used when present and skipped otherwise.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from . import REPO, RESULTS, datasets  # noqa: E402
from .baselines import GMM, KDE, available_methods  # noqa: E402
from .report import fmt_ll, markdown_table, rst_table, write_json  # noqa: E402

__all__ = ["CELLS", "MODELS", "main"]

STEM = "ferumal_vs_realnvp"  # output file names: <STEM>.md, <STEM>.json, <STEM>_convergence.png
# Held-out rows per data set: enough for a tight mean, bounded cost.
MAX_TEST_ROWS = 2000

# data set -> (training sizes, --quick sizes)
CELLS = {
    "moons_2d": ((100, 500, 2000), (100,)),
    "rings_2d": ((100, 500, 2000), (500,)),
    "gmm_4d": ((100, 500, 2000), ()),
    "gmm_8d": ((100, 500, 2000), (500,)),
    "iris": ((100,), (100,)),
    "wine": ((120,), (120,)),
    "breast_cancer": ((100, 400), (100,)),
    "digits": ((500, 1200), ()),
    "concrete": ((100, 500), (500,)),
    "wine_quality_red": ((100, 500, 1000), ()),
    "power_plant": ((100, 500, 2000), (500,)),
    "kin8nm": ((100, 500, 2000), ()),
    "magic_gamma": ((500, 2000), ()),
    "protein": ((500, 2000), ()),
    "miniboone_maf": ((500, 2000), ()),
}
# label -> (method of benchmarks.baselines, set_params overrides)
MODELS = {
    "Ferumal": ("FerumalFlowDensity", {}),
    "RealNVP": ("RealNVPDensity", {}),
    "GMM (CV)": (GMM, {}),
    "KDE (CV)": (KDE, {}),
}
INIT_MODELS = {
    "kmeans++": ("FerumalFlowDensity", {"aux_init": "kmeans++"}),
    "random": ("FerumalFlowDensity", {"aux_init": "random"}),
}


def fit_and_score(spec, n_train, seed, X_train, X_test):
    """Fit a fresh model and return a dict of what we report."""
    name, params = spec
    model = available_methods()[name](n_train, seed)
    if params:
        model.set_params(**params)
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train)
    seconds = time.perf_counter() - tic
    out = {"scores": model.score_samples(X_test), "seconds": seconds, "n_parameters": int(model.n_parameters_)}
    if getattr(model, "validation_scores_", None) is not None:
        out["n_iter"] = int(model.n_iter_)
        out["validation_scores"] = list(map(float, model.validation_scores_))
    return out


def _summary(per_seed_scores):
    """Mean over seeds of the held-out mean log-likelihood, and its standard error."""
    means = np.array([np.mean(s) for s in per_seed_scores])
    if len(means) > 1:
        se = means.std(ddof=1) / np.sqrt(len(means))
    else:
        s = per_seed_scores[0]
        se = np.std(s, ddof=1) / np.sqrt(len(s))
    return float(means.mean()), float(se)


def _fmt(mean, se):
    return fmt_ll(mean, se, digits=2)


def _run_one(name, n_train, seed, models):
    """Every model on one (data set, size, seed): the same rows for all."""
    torch.set_num_threads(1)
    ds = datasets.load(name, n_train=n_train, n_test=MAX_TEST_ROWS, seed=seed)
    truth = None if ds.true_log_density is None else ds.true_log_density(ds.X_test)
    runs = {label: fit_and_score(spec, n_train, seed, ds.X_train, ds.X_test) for label, spec in models.items()}
    return ds.n_features, len(ds.X_test), truth, runs


def _run_cells(cells, models, n_seeds, log, n_jobs=1):
    """Fit every model on every (data set, size, seed); return raw results per cell."""
    from joblib import Parallel, delayed

    tasks = [(name, n, seed) for name, n in cells for seed in range(n_seeds)]
    outputs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_run_one)(name, n, seed, models) for name, n, seed in tasks
    )
    results = {}
    for (name, n_train, seed), (n_features, n_test, truth, runs) in zip(tasks, outputs):
        cell = results.setdefault((name, n_train), {
            "dataset": name, "n_train": n_train, "n_features": n_features, "n_test": n_test,
            "truth": [], "runs": {label: [] for label in models},
        })
        if truth is not None:
            cell["truth"].append(truth)
        for label, run in runs.items():
            cell["runs"][label].append(run)
            log(f"  {name:18s} n={n_train:5d} seed={seed} {label:10s} "
                f"{np.mean(run['scores']):10.3f} {run['seconds']:6.1f}s")
    return list(results.values())


def _table(results, models):
    names = list(models)
    head = ["data set", "d", "n_train", "truth", *names, *[f"{m} s" for m in names], *[f"{m} params" for m in names]]
    body, wins = [], {m: 0 for m in names}
    for cell in results:
        summaries = {m: _summary([r["scores"] for r in cell["runs"][m]]) for m in names}
        best = max(names, key=lambda m: summaries[m][0])
        wins[best] += 1
        truth = _fmt(*_summary(cell["truth"])) if cell["truth"] else ""
        scores = [fmt_ll(*summaries[m], digits=2, bold=m == best) for m in names]
        seconds = [f"{np.mean([r['seconds'] for r in cell['runs'][m]]):.1f}" for m in names]
        params = [str(cell["runs"][m][0]["n_parameters"]) for m in names]
        body.append([cell["dataset"], str(cell["n_features"]), str(cell["n_train"]), truth, *scores, *seconds,
                     *params])
    return markdown_table(head, body), wins


def _head_to_head(results, a, b):
    """Cells where model ``a`` beats ``b`` by more than the combined standard error."""
    better = worse = tie = 0
    for cell in results:
        (ma, sa), (mb, sb) = (_summary([r["scores"] for r in cell["runs"][m]]) for m in (a, b))
        margin = math.hypot(sa, sb)
        if ma - mb > margin:
            better += 1
        elif mb - ma > margin:
            worse += 1
        else:
            tie += 1
    return better, tie, worse


def _convergence_table(results, a="Ferumal", b="RealNVP"):
    """Epochs and seconds each flow needs to reach the validation level both reach.

    Per seed the target is the lower of the two best validation scores; each
    flow's time to first reach it is read off its curve (seconds: the fit
    time spread evenly over its epochs).  Medians over seeds.
    """
    head = ["data set", "n_train", f"{a} epochs", f"{b} epochs", f"{a} s", f"{b} s",
            f"{a} s/epoch", f"{b} s/epoch", f"{a} best val", f"{b} best val"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    faster = {a: 0, b: 0}
    for cell in results:
        stats = {m: {"epochs": [], "seconds": [], "per_epoch": [], "best": []} for m in (a, b)}
        for run_a, run_b in zip(cell["runs"][a], cell["runs"][b]):
            curves = {m: np.asarray(r["validation_scores"]) for m, r in ((a, run_a), (b, run_b))}
            if any(c.size == 0 for c in curves.values()):
                continue
            target = min(c.max() for c in curves.values())
            for m, run in ((a, run_a), (b, run_b)):
                first = int(np.argmax(curves[m] >= target)) + 1
                per_epoch = run["seconds"] / curves[m].size
                stats[m]["epochs"].append(first)
                stats[m]["seconds"].append(first * per_epoch)
                stats[m]["per_epoch"].append(per_epoch)
                stats[m]["best"].append(curves[m].max())
        if not stats[a]["epochs"]:
            continue
        med = {m: {k: float(np.median(v)) for k, v in st.items()} for m, st in stats.items()}
        faster[a if med[a]["seconds"] < med[b]["seconds"] else b] += 1
        lines.append(
            f"| {cell['dataset']} | {cell['n_train']} | {med[a]['epochs']:.0f} | {med[b]['epochs']:.0f} | "
            f"{med[a]['seconds']:.1f} | {med[b]['seconds']:.1f} | {med[a]['per_epoch']:.3f} | "
            f"{med[b]['per_epoch']:.3f} | {med[a]['best']:.2f} | {med[b]['best']:.2f} |"
        )
    return "\n".join(lines), faster


def _plot_convergence(results, picks, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {(c["dataset"], c["n_train"]): c for c in results}
    chosen = [by_key[k] for k in picks if k in by_key][:4]
    if not chosen:
        return False
    fig, axes = plt.subplots(2, len(chosen), figsize=(4 * len(chosen), 6.5), squeeze=False)
    colours = {"Ferumal": "C0", "RealNVP": "C3"}
    for j, cell in enumerate(chosen):
        for name, colour in colours.items():
            for k, run in enumerate(cell["runs"][name]):
                curve = np.asarray(run["validation_scores"])
                if curve.size == 0:
                    continue
                epochs = np.arange(1, curve.size + 1)
                # Epochs cost about the same: spread the fit time evenly over them.
                seconds = epochs * run["seconds"] / curve.size
                label = name if k == 0 else None
                axes[0, j].plot(epochs, curve, color=colour, alpha=0.8, lw=1, label=label)
                axes[1, j].plot(seconds, curve, color=colour, alpha=0.8, lw=1, label=label)
        axes[0, j].set_title(f"{cell['dataset']}, n={cell['n_train']}")
        axes[0, j].set_xlabel("epoch")
        axes[1, j].set_xlabel("wall time (s)")
        for ax in axes[:, j]:
            lo = np.nanpercentile(
                np.concatenate([r["validation_scores"] for m in colours for r in cell["runs"][m]]), 5
            )
            ax.set_ylim(bottom=lo)
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("validation log-lik (standardised units)")
    axes[1, 0].set_ylabel("validation log-lik (standardised units)")
    axes[0, 0].legend()
    fig.suptitle("Held-out log-likelihood during training (each line one seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# Cells whose training curves are plotted: the first four of these that were run.
CONVERGENCE_PICKS = [
    ("moons_2d", 500), ("gmm_8d", 500), ("breast_cancer", 400), ("power_plant", 2000),
    ("moons_2d", 100), ("breast_cancer", 100), ("concrete", 500), ("power_plant", 500),
]


DOCS = REPO / "docs"


def docs_table(payload) -> str:
    """``docs/ferumal_results.rst``: the held-out table of a saved run, best per row in bold."""
    models = ["Ferumal", "RealNVP", "GMM (CV)", "KDE (CV)"]
    head = ["data set", "d", "n_train", "truth", *models, "Ferumal params", "RealNVP params"]
    body = []
    for cell in payload["results"]:
        runs = cell["models"]
        best = max(models, key=lambda m: runs[m]["mean_log_likelihood"])
        scores = [fmt_ll(runs[m]["mean_log_likelihood"], runs[m]["standard_error"], digits=2, bold=m == best)
                  for m in models]
        truth = fmt_ll(cell["truth"][0], digits=2) if cell.get("truth") else ""
        body.append([cell["dataset"], str(cell["n_features"]), str(cell["n_train"]), truth, *scores,
                     f"{runs['Ferumal']['n_parameters']:,}", f"{runs['RealNVP']['n_parameters']:,}"])
    caption = ("Held-out mean log-likelihood (nats per row, data units; mean ± standard error "
               f"over {payload['n_seeds']} seeds; best in bold)")
    return (".. Generated by ``python -m benchmarks.ferumal_vs_realnvp --docs``; do not edit.\n\n"
            + rst_table(head, body, caption))


def write_docs(payload, convergence_png: Path | None) -> None:
    """The docs table and, if given, the convergence figure as a palette PNG (a third of the size)."""
    (DOCS / "ferumal_results.rst").write_text(docs_table(payload))
    if convergence_png is not None and convergence_png.is_file():
        from PIL import Image

        image = Image.open(convergence_png).convert("RGB").quantize(colors=128)
        image.save(DOCS / "_static" / "ferumal_convergence.png", optimize=True)
    print(f"wrote {DOCS / 'ferumal_results.rst'}", file=sys.stderr)


def _jsonable(cells):
    out = []
    for cell in cells:
        entry = {k: v for k, v in cell.items() if k not in ("runs", "truth")}
        if cell["truth"]:
            entry["truth"] = _summary(cell["truth"])
        entry["models"] = {}
        for name, runs in cell["runs"].items():
            mean, se = _summary([r["scores"] for r in runs])
            entry["models"][name] = {
                "mean_log_likelihood": mean,
                "standard_error": se,
                "per_seed": [float(np.mean(r["scores"])) for r in runs],
                "seconds": [r["seconds"] for r in runs],
                "n_parameters": runs[0]["n_parameters"],
                **({"n_iter": [r["n_iter"] for r in runs],
                    "validation_scores": [r["validation_scores"] for r in runs]} if "n_iter" in runs[0] else {}),
            }
        out.append(entry)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few sets, one seed (< 3 min on 2 cores)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3, quick 1)")
    parser.add_argument("--datasets", nargs="+", help=f"restrict to these data sets (of {', '.join(CELLS)})")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--jobs", type=int, default=1, help="parallel fits (each single-threaded)")
    parser.add_argument("--docs", action="store_true",
                        help="also write docs/ferumal_results.rst and docs/_static/ferumal_convergence.png")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="only rewrite docs/ferumal_results.rst from a saved ferumal_vs_realnvp.json (no fitting)")
    args = parser.parse_args(argv)
    if args.from_json:
        write_docs(json.loads(args.from_json.read_text()), None)
        return
    n_seeds = args.seeds or (1 if args.quick else 3)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True))
    tic = time.perf_counter()

    present = set(sum(datasets.available(include_extra=True).values(), []))
    cells = [(name, n) for name, (sizes, quick) in CELLS.items() if name in present
             and (not args.datasets or name in args.datasets) for n in (quick if args.quick else sizes)]
    log(f"{len(cells)} cells x {n_seeds} seed(s)")
    results = _run_cells(cells, MODELS, n_seeds, log, args.jobs)
    table, wins = _table(results, MODELS)

    # k-means++ vs random initialisation of the auxiliary points.
    init_cells = [c for c in cells if c[1] >= 500 and c[0] != "rings_2d"] if args.quick else cells
    log(f"aux_init comparison on {len(init_cells)} cells")
    init_results = _run_cells(init_cells, {"random": INIT_MODELS["random"]}, n_seeds, log, args.jobs)
    by_key = {(c["dataset"], c["n_train"]): c for c in results}
    for cell in init_results:  # the default (k-means++) runs are the table's Ferumal runs
        cell["runs"] = {"kmeans++": by_key[(cell["dataset"], cell["n_train"])]["runs"]["Ferumal"],
                        "random": cell["runs"]["random"]}
    init_table, init_wins = _table(init_results, INIT_MODELS)

    h2h = {other: _head_to_head(results, "Ferumal", other) for other in MODELS if other != "Ferumal"}
    conv_table, conv_faster = _convergence_table(results)
    elapsed = time.perf_counter() - tic
    report = "\n".join([
        f"# FerumalFlowDensity vs RealNVPDensity ({'quick' if args.quick else 'full'} run)",
        "",
        f"Held-out mean log-likelihood (nats per row, data units; higher is better), mean ± standard error "
        f"over {n_seeds} seed(s){' (one seed: over test rows)' if n_seeds == 1 else ''}; best in bold. "
        "Flows at their defaults; GMM and KDE tuned by cross-validation (benchmarks/baselines.py). `truth`: "
        "the true density of the synthetic sets. Digits dequantised with U[0, 1) noise.",
        "", table, "",
        "Best model per cell: " + ", ".join(f"{m} {w}" for m, w in wins.items()) + ".",
        "",
        "Ferumal vs each baseline, cells better / within one combined standard error / worse: "
        + "; ".join(f"{m}: {b}/{t}/{w}" for m, (b, t, w) in h2h.items()) + ".",
        "",
        "## Convergence (validation log-likelihood, standardised units)",
        "",
        "Epochs / seconds until each flow's held-out (validation) log-likelihood first reaches the lower "
        "of the two flows' best values, median over seeds; `best val` is the median best validation score.",
        "", conv_table, "",
        "Reached the common level first (median seconds): "
        + ", ".join(f"{m} {k}" for m, k in conv_faster.items()) + " cells.",
        "",
        "## Auxiliary-point initialisation (FerumalFlowDensity defaults otherwise)",
        "", init_table, "",
        "Best per cell: " + ", ".join(f"{m} {w}" for m, w in init_wins.items()) + "; k-means++ vs random "
        "better / tie / worse: " + "{}/{}/{}".format(*_head_to_head(init_results, "kmeans++", "random")) + ".",
        "",
        f"Total time {elapsed / 60:.1f} min; torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}.",
    ])
    print(report)
    (args.out / f"{STEM}.md").write_text(report + "\n")
    plotted = _plot_convergence(results, CONVERGENCE_PICKS, args.out / f"{STEM}_convergence.png")
    payload = {
        "quick": args.quick,
        "n_seeds": n_seeds,
        "seconds": elapsed,
        "results": _jsonable(results),
        "aux_init": _jsonable(init_results),
        "head_to_head": {m: dict(zip(("better", "tie", "worse"), v)) for m, v in h2h.items()},
    }
    write_json(args.out / f"{STEM}.json", payload)
    log(f"wrote {args.out / (STEM + '.md')}, {args.out / (STEM + '.json')}"
        + (f", {args.out / (STEM + '_convergence.png')}" if plotted else ""))
    if args.docs:
        write_docs(payload, args.out / f"{STEM}_convergence.png" if plotted else None)


if __name__ == "__main__":
    # Run the imported module, not __main__, so that joblib workers unpickle its functions by reference.
    from benchmarks.ferumal_vs_realnvp import main as _main

    _main()
