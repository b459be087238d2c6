"""FerumalFlowDensity vs RealNVPDensity (and GMM / KDE baselines) in the low-data regime.

Usage::

    python benchmarks/ferumal_vs_realnvp.py [--quick] [--seeds N] [--jobs N] [--out DIR] [--docs]
    python benchmarks/ferumal_vs_realnvp.py --from-json benchmarks/results/ferumal_vs_realnvp.json

Prints a markdown table (data set x train size: held-out mean log-likelihood
+- standard error, fit seconds and trainable parameters of each model), the
k-means++ vs random auxiliary-point initialisation comparison, and writes
``ferumal_vs_realnvp.json``, ``ferumal_vs_realnvp.md`` and
``ferumal_vs_realnvp_convergence.png`` under ``benchmarks/results/``
(git-ignored).

Protocol
--------
- Every model sees the same ``n_train`` rows and is scored on the same
  held-out rows (in the units of the data; higher is better).  Flows run at
  their defaults with ``random_state=seed``; GaussianMixture picks
  ``n_components`` x ``covariance_type`` and KernelDensity its bandwidth by
  3-fold ``GridSearchCV`` on the (standardised) training rows.
- Synthetic sets have a known density, shown in the ``truth`` column.
- ``digits`` (integers 0..16, some columns constant) is dequantised with
  uniform noise U[0, 1) on train and test rows alike, as is usual for
  discrete data; the estimators themselves never dequantise.  ``iris`` and
  ``wine`` are used as shipped (values are rounded, so duplicates exist).
- "+-" is the standard error over seeds of the per-seed mean (with one
  seed: over the test rows).
- Real sets from ``../shared/data/density`` are used when that directory
  exists and skipped otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import special  # noqa: E402
from scipy.special import logsumexp  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.neighbors import KernelDensity  # noqa: E402

from skflow import FerumalFlowDensity, RealNVPDensity  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "density"
RESULTS = REPO / "benchmarks" / "results"
STEM = "ferumal_vs_realnvp"  # output file names: <STEM>.md, <STEM>.json, <STEM>_convergence.png
# Held-out rows per (data set, seed): enough for a tight mean, bounded cost.
MAX_TEST_ROWS = 2000

# ------------------------------------------------------------------ data sets


def _gmm_truth(d: int, k: int, seed: int):
    """A fixed random Gaussian mixture in ``d`` dimensions: sampler and log-density."""
    rs = np.random.RandomState(seed)
    means = rs.normal(scale=3.0, size=(k, d))
    chols = []
    for _ in range(k):
        a = rs.normal(size=(d, d)) / np.sqrt(d)
        cov = a @ a.T + 0.3 * np.eye(d)
        chols.append(np.linalg.cholesky(cov))
    weights = rs.dirichlet(np.full(k, 3.0))

    def sample(n, rng):
        comp = rng.choice(k, size=n, p=weights)
        z = rng.normal(size=(n, d))
        return means[comp] + np.einsum("nij,nj->ni", np.stack(chols)[comp], z)

    def logpdf(X):
        out = []
        for m, c, w in zip(means, chols, weights):
            sol = np.linalg.solve(c, (X - m).T)
            logdet = 2 * np.log(np.diag(c)).sum()
            out.append(np.log(w) - 0.5 * (sol**2).sum(0) - 0.5 * logdet - 0.5 * d * np.log(2 * np.pi))
        return logsumexp(np.stack(out), axis=0)

    return sample, logpdf


def _moons_truth(noise: float = 0.1):
    """make_moons-style two moons (angle uniform on [0, pi]) plus Gaussian noise."""

    def centres(t):
        outer = np.stack([np.cos(t), np.sin(t)], -1)
        inner = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], -1)
        return outer, inner

    def sample(n, rng):
        t = rng.uniform(0, np.pi, size=n)
        outer, inner = centres(t)
        pick = rng.rand(n) < 0.5
        return np.where(pick[:, None], outer, inner) + noise * rng.normal(size=(n, 2))

    t_grid = (np.arange(4000) + 0.5) * np.pi / 4000
    nodes = np.concatenate(centres(t_grid))  # quadrature nodes, equal weights

    def logpdf(X):
        out = []
        for start in range(0, len(X), 500):  # bounded (500, 8000) intermediates
            d2 = ((X[start : start + 500, None, :] - nodes[None]) ** 2).sum(-1)
            log_k = -0.5 * d2 / noise**2 - np.log(2 * np.pi * noise**2)
            out.append(logsumexp(log_k, axis=1) - np.log(len(nodes)))
        return np.concatenate(out)

    return sample, logpdf


def _rings_truth(radii=(1.0, 2.0, 3.0), noise: float = 0.15):
    """Concentric rings, weight proportional to radius, angle uniform, Gaussian noise.

    Density in closed form: the angular integral of a Gaussian is a Bessel I0.
    """
    radii = np.asarray(radii)
    weights = radii / radii.sum()

    def sample(n, rng):
        ring = rng.choice(len(radii), size=n, p=weights)
        t = rng.uniform(0, 2 * np.pi, size=n)
        pts = radii[ring, None] * np.stack([np.cos(t), np.sin(t)], -1)
        return pts + noise * rng.normal(size=(n, 2))

    def logpdf(X):
        rho = np.linalg.norm(X, axis=1)[:, None]
        s2 = noise**2
        arg = rho * radii[None] / s2
        # log[exp(-(rho^2 + r^2) / 2 s2) I0(rho r / s2)] with I0 = i0e * exp(arg)
        log_terms = -((rho - radii[None]) ** 2) / (2 * s2) + np.log(special.i0e(arg)) - np.log(2 * np.pi * s2)
        return logsumexp(log_terms + np.log(weights)[None], axis=1)

    return sample, logpdf


@dataclass
class DataSet:
    name: str
    sizes: tuple[int, ...]
    quick_sizes: tuple[int, ...]
    # (n_train, rng) -> X_train, X_test, log p_true(X_test) or None
    split: Callable[[int, np.random.RandomState], tuple]


def _synthetic(name, truth, sizes, quick_sizes, n_test=MAX_TEST_ROWS):
    sample, logpdf = truth

    def split(n_train, rng):
        X_train, X_test = sample(n_train, rng), sample(n_test, rng)
        return X_train, X_test, logpdf(X_test)

    return DataSet(name, sizes, quick_sizes, split)


def _real(name, X, sizes, quick_sizes, X_test=None, dequantise=False):
    def split(n_train, rng):
        order = rng.permutation(len(X))
        X_train = X[order[:n_train]]
        X_te = X[order[n_train : n_train + MAX_TEST_ROWS]] if X_test is None else X_test[:MAX_TEST_ROWS]
        if dequantise:
            X_train = X_train + rng.uniform(size=X_train.shape)
            X_te = X_te + rng.uniform(size=X_te.shape)
        return X_train, X_te, None

    return DataSet(name, sizes, quick_sizes, split)


def datasets() -> list[DataSet]:
    out = [
        _synthetic("moons (2-D)", _moons_truth(), (100, 500, 2000), (100,)),
        _synthetic("rings (2-D)", _rings_truth(), (100, 500, 2000), (500,)),
        _synthetic("GMM 4-D", _gmm_truth(4, 4, seed=4), (100, 500, 2000), ()),
        _synthetic("GMM 8-D", _gmm_truth(8, 5, seed=8), (100, 500, 2000), (500,)),
        _real("iris", load_iris().data, (100,), (100,)),
        _real("wine", load_wine().data, (120,), (120,)),
        _real("breast_cancer", load_breast_cancer().data, (100, 400), (100,)),
        _real("digits (dequantised)", load_digits().data, (500, 1200), (), dequantise=True),
    ]
    if SHARED_DATA.is_dir():
        def load(f):
            return np.load(SHARED_DATA / f"{f}.npz")

        out += [
            _real("concrete", load("concrete")["X"], (100, 500), (500,)),
            _real("wine_quality_red", load("wine_quality_red")["X"], (100, 500, 1000), ()),
            _real("power_plant", load("power_plant")["X"], (100, 500, 2000), (500,)),
            _real("kin8nm", load("kin8nm")["X"], (100, 500, 2000), ()),
            _real("magic_gamma", load("magic_gamma")["X"], (500, 2000), ()),
            _real("protein", load("protein")["X"], (500, 2000), ()),
            _real("miniboone (MAF)", load("miniboone_maf")["X"], (500, 2000), (),
                  X_test=load("miniboone_maf")["X_test"]),
        ]
    return out


# ---------------------------------------------------------------------- models


class _Standardised:
    """Fit a baseline on standardised rows; score in the units of the data."""

    def __init__(self, search):
        self.search = search

    def fit(self, X):
        self.loc, self.scale = X.mean(0), X.std(0)
        self.scale[self.scale == 0] = 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.search.fit((X - self.loc) / self.scale)
        self.best_params_ = self.search.best_params_
        self.n_parameters_ = self._n_parameters(self.search.best_estimator_, X.shape)
        return self

    @staticmethod
    def _n_parameters(est, shape):
        if isinstance(est, GaussianMixture):
            return int(est._n_parameters())
        return int(np.prod(shape)) + 1  # a KDE keeps every row, plus its bandwidth

    def score_samples(self, X):
        return self.search.best_estimator_.score_samples((X - self.loc) / self.scale) - np.log(self.scale).sum()


def gmm_cv(seed):
    grid = {"n_components": [1, 2, 3, 5, 8, 12], "covariance_type": ["full", "diag"]}
    return _Standardised(GridSearchCV(GaussianMixture(n_init=1, random_state=seed), grid, cv=3))


def kde_cv(seed):
    grid = {"bandwidth": np.logspace(-1.5, 0.5, 21)}
    return _Standardised(GridSearchCV(KernelDensity(), grid, cv=3))


MODELS: dict[str, Callable[[int], object]] = {
    "Ferumal": lambda seed: FerumalFlowDensity(random_state=seed),
    "RealNVP": lambda seed: RealNVPDensity(random_state=seed),
    "GMM (CV)": gmm_cv,
    "KDE (CV)": kde_cv,
}


def fit_and_score(make, X_train, X_test):
    """Fit a fresh model and return a dict of what we report."""
    model = make()
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train)
    seconds = time.perf_counter() - tic
    scores = model.score_samples(X_test)
    out = {
        "scores": scores,
        "seconds": seconds,
        "n_parameters": int(model.n_parameters_),
    }
    if hasattr(model, "validation_scores_"):
        out["n_iter"] = int(model.n_iter_)
        out["validation_scores"] = list(map(float, model.validation_scores_ or []))
    return out


# -------------------------------------------------------------------- reporting


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
    if not np.isfinite(mean):
        return "-inf"
    return f"{mean:.2f} ± {se:.2f}"


def _run_one(ds, n_train, seed, models):
    """Every model on one (data set, size, seed): the same rows for all."""
    torch.set_num_threads(1)
    X_train, X_test, truth = ds.split(n_train, np.random.RandomState(seed))
    runs = {name: fit_and_score(lambda: make(seed), X_train, X_test) for name, make in models.items()}
    return X_train.shape[1], len(X_test), truth, runs


def _run_cells(cells, models, n_seeds, log, n_jobs=1):
    """Fit every model on every (data set, size, seed); return raw results per cell."""
    from joblib import Parallel, delayed

    tasks = [(ds, n, seed) for ds, n in cells for seed in range(n_seeds)]
    outputs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_run_one)(ds, n, seed, models) for ds, n, seed in tasks
    )
    results = {}
    for (ds, n_train, seed), (n_features, n_test, truth, runs) in zip(tasks, outputs):
        cell = results.setdefault((ds.name, n_train), {
            "dataset": ds.name, "n_train": n_train, "n_features": n_features, "n_test": n_test,
            "truth": [], "runs": {name: [] for name in models},
        })
        if truth is not None:
            cell["truth"].append(truth)
        for name, run in runs.items():
            cell["runs"][name].append(run)
            log(f"  {ds.name:22s} n={n_train:5d} seed={seed} {name:10s} "
                f"{np.mean(run['scores']):10.3f} {run['seconds']:6.1f}s")
    return list(results.values())


def _table(results, models):
    names = list(models)
    head = ["data set", "d", "n_train", "truth"] + [f"{m}" for m in names]
    head += [f"{m} s" for m in names] + [f"{m} params" for m in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    wins = {m: 0 for m in names}
    for cell in results:
        summaries = {m: _summary([r["scores"] for r in cell["runs"][m]]) for m in names}
        best = max(names, key=lambda m: summaries[m][0])
        wins[best] += 1
        truth = _fmt(*_summary(cell["truth"])) if cell["truth"] else ""
        scores = [("**" + _fmt(*summaries[m]) + "**") if m == best else _fmt(*summaries[m]) for m in names]
        seconds = [f"{np.mean([r['seconds'] for r in cell['runs'][m]]):.1f}" for m in names]
        params = [str(cell["runs"][m][0]["n_parameters"]) for m in names]
        row = [cell["dataset"], str(cell["n_features"]), str(cell["n_train"]), truth, *scores, *seconds, *params]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines), wins


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
    ("moons (2-D)", 500), ("GMM 8-D", 500), ("breast_cancer", 400), ("power_plant", 2000),
    ("moons (2-D)", 100), ("breast_cancer", 100), ("concrete", 500), ("power_plant", 500),
]


DOCS = REPO / "docs"


def docs_table(payload) -> str:
    """``docs/ferumal_results.rst``: the held-out table of a saved run, best per row in bold."""
    models = ["Ferumal", "RealNVP", "GMM (CV)", "KDE (CV)"]
    head = ["data set", "d", "n_train", "truth", *models, "Ferumal params", "RealNVP params"]
    lines = [
        ".. Generated by ``python benchmarks/ferumal_vs_realnvp.py --docs``; do not edit.",
        "",
        f".. list-table:: Held-out mean log-likelihood (nats per row, data units; mean ± standard error "
        f"over {payload['n_seeds']} seeds; best in bold)",
        "   :header-rows: 1",
        "",
    ]
    body = []
    for cell in payload["results"]:
        runs = cell["models"]
        best = max(models, key=lambda m: runs[m]["mean_log_likelihood"])
        scores = []
        for m in models:
            text = f"{runs[m]['mean_log_likelihood']:.2f} ± {runs[m]['standard_error']:.2f}"
            scores.append(f"**{text}**" if m == best else text)
        truth = f"{cell['truth'][0]:.2f}" if cell.get("truth") else ""
        body.append([cell["dataset"], str(cell["n_features"]), str(cell["n_train"]), truth, *scores,
                     f"{runs['Ferumal']['n_parameters']:,}", f"{runs['RealNVP']['n_parameters']:,}"])
    for row in [head, *body]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {value}".rstrip() for value in row[1:]]
    return "\n".join(lines) + "\n"


def write_docs(payload, convergence_png: Path | None) -> None:
    """The docs table and, if given, the convergence figure as a palette PNG (a third of the size)."""
    (DOCS / "ferumal_results.rst").write_text(docs_table(payload))
    if convergence_png is not None and convergence_png.is_file():
        from PIL import Image

        image = Image.open(convergence_png).convert("RGB").quantize(colors=128)
        image.save(DOCS / "_static" / "ferumal_convergence.png", optimize=True)
    print(f"wrote {DOCS / 'ferumal_results.rst'}", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few sets, one seed (< 3 min on 2 cores)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3, quick 1)")
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

    cells = [(ds, n) for ds in datasets() for n in (ds.quick_sizes if args.quick else ds.sizes)]
    log(f"{len(cells)} cells x {n_seeds} seed(s)")
    results = _run_cells(cells, MODELS, n_seeds, log, args.jobs)
    table, wins = _table(results, MODELS)

    # k-means++ vs random initialisation of the auxiliary points.
    init_models = {
        "kmeans++": lambda seed: FerumalFlowDensity(aux_init="kmeans++", random_state=seed),
        "random": lambda seed: FerumalFlowDensity(aux_init="random", random_state=seed),
    }
    init_cells = [c for c in cells if c[1] >= 500 and c[0].name != "rings (2-D)"] if args.quick else cells
    log(f"aux_init comparison on {len(init_cells)} cells")
    init_results = _run_cells(init_cells, {"random": init_models["random"]}, n_seeds, log, args.jobs)
    by_key = {(c["dataset"], c["n_train"]): c for c in results}
    for cell in init_results:  # the default (k-means++) runs are the table's Ferumal runs
        cell["runs"]["kmeans++"] = by_key[(cell["dataset"], cell["n_train"])]["runs"]["Ferumal"]
        cell["runs"] = {"kmeans++": cell["runs"]["kmeans++"], "random": cell["runs"]["random"]}
    init_table, init_wins = _table(init_results, init_models)

    h2h = {
        other: _head_to_head(results, "Ferumal", other) for other in MODELS if other != "Ferumal"
    }
    conv_table, conv_faster = _convergence_table(results)
    elapsed = time.perf_counter() - tic
    lines = [
        f"# FerumalFlowDensity vs RealNVPDensity ({'quick' if args.quick else 'full'} run)",
        "",
        f"Held-out mean log-likelihood (nats per row, data units; higher is better), mean ± standard error "
        f"over {n_seeds} seed(s){' (one seed: over test rows)' if n_seeds == 1 else ''}; best in bold. "
        "Flows at their defaults; GMM and KDE tuned by 3-fold GridSearchCV. `truth`: the true density of "
        "the synthetic sets. Digits dequantised with U[0, 1) noise.",
        "",
        table,
        "",
        "Best model per cell: " + ", ".join(f"{m} {w}" for m, w in wins.items()) + ".",
        "",
        "Ferumal vs each baseline, cells better / within one combined standard error / worse: "
        + "; ".join(f"{m}: {b}/{t}/{w}" for m, (b, t, w) in h2h.items()) + ".",
        "",
        "## Convergence (validation log-likelihood, standardised units)",
        "",
        "Epochs / seconds until each flow's held-out (validation) log-likelihood first reaches the lower "
        "of the two flows' best values, median over seeds; `best val` is the median best validation score.",
        "",
        conv_table,
        "",
        "Reached the common level first (median seconds): "
        + ", ".join(f"{m} {k}" for m, k in conv_faster.items()) + " cells.",
        "",
        "## Auxiliary-point initialisation (FerumalFlowDensity defaults otherwise)",
        "",
        init_table,
        "",
        "Best per cell: " + ", ".join(f"{m} {w}" for m, w in init_wins.items()) + "; k-means++ vs random "
        "better / tie / worse: " + "{}/{}/{}".format(*_head_to_head(init_results, "kmeans++", "random")) + ".",
        "",
        f"Total time {elapsed / 60:.1f} min; torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}.",
    ]
    report = "\n".join(lines)
    print(report)
    (args.out / f"{STEM}.md").write_text(report + "\n")
    plotted = _plot_convergence(results, CONVERGENCE_PICKS, args.out / f"{STEM}_convergence.png")

    def jsonable(cells_):
        out = []
        for cell in cells_:
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

    payload = {
        "quick": args.quick,
        "n_seeds": n_seeds,
        "seconds": elapsed,
        "results": jsonable(results),
        "aux_init": jsonable(init_results),
        "head_to_head": {m: dict(zip(("better", "tie", "worse"), v)) for m, v in h2h.items()},
    }
    (args.out / f"{STEM}.json").write_text(json.dumps(payload, indent=1))
    log(f"wrote {args.out / (STEM + '.md')}, {args.out / (STEM + '.json')}"
        + (f", {args.out / (STEM + '_convergence.png')}" if plotted else ""))
    if args.docs:
        write_docs(payload, args.out / f"{STEM}_convergence.png" if plotted else None)


if __name__ == "__main__":
    # Run the importable module, not __main__, so that parallel workers can
    # unpickle its functions by reference.
    here = str(Path(__file__).resolve().parent)
    sys.path.insert(0, here)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    import ferumal_vs_realnvp

    ferumal_vs_realnvp.main()
