"""
==================================
Synthetic tabular data from a flow
==================================

A fitted density can generate new rows that look like the training data.
We fit every skflow estimator, a :class:`~sklearn.mixture.GaussianMixture`
and a :class:`~sklearn.neighbors.KernelDensity` to 80% of the breast-cancer
data (30 continuous cell-nucleus features) and judge their synthetic rows
three ways:

1. **marginals**: histograms of a few features, real versus synthetic;
2. **classifier two-sample test**: a gradient-boosting classifier tries to
   tell real rows from synthetic ones; a cross-validated ROC AUC of 0.5
   means it cannot (Lopez-Paz & Oquab, 2017);
3. **distance to the closest record**: a model that only copies training
   rows would pass the test above.  We compare the distance from each
   synthetic row to its nearest training row with the same distance for
   real *held-out* rows.  A ratio well below 1 means the model reproduces
   training rows rather than new ones.

The flows use their default settings; the kernel density's bandwidth is
chosen by cross-validation on standardised data.  The fits are independent:
joblib runs them in two processes (each flow trains on one torch thread).
"""

# %%
# Fit the models and draw synthetic rows
# --------------------------------------
import time

import matplotlib.pyplot as plt
import numpy as np
from joblib import Parallel, delayed
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score, train_test_split
from sklearn.neighbors import KernelDensity, NearestNeighbors
from sklearn.preprocessing import StandardScaler

import skflow

data = load_breast_cancer()
X_train, X_test = train_test_split(data.data, test_size=0.2, random_state=0)
n_synthetic = len(X_train)
scaler = StandardScaler().fit(X_train)


class StandardizedKDE:
    """KernelDensity on standardised features, sampled back in original units."""

    def fit(self, X):
        grid = GridSearchCV(KernelDensity(), {"bandwidth": np.logspace(-1, 0.5, 10)}, cv=5)
        self.kde_ = grid.fit(scaler.transform(X)).best_estimator_
        return self

    def sample(self, n_samples, random_state=None):
        return scaler.inverse_transform(self.kde_.sample(n_samples, random_state=random_state))


models = {
    name: getattr(skflow, name)(random_state=0)
    for name in ("RealNVPDensity", "FerumalFlowDensity", "SplineFlowDensity")
    if hasattr(skflow, name)
}
models["GaussianMixture"] = GaussianMixture(n_components=2, random_state=0)
models["KernelDensity"] = StandardizedKDE()


def fit_and_sample(model):
    tic = time.perf_counter()
    model.fit(X_train)
    if isinstance(model, GaussianMixture):
        rows = model.sample(n_synthetic)[0]
    else:
        rows = model.sample(n_synthetic, random_state=0)
    return rows, time.perf_counter() - tic


results = Parallel(n_jobs=2, batch_size=1)(delayed(fit_and_sample)(model) for model in models.values())
synthetic = {}
for name, (rows, seconds) in zip(models, results):
    synthetic[name] = rows
    print(f"{name:20s} fit and sampled in {seconds:.1f} s")

# %%
# Marginal distributions
# ----------------------
# Real training rows (grey) against each model's samples, for six features.

features = [
    "mean radius", "mean texture", "mean smoothness", "mean concavity", "worst area", "worst symmetry"
]
fig, axes = plt.subplots(2, 3, figsize=(10, 5.2))
for ax, feature in zip(axes.flat, features):
    j = list(data.feature_names).index(feature)
    bins = np.linspace(*np.percentile(X_train[:, j], [0.5, 99.5]), 30)
    ax.hist(X_train[:, j], bins=bins, density=True, color="0.8", label="real (train)")
    for name, rows in synthetic.items():
        ax.hist(rows[:, j], bins=bins, density=True, histtype="step", lw=1.3, label=name)
    ax.set_title(feature, fontsize=9)
    ax.set_yticks([])
axes[0, 0].legend(fontsize=7)
fig.tight_layout()

# %%
# Classifier two-sample test and distance to the closest record
# -------------------------------------------------------------
# Real rows are the training rows the models saw; the classifier gets the
# same number of synthetic rows.  Distances are measured on standardised
# features.

nn = NearestNeighbors(n_neighbors=1).fit(scaler.transform(X_train))
held_out_distance = np.median(nn.kneighbors(scaler.transform(X_test))[0])
auc, dcr = {}, {}
for name, rows in synthetic.items():
    X_both = np.vstack([X_train, rows])
    y_both = np.r_[np.zeros(len(X_train)), np.ones(len(rows))]
    classifier = HistGradientBoostingClassifier(max_iter=100, random_state=0)
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    auc[name] = cross_val_score(classifier, X_both, y_both, cv=cv, scoring="roc_auc").mean()
    dcr[name] = np.median(nn.kneighbors(scaler.transform(rows))[0]) / held_out_distance
    print(f"{name:20s} two-sample AUC {auc[name]:.3f}   closest-record distance ratio {dcr[name]:.2f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
names = list(synthetic)
ax1.barh(names, [auc[n] for n in names], color=[f"C{i}" for i in range(len(names))])
ax1.axvline(0.5, color="k", ls="--", lw=1)
ax1.set_xlim(0.4, 1.0)
ax1.set_xlabel("classifier ROC AUC, real vs synthetic (0.5 = indistinguishable)")
ax2.barh(names, [dcr[n] for n in names], color=[f"C{i}" for i in range(len(names))])
ax2.axvline(1.0, color="k", ls="--", lw=1)
ax2.set_xlabel("closest-record distance / held-out rows' (1 = not copying)")
ax1.invert_yaxis()
fig.tight_layout()
plt.show()
