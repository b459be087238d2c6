"""
==================================
Learning curves and early stopping
==================================

Every skflow estimator records its training history: ``loss_curve_`` holds
the mean training negative log-likelihood of each epoch and, with
``early_stopping=True`` (the default), ``validation_scores_`` holds the mean
log-likelihood of the held-out ``validation_fraction`` of the rows.
Training stops once the validation score has not improved by ``tol`` for
``n_iter_no_change`` epochs, and the best state is restored.

Both curves are in the flow's internal *standardised* units (the data are
standardised before the first layer), so they are comparable across data
sets but differ from ``score`` by the constant log-determinant of the
standardisation.

Here every skflow estimator, at its defaults, fits the breast-cancer data
(30 features, 455 training rows); the gap between the training and
validation curves shows over-fitting setting in, and the dashed line marks
the epoch whose state was kept.  The three fits are independent: joblib
runs them in two processes (each flow trains on one torch thread).
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from joblib import Parallel, delayed
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import skflow

X_train, X_test = train_test_split(load_breast_cancer().data, test_size=0.2, random_state=0)
names = [n for n in ("RealNVPDensity", "FerumalFlowDensity", "SplineFlowDensity") if hasattr(skflow, n)]


def fit_timed(name):
    tic = time.perf_counter()
    flow = getattr(skflow, name)(random_state=0).fit(X_train)
    return flow, time.perf_counter() - tic


fitted = Parallel(n_jobs=2, batch_size=1)(delayed(fit_timed)(name) for name in names)

fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), sharey=True, squeeze=False)
for ax, name, (flow, seconds) in zip(axes[0], names, fitted):
    epochs = np.arange(1, flow.n_iter_ + 1)
    ax.plot(epochs, -np.asarray(flow.loss_curve_), label="training")
    ax.plot(epochs, flow.validation_scores_, label="validation")
    ax.axvline(1 + int(np.argmax(flow.validation_scores_)), color="k", ls="--", lw=1, label="kept")
    ax.set_title(f"{name}\n{flow.n_iter_} epochs, {seconds:.1f} s", fontsize=9)
    ax.set_xlabel("epoch")
    print(f"{name:20s} test log-likelihood {flow.score(X_test):8.2f} nats/sample after {flow.n_iter_} epochs")
axes[0, 0].set_ylabel("mean log-likelihood\n(standardised units)")
axes[0, 0].legend(fontsize=8)
# The first epochs start far below; zoom on the part where the curves separate.
tail = np.concatenate([np.asarray(line.get_ydata())[5:] for ax in axes[0] for line in ax.get_lines()[:2]])
axes[0, 0].set_ylim(tail.min() - 2, tail.max() + 2)
fig.tight_layout()
plt.show()
