"""Speed of SplineFlowDensity: training step cost vs RealNVP, and sampling rate.

Usage::

    python -m benchmarks.spline_speed [--quick] [--threads N] [--out DIR]

Prints two markdown tables and writes ``spline_speed.json`` under
``benchmarks/results/`` (git-ignored).

Protocol
--------
- *Training step*: one optimiser step (float32 forward, backward, AdamW
  update, exactly :meth:`skflow.engine.training.Trainer._step`) on a batch of
  256 rows of 16 features (also 1024 rows, and a larger network), for flows
  built by each estimator's own ``_build_transforms`` at equal ``n_layers``
  and ``hidden_dims`` and data-initialised on the batch.  Median over repeats of the mean time of a
  block of steps (after warm-up), in CPU time of this process, which other
  load on the machine barely changes.  The ratio is against RealNVP with the
  same mixing (the paper reports splines 30-40 % slower than affine
  couplings; the target here is at most 2x).
- *Sampling*: ``sample(n)`` and ``score_samples`` rows per second of a
  fitted model (float64, the base class's inference chunks), coupling and
  autoregressive, 16 features, defaults otherwise.  Wall-clock
  rows/s depends on other load on the machine; rows per CPU-second does
  not (with ``--threads 2`` it counts both threads).  Target: at least 100k
  rows/s in coupling mode on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from skflow import RealNVPDensity, SplineFlowDensity  # noqa: E402
from skflow.engine import Compose, Flow  # noqa: E402
from skflow.engine.training import Trainer  # noqa: E402

from . import RESULTS  # noqa: E402

try:  # the engine's runtime module owns the inference chunk since the engine refactor
    from skflow.engine.runtime import INFERENCE_CHUNK  # noqa: E402
except ImportError:
    from skflow.base import _INFERENCE_CHUNK as INFERENCE_CHUNK  # noqa: E402

N_FEATURES = 16
BATCH = 256


def _data(n: int, seed: int = 0) -> np.ndarray:
    """Correlated, skewed 16-D data (standardised): the speed does not depend on it much."""
    rng = np.random.RandomState(seed)
    z = rng.standard_normal((n, N_FEATURES))
    A = rng.normal(size=(N_FEATURES, N_FEATURES)) / np.sqrt(N_FEATURES)
    X = np.tanh(z @ A) + 0.3 * z**2
    return (X - X.mean(0)) / X.std(0)


def _flow(est, X: np.ndarray) -> Flow:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers = est._build_transforms(N_FEATURES, torch.Generator().manual_seed(0))
    flow = Flow(Compose(layers), N_FEATURES).float()
    flow.data_init(torch.tensor(X, dtype=torch.float32))
    return flow


def time_steps(est, X: np.ndarray, n_steps: int, repeats: int, batch: int = BATCH) -> float:
    """Median CPU milliseconds per training step (process time: robust to other load)."""
    flow = _flow(est, X[:batch])
    trainer = Trainer(flow, learning_rate=1e-4)
    flow.train()
    xb = torch.tensor(X[:batch], dtype=torch.float32)
    for _ in range(5):
        trainer._step(xb, None)
    blocks = []
    for _ in range(repeats):
        tic = time.process_time()
        for _ in range(n_steps):
            trainer._step(xb, None)
        blocks.append((time.process_time() - tic) / n_steps * 1e3)
    return statistics.median(blocks)


def _rate(fn, n: int, repeats: int) -> tuple[float, float]:
    """Best (wall rows/s, rows per CPU-second) of ``repeats`` calls of ``fn``."""
    wall, cpu = 0.0, 0.0
    for r in range(repeats):
        tic_wall, tic_cpu = time.perf_counter(), time.process_time()
        fn(r)
        wall = max(wall, n / (time.perf_counter() - tic_wall))
        cpu = max(cpu, n / max(time.process_time() - tic_cpu, 1e-9))
    return wall, cpu


def sampling_rates(model, n_samples: int, repeats: int) -> dict:
    """Rows/s of ``sample`` and ``score_samples`` of a fitted model."""
    S = model.sample(n_samples, random_state=0)
    sample_wall, sample_cpu = _rate(lambda r: model.sample(n_samples, random_state=r), n_samples, repeats)
    score_wall, score_cpu = _rate(lambda r: model.score_samples(S), n_samples, repeats)
    return dict(
        n_samples=n_samples,
        sample_rows_per_s=sample_wall,
        sample_rows_per_cpu_s=sample_cpu,
        score_rows_per_s=score_wall,
        score_rows_per_cpu_s=score_cpu,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and samples (< 3 min)")
    parser.add_argument("--threads", type=int, default=int(os.environ["OMP_NUM_THREADS"]))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_steps, repeats, n_samples = (10, 3, 20_000) if args.quick else (50, 5, 200_000)
    X = _data(1000 if args.quick else 4000)

    sizes = [(5, (64, 64), BATCH), (5, (64, 64), 4 * BATCH), (10, (128, 128), BATCH)]
    sizes = sizes[:1] if args.quick else sizes
    step_rows = []
    for n_layers, hidden, batch in sizes:
        common = dict(n_layers=n_layers, hidden_dims=hidden)
        models = {
            "RealNVP alternate": RealNVPDensity(**common, mixing="alternate"),
            "RealNVP lu": RealNVPDensity(**common, mixing="lu"),
            "Spline coupling lu": SplineFlowDensity(**common),
            "Spline coupling alternate": SplineFlowDensity(**common, mixing="alternate"),
            "Spline autoregressive lu": SplineFlowDensity(**common, architecture="autoregressive"),
        }
        ms = {name: time_steps(est, X, n_steps, repeats, batch) for name, est in models.items()}
        for name, value in ms.items():
            mixing = name.split()[-1]
            step_rows.append(
                dict(
                    n_layers=n_layers,
                    hidden_dims=list(hidden),
                    batch=batch,
                    model=name,
                    ms_per_step=value,
                    ratio_vs_realnvp=value / ms[f"RealNVP {mixing}"],
                )
            )

    fit = dict(max_iter=3, early_stopping=False, random_state=0)
    samplers = {
        "RealNVP (defaults)": RealNVPDensity(**fit),
        "Spline coupling (defaults)": SplineFlowDensity(**fit),
        "Spline autoregressive (defaults)": SplineFlowDensity(**fit, architecture="autoregressive"),
    }
    sample_rows = []
    for name, est in samplers.items():
        model = est.fit(X)
        n = n_samples if "autoregressive" not in name else n_samples // 4
        rates = sampling_rates(model, n, repeats=2)
        sample_rows.append(dict(model=name, inference_chunk=INFERENCE_CHUNK, **rates))

    print(f"## Training step ({N_FEATURES} features, {args.threads} thread(s), float32, CPU ms)\n")
    print("| n_layers | hidden | batch | model | ms/step | ratio vs RealNVP (same mixing) |")
    print("|---:|---|---:|---|---:|---:|")
    for r in step_rows:
        print(
            f"| {r['n_layers']} | {tuple(r['hidden_dims'])} | {r['batch']} | {r['model']} "
            f"| {r['ms_per_step']:.2f} | {r['ratio_vs_realnvp']:.2f} |"
        )
    print(f"\n## Inference ({N_FEATURES} features, float64, {args.threads} thread(s))\n")
    print("| model | chunk | rows | sample rows/s | (per CPU-s) | score_samples rows/s | (per CPU-s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in sample_rows:
        print(
            f"| {r['model']} | {r['inference_chunk']} | {r['n_samples']} | {r['sample_rows_per_s']:,.0f} "
            f"| {r['sample_rows_per_cpu_s']:,.0f} | {r['score_rows_per_s']:,.0f} "
            f"| {r['score_rows_per_cpu_s']:,.0f} |"
        )

    args.out.mkdir(parents=True, exist_ok=True)
    meta = dict(
        threads=args.threads,
        quick=args.quick,
        torch=torch.__version__,
        python=sys.version.split()[0],
        machine=platform.machine(),
        processor=platform.processor(),
    )
    path = args.out / "spline_speed.json"
    path.write_text(json.dumps(dict(meta=meta, training_step=step_rows, inference=sample_rows), indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
