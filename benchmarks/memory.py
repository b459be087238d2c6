"""Peak memory and throughput of inference and training on large data.

Each measurement runs in a fresh subprocess so that its peak resident set
size (``ru_maxrss``) belongs to that operation alone.  The claim is about
*overhead*: peak RSS minus the memory that the input and output arrays
themselves need, which must stay bounded (chunked inference) whatever the
number of rows.

    python -m benchmarks.memory                 # 10 million rows x 16 features
    python -m benchmarks.memory --rows 1000000  # quicker

Writes ``benchmarks/results/memory.json`` and ``memory.md``.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

from . import RESULTS

CHILD = r"""
import json, resource, sys, time
import numpy as np, joblib
op, rows, features, model_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
import torch  # noqa: F401  (imported before the baseline reading)
from skflow import RealNVPDensity
model = joblib.load(model_path) if op != "fit" else None
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rng = np.random.default_rng(0)
X = None if op == "sample" else rng.standard_normal((rows, features))
data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tic = time.perf_counter()
if op == "score_samples":
    out = model.score_samples(X)
elif op == "transform":
    out = model.transform(X)
elif op == "sample":
    out = model.sample(rows, random_state=0)
elif op == "fit":
    out = RealNVPDensity(n_layers=4, hidden_dims=(64, 64), max_iter=1, batch_size=4096,
                         early_stopping=False, random_state=0).fit(X).n_iter_
seconds = time.perf_counter() - tic
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out_bytes = out.nbytes if hasattr(out, "nbytes") else 0
print(json.dumps(dict(op=op, rows=rows, seconds=seconds, base_kib=base, data_kib=data, peak_kib=peak,
                      input_mib=0 if X is None else X.nbytes / 2**20, output_mib=out_bytes / 2**20)))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--fit-rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=16)
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)

    import joblib
    import numpy as np

    from skflow import RealNVPDensity

    rng = np.random.default_rng(1)
    model = RealNVPDensity(n_layers=4, max_iter=5, random_state=0).fit(rng.standard_normal((20_000, args.features)))
    model_path = RESULTS / "memory_model.joblib"
    joblib.dump(model, model_path)

    records = []
    for op, rows in [("score_samples", args.rows), ("transform", args.rows), ("sample", args.rows), ("fit", args.fit_rows)]:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, op, str(rows), str(args.features), str(model_path)],
            capture_output=True, text=True, check=True,
        )
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
        rec["rows_per_s"] = rows / rec["seconds"]
        # Everything above the baseline that is neither input nor output.
        rec["overhead_mib"] = (rec["peak_kib"] - rec["base_kib"]) / 1024 - rec["input_mib"] - rec["output_mib"]
        records.append(rec)
        print(f"{op:>14}: {rows:>10,d} rows  {rec['seconds']:8.1f} s  {rec['rows_per_s']:>12,.0f} rows/s  "
              f"input {rec['input_mib']:8.0f} MiB  output {rec['output_mib']:8.0f} MiB  "
              f"peak above baseline {(rec['peak_kib'] - rec['base_kib']) / 1024:8.0f} MiB  "
              f"overhead {rec['overhead_mib']:6.0f} MiB", flush=True)

    lines = [
        f"Peak memory, {args.features} features (RealNVPDensity, 4 layers, float64 inference; fit: 1 epoch, float32)",
        "",
        "| operation | rows | seconds | rows/s | input MiB | output MiB | peak above baseline MiB | overhead MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['op']} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows_per_s']:,.0f} | {r['input_mib']:.0f} | "
            f"{r['output_mib']:.0f} | {(r['peak_kib'] - r['base_kib']) / 1024:.0f} | {r['overhead_mib']:.0f} |"
        )
    (RESULTS / "memory.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "memory.json").write_text(json.dumps(records, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
