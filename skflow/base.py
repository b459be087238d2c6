"""The scikit-learn layer shared by every skflow density estimator.

:class:`BaseFlowDensity` owns everything scikit-learn facing: validation,
seeding, the choice of base distribution, the call into the engine's
trainer, and the inference methods.  A concrete estimator only adds its
hyper-parameters (merging ``_parameter_constraints``) and implements
:meth:`_build_transforms`, the hook that wires engine building blocks into
the trainable body of the flow (the pattern of
``sklearn.mixture._base.BaseMixture``).  Tensor plumbing (dtypes, devices,
threads, chunking) lives in :mod:`skflow.engine.runtime`.
"""

from __future__ import annotations

import copy
import weakref
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
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._fitting import FITTED_STATE, density, new_state, stack_states, train_state, warm_state
from .engine import Transform
from .engine.bases import BASES
from .engine.runtime import INFERENCE_CHUNK, generate_rows, map_rows, thread_budget, torch_threads

__all__ = ["BaseFlowDensity"]

# inference_dtype="float32": the float32 copy of each estimator's fitted model, made on first use and
# reused while the estimator holds the same fitted objects (a new fit replaces them).  Copying a stacked
# model took about 13 ms, more than scoring 1000 rows.  Kept outside the estimators, so that scoring
# leaves an estimator's __dict__ unchanged (scikit-learn's contract) and pickles do not carry the copy.
_FLOAT32_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class BaseFlowDensity(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, DensityMixin, BaseEstimator, metaclass=ABCMeta
):
    """Base class for normalising-flow density estimators.

    Do not use it directly; use :class:`~skflow.RealNVPDensity`,
    :class:`~skflow.FerumalFlowDensity` or :class:`~skflow.SplineFlowDensity`.
    """

    _parameter_constraints: dict = {
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "base": [StrOptions({"auto", *BASES})],
        "n_components": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
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
        "inference_dtype": [StrOptions({"float64", "float32"})],
    }

    @abstractmethod
    def __init__(
        self,
        *,
        n_layers,
        base,
        n_components,
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
        inference_dtype,
    ):
        self.n_layers = n_layers
        self.base = base
        self.n_components = n_components
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
        self.inference_dtype = inference_dtype

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
        warm = self.warm_start and hasattr(self, "flow_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, reset=not warm)
        X, weight = self._check_weights(X, sample_weight)
        rng = check_random_state(self.random_state)
        train, val = self._split(X.shape[0], rng)
        if warm:
            starts = [self._warm_state()]
        elif self.base == "auto" and val is not None:
            # Two flows, on the better fitted start (mixture or Student-t) and on N(0, I), stacked
            # with a cross-validated Gaussian mixture by weights fitted on the validation rows.
            starts = [
                self._new_state(X, weight, train, rng, val),
                self._new_state(X, weight, train, rng, val, base="normal"),
            ]
        else:
            starts = [self._new_state(X, weight, train, rng, val)]
        for state in starts:
            state["validation_scores_"] = [] if val is not None else None
            self._train(state, X, weight, train, val, rng, max_iter=self.max_iter, anneal=True)
        if len(starts) > 1:
            self._set_state(stack_states(starts, self, X, weight, train, val, rng))
        else:
            self._set_state(starts[0])
        return self

    def partial_fit(self, X, y=None, sample_weight=None):
        """Run one epoch of mini-batch training on ``X``.

        The first call (or a call on an unfitted estimator) builds the flow
        and initialises its data-dependent state (standardisation, ActNorm,
        auxiliary points, base distribution, constant columns) from this
        batch.  Later calls continue training with the optimiser state of
        the previous ones, which makes out-of-core learning possible.  There
        is no early stopping and no learning-rate schedule across calls.

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
            state = self._new_state(X, weight, None, rng)
            state["validation_scores_"] = None
        else:
            # A fresh, reproducible stream of shuffling seeds per call.
            seed = self.random_state if isinstance(self.random_state, Integral) else None
            rng = check_random_state(None) if seed is None else np.random.RandomState([seed, self.n_iter_])
            state = self._warm_state()
        self._train(state, X, weight, None, None, rng, max_iter=1, anneal=False)
        self._set_state(state)
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

    # Fitted state is built in a dict and assigned only at the end, so a fit
    # that raises leaves the estimator as it was (see skflow._fitting).
    def _warm_state(self) -> dict:
        return warm_state(self)

    def _set_state(self, state: dict) -> None:
        for name in FITTED_STATE:
            setattr(self, name, state[name])

    def _new_state(self, X, weight, rows, rng, val=None, base=None) -> dict:
        return new_state(self, X, weight, rows, rng, val, base)

    def _train(self, state, X, weight, train, val, rng, *, max_iter, anneal):
        train_state(self, state, X, weight, train, val, rng, max_iter=max_iter, anneal=anneal)

    # ------------------------------------------------------------- inference
    def _threads(self) -> torch_threads:
        return torch_threads(thread_budget(INFERENCE_CHUNK * self.n_parameters_))

    def _flow(self, stacked=False):
        """The fitted flow (``stacked``: the whole fitted density) in the inference dtype, and that dtype.

        float64 (the default) is the exact path; float32 is a copy, made
        once per fitted model, about twice as fast, with round trips good to
        ~1e-6 relative.
        """
        if self.inference_dtype != "float32":
            return (density(self) if stacked else self.flow_), torch.float64
        # The copy is keyed on the very objects it was made from (held, so their ids stay unique).
        sources = (self.flow_, *self._stack, self.stack_weights_) if stacked else (self.flow_,)
        copies = _FLOAT32_MODELS.setdefault(self, {})
        made = copies.get(stacked)
        if made is None or len(made[0]) != len(sources) or any(a is not b for a, b in zip(made[0], sources)):
            model = density(self) if stacked else self.flow_
            made = copies[stacked] = (sources, copy.deepcopy(model).to(torch.float32))
        return made[1], torch.float32

    def _log_prob(self, X: np.ndarray) -> np.ndarray:
        flow, dtype = self._flow(stacked=True)
        with self._threads():
            log_prob = map_rows(flow.log_prob, self._columns.variable(X), dtype=dtype)
        # Far beyond the data the density underflows; NaN would come from
        # inf - inf there, and the honest value is log(0).  Rows off a
        # constant column's point mass have density 0 too.
        return np.where(np.isnan(log_prob) | ~self._columns.matches(X), -np.inf, log_prob)

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
        flow, _ = self._flow(stacked=True)
        with self._threads():
            rows = generate_rows(lambda size: flow.sample(size, generator), n_samples, flow.features)
        return self._columns.fill(rows)

    def transform(self, X):
        """Map samples to their latent (base-space) coordinates.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to map.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features)
            Latent coordinates under ``flow_``, distributed as its base
            distribution ``flow_.base`` if the flow fits: standard normal
            for ``base="normal"``, the fitted mixture or Student-t
            otherwise.  With ``base="auto"`` the fitted density is a stack
            of which ``flow_`` is the flow with the larger weight (see
            ``stack_weights_``; when the flows did not earn a place in
            the stack, it is not part of the fitted density).  Constant
            features (point masses) have latent coordinate 0.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        flow, dtype = self._flow()
        with self._threads():
            Z = map_rows(flow.to_latent, self._columns.variable(X), (flow.features,), dtype=dtype)
        return self._columns.fill(Z, 0.0)

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
        flow, dtype = self._flow()
        with self._threads():
            X = map_rows(flow.from_latent, self._columns.variable(Z), (flow.features,), dtype=dtype)
        return self._columns.fill(X)

    @property
    def _n_features_out(self):
        return self.n_features_in_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags
