"""
=========================================
Anomaly detection with a density estimate
=========================================

:class:`~skflow.DensityOutlierDetector` turns any density estimator into a
scikit-learn outlier detector: rows of low estimated density are outliers.
It follows the conventions of :class:`~sklearn.ensemble.IsolationForest`:
``predict`` returns +1 for inliers and -1 for outliers, ``score_samples`` is
higher for more normal rows and ``decision_function`` is negative for
outliers.

This example first draws the decision function of the detector (with its
default :class:`~skflow.FerumalFlowDensity`) next to an isolation forest on a
two-dimensional toy set with planted outliers, then compares ROC curves on a
real data set shipped with scikit-learn, where a rare class plays the
anomalies.
"""

# %%
# Two dimensions: decision contours
# ---------------------------------
# Inliers are two interleaving half-moons; 20 outliers are drawn uniformly
# over a box around them.  Both detectors are fitted without labels, with
# ``contamination=0.05`` (the planted rate) so that the level-0 contour of
# ``decision_function`` separates the 5% least normal training rows.  To keep
# the example fast, the detector averages two flows instead of its default
# five (``n_estimators=2``).
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer, make_moons
from sklearn.ensemble import IsolationForest
from sklearn.metrics import RocCurveDisplay, roc_auc_score
from sklearn.neighbors import LocalOutlierFactor

from skflow import DensityOutlierDetector

rng = np.random.RandomState(0)
inliers = make_moons(n_samples=400, noise=0.08, random_state=0)[0]
outliers = rng.uniform(low=[-1.8, -1.3], high=[2.8, 1.8], size=(20, 2))
X = np.vstack([inliers, outliers])

detectors = {
    "DensityOutlierDetector": DensityOutlierDetector(contamination=0.05, n_estimators=2, random_state=0),
    "IsolationForest": IsolationForest(contamination=0.05, random_state=0),
}
xx, yy = np.meshgrid(np.linspace(-2.0, 3.0, 150), np.linspace(-1.5, 2.0, 150))
grid = np.c_[xx.ravel(), yy.ravel()]

fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
for ax, (name, det) in zip(axes, detectors.items()):
    pred = det.fit_predict(X)
    dec = det.decision_function(grid).reshape(xx.shape)
    # Far from the data a density underflows to -inf: clip the colour scale.
    dec = np.maximum(dec, np.percentile(dec[np.isfinite(dec)], 2))
    ax.contourf(xx, yy, dec, levels=20, cmap="Blues")
    ax.contour(xx, yy, dec, levels=[0], colors="darkred", linewidths=2)
    ax.scatter(*X[pred == 1].T, s=8, c="white", edgecolors="k", linewidths=0.4, label="predicted inlier")
    ax.scatter(*X[pred == -1].T, s=22, c="gold", edgecolors="k", linewidths=0.6, label="predicted outlier")
    ax.set_title(name)
axes[0].legend(loc="lower left", fontsize=8)
fig.suptitle("decision_function (dark: normal) and its level-0 contour")
fig.tight_layout()

# %%
# The density detector's level sets follow the two moons more closely; the
# isolation forest's axis-aligned splits give one box-like blob that counts
# much of the space between the moons as normal.

# %%
# Real data: ROC curves on breast cancer
# --------------------------------------
# The Wisconsin diagnostic breast-cancer set (30 continuous features) has 357
# benign and 212 malignant tumours.  We keep every benign tumour and 20
# malignant ones as rare anomalies (5.3%), fit each detector on all rows
# without labels, and rank the same rows (the usual unsupervised protocol).
# The detector's own preprocessing (robust standardisation, dequantisation
# of tied values) needs no scaler in front.
data = load_breast_cancer()
benign = data.data[data.target == 1]
malignant = data.data[data.target == 0]
X = np.vstack([benign, malignant[rng.choice(len(malignant), 20, replace=False)]])
is_anomaly = np.r_[np.zeros(len(benign), int), np.ones(20, int)]

anomaly_scores = {
    "DensityOutlierDetector": -DensityOutlierDetector(n_estimators=2, random_state=0).fit(X).score_samples(X),
    "IsolationForest": -IsolationForest(random_state=0).fit(X).score_samples(X),
    "LocalOutlierFactor": -LocalOutlierFactor().fit(X).negative_outlier_factor_,
}

fig, ax = plt.subplots(figsize=(5, 5))
for name, score in anomaly_scores.items():
    RocCurveDisplay.from_predictions(is_anomaly, score, name=name, ax=ax)
ax.plot([0, 1], [0, 1], ls=":", c="grey")
ax.set_title("Malignant tumours as anomalies (unsupervised)")
fig.tight_layout()

for name, score in anomaly_scores.items():
    print(f"{name:24s} ROC-AUC {roc_auc_score(is_anomaly, score):.3f}")

# %%
# Labels, if you have some, can tune the detector: map them to
# scikit-learn's convention (+1 inlier, -1 outlier) and use a ranking scorer,
# e.g. ``GridSearchCV(detector, grid, scoring="roc_auc",
# cv=StratifiedKFold(shuffle=True)).fit(X, np.where(is_anomaly, -1, 1))``:
# the "roc_auc" scorer reads ``decision_function``, which is higher for the
# +1 class.

plt.show()
