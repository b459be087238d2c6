"""skflow demo: fit, score, sample and plot normalising flows on real data.

Fits every skflow estimator next to scikit-learn's GaussianMixture and
KernelDensity (both tuned by cross-validation) on the Wine recognition data
that scikit-learn ships (178 rows, 13 physico-chemical measurements), prints
held-out log-likelihoods with *paired* standard errors against the best
model (which differences are larger than the noise of a 54-row test set),
draws synthetic rows, shows that a flow fitted on the raw columns can
produce impossible negative amounts, and how a log transform in a Pipeline
keeps positive columns positive.  Writes ``demo_output/demo.png``.

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
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402

import skflow  # noqa: E402

FLOWS = ("FerumalFlowDensity", "RealNVPDensity", "SplineFlowDensity")
LOG_SUFFIX = " on log(X)"


def models(seed):
    """The estimators compared, skflow's at their defaults."""
    out = {}
    for name in FLOWS:
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


def log_flow(name, seed):
    """The same flow fitted on log(X): every sample it draws is positive.

    All 13 Wine measurements are positive amounts.  A flow on the raw columns
    puts some probability on negative values; one fitted on their logarithms
    cannot, because ``exp`` maps every latent draw back to a positive number.
    """
    return make_pipeline(
        FunctionTransformer(np.log, inverse_func=np.exp, check_inverse=False),
        getattr(skflow, name)(random_state=seed),
    )


def log_likelihood_rows(model, X):
    """log p(x) of each row in the units of X (nats).

    A density fitted after a transform T sees T(x); by the change of
    variables, log p(x) = log q(T(x)) + log|det dT/dx|.  For a scaler that is
    -sum(log scale); for the logarithm, -sum(log x) per row.
    """
    if not hasattr(model, "steps"):
        return model.score_samples(X)
    log_det = np.zeros(len(X))
    Xt = X
    for _, step in model.steps[:-1]:
        if isinstance(step, StandardScaler):
            log_det -= np.log(step.scale_).sum()
        elif isinstance(step, FunctionTransformer) and step.func is np.log:
            log_det -= np.log(Xt).sum(axis=1)
        else:
            raise TypeError(f"no Jacobian known for {step!r}")
        Xt = step.transform(Xt)
    return model.score_samples(X) + log_det


def sample(model, n, seed):
    """Draw rows in the units of X, through a Pipeline's inverse transforms if any.

    A Pipeline has no ``sample``: sample from its last step and map the rows
    back with the inverse of the steps before it.
    """
    if hasattr(model, "steps"):
        return model[:-1].inverse_transform(model[-1].sample(n, random_state=seed))
    return model.sample(n, random_state=seed)


def n_parameters(model):
    if hasattr(model, "n_parameters_"):
        return model.n_parameters_
    est = model.steps[-1][1]
    if hasattr(est, "n_parameters_"):
        return est.n_parameters_
    est = est.best_estimator_
    if isinstance(est, GaussianMixture):
        return est._n_parameters()
    return est.tree_.data.size  # a KDE keeps every training row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    args = parser.parse_args(argv)

    data = load_wine()
    X, names = data.data, data.feature_names
    X_train, X_test = train_test_split(X, test_size=0.3, random_state=args.seed)
    print(f"Wine: {X_train.shape[0]} training rows, {X_test.shape[0]} test rows, {X.shape[1]} features\n")

    # ------------------------------------------------------------ fit, score
    fitted, seconds, rows_ll = {}, {}, {}
    candidates = models(args.seed)
    for name, model in candidates.items():
        tic = time.perf_counter()
        fitted[name] = model.fit(X_train)
        seconds[name] = time.perf_counter() - tic
        rows_ll[name] = log_likelihood_rows(model, X_test)
    best_flow = max((n for n in fitted if n in FLOWS), key=lambda n: rows_ll[n].mean())
    name = best_flow + LOG_SUFFIX
    tic = time.perf_counter()
    fitted[name] = log_flow(best_flow, args.seed).fit(X_train)
    seconds[name] = time.perf_counter() - tic
    rows_ll[name] = log_likelihood_rows(fitted[name], X_test)

    # Every model scores the same test rows, so compare them row by row: the
    # standard error of the mean *difference* is much smaller than that of
    # each mean (rows that are hard for one model are hard for all).
    order = sorted(rows_ll, key=lambda n: -rows_ll[n].mean())
    best = order[0]
    n_test = len(X_test)
    diff = {n: rows_ll[n] - rows_ll[best] for n in order}
    paired_se = {n: diff[n].std(ddof=1) / np.sqrt(n_test) if n != best else 0.0 for n in order}

    header = (f"| {'model':<32} | {'test log-lik':>12} | {'vs best ± paired SE':>20} | {'real?':>5} "
              f"| {'fit (s)':>7} | {'parameters':>10} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for n in order:
        gap = diff[n].mean()
        real = "best" if n == best else ("yes" if -gap > 2 * paired_se[n] else "no")
        gap_text = "" if n == best else f"{gap:+.2f} ± {paired_se[n]:.2f}"
        print(f"| {n:<32} | {rows_ll[n].mean():>12.2f} | {gap_text:>20} | {real:>5} "
              f"| {seconds[n]:>7.2f} | {n_parameters(fitted[n]):>10d} |")
    print(f"\nnats per row on {n_test} test rows, in the units of the data.  'real?': the gap to the best")
    print("model is more than two paired standard errors; otherwise this test set cannot tell the two apart.")

    # ------------------------------------------------------------ sample
    raw = sample(fitted[best_flow], len(X), args.seed)
    logged = sample(fitted[best_flow + LOG_SUFFIX], len(X), args.seed)
    print(f"\nSampled {len(raw)} synthetic rows from {best_flow}.  Every Wine measurement is a positive")
    print("amount; rows with an impossible (negative) value:")
    negative = {names[j]: int((raw[:, j] < 0).sum()) for j in np.flatnonzero((raw < 0).any(axis=0))}
    print(f"  fitted on the raw columns: {int((raw < 0).any(axis=1).sum()):4d} of {len(raw)}", end="  ")
    print("(" + ", ".join(f"{column}: {count}" for column, count in negative.items()) + ")")
    print(f"  fitted on log(X):          {int((logged < 0).any(axis=1).sum()):4d} of {len(logged)}")
    print(f"{'Feature means':<32} {'real':>9} {'raw fit':>9} {'log fit':>9}")
    for j in (0, 6, 9, 12):
        print(f"  {names[j]:<30} {X[:, j].mean():9.3f} {raw[:, j].mean():9.3f} {logged[:, j].mean():9.3f}")
    scores = log_likelihood_rows(fitted[best], X)
    print(f"Least typical wine under {best}: row {int(np.argmin(scores))}, {scores.min():.2f} nats")

    # ------------------------------------------------------------ figure
    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), gridspec_kw={"width_ratios": [1.25, 1, 1]})
    ax = axes[0]
    y = np.arange(len(order))
    gaps = np.array([diff[n].mean() for n in order])
    errs = np.array([2 * paired_se[n] for n in order])
    colours = ["tab:green" if n == best else ("tab:red" if -g > e else "tab:blue")
               for n, g, e in zip(order, gaps, errs)]
    ax.errorbar(gaps, y, xerr=errs, fmt="none", ecolor="grey", capsize=3)
    ax.scatter(gaps, y, c=colours, zorder=3)
    ax.axvline(0, color="tab:green", lw=1, ls="--")
    ax.set_yticks(y, [f"{n}  ({rows_ll[n].mean():.1f})" for n in order])
    ax.invert_yaxis()
    ax.set_xlabel(f"log-likelihood minus {best}'s (nats/row)\n"
                  f"bars: ± 2 paired standard errors, {n_test} test rows")
    ax.set_title("Wine: held-out log-likelihood vs the best model\n"
                 "(red: clearly worse; blue: within the noise)", fontsize=10)
    # The two columns where the raw flow drew the most negative amounts
    # (ties: the columns whose values sit fewest standard deviations above 0).
    closeness = X.mean(axis=0) / X.std(axis=0)
    i, j = np.lexsort((closeness, -(raw < 0).sum(axis=0)))[:2]
    lo = np.minimum(X[:, [i, j]].min(axis=0), raw[:, [i, j]].min(axis=0))
    hi = np.maximum(X[:, [i, j]].max(axis=0), raw[:, [i, j]].max(axis=0))
    pad = 0.05 * (hi - lo)
    for ax, synth, label in ((axes[1], raw, best_flow), (axes[2], logged, best_flow + LOG_SUFFIX)):
        ax.axvspan(lo[0] - pad[0], 0, color="tab:red", alpha=0.1)
        ax.axhspan(lo[1] - pad[1], 0, color="tab:red", alpha=0.1)
        ax.scatter(X[:, i], X[:, j], s=12, alpha=0.7, label="real")
        ax.scatter(synth[:, i], synth[:, j], s=12, alpha=0.7, label="sampled")
        ax.set(xlim=(min(lo[0], 0) - pad[0], hi[0] + pad[0]), ylim=(min(lo[1], 0) - pad[1], hi[1] + pad[1]),
               xlabel=names[i], ylabel=names[j])
        n_bad = int((synth < 0).any(axis=1).sum())
        ax.set_title(f"samples of {label}\n{n_bad} of {len(synth)} rows with a negative amount (red)",
                     fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = args.out / "demo.png"
    fig.savefig(path, dpi=110)
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main()
