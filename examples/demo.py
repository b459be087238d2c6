"""skflow demo: fit, score, sample and plot normalising flows on real data.

Fits every skflow estimator next to scikit-learn's GaussianMixture and
KernelDensity (both tuned by cross-validation) on the Wine recognition data
that scikit-learn ships (178 rows, 13 physico-chemical measurements), prints
a table of held-out log-likelihood, fit time and parameter count, draws
synthetic rows and writes a figure comparing them with the real ones.

Run ``bash scripts/demo.sh`` (sets everything up) or ``python examples/demo.py``.
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_wine  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.neighbors import KernelDensity  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import skflow  # noqa: E402


def models(seed):
    """The estimators compared, skflow's at their defaults."""
    out = {}
    for name in ("FerumalFlowDensity", "RealNVPDensity", "SplineFlowDensity"):
        cls = getattr(skflow, name, None)
        if cls is not None:
            out[name] = cls(random_state=seed)
    # The baselines see standardised data too (their log-likelihoods are
    # converted back to the original units below through the scaler's Jacobian).
    out["GaussianMixture (CV)"] = make_pipeline(
        StandardScaler(),
        GridSearchCV(
            GaussianMixture(random_state=seed),
            {"n_components": [1, 2, 3, 4], "covariance_type": ["full", "diag"]},
            cv=3,
        ),
    )
    out["KernelDensity (CV)"] = make_pipeline(
        StandardScaler(), GridSearchCV(KernelDensity(), {"bandwidth": np.logspace(-1, 0.5, 12)}, cv=3)
    )
    return out


def log_likelihood(model, X):
    """Mean held-out log-likelihood in the units of X (nats per row)."""
    if hasattr(model, "steps"):
        scaler = model.steps[0][1]
        return float(model.score_samples(X).mean() - np.log(scaler.scale_).sum())
    return model.score(X)


def n_parameters(model):
    if hasattr(model, "n_parameters_"):
        return model.n_parameters_
    est = model.steps[-1][1].best_estimator_
    if isinstance(est, GaussianMixture):
        return est._n_parameters()
    return est.tree_.data.size  # a KDE keeps every training row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    args = parser.parse_args(argv)

    data = load_wine()
    X = data.data
    X_train, X_test = train_test_split(X, test_size=0.3, random_state=args.seed)
    print(f"Wine: {X_train.shape[0]} training rows, {X_test.shape[0]} test rows, {X.shape[1]} features\n")

    rows, fitted = [], {}
    for name, model in models(args.seed).items():
        tic = time.perf_counter()
        model.fit(X_train)
        seconds = time.perf_counter() - tic
        fitted[name] = model
        rows.append((name, log_likelihood(model, X_test), seconds, n_parameters(model)))

    header = f"| {'model':<22} | {'test log-lik (nats/row)':>23} | {'fit (s)':>7} | {'parameters':>10} |"
    print(header)
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|")
    for name, ll, seconds, n_params in sorted(rows, key=lambda r: -r[1]):
        print(f"| {name:<22} | {ll:>23.3f} | {seconds:>7.2f} | {n_params:>10d} |")

    best = max((r for r in rows if r[0] in skflow.__all__), key=lambda r: r[1])[0]
    flow = fitted[best]
    synthetic = flow.sample(len(X), random_state=args.seed)
    print(f"\nSampled {len(synthetic)} synthetic rows from {best}.")
    print("Feature means, real vs synthetic:")
    for j in (0, 6, 9, 12):
        print(f"  {data.feature_names[j]:<30} {X[:, j].mean():9.3f} {synthetic[:, j].mean():9.3f}")
    scores = flow.score_samples(X)
    print(f"Least typical wine (lowest log-density): row {int(np.argmin(scores))}, {scores.min():.2f} nats")

    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    names = [r[0] for r in sorted(rows, key=lambda r: -r[1])]
    axes[0].barh(names, [dict((r[0], r[1]) for r in rows)[n] for n in names], color="tab:blue")
    axes[0].invert_yaxis()
    axes[0].set_xlabel("held-out log-likelihood (nats/row, higher is better)")
    axes[0].set_title("Wine: test log-likelihood")
    for ax, (i, j) in zip(axes[1:], [(0, 9), (6, 12)]):
        ax.scatter(X[:, i], X[:, j], s=12, alpha=0.7, label="real")
        ax.scatter(synthetic[:, i], synthetic[:, j], s=12, alpha=0.7, label=f"sampled ({best})")
        ax.set_xlabel(data.feature_names[i])
        ax.set_ylabel(data.feature_names[j])
        ax.legend()
    fig.tight_layout()
    path = args.out / "demo.png"
    fig.savefig(path, dpi=110)
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main()
