"""Anomaly detection on the 20 labelled ODDS sets, under two protocols.

Usage (from the repository root)::

    python -m benchmarks.anomaly --quick                 # 8 small sets, both protocols, 1 split seed
    python -m benchmarks.anomaly --jobs 1                # all 20 sets, both protocols, 5 split seeds
    python -m benchmarks.anomaly --sets cardio,wine --protocols semi --seeds 0,1
    python -m benchmarks.anomaly --methods IF,KNN,DOD --detector-params trim_fraction=0
    python -m benchmarks.anomaly --docs                  # also write docs/anomaly_results.rst
    python -m benchmarks.anomaly --resume               # finish an interrupted run (results saved per cell)
    python -m benchmarks.anomaly --from-json benchmarks/results/anomaly.json --docs
    python -m benchmarks.anomaly --methods DOD --members benchmarks/results/members/robust   # per-member scores

Protocols
---------
``all`` (unsupervised, transductive)
    Every method is fitted on all rows of a set, without labels, and scores
    the same rows.
``semi`` (semi-supervised, one-class)
    Every method is fitted on a random half of the normal rows (split seed
    ``s``) and scores the other half plus all anomalies; the reported
    figure is the mean over the split seeds.

ROC-AUC and average precision (AP) of the anomaly ranking are computed
against the labels (1 = anomaly).  Published mean ROC-AUCs on these 20
sets serve as anchors (``ANCHORS``): fit on all rows, MCD 0.837,
IsolationForest 0.835, KNN 0.806, ECOD 0.793; semi-supervised, ICL 0.895,
KNN 0.893, DTE-NP 0.892, IsolationForest 0.847.

Methods
-------
Baselines see the training rows through the detector's own preprocessing
(``skflow._preprocessing._TabularPreprocessor`` without noise: constant
columns dropped, median / IQR scaling), fitted on the training rows.

``DOD``   ``skflow.DensityOutlierDetector(random_state=0)`` at its defaults, on the raw rows
``DOD-RealNVP``, ``DOD-Spline``   the detector wrapping that skflow estimator at its defaults
``IF``    IsolationForest, scikit-learn defaults, ``random_state=0``
``LOF``   LocalOutlierFactor, 20 neighbours (``novelty=True`` in the semi protocol)
``KNN``   distance to the 5th nearest training row (itself excluded in the all protocol)

Writes ``anomaly.json`` and ``anomaly.md`` in ``--out`` (``benchmarks/results``)
and prints the tables.
"""

from __future__ import annotations

import os

# One thread per process unless told otherwise, before numpy/torch start their pools.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.ensemble import IsolationForest  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors  # noqa: E402

import skflow  # noqa: E402
from skflow import DensityOutlierDetector  # noqa: E402
from skflow._preprocessing import _TabularPreprocessor  # noqa: E402

from .datasets import ANOMALY as ALL_SETS  # noqa: E402
from .datasets import SHARED_DATA, load_anomaly  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA / "anomaly"
QUICK_SETS = ("wbc", "vertebral", "wine", "glass", "lympho", "breastw", "ionosphere", "pima")
PROTOCOLS = {
    "all": "fit on all rows, score the same rows",
    "semi": "fit on half the normal rows, score the rest",
}
SEEDS = (0, 1, 2, 3, 4)
# The detectors wrapping skflow estimators: method name -> estimator class name (None: the default).
DETECTORS = {"DOD": None, "DOD-RealNVP": "RealNVPDensity", "DOD-Spline": "SplineFlowDensity"}
BASELINES = ("IF", "LOF", "KNN")
METHODS = (*DETECTORS, *BASELINES)
DEFAULT_METHODS = ("DOD", "IF", "LOF", "KNN")
KNN_NEIGHBOURS = 5
ANCHORS = {
    "all": {"MCD": 0.837, "IsolationForest": 0.835, "KNN": 0.806, "ECOD": 0.793},
    "semi": {"ICL": 0.895, "KNN": 0.893, "DTE-NP": 0.892, "IsolationForest": 0.847},
}
TARGETS = {"all": 0.86, "semi": 0.93}


def split(y: np.ndarray, protocol: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and the scored rows."""
    if protocol == "all":
        every = np.arange(y.size)
        return every, every
    normal = np.flatnonzero(y == 0)
    normal = normal[np.random.RandomState(seed).permutation(normal.size)]
    train = np.sort(normal[: normal.size // 2])
    return train, np.setdiff1d(np.arange(y.size), train)


def normality(method, X_train, X_test, same_rows, detector_params, members=None) -> np.ndarray:
    """Scores of ``X_test`` (higher = more normal) after fitting on ``X_train``.

    For a detector, ``members`` (a dict) receives each member's scores:
    ``"member"`` the estimators', ``"neighbors"`` the neighbour densities'
    (empty with ``n_neighbors=None``).
    """
    if method in DETECTORS:
        name = DETECTORS[method]
        estimator = None if name is None else getattr(skflow, name)()
        det = DensityOutlierDetector(estimator, **{"random_state": 0, **detector_params}).fit(X_train)
        if members is not None:
            Z = det.preprocessor_.transform(X_test)
            members["member"] = [est.score_samples(Z) for est in det.estimators_]
            members["neighbors"] = [knn.score_samples(Z) for knn in det.neighbor_densities_]
        return det.score_samples(X_test)
    pre = _TabularPreprocessor(dequantize=False).fit(X_train)
    Z_train, Z_test = pre.transform(X_train), pre.transform(X_test)
    if method == "IF":
        return IsolationForest(random_state=0).fit(Z_train).score_samples(Z_test)
    if method == "LOF":
        if same_rows:
            return LocalOutlierFactor().fit(Z_train).negative_outlier_factor_
        return LocalOutlierFactor(novelty=True).fit(Z_train).score_samples(Z_test)
    if method == "KNN":
        # In the all protocol each row is its own nearest neighbour: skip it.
        k = KNN_NEIGHBOURS + same_rows
        distances, _ = NearestNeighbors(n_neighbors=k).fit(Z_train).kneighbors(Z_test)
        return -distances[:, -1]
    raise ValueError(method)


def evaluate(y: np.ndarray, normal: np.ndarray) -> tuple[float, float]:
    # -inf (density underflow) is the most anomalous score there is.
    anomaly = -np.nan_to_num(normal, nan=-np.inf, neginf=-np.finfo(np.float64).max)
    return float(roc_auc_score(y, anomaly)), float(average_precision_score(y, anomaly))


def run_cell(name, protocol, seed, method, detector_params, members_dir=None) -> dict:
    """One fit and score: a set, a protocol, a split seed and a method.

    With ``members_dir``, a detector's per-member scores and the labels are
    saved there as ``<method>__<set>__<protocol><seed>.npz`` (see
    ``benchmarks/anomaly_combine.py``).
    """
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    X, y = load_anomaly(name)
    train, test = split(y, protocol, seed)
    members = {} if members_dir is not None and method in DETECTORS else None
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = normality(method, X[train], X[test], protocol == "all", detector_params, members)
    if members is not None:
        path = Path(members_dir) / f"{method}__{name}__{protocol}{seed}.npz"
        np.savez(path, y=y[test], **{key: np.array(value) for key, value in members.items()})
    auc, ap = evaluate(y[test], scores)
    return dict(set=name, protocol=protocol, seed=seed, method=method, roc_auc=auc, ap=ap,
                seconds=time.perf_counter() - tic)  # fmt: skip


def run(sets, protocols, seeds, methods, detector_params, n_jobs=1, done=(), save=None, log=print,
        members_dir=None):
    """Run every cell not in ``done`` (an earlier run's cells); ``save(cells)`` after each one."""
    have = {(c["set"], c["protocol"], c["seed"], c["method"]) for c in done}
    cells = [
        (name, protocol, seed, method)
        for name in sets
        for protocol in protocols
        for seed in (seeds if protocol == "semi" else (0,))
        for method in methods
        if (name, protocol, seed, method) not in have
    ]
    # Slowest first, so parallel workers do not end on one long cell.
    cells.sort(key=lambda c: c[3] not in DETECTORS)
    out = list(done)
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(run_cell)(*cell, detector_params, members_dir) for cell in cells
    )
    for r in results:
        out.append(r)
        if save is not None:
            save(out)
        log(f"{r['set']:12s} {r['protocol']:4s} seed {r['seed']}  {r['method']:12s} "
            f"ROC-AUC {r['roc_auc']:.3f}  AP {r['ap']:.3f}  ({r['seconds']:.1f} s)")  # fmt: skip
    return out


def summary(cells, protocol, methods) -> dict:
    """{set: {method: (mean ROC-AUC, mean AP over split seeds)}}, sets in the usual order."""
    out = {}
    for name in sorted({c["set"] for c in cells if c["protocol"] == protocol}, key=ALL_SETS.index):
        out[name] = {}
        for m in methods:
            mine = [c for c in cells if c["protocol"] == protocol and c["set"] == name and c["method"] == m]
            if mine:
                out[name][m] = (np.mean([c["roc_auc"] for c in mine]), np.mean([c["ap"] for c in mine]))
    return out


def table(cells, protocol, methods) -> tuple[list[str], list[list[str]]]:
    """Header and body (a row per set, then the means) of one protocol's table; best in bold."""
    per_set = summary(cells, protocol, methods)
    methods = [m for m in methods if all(m in v for v in per_set.values())]
    head = ["set"] + [f"ROC-AUC {m}" for m in methods] + [f"AP {m}" for m in methods]

    def bold(values):
        return [f"**{v:.3f}**" if v == max(values) else f"{v:.3f}" for v in values]

    def cells_of(get):
        return bold([get(m, 0) for m in methods]) + bold([get(m, 1) for m in methods])

    body = [[name] + cells_of(lambda m, k, v=v: v[m][k]) for name, v in per_set.items()]
    body.append(["**mean**"] + cells_of(lambda m, k: float(np.mean([v[m][k] for v in per_set.values()]))))
    return head, body


def verdict(cells, protocol) -> list[str]:
    """The issue's targets for the default detector, checked against IsolationForest and the anchors."""
    per_set = summary(cells, protocol, ["DOD", "IF"])
    if not per_set or not all("DOD" in v and "IF" in v for v in per_set.values()):
        return []
    dod_auc, if_auc = (float(np.mean([v[m][0] for v in per_set.values()])) for m in ("DOD", "IF"))
    dod_ap, if_ap = (float(np.mean([v[m][1] for v in per_set.values()])) for m in ("DOD", "IF"))
    worse = [f"{s} ({v['DOD'][0]:.3f} vs {v['IF'][0]:.3f})" for s, v in per_set.items()
             if v["DOD"][0] < v["IF"][0] - 0.10]  # fmt: skip
    best_anchor = max(ANCHORS[protocol].items(), key=lambda kv: kv[1])
    n_seeds = len({c["seed"] for c in cells if c["protocol"] == protocol})
    return [
        f"{PROTOCOLS[protocol].capitalize()} ({len(per_set)} sets, {n_seeds} split seed(s)): "
        f"mean ROC-AUC DOD {dod_auc:.3f} vs IF {if_auc:.3f} (target {TARGETS[protocol]:.2f}; "
        f"best published anchor {best_anchor[0]} {best_anchor[1]:.3f}); "
        f"mean AP DOD {dod_ap:.3f} vs IF {if_ap:.3f}.",
        "Sets more than 0.10 below IF's ROC-AUC: " + (", ".join(worse) or "none") + ".",
    ]


def seconds(cells, protocol, methods) -> str:
    return ", ".join(
        f"{m} {sum(c['seconds'] for c in cells if c['protocol'] == protocol and c['method'] == m):.0f} s"
        for m in methods
        if any(c["method"] == m for c in cells)
    )


def markdown(cells, methods) -> str:
    parts = []
    for protocol in PROTOCOLS:
        if not any(c["protocol"] == protocol for c in cells):
            continue
        head, body = table(cells, protocol, methods)
        parts += [f"## {PROTOCOLS[protocol]}", "", "| " + " | ".join(head) + " |"]
        parts += ["|---|" + "---:|" * (len(head) - 1)]
        parts += ["| " + " | ".join(row) + " |" for row in body]
        parts += ["", *verdict(cells, protocol)]
        parts += [f"Fit + score time: {seconds(cells, protocol, methods)}.", ""]
    return "\n".join(parts)


def rst(cells, methods, meta) -> str:
    """The docs page body (``docs/anomaly_results.rst``): one table per protocol."""
    lines = [
        ".. Generated by ``python -m benchmarks.anomaly --docs``; do not edit.",
        "",
        f"skflow {meta['skflow']}, scikit-learn {meta['sklearn']}, torch {meta['torch']}, "
        f"{meta['threads']} thread(s) per process, {meta['wall_seconds'] / 60:.0f} minutes, "
        f"{meta['date'][:10]}.  "
        f"Detector parameters: {meta['detector_params'] or 'defaults'}.",
        "",
    ]
    for protocol in PROTOCOLS:
        if not any(c["protocol"] == protocol for c in cells):
            continue
        head, body = table(cells, protocol, methods)
        title = PROTOCOLS[protocol].capitalize()
        notes = verdict(cells, protocol)
        lines += [title, "~" * len(title), ""] + ([" ".join(notes), ""] if notes else [])
        lines += [".. list-table::", "   :header-rows: 1", ""]
        for row in [head] + body:
            lines.append(f"   * - {row[0]}")
            lines += [f"     - {cell}".rstrip() for cell in row[1:]]
        lines += ["", f"Fit + score time: {seconds(cells, protocol, methods)}.", ""]
    return "\n".join(lines)


def parse_params(text: str | None) -> dict:
    """``"a=1,b=0.5,c=auto"`` -> ``{"a": 1, "b": 0.5, "c": "auto"}``."""
    params = {}
    for item in filter(None, (text or "").split(",")):
        key, value = item.split("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", help="comma-separated set names (default: all 20)")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_SETS)} and split seed 0")
    parser.add_argument("--protocols", default="all,semi", help="comma-separated subset of: all, semi")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="split seeds of the semi protocol")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"from {', '.join(METHODS)}")
    parser.add_argument("--detector-params", help="e.g. trim_fraction=0,n_estimators=3")
    parser.add_argument("--jobs", type=int, default=1, help="cells run in parallel (joblib processes)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--tag", default="anomaly", help="stem of the result files")
    parser.add_argument("--docs", action="store_true", help="also write docs/anomaly_results.rst")
    parser.add_argument("--resume", action="store_true", help="keep the cells already in <out>/<tag>.json")
    parser.add_argument("--from-json", type=Path, metavar="PATH", help="only rewrite the tables from a json")
    parser.add_argument("--members", type=Path, metavar="DIR",
                        help="also save each detector member's scores in DIR (for benchmarks.anomaly_combine)")
    args = parser.parse_args(argv)
    docs = REPO / "docs" / "anomaly_results.rst"
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        methods = [m for m in METHODS if any(c["method"] == m for c in saved["cells"])]
        print(markdown(saved["cells"], methods))
        if args.docs:
            docs.write_text(rst(saved["cells"], methods, saved["meta"]))
            print(f"Wrote {docs}")
        return 0
    if not DATA.is_dir():
        print(f"Anomaly data not found at {DATA}; nothing to do.")
        return 0
    sets = args.sets.split(",") if args.sets else list(QUICK_SETS if args.quick else ALL_SETS)
    unknown = [s for s in sets if not (DATA / f"{s}.npz").is_file()]
    unknown += [m for m in args.methods.split(",") if m not in METHODS]
    unknown += [p for p in args.protocols.split(",") if p not in PROTOCOLS]
    if unknown:
        parser.error(f"unknown set(s), method(s) or protocol(s): {', '.join(unknown)}")
    methods, protocols = args.methods.split(","), args.protocols.split(",")
    seeds = (0,) if args.quick else tuple(int(s) for s in args.seeds.split(","))
    params = parse_params(args.detector_params)
    path = args.out / f"{args.tag}.json"
    done, earlier = [], 0.0
    if args.resume and path.is_file():
        saved = json.loads(path.read_text())
        if saved["meta"]["detector_params"] != params:
            parser.error(f"{path} was run with detector parameters {saved['meta']['detector_params']}")
        done, earlier = saved["cells"], saved["meta"]["wall_seconds"]
    meta = {
        "skflow": skflow.__version__,
        "sklearn": sklearn.__version__,
        "torch": torch.__version__,
        "threads": int(os.environ["OMP_NUM_THREADS"]),
        "jobs": args.jobs,
        "seeds": list(seeds),
        "detector_params": params,
    }
    tic = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    def save(cells):
        meta["date"] = datetime.datetime.now().isoformat(timespec="seconds")
        meta["wall_seconds"] = earlier + time.perf_counter() - tic
        path.write_text(json.dumps({"meta": meta, "cells": cells}, indent=1))

    if args.members is not None:
        args.members.mkdir(parents=True, exist_ok=True)
    cells = run(sets, protocols, seeds, methods, params, n_jobs=args.jobs, done=done, save=save,
                members_dir=args.members)
    save(cells)
    report = markdown(cells, methods)
    print()
    print(report)
    print(f"Wall time: {meta['wall_seconds']:.0f} s")
    (args.out / f"{args.tag}.md").write_text(f"# Anomaly detection on ODDS\n\n{report}\n")
    print(f"Wrote {args.out / (args.tag + '.json')} and {args.out / (args.tag + '.md')}")
    if args.docs:
        docs.write_text(rst(cells, methods, meta))
        print(f"Wrote {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
