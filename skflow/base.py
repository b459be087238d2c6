"""The scikit-learn layer shared by every skflow density estimator.

:class:`BaseFlowDensity` owns everything scikit-learn facing: validation,
seeding, standardisation, the call into the training loop, and the
inference methods.  A concrete estimator only adds its hyper-parameters
(merging ``_parameter_constraints``) and implements :meth:`_build_transforms`,
the hook that wires engine building blocks into a flow (the pattern of
``sklearn.mixture._base.BaseMixture``).
"""

from __future__ import annotations

import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    DensityMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .engine import Compose, FixedAffine, Flow, Transform
from .engine.training import Trainer

__all__ = ["BaseFlowDensity"]

# Rows per forward pass at inference: bounds memory on arbitrarily long inputs,
# and keeps the intermediate activations in cache (measured fastest at 4k-16k).
_INFERENCE_CHUNK = 8192
# Rows used for data-dependent initialisation (ActNorm statistics, auxiliary
# points): enough for stable statistics, bounded cost on huge data sets.
_DATA_INIT_ROWS = 10000
# A column whose spread is below this fraction (~50 ulps) of its magnitude is
# constant: its standard deviation is round-off, dividing by it would blow up.
_CONSTANT_RTOL = 1e-14
# Training runs in float32 (about 2x faster on CPU); inference in float64 so
# that round trips are exact and batch results do not depend on batch size.
_TRAIN_DTYPE = torch.float32
_INFER_DTYPE = torch.float64


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available; use 'cpu' or 'auto'.")
    return torch.device(device)


def _auto_batch_size(n_train: int) -> int:
    """``min(256, max(32, n_train // 8))``, capped at ``n_train``.

    At least ~8 steps per epoch: on small data sets a full-batch epoch gives
    early stopping too few optimiser steps to work with (measured on iris,
    wine and breast_cancer: +1 to +10 nats held-out vs. one batch per epoch).
    """
    return min(n_train, 256, max(32, n_train // 8))


def _body(flow: Flow) -> Flow:
    """The trainable part of a fitted flow (everything after standardisation).

    Shares its modules with ``flow``: training it trains ``flow``.
    """
    return Flow(Compose(list(flow.transform.transforms)[1:]), flow.features)


def _location_scale(X, weight, rows):
    """(Weighted) mean and standard deviation of ``X[rows]``, overflow-safe.

    Columns are divided by their largest magnitude first, so data near the
    float64 limit (|x| ~ 1e300) still gives finite statistics; rows are
    visited in chunks, so no full-size temporary is made.
    """
    rows = np.arange(X.shape[0]) if rows is None else rows
    chunks = [rows[i : i + _INFERENCE_CHUNK] for i in range(0, rows.size, _INFERENCE_CHUNK)]
    magnitude = np.max([np.abs(X[c]).max(axis=0) for c in chunks], axis=0).astype(np.float64)
    magnitude[magnitude == 0] = 1.0

    def weighted_sum(fn):
        total, norm = 0.0, 0.0
        for c in chunks:
            values = fn(X[c].astype(np.float64) / magnitude)
            w = np.ones(c.size) if weight is None else weight[c]
            total = total + w @ values
            norm += w.sum()
        return total / norm

    mean = weighted_sum(lambda v: v)
    var = weighted_sum(lambda v: (v - mean) ** 2)
    return mean * magnitude, np.sqrt(var) * magnitude


class BaseFlowDensity(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, DensityMixin, BaseEstimator, metaclass=ABCMeta
):
    """Base class for normalising-flow density estimators.

    Do not use it directly; use :class:`~skflow.RealNVPDensity`,
    :class:`~skflow.FerumalFlowDensity` or :class:`~skflow.SplineFlowDensity`.
    """

    _parameter_constraints: dict = {
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
    }

    @abstractmethod
    def __init__(
        self,
        *,
        n_layers,
        max_iter,
        batch_size,
        learning_rate,
        weight_decay,
        early_stopping,
        validation_fraction,
        n_iter_no_change,
        tol,
        warm_start,
        random_state,
        verbose,
        device,
    ):
        self.n_layers = n_layers
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    # ------------------------------------------------------------------ hook
    @abstractmethod
    def _build_transforms(self, n_features: int, generator: torch.Generator) -> list[Transform]:
        """Return the trainable layers, acting on standardised data."""

    # --------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the flow by maximum likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; every row is a sample.
        y : None
            Ignored; present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights: the weighted log-likelihood is maximised.
            Rows with zero weight are dropped; only ratios matter.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        X, weight = self._check_weights(X, sample_weight)
        rng = check_random_state(self.random_state)
        train, val = self._split(X.shape[0], rng)
        if not (self.warm_start and hasattr(self, "flow_")):
            self.flow_ = self._new_flow(X, weight, train, rng)
            self.n_iter_, self.loss_curve_ = 0, []
        self.validation_scores_ = [] if val is not None else None
        self._train(X, weight, train, val, rng, max_iter=self.max_iter, anneal=True)
        return self

    def partial_fit(self, X, y=None, sample_weight=None):
        """Run one epoch of mini-batch training on ``X``.

        The first call (or a call on an unfitted estimator) builds the flow
        and initialises its data-dependent state (standardisation, ActNorm,
        auxiliary points) from this batch.  Later calls continue training,
        which makes out-of-core learning possible.  There is no early
        stopping and no learning-rate schedule across calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of training data.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows.

        Returns
        -------
        self : object
            The estimator.
        """
        first = not hasattr(self, "flow_")
        if first:
            self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, reset=first)
        X, weight = self._check_weights(X, sample_weight)
        if first:
            rng = check_random_state(self.random_state)
            self.flow_ = self._new_flow(X, weight, None, rng)
            self.n_iter_, self.loss_curve_ = 0, []
            self.validation_scores_ = None
        else:
            # A fresh, reproducible stream of shuffling seeds per call.
            seed = self.random_state if isinstance(self.random_state, Integral) else None
            rng = check_random_state(None) if seed is None else np.random.RandomState([seed, self.n_iter_])
        self._train(X, weight, None, None, rng, max_iter=1, anneal=False)
        return self

    def _check_weights(self, X, sample_weight):
        if sample_weight is None:
            return X, None
        weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        keep = weight > 0
        if keep.sum() < 2:
            raise ValueError("sample_weight must have at least 2 strictly positive entries.")
        X, weight = X[keep], weight[keep]
        if np.all(weight == weight[0]):
            # Constant weights are exactly the unweighted problem.
            return X, None
        return X, weight / weight.mean()

    def _split(self, n, rng):
        """Row indices of the training and validation parts (``None``: all / none)."""
        n_val = int(round(self.validation_fraction * n)) if self.early_stopping else 0
        if n_val < 1 or n - n_val < 2:
            # Too few rows to hold any out: monitor the training loss instead.
            return None, None
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _new_flow(self, X, weight, rows, rng) -> Flow:
        n_features = X.shape[1]
        loc, scale = _location_scale(X, weight, rows)
        constant = (scale == 0) | (scale <= _CONSTANT_RTOL * np.abs(loc))
        if constant.any():
            warnings.warn(
                f"Features {np.flatnonzero(constant).tolist()} are constant in the training data: "
                "they have no density, and the flow models them as a very narrow spike. Consider "
                "removing them (e.g. sklearn.feature_selection.VarianceThreshold).",
                UserWarning,
            )
        scale[constant] = 1.0
        build_seed, init_seed = rng.randint(np.iinfo(np.int32).max, size=2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(build_seed))
            generator = torch.Generator().manual_seed(int(build_seed))
            layers = self._build_transforms(n_features, generator)
        standardise = FixedAffine(torch.tensor(loc), torch.tensor(scale))
        flow = Flow(Compose([standardise, *layers]), n_features).to(_INFER_DTYPE)
        rows = np.arange(X.shape[0]) if rows is None else rows
        if rows.size > _DATA_INIT_ROWS:
            rows = np.sort(rng.choice(rows, _DATA_INIT_ROWS, replace=False))
        body = _body(flow).to(_TRAIN_DTYPE)
        body.data_init(self._standardised(X[rows], flow), torch.Generator().manual_seed(int(init_seed)))
        return flow.to(_INFER_DTYPE)

    @staticmethod
    def _standardised(X, flow) -> torch.Tensor:
        """``X`` in standardised units as a float32 tensor, filled chunk by chunk.

        This is the one copy of the data that training makes; standardising
        in float64 first keeps values beyond float32's range usable.
        """
        standardise = flow.transform.transforms[0]
        out = torch.empty(X.shape, dtype=_TRAIN_DTYPE)
        with torch.no_grad():
            for start in range(0, X.shape[0], _INFERENCE_CHUNK):
                chunk = torch.tensor(X[start : start + _INFERENCE_CHUNK], dtype=_INFER_DTYPE)
                out[start : start + _INFERENCE_CHUNK] = standardise(chunk)[0]
        return out

    def _train(self, X, weight, train, val, rng, *, max_iter, anneal):
        device = _resolve_device(self.device)
        x = self._standardised(X, self.flow_)
        body = _body(self.flow_).to(device=device, dtype=_TRAIN_DTYPE)
        n_train = X.shape[0] if train is None else train.size
        batch_size = _auto_batch_size(n_train) if self.batch_size == "auto" else self.batch_size
        shuffle = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        w = None if weight is None else torch.tensor(weight, dtype=_TRAIN_DTYPE)
        trainer = Trainer(body, learning_rate=self.learning_rate, weight_decay=self.weight_decay)
        log_every = 1 if self.verbose >= 2 else max(1, max_iter // 20)
        result = trainer.fit(
            x,
            w,
            None if val is None else x[val],
            None if (val is None or w is None) else w[val],
            rows=None if train is None else torch.as_tensor(train),
            max_iter=max_iter,
            batch_size=batch_size,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            anneal=anneal,
            generator=shuffle,
            log=print if self.verbose else None,
            log_every=log_every,
        )
        del x
        # Portable fitted state: float64 on the CPU, in eval mode.
        self.flow_ = self.flow_.to(device="cpu", dtype=_INFER_DTYPE).eval()
        self.n_iter_ += result.n_iter
        self.loss_curve_ = [*self.loss_curve_, *result.loss_curve]
        if self.validation_scores_ is not None:
            self.validation_scores_ = [*self.validation_scores_, *result.validation_scores]
        self.n_parameters_ = sum(p.numel() for p in self.flow_.parameters() if p.requires_grad)
        if result.status == "diverged":
            warnings.warn(
                f"Training of {type(self).__name__} diverged (non-finite loss or gradient) after "
                f"{result.n_iter} epochs; the best state seen was restored. Consider a lower "
                "learning_rate or rescaling the data.",
                ConvergenceWarning,
            )
        elif result.status == "interrupted":
            warnings.warn("Training interrupted by user; the best state seen was kept.", ConvergenceWarning)
        elif result.status == "max_iter" and anneal and self.max_iter > 1 and self.verbose:
            warnings.warn(
                f"{type(self).__name__} reached max_iter={self.max_iter} without converging.",
                ConvergenceWarning,
            )
        check = X if X.shape[0] <= _DATA_INIT_ROWS else X[:_DATA_INIT_ROWS]
        if not np.all(np.isfinite(self._log_prob(check))):
            raise ValueError(
                f"{type(self).__name__} could not fit a finite density to this data (non-finite "
                "log-likelihood on training rows). Check for extreme values or rescale the data."
            )

    # ------------------------------------------------------------- inference
    def _chunks(self, array: np.ndarray, fn, shape) -> np.ndarray:
        """Apply ``fn`` chunk by chunk into a preallocated output (bounded memory)."""
        out = np.empty((array.shape[0], *shape), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, array.shape[0], _INFERENCE_CHUNK):
                chunk = torch.tensor(array[start : start + _INFERENCE_CHUNK], dtype=_INFER_DTYPE)
                out[start : start + _INFERENCE_CHUNK] = fn(chunk).numpy()
        return out

    def _log_prob(self, X: np.ndarray) -> np.ndarray:
        log_prob = self._chunks(X, self.flow_.log_prob, ())
        # Far beyond the data the density underflows; NaN would come from
        # inf - inf there, and the honest value is log(0).
        return np.where(np.isnan(log_prob), -np.inf, log_prob)

    def score_samples(self, X):
        """Log-density of each sample, in the units of the input.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points at which to evaluate the density.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            ``log p(x)`` for each row (float64).  The internal standardisation
            enters through its log-determinant, so rescaling the data shifts
            the scores by the log of the scale.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._log_prob(X)

    def score(self, X, y=None):
        """Mean log-likelihood of ``X`` under the model.

        As :meth:`sklearn.mixture.GaussianMixture.score`; note that
        :meth:`sklearn.neighbors.KernelDensity.score` returns the *sum*.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points to score.
        y : None
            Ignored.

        Returns
        -------
        log_likelihood : float
            Mean of :meth:`score_samples`.
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the fitted density.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.
        random_state : int, RandomState instance or None, default=None
            Seeds the draw (``None``: numpy's global RNG, as in
            :meth:`sklearn.neighbors.KernelDensity.sample`).  The global torch
            RNG is never touched.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Samples (float64).
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        rng = check_random_state(random_state)
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        out = np.empty((n_samples, self.n_features_in_), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, n_samples, _INFERENCE_CHUNK):
                size = min(_INFERENCE_CHUNK, n_samples - start)
                out[start : start + size] = self.flow_.sample(size, generator).numpy()
        return out

    def transform(self, X):
        """Map samples to their latent standard-normal coordinates.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to map.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features)
            Latent coordinates; ``Z`` is standard normal if the model fits.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._chunks(X, self.flow_.to_latent, (self.n_features_in_,))

    def inverse_transform(self, Z):
        """Map latent coordinates back to data space.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_features)
            Latent coordinates.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Data-space points; ``inverse_transform(transform(X))`` recovers
            ``X`` to float64 precision.
        """
        check_is_fitted(self)
        Z = check_array(Z, dtype=np.float64)
        if Z.shape[1] != self.n_features_in_:
            raise ValueError(
                f"Z has {Z.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return self._chunks(Z, self.flow_.from_latent, (self.n_features_in_,))

    @property
    def _n_features_out(self):
        return self.n_features_in_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags
