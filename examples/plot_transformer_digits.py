"""
==========================================
A transformer spline flow on 8x8 digits
==========================================

:class:`~skflow.TransformerFlowDensity` reads each row as a sequence of
tokens and transforms token ``t`` with rational-quadratic splines whose
parameters a causal transformer computes from the tokens before it (the
TarFlow design of Zhai et al., arXiv:2412.06329, with the splines of Durkan
et al., arXiv:1906.04032).  For images, a token is a patch: sklearn's 8x8
digits become 16 patches of 2x2 pixels with ``image_shape=(8, 8)`` and
``patch_shape=(2, 2)``.

We fit it to digits, draw new digits from it, compare its held-out
log-likelihood with a Gaussian mixture and a coupling spline flow trained for
the same number of epochs, and look at its learning curve.
"""

# %%
# Digits as continuous images
# ---------------------------
# Grey levels are integers 0..16; adding uniform noise ``U[0, 1)`` to every
# pixel (dequantisation) makes a continuous density meaningful.  Its
# log-likelihood lower-bounds the log-probability of the integer digits.
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from joblib import Parallel, delayed
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split

from skflow import SplineFlowDensity, TransformerFlowDensity

X = load_digits().data.astype(np.float64)
X = X + np.random.RandomState(0).uniform(size=X.shape)
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)

# %%
# Three density estimators
# ------------------------
# A short budget keeps this example fast: 10 epochs for both flows (each
# fit then ends with a ConvergenceWarning, silenced here).  Both gain
# several nats from training to convergence (the default ``max_iter`` with
# early stopping); :doc:`/methods/transformer` has the converged figures and
# the comparison with other flows.  The transformer flow sees 16 tokens of 4
# pixels; the coupling spline flow sees the 64 pixels as a flat vector.  The
# fits are independent: joblib runs them in two processes.
models = {
    "TransformerFlowDensity": TransformerFlowDensity(
        image_shape=(8, 8), patch_shape=(2, 2), max_iter=10, random_state=0
    ),
    "SplineFlowDensity": SplineFlowDensity(architecture="coupling", max_iter=10, random_state=0),
    "GaussianMixture": GaussianMixture(
        n_components=8, covariance_type="full", reg_covar=1e-2, random_state=0
    ),
}


def fit_and_score(model):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train)
    return model, model.score(X_test), time.perf_counter() - start


results = Parallel(n_jobs=2, batch_size=1)(
    delayed(fit_and_score)(model) for model in models.values()
)
held_out = {}
for name, (model, score, seconds) in zip(list(models), results):
    models[name], held_out[name] = model, score
    print(f"{name:24s} held-out log-likelihood {score:8.2f} nats/digit ({seconds:.1f} s)")

flow = models["TransformerFlowDensity"]
print(f"transformer flow: {flow.n_parameters_} parameters, {flow.n_iter_} epochs")

# %%
# New digits
# ----------
# Sampling decodes the 16 patches one after the other in each block (the
# transformer reuses the keys and values of the patches already decoded).
# Samples are clipped to the grey-level range for display.
samples = np.clip(flow.sample(32, random_state=0), 0, 17)
real = X_test[:32]

fig, axes = plt.subplots(8, 9, figsize=(9, 8))
for i, ax in enumerate(axes.flat):
    row, col = divmod(i, 9)
    ax.axis("off")
    if col == 4:
        continue
    images = real if col < 4 else samples
    index = row * 4 + (col if col < 4 else col - 5)
    ax.imshow(images[index].reshape(8, 8), cmap="gray_r", vmin=0, vmax=17)
axes[0, 1].set_title("real digits (held out)", loc="left", fontsize=10)
axes[0, 6].set_title("samples", loc="left", fontsize=10)
fig.tight_layout()

# %%
# Held-out log-likelihood and learning curve
# ------------------------------------------
# ``loss_curve_`` is the training negative log-likelihood and
# ``validation_scores_`` the held-out log-likelihood of the 10% of training
# rows used for early stopping, both per epoch and in the standardised units
# the flow trains in (a constant shift from the units of the data).
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
names = list(held_out)
values = [held_out[n] for n in names]
ax0.scatter(values, names, s=80, color=["C0", "C1", "C2"], zorder=3)
for value, name in zip(values, names):
    ax0.annotate(f"{value:.1f}", (value, name), textcoords="offset points", xytext=(0, 9), ha="center")
ax0.grid(axis="x", alpha=0.3)
ax0.set(xlabel="held-out log-likelihood (nats per digit, higher is better)",
        xlim=(min(values) - 5, max(values) + 5), ylim=(-0.6, len(names) - 0.4))
ax1.plot(-np.asarray(flow.loss_curve_), label="training log-likelihood")
ax1.plot(flow.validation_scores_, label="validation log-likelihood")
ax1.set(xlabel="epoch", ylabel="nats per digit (standardised units)", title="TransformerFlowDensity")
ax1.legend()
fig.tight_layout()
plt.show()
