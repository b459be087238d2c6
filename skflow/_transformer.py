"""Transformer spline flows: TarFlow-style causal transformer blocks with rational-quadratic splines."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval

from ._spline import _MAX_BINS
from .base import BaseFlowDensity
from .engine.elementwise import SplineMap
from .engine.transformer import token_layout, transformer_stack
from .engine.transforms import Transform

__all__ = ["TransformerFlowDensity"]


class TransformerFlowDensity(BaseFlowDensity):
    """Density estimation with causal-transformer blocks of rational-quadratic splines.

    Each row is read as a sequence of *tokens*: one per feature, or, for
    images, one per patch (``image_shape`` and ``patch_shape``).  Each of
    the ``n_layers`` blocks is an ActNorm followed by an autoregressive
    transform over the tokens, as in TarFlow [1]_: a causal transformer
    (``depth`` pre-norm layers, ``n_heads`` heads, width ``embed_dim``)
    reads the tokens shifted right behind a learned start token, so its
    output at position ``t`` has seen the tokens before ``t`` only, and
    gives the parameters of a monotone rational-quadratic spline [2]_ for
    every feature of token ``t``.  The first token is conditioned on the
    start token alone, so every token is transformed in every block.
    Consecutive blocks read the tokens in opposite orders.

    The log-determinant is exact (the sum of the splines' log-slopes).
    Every block starts as the identity.  Data are standardised internally;
    :meth:`score_samples` still returns log-densities in the units of the
    input.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    n_layers : int, default=6
        Number of transformer blocks.
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
    depth : int, default=1
        Transformer layers per block.  Six one-layer blocks matched four
        two-layer blocks on digits and breast_cancer (within a nat) at
        three quarters of the compute; see the method page.
    n_heads : int, default=4
        Attention heads; must divide ``embed_dim``.
    embed_dim : int, default=32
        Embedding width of the transformer.
    n_bins : int, default=8
        Number of bins ``K`` of each spline.
    tail_bound : float, default=3.0
        Half-width ``B`` of the interval on which the splines act, in the
        standardised, ActNorm-ed units of each block's input; outside it each
        spline is the identity.
    image_shape : tuple of int or None, default=None
        Shape of the array that each row is a C-order flattening of, e.g.
        ``(8, 8)`` for :func:`sklearn.datasets.load_digits`.  Needed with
        ``patch_shape``.
    patch_shape : tuple of int or None, default=None
        Shape of the patch that makes one token, e.g. ``(2, 2)``; it must
        tile ``image_shape``.  ``None``: one token per feature.
    max_iter : int, default=500
        Maximum number of epochs.
    batch_size : int or "auto", default="auto"
        Mini-batch size; ``"auto"`` uses ``min(256, max(32, n_samples // 8))``.
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
    n_parameters_ : int
        Number of trainable parameters of ``flow_`` and of every stacked
        component of positive weight.

    See Also
    --------
    SplineFlowDensity : The same splines with MLP (coupling) or MADE
        (autoregressive) conditioners.
    RealNVPDensity : Affine coupling flow.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.

    Notes
    -----
    Scoring, :meth:`score_samples` and :meth:`transform` are one
    transformer pass per block.  :meth:`sample` and
    :meth:`inverse_transform` decode token by token: ``n_tokens``
    sequential steps per block, each a one-position transformer pass that
    reuses the keys and values of the positions already decoded, so they
    cost about as many operations as scoring but are sequential in the
    number of tokens (patches make fewer, larger tokens).

    The transformer sees a soft clamp ``c tanh(x / c)`` of its inputs
    (``c = 5`` standardised units), never the inputs themselves: points far
    from the data cannot drive the spline parameters of later tokens to
    values never seen in training, and ``inverse_transform(transform(X))``
    recovers ``X`` to about 1e-10 in float64 for any finite input.

    References
    ----------
    .. [1] S. Zhai, R. Zhang, P. Nakkiran, D. Berthelot, J. Gu, H. Zheng, T.
       Chen, M. A. Bautista, N. Jaitly and J. Susskind, "Normalizing Flows
       are Capable Generative Models", arXiv:2412.06329.
    .. [2] C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline
       Flows", NeurIPS 2019, arXiv:1906.04032.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skflow import TransformerFlowDensity
    >>> X = load_digits().data[:300]
    >>> flow = TransformerFlowDensity(
    ...     n_layers=2, image_shape=(8, 8), patch_shape=(2, 2), max_iter=3, random_state=0
    ... ).fit(X)
    >>> flow.score_samples(X[:3]).shape
    (3,)
    >>> flow.sample(5, random_state=0).shape
    (5, 64)
    """

    _parameter_constraints: dict = {
        **BaseFlowDensity._parameter_constraints,
        "depth": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "embed_dim": [Interval(Integral, 1, None, closed="left")],
        "n_bins": [Interval(Integral, 2, _MAX_BINS, closed="both")],
        "tail_bound": [Interval(Real, 0, None, closed="neither")],
        "image_shape": [tuple, None],
        "patch_shape": [tuple, None],
    }

    def __init__(
        self,
        *,
        n_layers=6,
        base="auto",
        n_components="auto",
        depth=1,
        n_heads=4,
        embed_dim=32,
        n_bins=8,
        tail_bound=3.0,
        image_shape=None,
        patch_shape=None,
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
        self.depth = depth
        self.n_heads = n_heads
        self.embed_dim = embed_dim
        self.n_bins = n_bins
        self.tail_bound = tail_bound
        self.image_shape = image_shape
        self.patch_shape = patch_shape

    def _build_transforms(self, n_features: int, generator: torch.Generator) -> list[Transform]:
        if self.embed_dim % self.n_heads:
            raise ValueError(f"embed_dim={self.embed_dim} must be a multiple of n_heads={self.n_heads}.")
        for name in ("image_shape", "patch_shape"):
            shape = getattr(self, name)
            if shape is not None and not all(isinstance(s, Integral) and s >= 1 for s in shape):
                raise ValueError(f"{name} must be a tuple of positive ints, got {shape!r}.")
        if self.image_shape is not None and math.prod(self.image_shape) != n_features:
            # The flow sees only the non-constant features (constant ones are point masses).
            raise ValueError(
                f"image_shape={tuple(self.image_shape)} needs {math.prod(self.image_shape)} features, but "
                f"{n_features} of the training features are not constant. An image layout cannot skip "
                "constant pixels (point masses): dequantise the data (add uniform noise of one grey "
                "level) or use the default layout of one token per feature."
            )
        layout = token_layout(n_features, self.image_shape, self.patch_shape)
        n_bins, tail_bound = int(self.n_bins), float(self.tail_bound)
        return transformer_stack(
            n_features,
            self.n_layers,
            layout,
            lambda: SplineMap(n_bins, tail_bound),
            embed_dim=int(self.embed_dim),
            depth=int(self.depth),
            n_heads=int(self.n_heads),
            generator=generator,
        )
