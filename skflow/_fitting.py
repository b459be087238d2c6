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
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ._base_selection import make_base
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
from .engine.training import Trainer, TrainingStatus

__all__ = ["FITTED_STATE", "auto_batch_size", "choose_start", "new_state", "train_state", "warm_state"]

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
)
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
    state["n_parameters_"] = n_parameters(flow)
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


def choose_start(states: list[dict], X_val: np.ndarray) -> dict:
    """``base="auto"``: the trained flow on the fitted start, unless the one on N(0, I) is clearly better.

    Clearly: its held-out log-likelihood is higher by more than two paired
    standard errors on the validation rows.  The best of many noisy epochs is
    optimistic, more so for the longer run from N(0, I); on iris (11
    validation rows) the plain comparison kept a flow 0.75 nats per row worse
    on the test rows than the mixture start it displaced.
    """
    fitted, normal = states
    scores = [map_rows(s["flow_"].log_prob, s["_columns"].variable(X_val)) for s in (fitted, normal)]
    diff = scores[1] - scores[0]
    if not np.all(np.isfinite(diff)) or diff.size < 2:
        return fitted
    margin = 2.0 * diff.std(ddof=1) / np.sqrt(diff.size)
    return normal if diff.mean() > margin else fitted
