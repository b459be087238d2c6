"""
============================================
Generating digits with a PCA + flow pipeline
============================================

A flow is a scikit-learn estimator, so it can be the last step of a
:class:`~sklearn.pipeline.Pipeline`.  Here a whitening
:class:`~sklearn.decomposition.PCA` reduces the 64 pixels of the digits to
20 components, a :class:`~skflow.RealNVPDensity` learns the density of those
components, and new digits are drawn by sampling the flow and mapping the
samples back through the PCA.

The pixels are integers 0..16; we add uniform noise in [0, 1)
(*dequantisation*) so that a continuous density makes sense.  To keep the
example fast the flow trains for at most ``max_iter=100`` epochs.
"""

# %%
# Fit the pipeline
# ----------------
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from skflow import RealNVPDensity

rng = np.random.RandomState(0)
digits = load_digits()
X = digits.data + rng.uniform(size=digits.data.shape)
X_train, X_test = train_test_split(X, test_size=0.2, random_state=0)

pipe = make_pipeline(
    PCA(n_components=20, whiten=True, random_state=0),
    RealNVPDensity(n_layers=6, max_iter=100, random_state=0),
)
tic = time.perf_counter()
pipe.fit(X_train)
print(f"fit in {time.perf_counter() - tic:.1f} s")

# %%
# ``Pipeline.score_samples`` transforms with the PCA and scores with the flow,
# so it is the log-density of the 20 *PCA components*, not of the 64 pixels
# (the 44 discarded directions have no density).  It is still a useful
# novelty score: compare test digits with pure noise.

noise = rng.uniform(0, 17, size=(len(X_test), 64))
print(f"test digits:  mean log-density {pipe.score_samples(X_test).mean():8.2f}")
print(f"random noise: mean log-density {pipe.score_samples(noise).mean():8.2f}")

# %%
# Sample new digits
# -----------------
# Sample the flow in PCA space, then map back with ``inverse_transform`` of
# the pipeline's PCA step.  Top: real test digits; bottom: samples.

flow = pipe[-1]
samples = pipe[:-1].inverse_transform(flow.sample(16, random_state=0))
fig, axes = plt.subplots(4, 8, figsize=(8, 4.4))
for ax, image in zip(axes.flat, np.vstack([X_test[:16], samples])):
    ax.imshow(np.clip(image, 0, 17).reshape(8, 8), cmap="gray_r", vmin=0, vmax=17)
    ax.set_xticks([])
    ax.set_yticks([])
axes[0, 0].set_title("real", loc="left", fontsize=9)
axes[2, 0].set_title("sampled from the flow", loc="left", fontsize=9)
fig.tight_layout()

# %%
# Interpolating in the latent space
# ---------------------------------
# ``transform`` maps data to the flow's standard-normal latent space and
# ``inverse_transform`` maps back.  Walking on a straight line between the
# latent codes of two test digits gives a path of plausible digits.

pca, flow = pipe[0], pipe[-1]
z = flow.transform(pca.transform(X_test[[0, 1]]))
path = np.linspace(0, 1, 8)[:, None] * (z[1] - z[0]) + z[0]
images = pca.inverse_transform(flow.inverse_transform(path))
fig, axes = plt.subplots(1, 8, figsize=(8, 1.3))
for ax, image in zip(axes, images):
    ax.imshow(np.clip(image, 0, 17).reshape(8, 8), cmap="gray_r", vmin=0, vmax=17)
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()
