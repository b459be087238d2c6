"""Outlier detection with any density estimator: low density = outlier."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, MetaEstimatorMixin, OutlierMixin, _fit_context, clone
from sklearn.ensemble import IsolationForest
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, RealNotInt, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, has_fit_parameter, validate_data
from threadpoolctl import threadpool_limits

from ._neighbors import _KNeighborsDensity
from ._preprocessing import _quantile, _TabularPreprocessor

__all__ = ["DensityOutlierDetector"]

# Rows per ensemble member for max_samples="auto".  Measured with
# FerumalFlowDensity (its earlier 8-layer defaults) on 10 ODDS sets, mean ROC-AUC (AP): one flow on 2048
# rows 0.834 (0.269), five on 512 rows 0.850 (0.322), for about 4x the fit
# time (pendigits 0.80 -> 0.89, satimage-2 0.91 -> 0.99, cardio 0.61 -> 0.74;
# losses: letter 0.88 -> 0.82, wine 0.78 -> 0.72).  Re-measured at the
# 4-layer defaults (3 members, 7 ODDS sets, fit-on-all / semi-supervised):
# 256 rows lose on letter (0.87 -> 0.82 / 0.93 -> 0.89) and vowels (0.96 ->
# 0.93 / 0.99 -> 0.98), win on cardio semi-supervised only (0.86 -> 0.91).
_AUTO_MAX_SAMPLES = 512
# Tukey's lower fence, Q1 - 1.5 IQR of the training scores, for
# contamination="auto" (the box-plot rule).
_TUKEY_FENCE = 1.5


class _one_thread:
    """Context manager: BLAS/OpenMP pools and torch limited to one thread, then restored.

    Ensemble members run side by side in ``n_jobs`` workers: each gets one
    core, not a pool that competes with its siblings for all of them.
    """

    def __enter__(self):
        self.limits = threadpool_limits(1)
        self.torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.torch_threads)
        self.limits.restore_original_limits()


def _fit_member(estimator, X, weight, one_thread):
    if not one_thread:
        return estimator.fit(X) if weight is None else estimator.fit(X, sample_weight=weight)
    with _one_thread():
        return _fit_member(estimator, X, weight, False)


def _score_member(estimator, X, one_thread):
    if not one_thread:
        return estimator.score_samples(X)
    with _one_thread():
        return estimator.score_samples(X)


def _seed_all(estimator, rng):
    """Set every ``random_state`` parameter (nested ones too) to a seed from ``rng``."""
    seeds = {
        key: rng.randint(np.iinfo(np.int32).max)
        for key in sorted(estimator.get_params(deep=True))
        if key == "random_state" or key.endswith("__random_state")
    }
    return estimator.set_params(**seeds)


class DensityOutlierDetector(OutlierMixin, MetaEstimatorMixin, BaseEstimator):
    """Unsupervised outlier detection with any density estimator.

    Rows of low estimated density are outliers.  The detector robust-
    standardises the data, dequantises discrete columns, fits
    ``n_estimators`` clones of ``estimator`` on random subsamples, and a
    nearest-neighbour density on each subsample, and scores a row by the
    mean of their log-densities.  It follows the conventions of
    :class:`~sklearn.ensemble.IsolationForest`: :meth:`predict` returns +1
    for inliers and -1 for outliers, :meth:`score_samples` is higher for
    more normal rows, and :meth:`decision_function` is
    ``score_samples(X) - offset_``, negative for outliers.

    Preprocessing belongs to the detector, not to the density, so any
    estimator with ``fit`` and ``score_samples`` can be plugged in; each step
    guards against a way in which a density fitted naively to real tabular
    data ranks anomalies as the most typical rows:

    1. **Constant columns are dropped**: a column with a single value on
       the training rows carries no density (a density estimator would
       model it as an arbitrarily narrow spike, or divide by its zero
       spread), so the estimators never see it, and at scoring time
       deviations from that value are ignored.  Drop or flag such columns
       yourself if a change in them should count as anomalous.
    2. **Robust standardisation**: each column is centred on its median and
       divided by ``IQR / 1.349`` (its standard deviation if the IQR is 0),
       so a few extreme rows do not squash the bulk of the data, and
       estimators with an isotropic kernel see comparable columns.
    3. **Dequantisation**: a column with at most ``n_samples / 2`` distinct
       values (integer counts, categorical codes, rounded measurements) is
       discrete.  Repeated values are point masses on which a continuous
       density can grow without bound (a Gaussian mixture collapses a
       component onto them, a flow squeezes its mass onto the grid), so the
       score becomes a lookup of which rows are duplicated.  Training rows
       get uniform noise of one grid step (the median gap between the
       column's distinct values) in these columns (Uria et al., 2013);
       scoring uses the rows as they are, so scores are deterministic.
    4. **Subsampled ensemble**: each of the ``n_estimators`` clones is fitted
       on ``max_samples`` rows drawn without replacement, with its own noise
       and seed, and the scores are averaged.  A flow's ranking of the rare
       rows varies from seed to seed; on the larger benchmark sets five
       clones on 512 rows rank anomalies better than one on 2048 rows.  It
       also bounds the cost on large data sets: every row is scored, but no
       clone sees more than ``max_samples`` rows.
    5. **Robust members**: the anomalies a detector is meant to find are in
       its training rows too, and where they form a cluster a flexible
       density learns it as a mode and scores them as typical.  Every
       second clone is therefore fitted without the ``trim_fraction`` of
       rows that an isolation forest isolates fastest (a cluster of
       anomalies is isolated early on its subsamples); the others see all
       rows, so the tails of clean data keep their density.  On the 20
       ODDS sets, against no such members: fit on all rows, mean ROC-AUC
       0.843 vs 0.840 and average precision 0.497 vs 0.431 (pendigits
       0.79 -> 0.89, thyroid AP 0.36 -> 0.69; optdigits 0.75 -> 0.68); fit
       on clean rows (5 splits), 0.908 vs 0.911 and 0.713 vs 0.732.
       Trimming every member instead costs more on clean rows (split 0:
       0.904 / 0.689 against 0.908 / 0.740): their tails are lost.
    6. **A nearest-neighbour density beside the estimators**: each
       member's rows also give a k-nearest-neighbour density estimate
       (Loftsgaarden and Quesenberry, 1965), ``log p(x) = log(k / n) -
       log V_d - d log r_k(x)`` with ``r_k(x)`` the distance to the ``k``-th
       nearest of the member's ``n`` rows, ``V_d`` the volume of the unit
       ball and ``k = round(sqrt(n))`` (``n_neighbors="auto"``).  The score
       is the mean of two log-densities: the estimators' mean and the
       neighbour densities' mean.  The two fail in different places.  A
       flow scores a compact cluster of anomalies as typical once it has
       learnt it; a neighbour density does not while the cluster holds
       fewer than ``k`` of a member's rows, and subsampling thins it.  A
       neighbour density is poor in many dimensions, where the flow is
       strong.  On the 20 ODDS sets, against the flows alone: fit on all
       rows, mean ROC-AUC 0.861 vs 0.841 and average precision 0.510 vs
       0.497 (wine 0.65 -> 0.83, cardio 0.76 -> 0.88, satellite 0.75 ->
       0.79; letter 0.86 -> 0.83, optdigits 0.68 -> 0.65); fit on clean
       rows (5 splits), 0.909 vs 0.908 and 0.707 vs 0.713 (cardio 0.88 ->
       0.93; letter 0.92 -> 0.89, optdigits 0.94 -> 0.91).  It adds
       about 5% to the fit and score time.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    estimator : object, default=None
        The density estimator: any object with ``fit(X)`` and
        ``score_samples(X)`` returning log-densities, such as every skflow
        estimator, :class:`~sklearn.neighbors.KernelDensity` or
        :class:`~sklearn.mixture.GaussianMixture`.  ``None`` means
        ``FerumalFlowDensity(base="normal")``: the mixture base that
        ``base="auto"`` may choose can model a cluster of anomalies.  It
        is cloned; the ``random_state`` of each clone (and any nested
        ``*__random_state``) is set from this detector's ``random_state``,
        as :class:`~sklearn.ensemble.BaggingClassifier` does.
    contamination : "auto" or float, default="auto"
        Sets the threshold ``offset_`` on the training scores.  A float in
        ``(0, 0.5]`` is the proportion of training rows predicted as
        outliers: ``offset_`` is that quantile of the training scores.
        ``"auto"`` uses Tukey's lower fence, ``offset_ = Q1 - 1.5 * IQR`` of
        the training scores (the box-plot rule): robust to the unknown
        fraction of outliers it is looking for (up to 25%) and without a
        preset rate.  On the 20 ODDS benchmark sets (true rates 1.2% to 36%)
        it flags 0% (breastw, ionosphere) to 7.6% of the rows.
    n_estimators : int, default=5
        Number of density estimators averaged.
    max_samples : "auto", int or float, default="auto"
        Rows drawn (without replacement) to fit each estimator.  ``"auto"``:
        ``min(512, n_samples)``; an int (at least 2): that many rows (all
        rows if there are fewer); a float in ``(0, 1]``: that fraction of
        the rows (at least 2).
    n_neighbors : "auto", int or None, default="auto"
        Neighbours ``k`` of the nearest-neighbour density fitted beside each
        member (step 6 above): ``"auto"`` is ``round(sqrt(n))`` for a
        member of ``n`` rows (23 at ``max_samples=512``), an int is that
        ``k`` (at most ``n``).  ``None`` leaves it out: the score is then the
        estimators' mean log-density alone.
    dequantize : bool, default=True
        Add uniform noise of one grid step to the discrete columns of the
        training rows (step 3 above).  An estimator that memorises its
        training rows and then scores those same rows, such as a
        :class:`~sklearn.neighbors.KernelDensity` with a small bandwidth, can
        rank better without it: there the noise only blurs each row's
        match with itself.
    trim_fraction : float in [0, 0.5), default=0.1
        Every second member (the 2nd, 4th, ...) draws its subsample from
        the training rows outside the ``trim_fraction`` that an
        :class:`~sklearn.ensemble.IsolationForest` (scikit-learn's defaults,
        on the preprocessed rows) isolates fastest (step 5 above); ``0``
        fits every member on all rows.
    n_jobs : int, default=None
        Number of ensemble members fitted (and scored) in parallel with
        joblib; ``None`` means 1 unless in a
        :obj:`joblib.parallel_backend` context, ``-1`` means all
        processors.  Each worker runs torch and BLAS on one thread.  The
        result does not depend on ``n_jobs``: subsamples, noise and seeds
        are drawn before the members are dispatched.  Use a process-based
        backend (joblib's default, loky): torch's random state and thread
        setting are per process, not per thread.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsamples, the dequantisation noise and the clones'
        ``random_state``.  An int gives reproducible results.

    Attributes
    ----------
    estimator_ : estimator
        The first fitted clone of ``estimator``.
    estimators_ : list of estimators
        All ``n_estimators`` fitted clones.
    neighbor_densities_ : list
        The nearest-neighbour density of each member's rows (empty when
        ``n_neighbors=None``); each has ``score_samples`` and the fitted
        ``n_neighbors_``.
    offset_ : float
        Threshold on :meth:`score_samples`: rows scoring below it are
        outliers; ``decision_function = score_samples - offset_``.
    support_ : ndarray of bool of shape (`n_features_in_`,)
        The non-constant features, the ones the estimators see.
    location_ : ndarray of shape (n_kept_features,)
        Medians of the kept features.
    scale_ : ndarray of shape (n_kept_features,)
        ``IQR / 1.349`` of the kept features (their standard deviation where
        the IQR is 0).
    dequantization_step_ : ndarray of shape (n_kept_features,)
        Width of the uniform training noise per kept feature, in
        standardised units; 0 for continuous features.
    max_samples_ : int
        Rows used to fit each estimator.
    preprocessor_ : transformer
        The fitted preprocessing (steps 1-3): its ``transform`` maps rows
        to what the estimators see.
    n_features_in_ : int
        Number of features seen during :term:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    sklearn.ensemble.IsolationForest : Isolation-based outlier detection.
    sklearn.neighbors.LocalOutlierFactor : Local-density outlier detection.
    sklearn.covariance.EllipticEnvelope : Outliers of a Gaussian fit.
    FerumalFlowDensity : The default density estimator.

    Notes
    -----
    :meth:`score_samples` is the mean log-density of the *preprocessed*
    rows (robust-standardised units, constant columns dropped), a score
    for ranking rows rather than the density of the input; with
    ``n_neighbors`` set, it averages the estimators' and the neighbour
    densities' means.  A training row is among its own nearest neighbours
    when scored, which raises its neighbour density a little: the scores of
    the training rows (and ``offset_``) are comparable with each other,
    and a little higher than those of new rows like them.  Deviations in a
    feature that was constant during training are ignored.

    A density ranks a compact cluster of anomalies as typical when the
    cluster is denser than the inliers.  The robust members (step 5) help
    only where the isolation forest isolates the cluster early; where it
    does not (on the ODDS wine and cardio sets), an isolation forest alone
    may do better.  Exact duplicates in
    *continuous* columns (more than ``n_samples / 2`` distinct values) are
    not dequantised, so a value repeated many times there (a stuck sensor)
    can still attract a collapsing estimator.

    With labels, a supervised scorer can tune the detector in
    :class:`~sklearn.model_selection.GridSearchCV`.  Ranking scorers such
    as ``"roc_auc"`` read :meth:`decision_function` (higher = more normal)
    and take the greater label as the positive class, so pass labels in
    scikit-learn's convention, ``y = +1`` for inliers and ``-1`` for
    outliers (e.g. ``np.where(is_anomaly, -1, 1)``), and a stratified,
    shuffled ``cv``: outlier detectors get an unshuffled ``KFold``
    by default, whose folds may hold no anomaly at all.

    References
    ----------
    .. [1] F. T. Liu, K. M. Ting, Z.-H. Zhou, "Isolation Forest", ICDM 2008
       (the conventions, subsampled ensembles, and the rows the robust
       members leave out).
    .. [2] B. Uria, I. Murray, H. Larochelle, "RNADE: The real-valued neural
       autoregressive density-estimator", NeurIPS 2013, arXiv:1306.0186
       (uniform dequantisation).
    .. [3] J. W. Tukey, "Exploratory Data Analysis", Addison-Wesley, 1977
       (the fences of the box plot).
    .. [4] D. O. Loftsgaarden, C. P. Quesenberry, "A nonparametric estimate
       of a multivariate density function", Annals of Mathematical
       Statistics 36(3), 1965 (the nearest-neighbour density and its
       ``k = sqrt(n)``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neighbors import KernelDensity
    >>> from skflow import DensityOutlierDetector
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(size=(100, 2)), [[6.0, 6.0], [-7.0, 5.0]]])
    >>> det = DensityOutlierDetector(KernelDensity(), random_state=0).fit(X)
    >>> det.predict(X[-3:])
    array([ 1, -1, -1])
    >>> bool(det.decision_function(X[-1:])[0] < 0)
    True
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "score_samples"]), None],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "max_samples": [
            StrOptions({"auto"}),
            Interval(Integral, 2, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="right"),
        ],
        "trim_fraction": [Interval(Real, 0, 0.5, closed="left")],
        "n_neighbors": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), None],
        "dequantize": ["boolean"],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        contamination="auto",
        n_estimators=5,
        max_samples="auto",
        trim_fraction=0.1,
        n_neighbors="auto",
        dequantize=True,
        n_jobs=None,
        random_state=None,
    ):
        self.estimator = estimator
        self.contamination = contamination
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.trim_fraction = trim_fraction
        self.n_neighbors = n_neighbors
        self.dequantize = dequantize
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _base_estimator(self):
        if self.estimator is not None:
            return self.estimator
        # Imported here: the detector works with any estimator, and the flow
        # modules stay importable on their own.
        from ._ferumal import FerumalFlowDensity

        # A standard normal base, not the estimator's "auto" (a mixture on
        # most ODDS sets): a mixture component can settle on a cluster of
        # anomalies in the training set.  Fit on all rows of the 20 ODDS
        # sets, mean ROC-AUC 0.840 vs 0.815 with "auto" (lympho 0.98 vs
        # 0.78, shuttle 0.99 vs 0.93; letter 0.88 vs 0.91).
        return FerumalFlowDensity(base="normal")

    # Nested validation stays on: the wrapped estimator's parameters are
    # checked by its own fit.
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the preprocessing and the density estimators.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, possibly contaminated by outliers.
        y : None
            Ignored; present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights, passed to the estimator's ``fit``
            (an error if it takes none) and used in the robust statistics
            and the threshold.  Rows of zero weight are ignored.

        Returns
        -------
        self : object
            The fitted detector.
        """
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        base = self._base_estimator()
        weight = None
        if sample_weight is not None:
            if not has_fit_parameter(base, "sample_weight"):
                raise ValueError(f"{type(base).__name__}.fit does not accept sample_weight.")
            weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            if np.count_nonzero(weight) < 2:
                raise ValueError("sample_weight must have at least 2 strictly positive entries.")
        rows, w = (X, None) if weight is None else (X[weight > 0], weight[weight > 0])
        rng = check_random_state(self.random_state)

        preprocessor = _TabularPreprocessor(dequantize=self.dequantize).fit(rows, sample_weight=w)
        Z = preprocessor.transform(rows)
        n = Z.shape[0]
        if self.max_samples == "auto":
            max_samples = min(n, _AUTO_MAX_SAMPLES)
        elif isinstance(self.max_samples, Integral):
            max_samples = min(n, self.max_samples)
        else:
            max_samples = max(2, int(self.max_samples * n))
        every = np.arange(n)
        # Every second member does not see the rows an isolation forest
        # isolates fastest: the anomalies in the training set, dense enough
        # to be learnt as a mode, are mostly among them.
        subsets = [every]
        if self.trim_fraction > 0 and self.n_estimators > 1:
            subsets.append(self._typical_rows(Z, w, rng))
        estimators, neighbors = self._fit_ensemble(base, preprocessor, Z, w, subsets, max_samples, rng)

        self.preprocessor_ = preprocessor
        self.support_ = preprocessor.support_
        self.location_ = preprocessor.location_
        self.scale_ = preprocessor.scale_
        self.dequantization_step_ = preprocessor.dequantization_step_
        self.max_samples_ = max_samples
        self.estimators_ = estimators
        self.estimator_ = estimators[0]
        self.neighbor_densities_ = neighbors
        # The threshold comes from the rows as they are scored (no noise), so
        # that fit(X).predict(X) == fit_predict(X) flags the requested share.
        scores = self._finite(self._mean_log_density(Z))[:, None]
        if self.contamination == "auto":
            q1, q3 = _quantile(scores, [0.25, 0.75], w)[:, 0]
            self.offset_ = float(q1 - _TUKEY_FENCE * (q3 - q1))
        else:
            self.offset_ = float(_quantile(scores, self.contamination, w)[0])
        return self

    @staticmethod
    def _finite(scores):
        # -inf (a density that underflows) is below any finite score.
        finite = np.isfinite(scores)
        return np.where(finite, scores, scores[finite].min() if finite.any() else 0.0)

    def _typical_rows(self, Z, w, rng):
        """Indices of the rows outside the ``trim_fraction`` an isolation forest isolates fastest."""
        forest = IsolationForest(random_state=rng.randint(np.iinfo(np.int32).max), n_jobs=self.n_jobs)
        scores = forest.fit(Z, sample_weight=w).score_samples(Z)
        cut = _quantile(scores[:, None], self.trim_fraction, w)[0]
        kept = np.flatnonzero(scores > cut)
        # A handful of rows, or ties at the cut (repeated rows), can leave fewer than two.
        return kept if kept.size >= 2 else np.arange(Z.shape[0])

    def _fit_ensemble(self, base, preprocessor, Z, w, subsets, max_samples, rng):
        """Fit ``n_estimators`` clones, member ``i`` on ``max_samples`` rows of ``subsets[i % len(subsets)]``.

        Returns the fitted clones and the nearest-neighbour densities of
        the same noisy rows (none when ``n_neighbors`` is None).  Subsamples,
        noise and seeds are drawn here, in order, so the result does not
        depend on ``n_jobs``.
        """
        jobs, neighbor_densities = [], []
        for i in range(self.n_estimators):
            candidates = subsets[i % len(subsets)]
            if max_samples >= candidates.size:
                rows_i = candidates
            else:
                rows_i = np.sort(rng.choice(candidates, max_samples, replace=False))
            noisy = Z[rows_i] + preprocessor.dequantization_noise(rows_i.size, rng)
            estimator = _seed_all(clone(base), rng)
            weight = None if w is None else w[rows_i]
            jobs.append((estimator, noisy, weight))
            if self.n_neighbors is not None:
                knn = _KNeighborsDensity(self.n_neighbors)
                neighbor_densities.append(knn.fit(noisy, sample_weight=weight))
        parallel = effective_n_jobs(self.n_jobs) > 1
        estimators = Parallel(n_jobs=self.n_jobs)(delayed(_fit_member)(*job, parallel) for job in jobs)
        return estimators, neighbor_densities

    def _preprocessed(self, X):
        return self.preprocessor_._standardised(X)

    def _mean_log_density(self, Z):
        parallel = effective_n_jobs(self.n_jobs) > 1 and len(self.estimators_) > 1
        scores = Parallel(n_jobs=self.n_jobs)(
            delayed(_score_member)(estimator, Z, parallel) for estimator in self.estimators_
        )
        flows = np.mean(scores, axis=0)
        if not self.neighbor_densities_:
            return flows
        # The two kinds of density count equally: the mean of their mean log-densities.
        neighbors = np.mean([knn.score_samples(Z) for knn in self.neighbor_densities_], axis=0)
        return 0.5 * (flows + neighbors)

    def score_samples(self, X):
        """Mean log-density of the preprocessed rows: higher is more normal.

        With ``n_neighbors`` set (the default), the mean of the estimators'
        mean log-density and the neighbour densities' mean.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Mean over the estimators (and the neighbour densities) of the
            log-density of each robust-standardised row (``-inf`` where a
            density underflows).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._mean_log_density(self._preprocessed(X))

    def decision_function(self, X):
        """Shifted score: ``score_samples(X) - offset_``, negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        decision : ndarray of shape (n_samples,)
            Negative for outliers, non-negative for inliers.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """Label each row +1 (inlier) or -1 (outlier).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to label.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            -1 where ``decision_function(X) < 0``, +1 elsewhere.
        """
        return np.where(self.decision_function(X) < 0, -1, 1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Dense, finite input only: the robust statistics and the
        # dequantisation read every value (the estimator type, outlier
        # detector, comes from OutlierMixin).
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags
