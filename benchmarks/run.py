"""Run the skflow benchmark suite: log-likelihood, speed and size, in one command.

Usage::

    python -m benchmarks.run --quick              # < 3 minutes on 2 cores
    python -m benchmarks.run                      # the full suite
    python -m benchmarks.run --datasets banana_2d digits --train-sizes 500 2000
    python -m benchmarks.run --quick --docs       # also refresh docs/benchmark_results.rst

For every data set x training size x method it records the held-out mean
log-likelihood (nats per test row, in the data's original units, with the
standard error over test rows), the fit time, the number of trainable
parameters and the throughput of ``score_samples`` and ``sample``.  Data sets
come from :mod:`benchmarks.datasets`, methods from :mod:`benchmarks.baselines`
(every skflow estimator at its defaults, CV-tuned KernelDensity and
GaussianMixture, zuko's NSF and MAF when importable).  Output in ``--out``:
``benchmark.json``, ``benchmark.md``, ``benchmark.rst``, ``loglik.png`` and
``fit_time.png``.  The protocol is in ``benchmarks/README.md``; the figures
in the generated page ``docs/benchmark_results.rst``.
"""

from __future__ import annotations

import os

# One thread per process unless told otherwise, before numpy/torch start their pools:
# timings are then comparable across methods and machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from . import REPO, RESULTS, datasets  # noqa: E402
from .baselines import GMM, KDE, available_methods  # noqa: E402
from .report import (  # noqa: E402
    fmt_ll,
    fmt_num,
    machine_info,
    mean_se,
    paired_difference,
    to_markdown,
    to_rst,
    write_json,
)

__all__ = ["main", "run"]

SYNTHETIC_SUITE = ["mixture_2d", "ring_2d", "banana_2d", "student_t_4d", "mixture_8d"]
QUICK = {
    "datasets": ["ring_2d", "banana_2d", "student_t_4d", "iris", "wine", "breast_cancer"],
    "train_sizes": {"synthetic": [500]},
    "n_test": 2000,
    "n_sample": 2000,
}
FULL = {
    "datasets": [*SYNTHETIC_SUITE, *datasets.SKLEARN, *datasets.SHARED],
    "train_sizes": {"synthetic": [500, 5000], "shared": [5000]},
    "n_test": 5000,
    "n_sample": 10000,
}


# -------------------------------------------------------------- measuring
def _timed(fn, min_seconds=0.05, max_repeats=20):
    """Result of ``fn()`` and its wall time per call (repeated if very fast)."""
    tic = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - tic
    repeats = 1
    while elapsed < min_seconds and repeats < max_repeats:
        fn()
        repeats += 1
        elapsed = time.perf_counter() - tic
    return result, elapsed / repeats


def run_one(ds, method, factory, seed, n_sample):
    row = {
        "dataset": ds.name,
        "kind": ds.kind,
        "n_train": int(ds.X_train.shape[0]),
        "n_test": int(ds.X_test.shape[0]),
        "n_features": int(ds.n_features),
        "method": method,
    }
    model = factory(ds.X_train.shape[0], seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tic = time.perf_counter()
            model.fit(ds.X_train)
            row["fit_seconds"] = time.perf_counter() - tic
            log_density, score_time = _timed(lambda: model.score_samples(ds.X_test))
            _, sample_time = _timed(lambda: model.sample(n_sample, random_state=seed))
        except Exception as exc:  # a failure is a result, not the end of the run
            row["error"] = f"{type(exc).__name__}: {exc}"
            return row
    mean, se, n_bad = mean_se(log_density)
    row["_log_density"] = log_density
    row.update(
        test_loglik=mean,
        test_loglik_se=se,
        n_nonfinite=n_bad,
        score_rows_per_s=ds.X_test.shape[0] / score_time,
        sample_rows_per_s=n_sample / sample_time,
        n_parameters=int(getattr(model, "n_parameters_", 0)),
        parameters_note=getattr(model, "parameters_note_", ""),
        n_iter=getattr(model, "n_iter_", None),
        selected=getattr(model, "selected_", ""),
        refit_seconds=getattr(model, "refit_seconds_", None),
        warnings=sorted({f"{w.category.__name__}: {str(w.message)[:120]}" for w in caught}),
    )
    return row


def run(args):
    methods = available_methods()
    if args.methods:
        unknown = set(args.methods) - set(methods)
        if unknown:
            raise SystemExit(f"unknown or unavailable methods {sorted(unknown)}; available: {list(methods)}")
        methods = {k: v for k, v in methods.items() if k in args.methods}
    config = QUICK if args.quick else FULL
    names = args.datasets or config["datasets"]
    if not args.datasets:
        present = set(sum(datasets.available().values(), []))
        skipped = [n for n in names if n not in present]
        if skipped:
            print(f"skipping data sets not present here: {skipped}", file=sys.stderr)
        names = [n for n in names if n in present]
    rows, ceilings = [], []
    n_sample = args.n_sample or config["n_sample"]
    for name in names:
        sizes = args.train_sizes or config["train_sizes"].get(datasets.kind(name), [None])
        for n_train in sizes:
            ds = datasets.load(name, n_train=n_train, n_test=args.n_test or config["n_test"])
            n_tr, n_te = ds.X_train.shape[0], ds.X_test.shape[0]
            print(f"{name}: {n_tr} train x {ds.n_features} features, {n_te} test", file=sys.stderr)
            truth = None
            if ds.true_log_density is not None:
                truth = ds.true_log_density(ds.X_test)
                mean, se, _ = mean_se(truth)
                ceilings.append(dict(dataset=name, n_train=n_tr, true_loglik=mean, true_loglik_se=se))
            cell = []
            for method, factory in methods.items():
                row = run_one(ds, method, factory, args.seed, n_sample)
                row["description"] = ds.description
                row["notes"] = ds.notes
                cell.append(row)
                status = row.get("error") or f"{row['test_loglik']:.3f} nats, {row['fit_seconds']:.1f} s"
                print(f"  {method:22s} {status}", file=sys.stderr)
            _add_gaps(cell, truth)
            rows += cell
    _add_ratios(rows)
    return rows, ceilings, list(methods)


def _add_gaps(cell, truth):
    """Gap to the truth (synthetic) or to the best method, with its paired standard error.

    Against the truth the gap estimates ``KL(p_true || p_model)``.
    """
    ok = [r for r in cell if "error" not in r and not r["n_nonfinite"]]
    if truth is None:
        if not ok:
            return
        best = max(ok, key=lambda r: r["test_loglik"])
        reference, name = best["_log_density"], best["method"]
    else:
        reference, name = truth, "truth"
    for r in ok:
        gap, gap_se = paired_difference(reference, r["_log_density"])
        r.update(gap=gap, gap_se=gap_se, gap_to=name)
    for r in cell:
        r.pop("_log_density", None)


def _add_ratios(rows):
    """Fit time of every method divided by GaussianMixture's in the same cell."""
    gmm = {(r["dataset"], r["n_train"]): r.get("fit_seconds") for r in rows if r["method"] == GMM}
    for r in rows:
        ref = gmm.get((r["dataset"], r["n_train"]))
        if ref and r.get("fit_seconds") is not None:
            r["fit_time_vs_gmm"] = r["fit_seconds"] / ref


# ------------------------------------------------------------------ report
def _cell_key(r):
    return (r["dataset"], r["n_train"])


def _fmt_row_ll(r, best=None):
    if r is None:
        return "—"
    if "error" in r:
        return "failed"
    if r["n_nonfinite"]:
        return f"−inf ({r['n_nonfinite']} rows)"
    return fmt_ll(r["test_loglik"], r["test_loglik_se"], bold=best is not None and r["test_loglik"] >= best)


def tables(rows, ceilings, methods):
    """The report as a list of (title, intro, header, body) sections."""
    cells = list(dict.fromkeys(_cell_key(r) for r in rows))
    by = {(_cell_key(r), r["method"]): r for r in rows}
    truth = {(c["dataset"], c["n_train"]): c for c in ceilings}
    first = {c: next(r for r in rows if _cell_key(r) == c) for c in cells}
    out = []

    body = []
    for c in cells:
        ok = [by[(c, m)] for m in methods if (c, m) in by and "error" not in by[(c, m)]]
        finite = [r["test_loglik"] for r in ok if not r["n_nonfinite"]]
        best = max(finite) if finite else None
        t = truth.get(c)
        body.append([c[0], str(c[1]), str(first[c]["n_features"]), fmt_ll(t["true_loglik"]) if t else "",
                     *[_fmt_row_ll(by.get((c, m)), best) for m in methods]])
    out.append((
        "Held-out log-likelihood",
        "Mean log-density of the test rows in nats per row, in the data's original units (higher is "
        "better), ± its standard error over test rows; best per row in bold. *truth*: mean true "
        "log-density of the same test rows (synthetic sets only), the ceiling no model can beat in "
        "expectation.",
        ["data set", "n_train", "d", "truth", *methods],
        body,
    ))

    others = [m for m in methods if m != GMM]
    body = [[c[0], str(c[1]), fmt_num(by.get((c, GMM), {}).get("fit_seconds"), 2),
             *[fmt_num(by.get((c, m), {}).get("fit_time_vs_gmm"), 2) for m in others]] for c in cells]
    out.append((
        "Fit time relative to GaussianMixture",
        f"Wall-clock fit time divided by {GMM}'s in the same row (one thread each). The {GMM} and "
        f"{KDE} times include their cross-validated model selection (tens of fits); flows fit once, "
        "with early stopping on 10% of the training rows.",
        ["data set", "n_train", f"{GMM} s", *others],
        body,
    ))

    for c in cells:
        f, t = first[c], truth.get(c)
        intro = f"{f['description']}. {c[1]} train rows, {f['n_test']} test rows, {f['n_features']} features."
        intro += (" Gap: mean per-row difference of log-densities to the "
                  + ("truth (an estimate of KL(p_true || p_model))" if t else "best method")
                  + ", with its paired standard error.")
        if t:
            intro += f" Truth: {fmt_ll(t['true_loglik'], t['true_loglik_se'])} nats."
        if f["notes"]:
            notes = "; ".join(f["notes"])
            intro += " " + notes[0].upper() + notes[1:] + "."
        header = ["method", "test log-lik", "gap to truth ± s.e." if t else "gap to best ± s.e.", "fit s",
                  "× GMM", "parameters", "score rows/s", "sample rows/s", "epochs / selection"]
        body = []
        for m in methods:
            r = by.get((c, m))
            if r is None:
                continue
            if "error" in r:
                body.append([m, "failed: " + r["error"][:80], *[""] * 7])
                continue
            gap = "—" if "gap" not in r else ("(best)" if r.get("gap_to") == m else fmt_ll(r["gap"], r["gap_se"]))
            params = fmt_num(r["n_parameters"]) + (f" ({r['parameters_note']})" if r["parameters_note"] else "")
            extra = r["selected"] or (f"{r['n_iter']} epochs" if r["n_iter"] is not None else "")
            body.append([m, _fmt_row_ll(r), gap, fmt_num(r["fit_seconds"], 2), fmt_num(r.get("fit_time_vs_gmm"), 2),
                         params, fmt_num(r["score_rows_per_s"]), fmt_num(r["sample_rows_per_s"]), extra])
        out.append((f"{c[0]} (n_train={c[1]})", intro, header, body))
    return out


def _preamble(info):
    return (f"`{info['command'].strip()}` on {info['date']}: {info['cpu']}, {info['logical_cpus']} logical CPUs, "
            f"{info['torch_threads']} torch thread(s); " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
            + f"; seed {info['seed']}. Times are for this machine only: compare the ratios within the run.")


def plots(rows, ceilings, methods, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    colors = dict(zip(methods, plt.get_cmap("tab10").colors))
    cells = list(dict.fromkeys(_cell_key(r) for r in rows))
    by = {(_cell_key(r), r["method"]): r for r in rows}
    truth = {(c["dataset"], c["n_train"]): c["true_loglik"] for c in ceilings}

    ncols = min(4, len(cells))
    nrows = math.ceil(len(cells) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 0.35 * len(methods) * nrows + 1.2 * nrows),
                             squeeze=False)
    for ax, c in zip(axes.flat, cells):
        values = [by.get((c, m), {}).get("test_loglik", math.nan) for m in methods]
        errors = [by.get((c, m), {}).get("test_loglik_se", 0.0) for m in methods]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            ax.set_visible(False)
            continue
        best = max(finite + ([truth[c]] if c in truth else []))
        spread = max(best - float(np.median(finite)), 0.05 * abs(best), 0.1)
        lo = max(min(finite), best - 5 * spread) - 0.15 * spread
        for i, (m, v, e) in enumerate(zip(methods, values, errors)):
            if v is None or not math.isfinite(v):
                ax.text(lo, i, "  failed / −inf", va="center", fontsize=7)
                continue
            shown = max(v, lo)
            ax.barh(i, shown - lo, left=lo, color=colors[m], xerr=e if v > lo else None, capsize=2)
            if v < lo:
                ax.text(lo, i, f"  {v:.1f} ◀", va="center", fontsize=7)
        if c in truth:
            ax.axvline(truth[c], color="k", ls="--", lw=1, label="truth")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_yticks(range(len(methods)), methods, fontsize=7)
        ax.invert_yaxis()
        right = max([v + e for v, e in zip(values, errors) if v is not None and math.isfinite(v)] + [best])
        ax.set_xlim(lo, right + 0.1 * spread)
        ax.set_title(f"{c[0]} (n={c[1]})", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(5))
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    fig.suptitle("Held-out log-likelihood (nats/row, higher is better; ± s.e.)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    fig.savefig(out / "loglik.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(cells) + 2), 3.6))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        seconds = [by.get((c, m), {}).get("fit_seconds", math.nan) for c in cells]
        ax.bar(np.arange(len(cells)) + (j - (len(methods) - 1) / 2) * width, seconds, width, color=colors[m],
               label=m)
    ax.set_yscale("log")
    ax.set_ylabel("fit seconds (log scale)")
    ax.set_xticks(range(len(cells)), [f"{c[0]}\nn={c[1]}" for c in cells], fontsize=7)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"Fit time ({GMM} and {KDE} include their CV model selection)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "fit_time.png", dpi=110)
    plt.close(fig)
    return ["loglik.png", "fit_time.png"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small suite (< 3 minutes on 2 cores)")
    parser.add_argument("--datasets", nargs="+", help="data set names (see benchmarks/datasets.py)")
    parser.add_argument("--methods", nargs="+", help="restrict to these methods")
    parser.add_argument("--train-sizes", nargs="+", type=int, help="override training sizes for every set")
    parser.add_argument("--n-test", type=int, help="test rows (synthetic: drawn; real: at most)")
    parser.add_argument("--n-sample", type=int, help="rows drawn to time sample()")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--docs", action="store_true",
                        help="also write docs/benchmark_results.rst and its figures in docs/_static/")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="do not run: rebuild the reports (and --docs) from an earlier benchmark.json")
    args = parser.parse_args(argv)
    if args.from_json:
        payload = json.loads(args.from_json.read_text())
        info, methods, ceilings, rows = (payload[k] for k in ("info", "methods", "ceilings", "results"))
        for r in rows:
            if "test_loglik" in r and r["test_loglik"] is None:
                r["test_loglik"], r["test_loglik_se"] = -math.inf, math.nan
    else:
        torch.set_num_threads(args.threads)
        tic = time.perf_counter()
        rows, ceilings, methods = run(args)
        info = machine_info("python -m benchmarks.run", seed=args.seed, total_seconds=time.perf_counter() - tic)
    args.out.mkdir(parents=True, exist_ok=True)
    report = tables(rows, ceilings, methods)
    images = plots(rows, ceilings, methods, args.out)
    write_json(args.out / "benchmark.json", {"info": info, "methods": methods, "ceilings": ceilings, "results": rows})
    (args.out / "benchmark.md").write_text(to_markdown("skflow benchmark", _preamble(info), report))
    command = "python -m benchmarks.run --docs"
    title = "Fit time relative to GaussianMixture"
    rst_preamble = _preamble(info).replace("`", "``")

    def figures(prefix):
        return {title: [line for image in images for line in (f".. image:: {prefix}{image}", "   :width: 100%", "")]}

    (args.out / "benchmark.rst").write_text(to_rst(command, rst_preamble, report, after=figures("")))
    if args.docs:
        static = REPO / "docs" / "_static"
        static.mkdir(parents=True, exist_ok=True)
        for image in images:
            shutil.copyfile(args.out / image, static / f"benchmark_{image}")
        rst = to_rst(command, rst_preamble, report, after=figures("/_static/benchmark_"))
        (REPO / "docs" / "benchmark_results.rst").write_text(rst)
    print(f"wrote {args.out}/benchmark.{{json,md,rst}} and {', '.join(images)} "
          f"(run took {info['total_seconds']:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
