"""Neural spline flows: rational-quadratic splines, coupling or autoregressive."""

from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from .base import BaseFlowDensity
from .engine.conditioners import ACTIVATIONS
from .engine.flows import neural_spline_flow
from .engine.splines import MIN_BIN_HEIGHT, MIN_BIN_WIDTH
from .engine.transforms import MIXINGS, Transform

__all__ = ["SplineFlowDensity"]

# Every bin keeps at least MIN_BIN_WIDTH (and MIN_BIN_HEIGHT) of the interval,
# so no more than this many bins fit.
_MAX_BINS = int(round(1.0 / max(MIN_BIN_WIDTH, MIN_BIN_HEIGHT))) - 1


class SplineFlowDensity(BaseFlowDensity):
    """Density estimation with a rational-quadratic neural spline flow.

    Each of the ``n_layers`` layers is an ActNorm, a mixing of the features
    (by default a learned LU-parametrised linear map) and a monotone
    rational-quadratic spline per feature, with ``n_bins`` bins on
    ``[-tail_bound, tail_bound]`` and the identity outside.  The spline
    parameters (bin widths, heights and knot slopes) come from a neural
    network, either

    - ``architecture="autoregressive"`` (the default): a masked network
      (MADE), so that feature ``i`` is conditioned on all features before
      it (more expressive per layer; sampling needs one network pass per
      feature), or
    - ``architecture="coupling"``: a multi-layer perceptron on the other half
      of the features (fast in both directions).

    Every layer starts as the identity.  With a single feature the splines
    have nothing to condition on and are learned as free parameters.  Data
    are standardised internally; :meth:`score_samples` still returns
    log-densities in the units of the input.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    n_layers : int, default=5
        Number of spline layers.
    base : {"auto", "normal", "mixture", "student_t"}, default="auto"
        The base distribution the flow maps the data onto (see the
        :ref:`user guide <base_distributions>`).  ``"normal"``: a standard
        normal (the classic flow).  ``"mixture"``: a learnable
        Gaussian mixture initialised by EM on the training rows (as seen by
        the freshly initialised flow), its size ``n_components`` chosen by
        BIC; separated modes then need no tearing of space, and the
        untrained flow *is* that mixture.  ``"student_t"``: independent
        Student-t marginals with learnable degrees of freedom (heavy tails).
        ``"auto"``: a stacked density (Smyth & Wolpert).  Two flows are
        trained, one on the better fitted start (the mixture or the
        Student-t base, whichever has the higher held-out log-likelihood)
        and one on the standard normal; the fitted density is a convex
        combination of them, of the two best Gaussian mixtures of a
        cross-validated search, in a few dimensions of a kernel density, and of
        a multivariate Student-t (heavy tails), with weights that maximise
        the held-out log-likelihood (``stack_weights_``).  The flows must
        earn their place: unless they raise the held-out rows' summed
        log-likelihood by 3 nats (a likelihood-ratio test), their weights
        are 0 and the classical densities are stacked alone.  ``flow_``
        (and so ``transform``) is the flow with the larger weight (when
        both are dropped, the one better on the held-out rows).  Without early
        stopping: one flow on the fitted start, chosen by BIC.  Early
        stopping scores the starting model too, so training replaces it
        only by something better on the held-out rows.
    n_components : "auto" or int, default="auto"
        Mixture size for ``base="mixture"`` (and ``"auto"``): ``"auto"``
        chooses 1 to 10 components (at most one per 10 training rows) and a
        full, tied, diagonal or spherical covariance by BIC for the flows'
        start, by cross-validation for the mixtures that ``"auto"`` stacks
        with the flows (there also 12, 16, 24 or 32 components).
    n_bins : int, default=8
        Number of bins ``K`` of each spline.
    tail_bound : float, default=3.0
        Half-width ``B`` of the interval on which the splines act, in the
        units of the (standardised, ActNorm-ed) inputs of each layer.
        Outside it every spline is the identity.
    hidden_dims : tuple of int, default=(64, 64)
        Hidden layer widths of each conditioner network.
    activation : {"auto", "relu", "gelu", "silu", "tanh"}, default="auto"
        Activation of the conditioner networks' hidden layers; ``"auto"``:
        GELU for ``architecture="coupling"``, ReLU for
        ``"autoregressive"``.
    architecture : {"autoregressive", "coupling"}, default="autoregressive"
        How the spline parameters are conditioned (see above).  On UCI
        density sets the defaults were not tuned on (kin8nm and MAGIC gamma
        at 500 and 2000 training rows, two training draws) the
        autoregressive flow scored 0.18-0.49 nats per held-out row above
        the coupling flow (and 0.10-0.84 above zuko's autoregressive NSF);
        on protein it scored 0.04-0.69 below the coupling flow, and on the
        quality benchmark's 19 rows they are level (mean -0.006).
        ``"coupling"`` samples 4-5 times as fast (16 features) and scores
        1.3-2 times as fast.
    mixing : {"lu", "alternate", "reverse", "random"}, default="lu"
        How features are mixed between layers: a learned LU-parametrised
        invertible linear map (as in the paper), nothing beyond alternating
        masks / autoregressive orders, a reversal, or a seeded random
        permutation (in coupling mode, one before every pair of layers).
    max_iter : int, default=500
        Maximum number of epochs.
    batch_size : int or "auto", default="auto"
        Mini-batch size; ``"auto"`` uses ``min(256, max(32, n_samples // 8))``
        so that small data sets still get several steps per epoch.
    learning_rate : float, default=1e-3
        Peak learning rate of Adam, annealed to zero by a cosine schedule
        over ``max_iter`` epochs.
    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop when their
        log-likelihood has not improved by ``tol`` for ``n_iter_no_change``
        epochs and keep the best state.  If ``False`` (or if the data set is
        too small to hold rows out) the training loss is monitored instead.
    validation_fraction : float, default=0.1
        Fraction of rows held out for early stopping.
    n_iter_no_change : int, default=20
        Patience, in epochs.
    tol : float, default=1e-4
        Minimal improvement, in nats per sample.
    warm_start : bool, default=False
        Continue from the previous fit's flow instead of building a new one.
    random_state : int, RandomState instance or None, default=None
        Seeds the model initialisation, the validation split and the
        mini-batch order.  An int gives bit-identical results on the CPU.
    verbose : int, default=0
        Print training progress (1: about 20 lines per fit, 2: every epoch).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where training runs.  The fitted model always lives on the CPU.
    inference_dtype : {"float64", "float32"}, default="float64"
        Precision of ``score_samples``, ``sample``, ``transform`` and
        ``inverse_transform``.  float64 is exact (round trips to ~1e-10,
        scores independent of batching); float32 runs on a float32 copy of
        the flow, about twice as fast, with relative errors around 1e-6.
        Training always runs in float32.

    Attributes
    ----------
    flow_ : skflow.engine.Flow
        The fitted torch flow (float64, CPU, eval mode).
    n_features_in_ : int
        Number of features seen during :term:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.
    n_iter_ : int
        Number of epochs run.
    loss_curve_ : list of float
        Mean training negative log-likelihood per epoch (standardised units).
    validation_scores_ : list of float or None
        Mean held-out log-likelihood per epoch (standardised units), or
        ``None`` without early stopping.
    base_ : str
        The base distribution chosen by ``fit``: ``"normal"``,
        ``"student_t"`` or ``"mixture(K, covariance_type)"``.
    stack_weights_ : ndarray of shape (n_components_stacked,)
        Weights of the components of the fitted density (they sum to 1):
        ``flow_`` first, then the others of ``base="auto"``; ``[1.0]`` when
        the density is ``flow_`` alone.  The flows' weights are 0 when they
        did not gain enough on the held-out rows.
    stack_components_ : list of str
        What each weight of ``stack_weights_`` belongs to.
    best_score_ : float
        The monitored score of the kept state: mean held-out log-likelihood
        (standardised units), or minus the training loss without early
        stopping.
    constant_features_ : ndarray of int
        Indices of the features that were constant in the training data;
        they are modelled as point masses (see :ref:`constant_features`).
    n_parameters_ : int
        Number of trainable parameters of ``flow_`` and of every stacked
        component of positive weight.

    See Also
    --------
    RealNVPDensity : Affine coupling flow (faster, less flexible per layer).
    FerumalFlowDensity : Coupling flow with kernel-machine conditioners.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.
    sklearn.neighbors.KernelDensity : Kernel density estimate.

    Notes
    -----
    Both directions of a spline are analytic (the inverse solves one
    quadratic per element), so a coupling flow samples as fast as it scores.
    An autoregressive flow scores in one network pass per layer but samples
    and runs :meth:`inverse_transform` in ``n_features`` passes per layer.

    Training runs in float32; the fitted flow is converted to float64, in
    which all inference is done, so ``inverse_transform(transform(X))``
    recovers ``X`` to about 1e-10 for any finite input, including points on
    the knots, on ``+-tail_bound`` and far in the linear tails.

    A spline is far more flexible than an affine map, but it only acts on
    ``[-tail_bound, tail_bound]``: beyond it each layer is the identity, so
    the tails of the density, and shifts of a feature's location by more
    than the bound, come from the ActNorm and mixing layers alone.  On
    heavy-tailed data an affine flow (:class:`RealNVPDensity`) can therefore
    do better; on real tabular data with thousands of rows the splines
    usually win (see ``benchmarks/spline_quality.py``).

    References
    ----------
    .. [1] C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline
       Flows", NeurIPS 2019, arXiv:1906.04032.
    .. [2] G. Papamakarios, T. Pavlakou, I. Murray, "Masked Autoregressive
       Flow for Density Estimation", NeurIPS 2017, arXiv:1705.07057.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skflow import SplineFlowDensity
    >>> X = load_iris().data
    >>> flow = SplineFlowDensity(n_layers=2, max_iter=20, random_state=0).fit(X)
    >>> flow.score_samples(X[:3]).shape
    (3,)
    >>> flow.sample(5, random_state=0).shape
    (5, 4)
    """

    _parameter_constraints: dict = {
        **BaseFlowDensity._parameter_constraints,
        "n_bins": [Interval(Integral, 2, _MAX_BINS, closed="both")],
        "tail_bound": [Interval(Real, 0, None, closed="neither")],
        "hidden_dims": [tuple],
        "activation": [StrOptions({"auto", *ACTIVATIONS})],
        "architecture": [StrOptions({"coupling", "autoregressive"})],
        "mixing": [StrOptions(set(MIXINGS))],
    }

    def __init__(
        self,
        *,
        n_layers=5,
        base="auto",
        n_components="auto",
        n_bins=8,
        tail_bound=3.0,
        hidden_dims=(64, 64),
        activation="auto",
        architecture="autoregressive",
        mixing="lu",
        max_iter=500,
        batch_size="auto",
        learning_rate=1e-3,
        weight_decay=0.0,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=20,
        tol=1e-4,
        warm_start=False,
        random_state=None,
        verbose=0,
        device="cpu",
        inference_dtype="float64",
    ):
        super().__init__(
            n_layers=n_layers,
            base=base,
            n_components=n_components,
            max_iter=max_iter,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
            device=device,
            inference_dtype=inference_dtype,
        )
        self.n_bins = n_bins
        self.tail_bound = tail_bound
        self.hidden_dims = hidden_dims
        self.activation = activation
        self.architecture = architecture
        self.mixing = mixing

    def _build_transforms(self, n_features: int, generator: torch.Generator) -> list[Transform]:
        if not all(isinstance(h, Integral) and h >= 1 for h in self.hidden_dims):
            raise ValueError(f"hidden_dims must be a tuple of positive ints, got {self.hidden_dims!r}.")
        return neural_spline_flow(
            n_features,
            n_layers=self.n_layers,
            n_bins=self.n_bins,
            tail_bound=self.tail_bound,
            hidden_dims=self.hidden_dims,
            activation=self.activation,
            architecture=self.architecture,
            mixing=self.mixing,
            generator=generator,
        )
