"""Unsupervised anomaly detection on the 20 labelled ODDS sets.

Usage::

    python benchmarks/anomaly.py --quick            # 8 small sets, about 1 minute
    python benchmarks/anomaly.py                    # all 20 sets, about 13 minutes (2 shared cores)
    python benchmarks/anomaly.py --sets wbc,musk,shuttle
    python benchmarks/anomaly.py --docs             # also write docs/anomaly_results.rst
    python benchmarks/anomaly.py --from-json benchmarks/results/anomaly.json --docs

Protocol (the usual transductive one for these sets): every method is fitted
on all rows of a set without its labels and scores the same rows; ROC-AUC and
average precision (AP) of the anomaly ranking are computed against the labels
(1 = anomaly).  All methods see the same robust-standardised matrix: constant
columns dropped, each column centred on its median and divided by
IQR / 1.349 (its standard deviation when the IQR is zero).

Methods
-------
``DensityOutlierDetector``
    ``skflow.DensityOutlierDetector(random_state=0)`` at its defaults (its
    own preprocessing, then a ``FerumalFlowDensity``; flows are fitted on at
    most ``max_samples="auto"`` rows, all rows are scored).
``IsolationForest``
    scikit-learn defaults, ``random_state=0``.
``LocalOutlierFactor``
    scikit-learn defaults (20 neighbours), ``novelty=False``; the score is
    ``negative_outlier_factor_``.
``KernelDensity``
    Gaussian kernel, bandwidth by Scott's rule (``bandwidth="scott"``,
    ``n ** (-1 / (d + 4))`` on the standardised data), fitted on at most
    4096 random rows (tree queries on shuttle's 49k rows take minutes
    otherwise), all rows scored.
``GaussianMixture``
    Full covariances, number of components in 1..10 by BIC, fitted on at most
    4096 random rows, all rows scored.

Writes ``anomaly.json`` and ``anomaly.md`` in ``--out``
(``benchmarks/results`` by default) and prints the markdown table.
"""

from __future__ import annotations

import os

# One thread per process unless told otherwise, before numpy/torch start their pools.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
from sklearn.ensemble import IsolationForest  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.neighbors import KernelDensity, LocalOutlierFactor  # noqa: E402

import skflow  # noqa: E402
from skflow import DensityOutlierDetector  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "anomaly"
ALL_SETS = (
    "annthyroid", "breastw", "cardio", "glass", "ionosphere", "letter", "lympho", "mammography", "musk",
    "optdigits", "pendigits", "pima", "satellite", "satimage-2", "shuttle", "thyroid", "vertebral",
    "vowels", "wbc", "wine",
)  # fmt: skip
QUICK_SETS = ("wbc", "vertebral", "wine", "glass", "lympho", "breastw", "ionosphere", "pima")
# Baselines that cost O(n_fit * n_score) or O(n_fit * k^2 d^2) fit on at most this many rows.
MAX_FIT_ROWS = 4096
GMM_COMPONENTS = range(1, 11)
SEED = 0
METHODS = (
    "DensityOutlierDetector", "IsolationForest", "LocalOutlierFactor", "KernelDensity", "GaussianMixture"
)  # fmt: skip
SHORT = {
    "DensityOutlierDetector": "DOD",
    "IsolationForest": "IF",
    "LocalOutlierFactor": "LOF",
    "KernelDensity": "KDE",
    "GaussianMixture": "GMM",
}


def robust_standardise(X: np.ndarray) -> np.ndarray:
    """Drop constant columns; centre on the median, divide by IQR / 1.349 (std if the IQR is 0)."""
    X = X[:, np.ptp(X, axis=0) > 0]
    q1, median, q3 = np.percentile(X, [25, 50, 75], axis=0)
    scale = (q3 - q1) / 1.3489795003921634
    scale = np.where(scale > 0, scale, X.std(axis=0))
    return (X - median) / scale


def fit_rows(X: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    if X.shape[0] <= MAX_FIT_ROWS:
        return X
    return X[rng.choice(X.shape[0], MAX_FIT_ROWS, replace=False)]


def normality(method: str, Z: np.ndarray, estimator=None) -> tuple[np.ndarray, dict]:
    """Scores of the rows of ``Z`` (higher = more normal) and details of the fit."""
    rng = np.random.RandomState(SEED)
    if method == "DensityOutlierDetector":
        det = DensityOutlierDetector(estimator, random_state=SEED).fit(Z)
        flagged = float(np.mean(det.predict(Z) == -1))
        return det.score_samples(Z), {"max_samples_": int(det.max_samples_), "flagged_auto": flagged}
    if method == "IsolationForest":
        return IsolationForest(random_state=SEED).fit(Z).score_samples(Z), {}
    if method == "LocalOutlierFactor":
        return LocalOutlierFactor().fit(Z).negative_outlier_factor_, {}
    if method == "KernelDensity":
        kde = KernelDensity(bandwidth="scott").fit(fit_rows(Z, rng))
        return kde.score_samples(Z), {"bandwidth_": float(kde.bandwidth_)}
    if method == "GaussianMixture":
        rows = fit_rows(Z, rng)
        best = None
        for k in GMM_COMPONENTS:
            if k > rows.shape[0] // 2:
                break
            gmm = GaussianMixture(k, covariance_type="full", random_state=SEED).fit(rows)
            bic = gmm.bic(rows)
            if best is None or bic < best[0]:
                best = (bic, gmm)
        return best[1].score_samples(Z), {"n_components": int(best[1].n_components)}
    raise ValueError(method)


def evaluate(y: np.ndarray, normal: np.ndarray) -> tuple[float, float]:
    # -inf (density underflow) is the most anomalous score there is.
    anomaly = -np.nan_to_num(normal, nan=-np.inf, neginf=-np.finfo(np.float64).max)
    return float(roc_auc_score(y, anomaly)), float(average_precision_score(y, anomaly))


def run(sets, methods, estimator=None, log=print) -> list[dict]:
    rows = []
    for name in sets:
        with np.load(DATA / f"{name}.npz") as data:
            X, y = data["X"], data["y"]
        Z = robust_standardise(X)
        row = {"set": name, "n": int(X.shape[0]), "d": int(X.shape[1]), "rate": float(y.mean())}
        for method in methods:
            tic = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores, details = normality(method, Z, estimator)
            seconds = time.perf_counter() - tic
            auc, ap = evaluate(y, scores)
            row[method] = {"roc_auc": auc, "ap": ap, "seconds": seconds, **details}
            log(f"{name:12s} {method:24s} ROC-AUC {auc:.3f}  AP {ap:.3f}  ({seconds:.1f} s)")
        rows.append(row)
    return rows


def table(rows, methods) -> tuple[list[str], list[list[str]]]:
    """Header and body (one row per set, then the means) of the results table; best in bold."""
    head = ["set", "n", "d", "anomalies"]
    head += [f"ROC-AUC {SHORT[m]}" for m in methods] + [f"AP {SHORT[m]}" for m in methods]

    def cells(values):
        best = max(values)
        return [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in values]

    def metrics(per_method):
        return cells([per_method(m, "roc_auc") for m in methods]) + cells([per_method(m, "ap") for m in methods])

    body = [
        [r["set"], str(r["n"]), str(r["d"]), f"{100 * r['rate']:.1f}%"] + metrics(lambda m, k: r[m][k])
        for r in rows
    ]
    body.append(["**mean**", "", "", ""] + metrics(lambda m, k: float(np.mean([r[m][k] for r in rows]))))
    return head, body


def total_times(rows, methods) -> str:
    return ", ".join(f"{SHORT[m]} {sum(r[m]['seconds'] for r in rows):.0f} s" for m in methods)


def markdown(rows, methods) -> str:
    head, body = table(rows, methods)
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += ["", f"Total fit + score time: {total_times(rows, methods)}"]
    return "\n".join(lines)


def rst(rows, methods, meta) -> str:
    """The table for the docs (``docs/anomaly_results.rst``): ROC-AUC and AP per set, best in bold."""
    head, body = table(rows, methods)
    lines = [
        ".. Generated by ``python benchmarks/anomaly.py --docs``; do not edit.",
        "",
        f"skflow {meta['skflow']}, scikit-learn {meta['sklearn']}, torch {meta['torch']}, "
        f"{meta['threads']} thread(s), {meta['wall_seconds'] / 60:.0f} minutes, {meta['date'][:10]}.  "
        + " ".join(verdict(rows)),
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
    ]
    for row in [head] + body:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}".rstrip() for cell in row[1:]]
    lines += ["", f"Total fit + score time: {total_times(rows, methods)}.", ""]
    return "\n".join(lines)


def verdict(rows) -> list[str]:
    """The issue's targets, checked."""
    dod, iso = "DensityOutlierDetector", "IsolationForest"
    if dod not in rows[0] or iso not in rows[0]:
        return []
    m_dod = np.mean([r[dod]["roc_auc"] for r in rows])
    m_iso = np.mean([r[iso]["roc_auc"] for r in rows])
    bad = [r["set"] for r in rows if r[dod]["roc_auc"] < 0.5 and r[iso]["roc_auc"] > 0.7]
    losses = [
        f"{r['set']} ({r[dod]['roc_auc']:.3f} vs {r[iso]['roc_auc']:.3f})"
        for r in rows
        if r[dod]["roc_auc"] < r[iso]["roc_auc"] - 0.02
    ]
    return [
        f"Mean ROC-AUC: DensityOutlierDetector {m_dod:.3f} vs IsolationForest {m_iso:.3f} "
        f"({'above' if m_dod > m_iso else 'NOT above'}).",
        "Sets below 0.5 where IsolationForest is above 0.7: " + (", ".join(bad) or "none") + ".",
        "Sets where IsolationForest is ahead by more than 0.02: " + (", ".join(losses) or "none") + ".",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", help="comma-separated set names (default: all 20)")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_SETS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of methods")
    parser.add_argument(
        "--estimator",
        help="name of the skflow estimator the detector wraps, at its defaults (default: the detector's "
        "default, FerumalFlowDensity); results then go to anomaly_<name>.json/.md",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--docs", action="store_true", help="also write docs/anomaly_results.rst")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="only rewrite the tables (and with --docs the docs page) from a saved anomaly.json")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        rows = saved["results"]
        methods = [m for m in METHODS if m in rows[0]]
        print(markdown(rows, methods))
        if args.docs:
            (REPO / "docs" / "anomaly_results.rst").write_text(rst(rows, methods, saved["meta"]))
            print(f"Wrote {REPO / 'docs' / 'anomaly_results.rst'}")
        return 0
    if not DATA.is_dir():
        print(f"Anomaly data not found at {DATA}; nothing to do (see shared/data/anomaly/README.md).")
        return 0
    sets = args.sets.split(",") if args.sets else list(QUICK_SETS if args.quick else ALL_SETS)
    missing = [s for s in sets if not (DATA / f"{s}.npz").is_file()]
    if missing:
        parser.error(f"unknown set(s): {', '.join(missing)}; available: {', '.join(ALL_SETS)}")
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s): {', '.join(unknown)}; available: {', '.join(METHODS)}")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    tic = time.perf_counter()
    estimator = None
    if args.estimator:
        if not hasattr(skflow, args.estimator):
            parser.error(f"skflow has no estimator {args.estimator!r}")
        estimator = getattr(skflow, args.estimator)()
    rows = run(sets, methods, estimator)
    table = markdown(rows, methods)
    notes = verdict(rows)
    elapsed = time.perf_counter() - tic
    print()
    print(table)
    for line in notes:
        print(line)
    print(f"Wall time: {elapsed:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "skflow": skflow.__version__,
        "sklearn": sklearn.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": int(os.environ["OMP_NUM_THREADS"]),
        "wall_seconds": elapsed,
        "protocol": "fit on all rows, score the same rows; robust-standardised inputs",
        "detector_estimator": args.estimator or "default (FerumalFlowDensity)",
    }
    stem = f"anomaly_{args.estimator}" if args.estimator else "anomaly"
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    title = "# Anomaly detection on ODDS (unsupervised, transductive)"
    if args.estimator:
        title += f"; DOD wraps {args.estimator}()"
    (args.out / f"{stem}.md").write_text(f"{title}\n\n{table}\n\n" + "\n".join(notes) + "\n")
    print(f"Wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    if args.docs:
        (REPO / "docs" / "anomaly_results.rst").write_text(rst(rows, methods, meta))
        print(f"Wrote {REPO / 'docs' / 'anomaly_results.rst'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
