"""How an estimator builds and trains its flow (the body of ``fit`` and ``partial_fit``).

Fitted state is built in a dict (:data:`FITTED_STATE` names its keys) and
assigned to the estimator only when everything succeeded, so a fit that
raises leaves the estimator as it was.  A warm start works on a deep copy of
the flow and its trainer for the same reason.

The estimator supplies its parameters and the hook ``_build_transforms``;
tensor plumbing (dtypes, devices, threads, chunking) is
:mod:`skflow.engine.runtime`'s.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ._base_selection import (
    cv_kernel_density, cv_mixtures, fit_student_t, make_base, mixture_base, refit_kernel_density,
    refit_mixture, refit_student_t,
)
from ._data import ConstantColumns, location_scale
from .engine import Compose, FixedAffine, Flow, GaussianMixtureBase
from .engine.runtime import (
    INFER_DTYPE,
    TRAIN_DTYPE,
    for_inference,
    for_training,
    map_rows,
    n_parameters,
    preprocessed_copy,
    resolve_device,
    thread_budget,
    torch_threads,
)
from .engine.stacking import DensityMixture, stacking_weights
from .engine.training import Trainer, TrainingStatus

__all__ = [
    "FITTED_STATE", "auto_batch_size", "density", "new_state", "stack_states", "train_state", "warm_state",
]

FITTED_STATE = (
    "flow_",
    "base_",
    "constant_features_",
    "n_iter_",
    "loss_curve_",
    "validation_scores_",
    "n_parameters_",
    "_columns",
    "_trainer",
    "_step_scale",
    "best_score_",
    "stack_weights_",
    "stack_components_",
    "_stack",
)
# base="auto": pseudo-rows of responsibility per stacked component (a symmetric Dirichlet prior on
# the weights), so that a few validation rows cannot push a component's weight to 0 or 1.
STACK_PRIOR = 1.0
# ... except the Student-t, which gets a tenth of a pseudo-row: it is insurance for rows far out in heavy
# tails, where even a weight of 1e-3 lifts a light-tailed stack's log-density from hundreds of nats below
# the bulk to a few; elsewhere a weight w costs about w nats per row.  Measured on the 19 rows
# of the quality benchmark with a prior of 1: catastrophic rows (d) 7 -> 0, but on the Gaussian-mixture rows
# the weight floor of 1 / (n_validation + 5) cost 0.01-0.05 nats per row ((c) 10 -> 14).
STUDENT_T_PRIOR = 0.1
# base="auto" stacks this many of the cross-validated mixture search's best candidates (cv_mixtures):
# with one EM start each, neighbouring sizes' scores are within EM's spread, and the validation rows
# weigh them.
STACK_MIXTURES = 2
# base="auto" keeps the trained flows in the stack only if they raise the validation rows' summed
# log-likelihood by this many nats over the classical components alone (stacking_weights' optional
# components): half the 95 % chi-squared quantile with 2 degrees of freedom, a likelihood-ratio test for
# the two flows' weights (if anything lenient: the flows' early stopping chose its epoch on those rows).
# Otherwise the flows get weight 0 and the classical weights are refitted without them.  Measured per row
# of the quality benchmark (seed 0): where the data are Gaussian mixtures (ring of 8 at 2000 rows, 16-D
# mixture at 2000) the flows gained -1.5 to +2.1 nats and cost the stack 0.01-0.02 nats per test row
# against a cross-validated GaussianMixture, while the classical stack alone was level with it; where
# flows help (digits, breast_cancer, the 16-D mixture at 100-500 rows, the funnel at 2000) they gained
# 3.3-650 nats.
STACK_FLOW_MIN_GAIN = 3.0
# With a mixture base the learning rate is multiplied by the components' typical scale (in the
# standardised units the flow trains in), clipped to this range: an Adam step moves every layer by
# about the learning rate, which is small for the data as a whole but large for a tight component,
# and a few such steps undid the EM start (iris, Ferumal: held-out -2.31 nats at the default rate,
# -1.70 at a tenth of it; ring of 8 Gaussians, 500 rows: -3.562 vs -3.555).
STEP_SCALE_RANGE = (0.05, 1.0)
# Rows used for data-dependent initialisation (ActNorm statistics, auxiliary
# points, the base distribution): stable statistics, bounded cost on huge data.
DATA_INIT_ROWS = 10000
_MAX_SEED = np.iinfo(np.int32).max


def auto_batch_size(n_train: int) -> int:
    """``min(256, max(32, n_train // 8))``, capped at ``n_train``.

    At least ~8 steps per epoch: on small data sets a full-batch epoch gives
    early stopping too few optimiser steps to work with (measured on iris,
    wine and breast_cancer: +1 to +10 nats held-out vs. one batch per epoch).
    """
    return min(n_train, 256, max(32, n_train // 8))


def warm_state(estimator) -> dict:
    """A copy of the estimator's fitted state to continue training from."""
    state = {name: getattr(estimator, name) for name in FITTED_STATE}
    # One deepcopy for both keeps the optimiser's references to the flow's parameters.
    state["flow_"], state["_trainer"] = copy.deepcopy((estimator.flow_, estimator._trainer))
    state["loss_curve_"] = list(estimator.loss_curve_)
    if estimator.validation_scores_ is not None:
        state["validation_scores_"] = list(estimator.validation_scores_)
    return state


def new_state(estimator, X, weight, rows, rng, val=None, base=None) -> dict:
    """A freshly built and initialised flow (with its base distribution) for ``X[rows]``.

    ``val`` (validation row indices) lets ``base="auto"`` choose on held-out rows;
    ``base`` overrides the estimator's ``base`` parameter.
    """
    columns = ConstantColumns(X if rows is None else X[rows])
    columns.check(X.shape[1])
    columns.warn(type(estimator).__name__)
    Xv = columns.variable(X)
    n_features = Xv.shape[1]
    loc, scale = location_scale(Xv, weight, rows)
    scale[~(scale > 0)] = 1.0  # a column constant on the training split only
    # A spread below float64's smallest normal number (e.g. 0 and 2e-309) would overflow the
    # standardisation's 1 / scale: such columns are standardised by that smallest normal number.
    np.maximum(scale, np.finfo(np.float64).tiny, out=scale)
    build_seed, init_seed, base_seed = rng.randint(_MAX_SEED, size=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(build_seed))
        layers = estimator._build_transforms(n_features, torch.Generator().manual_seed(int(build_seed)))
    standardise = FixedAffine(torch.tensor(loc), torch.tensor(scale))
    flow = Flow(Compose(layers), n_features, preprocessing=standardise).to(INFER_DTYPE)
    rows = np.arange(X.shape[0]) if rows is None else rows
    if rows.size > DATA_INIT_ROWS:
        rows = np.sort(rng.choice(rows, DATA_INIT_ROWS, replace=False))
    with torch.no_grad():
        x_init = flow.preprocess(torch.tensor(Xv[rows], dtype=INFER_DTYPE))
        core = flow.core()
        # Data-dependent set-up runs in the training dtype, as training will.
        for_training(core).data_init(x_init.to(TRAIN_DTYPE), torch.Generator().manual_seed(int(init_seed)))
        for_inference(core)
    kind = estimator.base if base is None else base
    z = z_val = None
    if kind != "normal":  # the standard normal needs no latent rows
        with torch.no_grad():
            z = core.transform(x_init)[0].numpy()
            if val is not None:
                z_val = core.transform(flow.preprocess(torch.tensor(Xv[val], dtype=INFER_DTYPE)))[0].numpy()
    w_init = None if weight is None else weight[rows]
    flow.base, base_ = make_base(kind, estimator.n_components, n_features, z, int(base_seed), z_val, w_init)
    step_scale = flow.base.typical_scale() if isinstance(flow.base, GaussianMixtureBase) else 1.0
    return {
        "flow_": flow,
        "base_": base_,
        "constant_features_": columns.indices,
        "n_iter_": 0,
        "loss_curve_": [],
        "validation_scores_": None,
        "n_parameters_": n_parameters(flow),
        "_columns": columns,
        "_trainer": None,
        "_step_scale": float(np.clip(step_scale, *STEP_SCALE_RANGE)),
        "best_score_": -np.inf,
        "stack_weights_": np.ones(1),
        "stack_components_": [f"flow ({base_} base)"],
        "_stack": [],
    }


def train_state(estimator, state, X, weight, train, val, rng, *, max_iter, anneal) -> None:
    """Train ``state["flow_"]`` on ``X[train]`` (early stopping on ``X[val]``), updating ``state``."""
    flow, columns = state["flow_"], state["_columns"]
    x = preprocessed_copy(flow, columns.variable(X))
    core = for_training(flow.core(), resolve_device(estimator.device))
    learning_rate = estimator.learning_rate * state["_step_scale"]
    trainer = state["_trainer"] or Trainer(core, learning_rate, estimator.weight_decay)
    trainer.learning_rate = learning_rate
    n_train = X.shape[0] if train is None else train.size
    batch_size = auto_batch_size(n_train) if estimator.batch_size == "auto" else estimator.batch_size
    shuffle = torch.Generator().manual_seed(int(rng.randint(_MAX_SEED)))
    w = None if weight is None else torch.tensor(weight, dtype=TRAIN_DTYPE)
    verbose = estimator.verbose
    with torch_threads(thread_budget(batch_size * n_parameters(core))):
        result = trainer.fit(
            x,
            w,
            None if val is None else x[val],
            None if (val is None or w is None) else w[val],
            rows=None if train is None else torch.as_tensor(train),
            max_iter=max_iter,
            batch_size=batch_size,
            n_iter_no_change=estimator.n_iter_no_change,
            tol=estimator.tol,
            anneal=anneal,
            keep_best=anneal,
            generator=shuffle,
            log=print if verbose else None,
            log_every=1 if verbose >= 2 else max(1, max_iter // 20),
        )
    del x
    for_inference(flow)
    trainer.optimizer.to("cpu")  # the fitted state pickles and loads anywhere
    state["_trainer"] = trainer
    state["n_iter_"] += result.n_iter
    state["loss_curve_"] = [*state["loss_curve_"], *result.loss_curve]
    if state["validation_scores_"] is not None:
        state["validation_scores_"] = [*state["validation_scores_"], *result.validation_scores]
    stacked = zip(state["_stack"], state["stack_weights_"][1:])
    state["n_parameters_"] = n_parameters(flow) + sum(n_parameters(c) for c, w in stacked if w > 0)
    state["best_score_"] = result.best_score
    _warn(type(estimator).__name__, result, max_iter, anneal)
    check = columns.variable(X[: min(X.shape[0], DATA_INIT_ROWS)])
    if not np.all(np.isfinite(map_rows(flow.log_prob, check))):
        raise ValueError(
            f"{type(estimator).__name__} could not fit a finite density to this data (non-finite "
            "log-likelihood on training rows). Check for extreme values or rescale the data."
        )


def _warn(name, result, max_iter, anneal) -> None:
    if result.status is TrainingStatus.DIVERGED:
        warnings.warn(
            f"Training of {name} diverged (non-finite loss or gradient) after {result.n_iter} "
            f"epochs; the best state seen (epoch {result.best_epoch}) was restored. Consider a "
            "lower learning_rate.",
            ConvergenceWarning,
        )
    elif result.status is TrainingStatus.INTERRUPTED:
        warnings.warn("Training interrupted by user; the best state seen was kept.", ConvergenceWarning)
    elif result.status is TrainingStatus.MAX_ITER and anneal and max_iter > 1:
        warnings.warn(
            f"{name} reached max_iter={max_iter} without converging; consider increasing max_iter.",
            ConvergenceWarning,
        )


def stack_states(states: list[dict], estimator, X: np.ndarray, weight, train, val, rng) -> dict:
    """``base="auto"``: the trained flows and cross-validated classical densities, stacked.

    The fitted density is ``sum_k w_k p_k(x)`` over the trained flows (on
    the fitted start and on N(0, I)), the ``STACK_MIXTURES`` best Gaussian
    mixtures of a cross-validated search (:func:`cv_mixtures`) and, where
    it is cheap (few rows or dimensions), a Gaussian kernel density
    (:func:`cv_kernel_density`), with weights that maximise the validation
    rows' log-likelihood
    (:func:`~skflow.engine.stacking.stacking_weights`).  As in stacked
    generalisation, the weights come from components that have not seen the
    validation rows; then the classical densities (cheap to fit, unlike the
    flows) are refitted on the training and validation rows together,
    keeping the size, covariance type, bandwidth and degrees of freedom
    chosen on the training rows.  A multivariate Student-t
    (:func:`fit_student_t`) is one of them: light-tailed components give
    rows far out in heavy tails almost no density, and a few such rows can
    dominate a mean log-likelihood.  The flows stay only if they raise the
    validation rows' log-likelihood by ``STACK_FLOW_MIN_GAIN`` nats;
    otherwise their weights are 0.  The flow with the larger weight (or,
    both dropped, the better one on the validation rows) becomes ``flow_``
    (what ``transform`` and further training use); the returned state
    lists every component and its weight.
    """
    columns = states[0]["_columns"]
    flow = states[0]["flow_"]

    def standardised(rows):
        with torch.no_grad():
            return flow.preprocess(torch.tensor(columns.variable(X[rows]), dtype=INFER_DTYPE)).numpy()

    def weight_of(rows):
        return None if weight is None else weight[rows]

    # Densities in the standardised coordinates the flows start from, as flows without layers.
    def layerless(base):
        return Flow(Compose([]), base, preprocessing=copy.deepcopy(flow.preprocessing)).to(INFER_DTYPE)

    seed = int(rng.randint(_MAX_SEED))
    z = standardised(train)
    mixtures = cv_mixtures(z, estimator.n_components, seed, weight_of(train), n_best=STACK_MIXTURES)
    kde = cv_kernel_density(z, seed, weight_of(train))
    student_t = fit_student_t(z, seed, weight_of(train))
    held_out = [s["flow_"] for s in states] + [layerless(mixture_base(m)) for m in mixtures]
    names = [f"flow ({s['base_']} base)" for s in states]
    names += [f"Gaussian mixture ({m.n_components}, {m.covariance_type})" for m in mixtures]
    if kde is not None:
        held_out.append(layerless(kde))
        names.append(f"kernel density (bandwidth {kde.bandwidth:.3g})")
    held_out.append(layerless(student_t))
    names.append(f"Student-t (df {student_t.df:g})")
    Xv = columns.variable(X[val])
    log_probs = torch.tensor(np.stack([map_rows(c.log_prob, Xv) for c in held_out], axis=1))
    w_val = None if weight is None else torch.tensor(weight[val])
    prior = torch.full((len(held_out),), STACK_PRIOR, dtype=log_probs.dtype)
    prior[-1] = STUDENT_T_PRIOR
    flows = torch.arange(len(held_out)) < len(states)
    w = stacking_weights(log_probs, w_val, prior=prior, optional=flows, min_gain=STACK_FLOW_MIN_GAIN).numpy()

    # Measured on the 19 rows of the quality benchmark (1 seed): (a) 79% -> 84%, (c) 9 -> 9; choosing the
    # size and bandwidth by cross-validation on all the rows instead did worse (74%, 12).
    rows = np.sort(np.concatenate([train, val]))
    z_all = standardised(rows)
    candidates = [s["flow_"] for s in states]
    candidates += [layerless(mixture_base(refit_mixture(m, z_all, seed, weight_of(rows)))) for m in mixtures]
    if kde is not None:
        candidates.append(layerless(refit_kernel_density(kde, z_all, seed, weight_of(rows))))
    candidates.append(layerless(refit_student_t(student_t, z_all, seed, weight_of(rows))))
    # flow_ is the flow with the larger weight; both dropped, the one better on the validation rows.
    n_flows = len(states)
    flow_scores = w[:n_flows] if w[:n_flows].any() else _mean_log_likelihood(log_probs[:, :n_flows], w_val)
    primary = int(np.argmax(flow_scores))
    order = [primary, *(k for k in range(len(candidates)) if k != primary)]
    state = states[primary]
    state["stack_weights_"] = w[order]
    state["stack_components_"] = [names[k] for k in order]
    state["_stack"] = [candidates[k] for k in order[1:]]
    kept = [c for k, c in enumerate(candidates) if k == primary or w[k] > 0]
    state["n_parameters_"] = sum(n_parameters(c) for c in kept)
    return state


def _mean_log_likelihood(log_probs: torch.Tensor, weight) -> np.ndarray:
    """Row-weighted mean of each column of ``log_probs`` (NaN counts as ``-inf``)."""
    log_probs = torch.nan_to_num(log_probs, nan=-math.inf).numpy()
    return np.average(log_probs, axis=0, weights=None if weight is None else weight.numpy())


def density(estimator):
    """The fitted density: ``flow_`` alone, or stacked with the other components of positive weight."""
    if not estimator._stack:
        return estimator.flow_
    weights = torch.as_tensor(estimator.stack_weights_)
    components = [estimator.flow_, *estimator._stack]
    kept = [k for k in range(len(components)) if weights[k] > 0]
    return DensityMixture([components[k] for k in kept], weights[kept])
