"""TransformerFlowDensity against the other flows on wide data (20 to 64 features).

Held-out log-likelihood (nats per row, in the units of the data) on sklearn's
digits (64 features, treated as 8x8 images in 2x2 patches), MiniBooNE (43),
breast_cancer (30) and Landsat satellite (36, the inliers of the ODDS set),
against SplineFlowDensity (coupling and autoregressive), RealNVPDensity, zuko
NSF and MAF, and a GaussianMixture tuned by 3-fold cross-validation; with the
parameter count of each model, its training time per epoch and its sampling
speed.  Speeds are only comparable within one run (the machine may be shared).

Digits and satellite hold integer levels; uniform noise ``U[0, 1)`` is added
to every value (dequantisation), once, with a fixed seed.  MiniBooNE and
satellite come from ``shared/data`` beside the repository
(``$SKFLOW_SHARED_DATA`` overrides it); a missing file skips that data set.

Usage::

    python benchmarks/transformer.py            # ~2000 train / 1000 test rows, one seed
    python -m benchmarks.transformer --quick    # a smoke run (few epochs)
    python benchmarks/transformer.py --datasets digits breast_cancer

Writes ``benchmarks/results/transformer.json`` and ``transformer.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402

from skflow import RealNVPDensity, SplineFlowDensity, TransformerFlowDensity  # noqa: E402

ROOT = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("SKFLOW_SHARED_DATA", ROOT.parents[1] / "shared" / "data"))
SEED = 0


# -------------------------------------------------------------------- data
def _dequantise(X):
    return X + np.random.RandomState(SEED).uniform(size=X.shape)


def _split(X, X_test=None, n_train=2000, n_test=1000):
    if X_test is None:
        X, X_test = train_test_split(X, test_size=0.25, random_state=SEED)
    rng = np.random.RandomState(SEED)
    if X.shape[0] > n_train:
        X = X[np.sort(rng.choice(X.shape[0], n_train, replace=False))]
    if X_test.shape[0] > n_test:
        X_test = X_test[np.sort(rng.choice(X_test.shape[0], n_test, replace=False))]
    return X, X_test


def _npz(*parts):
    path = SHARED.joinpath(*parts)
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: np.asarray(data[k]) for k in data.files}


def load(name, n_train, n_test):
    """``(X_train, X_test, estimator options)`` or ``None`` if the data are not here."""
    if name == "digits":
        X = _dequantise(load_digits().data.astype(np.float64))
        return (*_split(X, None, n_train, n_test), dict(image_shape=(8, 8), patch_shape=(2, 2)))
    if name == "breast_cancer":
        return (*_split(load_breast_cancer().data, None, n_train, n_test), {})
    if name == "miniboone":
        data = _npz("density", "miniboone_maf.npz")
        if data is None:
            return None
        return (*_split(data["X"].astype(np.float64), data["X_test"].astype(np.float64), n_train, n_test), {})
    if name == "satellite":
        data = _npz("anomaly", "satellite.npz")
        if data is None:
            return None
        X = _dequantise(data["X"][data["y"] == 0].astype(np.float64))
        return (*_split(X, None, n_train, n_test), {})
    raise ValueError(f"unknown data set {name!r}")


DATASETS = ("digits", "miniboone", "breast_cancer", "satellite")


# ------------------------------------------------------------------- zuko
class _Zuko:
    """zuko NSF/MAF with skflow's training budget (standardise, AdamW + cosine, early stopping)."""

    def __init__(self, flow, max_iter, random_state=SEED):
        self.flow, self.max_iter, self.random_state = flow, max_iter, random_state

    def fit(self, X):
        import zuko

        self.loc_, self.scale_ = X.mean(0), X.std(0)
        self.scale_[self.scale_ == 0] = 1.0
        Z = (X - self.loc_) / self.scale_
        rng = np.random.RandomState(self.random_state)
        order = rng.permutation(len(Z))
        n_val = int(round(0.1 * len(Z)))
        x, x_val = (torch.tensor(Z[rows], dtype=torch.float32) for rows in (order[n_val:], order[:n_val]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.randint(2**31 - 1)))
            model = getattr(zuko.flows, self.flow)(X.shape[1]).float()
        generator = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
        params = list(model.parameters())
        optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
        batch = min(256, max(32, len(x) // 8), len(x))
        n_batches = math.ceil(len(x) / batch)
        total, step, best, stall = self.max_iter * n_batches, 0, -math.inf, 0
        state = copy.deepcopy(model.state_dict())
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            model.train()
            perm = torch.randperm(len(x), generator=generator)
            for b in range(n_batches):
                loss = -model().log_prob(x[perm[b * batch : (b + 1) * batch]]).mean()
                if not torch.isfinite(loss):
                    break
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 10.0)
                optimizer.step()
                step += 1
                for group in optimizer.param_groups:
                    group["lr"] = 0.5e-3 * (1 + math.cos(math.pi * step / total))
            self.n_iter_ += 1
            model.eval()
            with torch.no_grad():
                score = model().log_prob(x_val).mean().item()
            if score > best + 1e-4:
                best, state, stall = score, copy.deepcopy(model.state_dict()), 0
            else:
                stall += 1
            if stall >= 20 or not math.isfinite(score):
                break
        model.load_state_dict(state)
        self.model_ = model.double().eval()
        self.n_parameters_ = sum(p.numel() for p in params)
        return self

    def score_samples(self, X):
        with torch.no_grad():
            lp = self.model_().log_prob(torch.tensor((X - self.loc_) / self.scale_)).numpy()
        return lp - np.log(self.scale_).sum()

    def sample(self, n, random_state=None):
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(SEED if random_state is None else random_state)
            return self.model_().sample((n,)).numpy() * self.scale_ + self.loc_


def _zuko_available():
    try:
        import zuko  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- methods
def methods(options, max_iter):
    common = dict(max_iter=max_iter, random_state=SEED)
    out = {
        "TransformerFlowDensity": lambda: TransformerFlowDensity(**options, **common),
        "SplineFlowDensity (coupling)": lambda: SplineFlowDensity(**common),
        "SplineFlowDensity (autoregressive)": lambda: SplineFlowDensity(architecture="autoregressive", **common),
        "RealNVPDensity": lambda: RealNVPDensity(**common),
    }
    if _zuko_available():
        out["zuko NSF"] = lambda: _Zuko("NSF", max_iter)
        out["zuko MAF"] = lambda: _Zuko("MAF", max_iter)
    out["GaussianMixture (CV)"] = lambda: GridSearchCV(
        GaussianMixture(random_state=SEED, reg_covar=1e-4),
        {"n_components": [1, 2, 4, 8, 16], "covariance_type": ["full", "diag"]},
        cv=3,
    )
    return out


def _n_parameters(model):
    if hasattr(model, "n_parameters_"):
        return int(model.n_parameters_)
    if isinstance(model, GridSearchCV):
        return int(model.best_estimator_._n_parameters())
    return None


def run(names, n_train, n_test, max_iter, n_sample, save=None):
    """Fit and measure every method on every data set; ``save(results)`` after each data set."""
    torch.set_num_threads(1)
    results = []
    for name in names:
        loaded = load(name, n_train, n_test)
        if loaded is None:
            print(f"{name}: data not found under {SHARED}, skipped", flush=True)
            continue
        X_train, X_test, options = loaded
        for method, make in methods(options, max_iter).items():
            model = make()
            start = time.perf_counter()
            model.fit(X_train)
            fit_s = time.perf_counter() - start
            scores = model.score_samples(X_test)
            start = time.perf_counter()
            if isinstance(model, GridSearchCV):
                model.best_estimator_.sample(n_sample)
            else:
                model.sample(n_sample, random_state=SEED)
            sample_s = time.perf_counter() - start
            n_iter = getattr(model, "n_iter_", None)
            row = dict(
                data=name,
                n_train=len(X_train),
                n_test=len(X_test),
                n_features=X_train.shape[1],
                method=method,
                test_loglik=float(np.mean(scores)),
                stderr=float(np.std(scores) / np.sqrt(len(scores))),
                parameters=_n_parameters(model),
                fit_s=fit_s,
                epochs=n_iter,
                epoch_s=fit_s / n_iter if n_iter else None,
                sample_rows_per_s=n_sample / sample_s,
                selected=str(model.best_params_) if isinstance(model, GridSearchCV) else "",
            )
            results.append(row)
            print(
                f"{name:14s} {method:36s} {row['test_loglik']:10.2f} ± {row['stderr']:.2f}  "
                f"params {row['parameters']}  fit {fit_s:6.1f}s  epochs {n_iter}  "
                f"sample {row['sample_rows_per_s']:9.0f} rows/s",
                flush=True,
            )
        if save is not None:
            save(results)
    return results


def _table_rows(results):
    """Per data set: a title and rows of cells (speeds relative to the autoregressive spline flow)."""
    for name in dict.fromkeys(r["data"] for r in results):
        rows = [r for r in results if r["data"] == name]
        ref = next((r for r in rows if r["method"] == "SplineFlowDensity (autoregressive)"), None)
        nsf = next((r for r in rows if r["method"] == "zuko NSF"), None)
        best = max(r["test_loglik"] for r in rows)
        first = rows[0]
        title = f"{name} ({first['n_features']} features, {first['n_train']} train / {first['n_test']} test rows)"

        def ratio(a, b):
            return f"{a / b:.2f}" if a and b else ""

        cells = [
            [
                r["method"] + (" (best)" if r["test_loglik"] == best else ""),
                f"{r['test_loglik']:.2f} ± {r['stderr']:.2f}",
                f"{r['parameters']:,}" if r["parameters"] is not None else "",
                ratio(r["parameters"], nsf["parameters"]) if nsf else "",
                ratio(r["epoch_s"], ref["epoch_s"]) if ref else "",
                ratio(r["sample_rows_per_s"], ref["sample_rows_per_s"]) if ref else "",
            ]
            for r in rows
        ]
        yield title, cells


HEADER = ["method", "test log-lik ± s.e.", "parameters", "× zuko NSF", "s/epoch × AR spline", "sampling × AR spline"]


def rst(results):
    """The same tables as RST list-tables, for docs/methods/transformer.rst."""
    lines = []
    for title, cells in _table_rows(results):
        lines += [f"**{title}**", "", ".. list-table::", "   :header-rows: 1", ""]
        for row in [HEADER, *cells]:
            lines += [f"   * - {row[0]}", *(f"     - {c}" for c in row[1:])]
        lines.append("")
    return "\n".join(lines)


def markdown(results):
    """One table per data set; speeds relative to SplineFlowDensity (autoregressive) in the same run."""
    lines = []
    for title, cells in _table_rows(results):
        lines += [f"**{title}**", "", "| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---:|---:|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--n-sample", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="5 epochs, 300 train rows: a smoke run")
    parser.add_argument("--from-json", type=Path, help="rewrite the tables from a saved transformer.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.max_iter, args.n_sample = 300, 200, 5, 200
    out = ROOT / "results"
    out.mkdir(exist_ok=True)

    def save(results):
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        (out / "transformer.json").write_text(json.dumps(dict(args=settings, results=results), indent=1))
        (out / "transformer.md").write_text(markdown(results) + "\n")
        (out / "transformer.rst").write_text(rst(results) + "\n")

    if args.from_json:
        results = json.loads(args.from_json.read_text())["results"]
        (out / "transformer.md").write_text(markdown(results) + "\n")
        (out / "transformer.rst").write_text(rst(results) + "\n")
    else:
        # Written after every data set, so an interrupted run still leaves its tables.
        results = run(args.datasets, args.n_train, args.n_test, args.max_iter, args.n_sample, save)
    print("\n" + markdown(results))


if __name__ == "__main__":
    main()
