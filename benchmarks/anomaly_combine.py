"""Recombine saved detector members after the fact: new ensembles without refitting.

``python -m benchmarks.anomaly --members DIR`` saves, per cell, the scores of
each of the detector's members.  Runs with different detector parameters
saved in different directories can then be mixed member by member, e.g. three
members of the plain detector with two of the robust one, and evaluated on the
same cells in seconds::

    python -m benchmarks.anomaly --methods DOD --members benchmarks/results/members/plain \\
        --detector-params trim_fraction=0 --tag plain
    python -m benchmarks.anomaly --methods DOD --members benchmarks/results/members/robust --tag robust
    python -m benchmarks.anomaly_combine benchmarks/results/members \\
        "plain/DOD[0:5]" "plain/DOD[0:3]+robust/DOD[1:5:2]"

A spec is ``+``-joined ``RUN/METHOD[slice]`` terms (``RUN`` a subdirectory,
``METHOD`` the benchmark's method name, ``slice`` a Python slice of the
members); the ensemble's score is the mean of the chosen members'
log-densities, as in the detector: where every run saved the members'
nearest-neighbour densities (``n_neighbors`` set), the mean of the chosen
estimators' mean and the same members' neighbour densities' mean.  Only
cells present for every term are compared, and the table gives the mean
ROC-AUC and AP per protocol (split seeds averaged per set first, as in
``benchmarks.anomaly``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from .anomaly import evaluate

TERM = re.compile(r"^(?P<run>[^/\[]+)/(?P<method>[^\[]+)\[(?P<slice>[-0-9:]*)\]$")


def _slice(text: str) -> slice:
    return slice(*(int(p) if p else None for p in text.split(":")))


def parse(spec: str) -> list[tuple[str, str, slice]]:
    """``"a/DOD[0:3]+b/DOD[1::2]"`` -> ``[("a", "DOD", slice(0, 3)), ("b", "DOD", slice(1, None, 2))]``."""
    terms = []
    for term in spec.split("+"):
        match = TERM.match(term.strip())
        if match is None:
            raise ValueError(f"not RUN/METHOD[slice]: {term!r}")
        terms.append((match["run"], match["method"], _slice(match["slice"])))
    return terms


def cells_of(root: Path, run: str, method: str) -> dict[str, Path]:
    """``{"<set>__<protocol><seed>": path}`` of one run and method."""
    return {p.stem.split("__", 1)[1]: p for p in (root / run).glob(f"{method}__*.npz")}


def combine(root: Path, spec: str) -> dict[str, dict[str, tuple[float, float]]]:
    """``{protocol: {set: (ROC-AUC, AP)}}`` of an ensemble spec, split seeds averaged per set."""
    terms = parse(spec)
    available = [cells_of(root, run, method) for run, method, _ in terms]
    common = sorted(set.intersection(*(set(a) for a in available)))
    per_set = defaultdict(lambda: defaultdict(list))
    for cell in common:
        members, neighbors, y = [], [], None
        for (_, _, part), paths in zip(terms, available):
            data = np.load(paths[cell])
            members.append(data["member"][part])
            if neighbors is not None and "neighbors" in data.files and data["neighbors"].size:
                neighbors.append(data["neighbors"][part])
            else:
                neighbors = None
            y = data["y"]
        name, protocol_seed = cell.split("__")
        protocol = protocol_seed.rstrip("0123456789")
        score = np.concatenate(members).mean(axis=0)
        if neighbors is not None:
            score = 0.5 * (score + np.concatenate(neighbors).mean(axis=0))
        per_set[protocol][name].append(evaluate(y, score))
    return {p: {s: tuple(np.mean(v, axis=0)) for s, v in sets.items()} for p, sets in per_set.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="directory holding one subdirectory per --members run")
    parser.add_argument("specs", nargs="+", help='e.g. "plain/DOD[0:3]+robust/DOD[1:5:2]"')
    parser.add_argument("--per-set", action="store_true", help="also print each set's ROC-AUC")
    args = parser.parse_args(argv)
    results = {spec: combine(args.root, spec) for spec in args.specs}
    for protocol in sorted({p for r in results.values() for p in r}):
        print(protocol)
        for spec, result in results.items():
            sets = result.get(protocol, {})
            if not sets:
                continue
            auc, ap = np.mean(list(sets.values()), axis=0)
            print(f"  {spec:50s} {len(sets):2d} sets  ROC-AUC {auc:.3f}  AP {ap:.3f}")
        if args.per_set:
            names = sorted({s for r in results.values() for s in r.get(protocol, {})})
            for name in names:
                row = [results[spec].get(protocol, {}).get(name, (np.nan, np.nan))[0] for spec in args.specs]
                print(f"    {name:12s}", " ".join(f"{v:.3f}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
