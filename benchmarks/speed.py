"""Speed of skflow against its peers, measured side by side in one run (issue 12).

Usage::

    python -m benchmarks.speed [--threads 1 2] [--rows 100000] [--sections ...] [--quick]

Sections (all by default):

``inference``
    ``score_samples`` and ``sample`` rows/s at 16 features: RealNVPDensity
    and zuko's RealNVP at the same depth and width (6 layers, hidden
    ``(64, 64)``), SplineFlowDensity (coupling, 6 layers) and zuko's coupling
    NSF, FerumalFlowDensity (defaults, 6 layers), RealNVPDensity trained
    with ``activation="relu"`` ("relu"), each also with its
    ``inference_dtype="float32"`` fast path ("f32"), and RealNVPDensity
    with ``base="normal"`` (zuko's standard normal base instead of the
    default's fitted Gaussian mixture: what the base costs beside the
    layers).  These are fitted without early stopping, hence one flow on
    its fitted base; "stacked"
    rows are RealNVPDensity and FerumalFlowDensity fitted as a user would
    (early stopping on), whose ``base="auto"`` density is a stack of two
    flows and classical densities (the report lists the components and
    their weights: those of weight 0 are not scored).  zuko runs in float32,
    its default, and in float64 (skflow's inference dtype).  Then *prototypes*
    of skflow's fitted flows driven directly, to size a fast path: float32
    (``copy.deepcopy(flow).float()``), ReLU in place of GELU (speed only:
    the weights were trained with GELU), "LU-inv" (LU layers as one matmul
    by ``W`` or a precomputed ``W^-1`` instead of two triangular solves) and
    "sliced" (alternating-mask couplings read and write strided slices
    instead of gathering and ``index_copy``).
``ferumal64``
    The same at 64 features (dequantised digits): FerumalFlowDensity now and
    with the difference-form kernel it had before issue 12 (patched in), at
    defaults and with ``base="normal"``, and RealNVPDensity.
``fit``
    Fit time at defaults on iris, wine, breast_cancer and 500 rows of 2-D
    moons, divided by the fit time of a 5-fold CV GaussianMixture search
    (``n_components`` in 1, 2, 3, 4, 6, 8 capped at ~5 rows per component
    per fold, four covariance types) in the same run.
``startup``
    A fresh process (subprocess): ``import torch``, ``import skflow``, the
    first ``RealNVPDensity().fit`` on iris and a second identical fit.
``gridsearch``
    A ``GridSearchCV`` of ``RealNVPDensity`` (2 depths x 3 widths, 3 folds,
    ``max_iter=40``, 600 rows of 2-D moons) run serially and with
    ``n_jobs=2``: the wall time of each search and the mean duration of one
    fit (``cv_results_["mean_fit_time"]``).  On 2 cores, a fit running next
    to another should take no longer than alone (no oversubscribed threads)
    and the search should take about half the serial time.  It runs as a
    user would, at the defaults: ``SKFLOW_NUM_THREADS`` unset (the earlier
    sections set it, and joblib's workers would inherit it) and torch at
    its default thread count.  ``--search-rounds`` (3) serial and parallel
    searches alternate and the medians are reported, with each round's
    ratio; then a control without skflow: a fixed single-threaded torch
    workload alone and as two simultaneous processes, what two processes
    cost each other on this machine whatever the thread policy.
``profile``
    Top torch operators (self CPU time) of ``score_samples`` and ``sample``
    in float64 and float32, one thread.

Every model is fitted for a few epochs only (weights do not change the
speed, but trained maps are not the identity).  Rates are the best of
``--repeats`` interleaved runs on up to ``--rows`` rows (fewer for slow
methods: about ``--budget`` seconds per call), in the estimators' own
8192-row chunks; ratios in one run are what to read on a busy machine.
``SKFLOW_NUM_THREADS`` is set to each ``--threads`` value so the estimators
use that many threads too.  Prints markdown tables and writes
``benchmarks/results/speed.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_moons  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from skflow import FerumalFlowDensity, RealNVPDensity, SplineFlowDensity  # noqa: E402
from skflow.engine import kernels  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
CHUNK = 8192  # skflow's inference chunk; zuko and the prototypes use it too
SECTIONS = ("inference", "ferumal64", "fit", "gridsearch", "startup", "profile")
SPEC = {"n_layers": 6, "hidden_dims": (64, 64)}
ZUKO_SPEC = {"transforms": 6, "hidden_features": (64, 64)}


# ------------------------------------------------------------------ data and models
def data16(n: int, seed: int = 0) -> np.ndarray:
    """Correlated, skewed 16-D rows (speed barely depends on the data)."""
    rng = np.random.RandomState(seed)
    z = rng.standard_normal((n, 16))
    return np.tanh(z @ rng.normal(size=(16, 16)) / 4) + 0.3 * z**2


def digits(n: int) -> np.ndarray:
    """Dequantised digits, tiled (with fresh noise) to ``n`` rows."""
    X = load_digits().data
    rng = np.random.RandomState(0)
    return X[np.arange(n) % len(X)] + rng.rand(n, X.shape[1])


def fit_quiet(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(X)


class ZukoModel:
    """A zuko flow trained a few epochs on standardised rows; scored/sampled in chunks."""

    def __init__(self, name: str, X: np.ndarray, epochs: int, **kwargs):
        import zuko

        self.loc, self.scale = X.mean(0), X.std(0)
        torch.manual_seed(0)
        self.flow = getattr(zuko.flows, name)(X.shape[1], **kwargs)
        x = torch.tensor((X - self.loc) / self.scale, dtype=torch.float32)
        optimiser = torch.optim.Adam(self.flow.parameters(), lr=1e-3)
        for _ in range(epochs):
            for batch in x[torch.randperm(len(x))].split(256):
                loss = -self.flow().log_prob(batch).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        self.flow.eval()
        self.dtype = torch.float32

    def to(self, dtype):
        other = copy.copy(self)
        other.flow, other.dtype = copy.deepcopy(self.flow).to(dtype), dtype
        return other

    def score_samples(self, X):
        out = np.empty(len(X))
        with torch.no_grad():
            dist = self.flow()
            for s in range(0, len(X), CHUNK):
                z = torch.tensor((X[s : s + CHUNK] - self.loc) / self.scale, dtype=self.dtype)
                out[s : s + CHUNK] = dist.log_prob(z).numpy()
        return out - np.log(self.scale).sum()

    def sample(self, n, random_state=0):
        out = np.empty((n, len(self.loc)))
        torch.manual_seed(random_state)
        with torch.no_grad():
            dist = self.flow()
            for s in range(0, n, CHUNK):
                out[s : s + CHUNK] = dist.sample((min(CHUNK, n - s),)).numpy()
        return out * self.scale + self.loc


class TorchPath:
    """An estimator's fitted flow driven directly in ``dtype``: the fast-path prototype."""

    def __init__(self, estimator, dtype=torch.float32, activation=None, cache_lu=False, slices=False):
        self.flow = copy.deepcopy(estimator.flow_).to(dtype).eval()
        self.dtype = dtype
        for module in list(self.flow.modules()):
            for name, child in module.named_children():
                if activation is not None and isinstance(child, torch.nn.GELU):
                    setattr(module, name, activation())
        for module in self.flow.modules():
            if cache_lu and type(module).__name__ == "LULinear":
                _cache_lu(module)
            if slices and type(module).__name__ == "Coupling":
                _slice_coupling(module)

    def score_samples(self, X):
        out = np.empty(len(X))
        with torch.no_grad():
            for s in range(0, len(X), CHUNK):
                chunk = torch.tensor(X[s : s + CHUNK], dtype=self.dtype)
                out[s : s + CHUNK] = self.flow.log_prob(chunk).numpy()
        return out

    def sample(self, n, random_state=0):
        out = np.empty((n, self.flow.features))
        generator = torch.Generator().manual_seed(random_state)
        with torch.no_grad():
            for s in range(0, n, CHUNK):
                out[s : s + CHUNK] = self.flow.sample(min(CHUNK, n - s), generator).numpy()
        return out


def _cache_lu(module) -> None:
    """Prototype "LU-inv": one matmul by ``W`` or by a precomputed ``W^-1`` (no triangular solves).

    Inverting the d x d factors per call instead of caching costs about the same.
    """
    with torch.no_grad():
        lower, upper = module._factors()
        weight = lower @ upper
        weight_t, inverse_t = weight.T.contiguous(), torch.linalg.inv(weight).T.contiguous()
        log_det = module.log_diag.sum()
    module.forward = lambda x: (x @ weight_t, log_det.expand(x.shape[0]))
    module.inverse = lambda y: (y @ inverse_t, (-log_det).expand(y.shape[0]))


def _slice_coupling(module) -> None:
    """Prototype "sliced": alternating masks as strided views, output by one clone + slice write."""
    transformed, conditioning = module.transformed.tolist(), module.conditioning.tolist()
    if transformed != list(range(transformed[0], module.transformed.max() + 1, 2)):
        return
    t_slice, c_slice = slice(transformed[0], None, 2), slice(conditioning[0], None, 2)

    def couple(x, inverse):
        params = module._params(x[:, c_slice])
        y_t, ladj = (module.map.inverse if inverse else module.map.forward)(x[:, t_slice], params)
        y = x.clone()
        y[:, t_slice] = y_t
        return y, ladj.sum(dim=-1)

    module._couple = couple


def difference_form(u, a, length_scale=1.0):
    """The kernels' squared distance before issue 12: an (n, N, d) intermediate."""
    return ((u.unsqueeze(-2) - a.unsqueeze(-3)) / length_scale).square().sum(dim=-1)


class PatchedKernel:
    """FerumalFlowDensity scored with the pre-issue-12 distance (patched in for the call)."""

    def __init__(self, estimator):
        self.estimator = estimator

    def _call(self, method, *args, **kwargs):
        original = kernels.scaled_squared_distance
        kernels.scaled_squared_distance = difference_form
        try:
            return getattr(self.estimator, method)(*args, **kwargs)
        finally:
            kernels.scaled_squared_distance = original

    def score_samples(self, X):
        return self._call("score_samples", X)

    def sample(self, n, random_state=0):
        return self._call("sample", n, random_state=random_state)


# ------------------------------------------------------------------ timing
def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    os.environ["SKFLOW_NUM_THREADS"] = str(n)


def rates(methods: dict, X: np.ndarray, args) -> dict:
    """Best rows/s of score_samples and sample per method, repeats interleaved."""
    calls = {}
    for name, model in methods.items():
        calls[(name, "score")] = lambda n, m=model: m.score_samples(X[:n])
        calls[(name, "sample")] = lambda n, m=model: m.sample(n, random_state=0)
    sizes = {}
    for key, call in calls.items():  # pilot: warm up and size each call to ~budget seconds
        start = time.perf_counter()
        call(CHUNK)
        rate = CHUNK / (time.perf_counter() - start)
        sizes[key] = int(min(len(X), max(CHUNK, rate * args.budget // CHUNK * CHUNK)))
    best = {key: [0.0, 0.0] for key in calls}  # rows per wall second, per CPU second
    for _ in range(args.repeats):
        for key, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call(sizes[key])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[key] = [max(best[key][0], sizes[key] / wall), max(best[key][1], sizes[key] / cpu)]
    out = {}
    for (name, op), (wall, cpu) in best.items():
        out[f"{name} | {op}"] = {"rows_per_s": wall, "rows_per_cpu_s": cpu, "rows": sizes[(name, op)]}
    return out


def inference(args) -> tuple[dict, dict]:
    X_fit, X = data16(2000, seed=1), data16(args.rows)
    fit = {"max_iter": args.epochs, "random_state": 0, "early_stopping": False}
    realnvp = fit_quiet(RealNVPDensity(**SPEC, **fit), X_fit)
    spline = fit_quiet(SplineFlowDensity(**SPEC, architecture="coupling", **fit), X_fit)
    ferumal = fit_quiet(FerumalFlowDensity(n_layers=6, **fit), X_fit)
    # As a user fits them: early stopping holds out validation rows, so base="auto" stacks two flows,
    # Gaussian mixtures, a kernel density (where cheap) and a Student-t (see the user guide).
    stacked = {"max_iter": args.epochs, "random_state": 0}
    methods = {
        "RealNVPDensity": realnvp,
        "RealNVPDensity relu": fit_quiet(RealNVPDensity(**SPEC, activation="relu", **fit), X_fit),
        # zuko's base: what the default's Gaussian-mixture base costs beside the layers.
        "RealNVPDensity normal base": fit_quiet(RealNVPDensity(**SPEC, base="normal", **fit), X_fit),
        "SplineFlowDensity coupling": spline,
        "FerumalFlowDensity": ferumal,
        "RealNVPDensity stacked": fit_quiet(RealNVPDensity(**SPEC, **stacked), X_fit),
        "FerumalFlowDensity stacked": fit_quiet(FerumalFlowDensity(n_layers=6, **stacked), X_fit),
    }
    for name, estimator in list(methods.items()):  # the estimators' float32 fast path
        methods[f"{name} f32"] = copy.deepcopy(estimator).set_params(inference_dtype="float32")
    try:
        zuko_realnvp = ZukoModel("RealNVP", X_fit, args.epochs, **ZUKO_SPEC)
        zuko_nsf = ZukoModel("NSF", X_fit, args.epochs, passes=2, **ZUKO_SPEC)
        methods.update({
            "zuko RealNVP f32": zuko_realnvp,
            "zuko RealNVP f64": zuko_realnvp.to(torch.float64),
            "zuko NSF coupling f32": zuko_nsf,
        })
    except ImportError:
        print("zuko not installed: peers skipped")
    if args.prototypes:
        methods.update({
            "proto RealNVP f32": TorchPath(realnvp),
            "proto RealNVP f32 LU-inv sliced": TorchPath(realnvp, cache_lu=True, slices=True),
            "proto RealNVP f32 ReLU": TorchPath(realnvp, activation=torch.nn.ReLU),
            "proto RealNVP f32 ReLU LU-inv sliced": TorchPath(
                realnvp, activation=torch.nn.ReLU, cache_lu=True, slices=True
            ),
            "proto RealNVP f64 LU-inv sliced": TorchPath(realnvp, torch.float64, cache_lu=True, slices=True),
            "proto Spline f32": TorchPath(spline),
            "proto Spline f32 LU-inv sliced": TorchPath(spline, cache_lu=True, slices=True),
            "proto Ferumal f32": TorchPath(ferumal),
            "proto Ferumal f32 LU-inv sliced": TorchPath(ferumal, cache_lu=True, slices=True),
            "proto Ferumal f64 LU-inv sliced": TorchPath(ferumal, torch.float64, cache_lu=True, slices=True),
        })
    out = {}
    for threads in args.threads:
        set_threads(threads)
        out[threads] = rates(methods, X, args)
    # base="auto" scores only the components of positive weight (issue 11's flows can be dropped).
    stacks = {
        name: [[component, float(weight)] for component, weight in zip(m.stack_components_, m.stack_weights_)]
        for name, m in methods.items() if name.endswith("stacked")
    }
    return out, stacks


def ferumal64(args) -> dict:
    X = digits(args.rows)
    fit = {"max_iter": args.epochs, "random_state": 0, "early_stopping": False}
    ferumal = fit_quiet(FerumalFlowDensity(**fit), X[:1797])
    methods = {
        "FerumalFlowDensity": ferumal,
        "FerumalFlowDensity, pre-#12 kernel": PatchedKernel(ferumal),
    }
    if "base" in FerumalFlowDensity().get_params():
        # The kernels' share without the mixture base's O(K d^2) per row.
        normal = fit_quiet(FerumalFlowDensity(base="normal", **fit), X[:1797])
        methods["FerumalFlowDensity base=normal"] = normal
        methods["FerumalFlowDensity base=normal, pre-#12 kernel"] = PatchedKernel(normal)
    methods["RealNVPDensity"] = fit_quiet(RealNVPDensity(**fit), X[:1797])
    out = {}
    for threads in args.threads:
        set_threads(threads)
        out[threads] = rates(methods, X, args)
    return out


def gmm_search(n_train: int) -> GridSearchCV:
    cap = max(1, int(n_train * 4 / 5) // 5)  # ~5 rows per component in each training fold
    grid = {
        "n_components": [k for k in (1, 2, 3, 4, 6, 8) if k <= cap],
        "covariance_type": ["full", "diag", "tied", "spherical"],
    }
    estimator = GaussianMixture(random_state=0, n_init=1, max_iter=200)
    return GridSearchCV(estimator, grid, cv=KFold(5, shuffle=True, random_state=0), error_score=-np.inf)


def fit_times(args) -> dict:
    sets = {
        "iris": load_iris().data,
        "wine": load_wine().data,
        "breast_cancer": load_breast_cancer().data,
        "moons_500": make_moons(500, noise=0.1, random_state=0)[0],
    }
    estimators = {
        "RealNVPDensity": RealNVPDensity,
        "SplineFlowDensity": SplineFlowDensity,
        "FerumalFlowDensity": FerumalFlowDensity,
    }
    out = {}
    for threads in args.threads:
        set_threads(threads)
        out[threads] = {}
        with threadpool_limits(threads):
            for name, X in sets.items():
                Z = (X - X.mean(0)) / X.std(0)
                start = time.perf_counter()
                fit_quiet(gmm_search(len(X)), Z)
                row = {"GaussianMixture CV": time.perf_counter() - start}
                for label, cls in estimators.items():
                    start = time.perf_counter()
                    model = fit_quiet(cls(random_state=0), X)
                    row[label] = time.perf_counter() - start
                    row[label + " epochs"] = model.n_iter_
                out[threads][name] = row
                cells = ", ".join(f"{k} {v:.3g}" for k, v in row.items())
                print(f"fit, {threads} thread(s), {name}: {cells}", flush=True)
    return out


STARTUP = """
import json, os, time
t0 = time.perf_counter()
import torch
torch.set_num_threads({threads})
t1 = time.perf_counter()
import skflow
t2 = time.perf_counter()
from sklearn.datasets import load_iris
X = load_iris().data
t3 = time.perf_counter()
skflow.RealNVPDensity(random_state=0).fit(X)
t4 = time.perf_counter()
skflow.RealNVPDensity(random_state=0).fit(X)
t5 = time.perf_counter()
print(json.dumps({{"import torch": t1 - t0, "import skflow": t2 - t1, "first fit": t4 - t3,
                  "second fit": t5 - t4}}))
"""


def grid_search(args) -> dict:
    """Serial and ``n_jobs=2`` searches, ``--search-rounds`` interleaved rounds, and a control.

    One round on this shared machine moves a fit's time by 20-30%, so the
    searches alternate and each ratio is read per round (then the median).
    The control times a fixed single-threaded torch workload alone and as
    two processes at once: what two busy processes cost each other on this
    machine's cores and caches whatever skflow's thread policy does.
    """
    # The defaults, not the thread count an earlier section forced: SKFLOW_NUM_THREADS=2 inherited by
    # two loky workers made every fit run two threads on a shared core (4.6x slower per fit).
    os.environ.pop("SKFLOW_NUM_THREADS", None)
    torch.set_num_threads(os.cpu_count() or 1)
    X = make_moons(600, noise=0.08, random_state=0)[0]
    grid = {"n_layers": [2, 4], "hidden_dims": [(16,), (32, 32), (64, 64)]}
    rounds = {"1": [], "2": []}
    for r in range(args.search_rounds):
        for n_jobs in (None, 2):
            search = GridSearchCV(
                RealNVPDensity(max_iter=40, random_state=0), grid, cv=KFold(3, shuffle=True, random_state=0),
                n_jobs=n_jobs,
            )
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                search.fit(X)
            fit_times = np.asarray(search.cv_results_["mean_fit_time"])
            row = {"search_s": time.perf_counter() - start, "fits": int(fit_times.size * 3),
                   "mean_fit_s": float(fit_times.mean())}
            rounds[str(n_jobs or 1)].append(row)
            print(f"grid search round {r + 1}, n_jobs={n_jobs or 1}: "
                  + ", ".join(f"{k} {v:.3g}" for k, v in row.items()), flush=True)
    out = {jobs: {"search_s": float(np.median([row["search_s"] for row in rows])), "fits": rows[0]["fits"],
                  "mean_fit_s": float(np.median([row["mean_fit_s"] for row in rows]))}
           for jobs, rows in rounds.items()}
    out["rounds"] = rounds
    out["control"] = pair_control(args.search_rounds)
    return out


# One process's share of the control: small single-threaded forward and backward passes, as in training.
CONTROL = """
import time, torch
torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.GELU(), torch.nn.Linear(64, 64), torch.nn.GELU(),
                          torch.nn.Linear(64, 8)).double()
x = torch.randn(64, 8, dtype=torch.float64)
start = time.perf_counter()
for _ in range(6000):
    net.zero_grad()
    net(x).square().sum().backward()
print(time.perf_counter() - start)
"""


def pair_control(rounds: int) -> dict:
    """Wall seconds of the control workload alone and as two simultaneous processes (``rounds`` each)."""
    def launch():
        return subprocess.Popen([sys.executable, "-c", CONTROL], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})

    alone, paired = [], []
    for _ in range(rounds):
        alone.append(float(launch().communicate()[0]))
        pair = [launch(), launch()]
        paired.append(float(np.mean([float(p.communicate()[0]) for p in pair])))
    ratios = [p / a for a, p in zip(alone, paired)]
    print(f"control: alone {np.median(alone):.2f} s, two at once {np.median(paired):.2f} s each "
          f"({np.median(ratios):.2f}x)", flush=True)
    return {"alone_s": alone, "paired_s": paired, "ratio": float(np.median(ratios))}


def startup(args) -> dict:
    out = {}
    for threads in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SKFLOW_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", STARTUP.format(threads=threads)],
            env=env, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
        )
        seconds = json.loads(result.stdout.strip().splitlines()[-1])
        out[threads] = {**seconds, "process": time.perf_counter() - start}
    return out


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler's C++ start/stop lines (written straight to file descriptor 2)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def profile(args) -> dict:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    set_threads(1)
    X_fit = data16(2000, seed=1)
    X = torch.tensor(data16(2 * CHUNK))
    fit = {"max_iter": args.epochs, "random_state": 0, "early_stopping": False}
    models = {
        "RealNVPDensity": fit_quiet(RealNVPDensity(**SPEC, **fit), X_fit),
        "SplineFlowDensity": fit_quiet(SplineFlowDensity(**SPEC, **fit), X_fit),
        "FerumalFlowDensity": fit_quiet(FerumalFlowDensity(n_layers=6, **fit), X_fit),
    }
    out = {}
    for name, model in models.items():
        for dtype in (torch.float64, torch.float32):
            flow = copy.deepcopy(model.flow_).to(dtype).eval()
            x = X.to(dtype)
            ops = {"score": lambda: flow.log_prob(x[:CHUNK]), "sample": lambda: flow.sample(CHUNK)}
            for op, call in ops.items():
                with torch.no_grad(), _quiet_stderr():
                    call()
                    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                        for _ in range(3):
                            call()
                events = prof.key_averages()
                total = sum(e.self_cpu_time_total for e in events)
                top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]
                key = f"{name} {op} {str(dtype)[6:]}"
                out[key] = {
                    "ms_per_8192_rows": total / 3 / 1e3,
                    "top": {e.key: round(100 * e.self_cpu_time_total / total, 1) for e in top},
                }
    return out


# ------------------------------------------------------------------ report
def rate_table(result: dict, reference: str, title: str, clock: str = "rows_per_s") -> str:
    threads = sorted(result)
    names = list(dict.fromkeys(k.split(" | ")[0] for k in result[threads[0]]))
    unit = "rows/s" if clock == "rows_per_s" else "rows/CPU-s"
    head = " | ".join(f"{op} {unit} ({t} thr) | x ref" for t in threads for op in ("score", "sample"))
    lines = [f"### {title}: {unit}, x ref = ratio to {reference}", "", f"| method | {head} |"]
    lines.append("|---" * (1 + 4 * len(threads)) + "|")
    for name in names:
        cells = []
        for t in threads:
            for op in ("score", "sample"):
                rate = result[t][f"{name} | {op}"][clock]
                ref = result[t].get(f"{reference} | {op}", {}).get(clock)
                cells += [f"{rate:,.0f}", f"{rate / ref:.2f}" if ref else "-"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fit_table(result: dict) -> str:
    lines = ["### Fit time at defaults, seconds (x GaussianMixture 5-fold CV search)", ""]
    for t, rows in result.items():
        methods = [k for k in next(iter(rows.values())) if not k.endswith("epochs")]
        lines += [f"{t} thread(s)", "", "| data | " + " | ".join(methods) + " |"]
        lines.append("|---" * (1 + len(methods)) + "|")
        for name, row in rows.items():
            gmm = row["GaussianMixture CV"]
            cells = [f"{gmm:.2f}"] + [
                f"{row[m]:.2f} ({row[m] / gmm:.1f}x, {row[m + ' epochs']} ep)" for m in methods[1:]
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "speed_results.rst"


def _rst_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines += [f"   * - {row[0]}", *(f"     - {cell}" for cell in row[1:])]
    return [*lines, ""]


def _rate_rows(result: dict, reference: str, before: dict | None) -> tuple[list[str], list[list[str]]]:
    threads = sorted(result, key=int)
    names = list(dict.fromkeys(k.split(" | ")[0] for k in result[threads[0]]))
    header = ["method"]
    for t in threads:
        for op in ("score", "sample"):
            plural = "s" if int(t) > 1 else ""
            header.append(f"{op} rows/s, {t} thread{plural} (x ref{', before' if before else ''})")
    rows = []
    for name in names:
        if name.startswith("proto "):
            continue
        cells = [name]
        for t in threads:
            for op in ("score", "sample"):
                rate = result[t][f"{name} | {op}"]["rows_per_s"]
                ratio = rate / result[t][f"{reference} | {op}"]["rows_per_s"]
                cell = f"{rate:,.0f} ({ratio:.2f}"
                old = (before or {}).get(t, {})
                key, ref_key = f"{name} | {op}", f"{reference} | {op}"
                if key in old and ref_key in old:
                    cell += f"; {old[key]['rows_per_s'] / old[ref_key]['rows_per_s']:.2f}"
                cells.append(cell + ")")
        rows.append(cells)
    return header, rows


def docs_page(report: dict, before: dict | None = None) -> str:
    """``docs/speed_results.rst``: the tables of one run (and the inference ratios of a ``before`` run)."""
    lines = [
        ".. This file is generated by ``python -m benchmarks.speed --from-json RUN [--before RUN] --docs``;"
        " do not edit by hand.",
        "",
        f"One run on {report.get('machine', '?')} ({report.get('cpus', '?')} logical CPUs), torch "
        f"{report.get('torch', '?')}: ``{report.get('command', 'python -m benchmarks.speed')}``"
        + (f" ({report['note']})." if report.get("note") else ".")
        + (f" Before: ``{before.get('command', '?')}`` ({before.get('note', '')})." if before else ""),
        "",
    ]
    if "inference16" in report:
        lines += ["**Inference, 16 features, 6 layers of width 64** (rows per second, wall clock; in "
                  "brackets the ratio to zuko's float32 RealNVP of the same depth and width in the same run"
                  + (", then the same ratio before" if before else "")
                  + "; *f32*: ``inference_dtype=\"float32\"``):", ""]
        lines += _rst_table(*_rate_rows(report["inference16"], "zuko RealNVP f32",
                                        (before or {}).get("inference16")))
        if "stacks16" in report:
            lines += ["The stacked rows' components and weights (``stack_components_``, "
                      "``stack_weights_``; components of weight 0 are not scored):", ""]
            lines += [f"- {name}: " + ", ".join(f"{component} {weight:.3f}" for component, weight in stack)
                      for name, stack in report["stacks16"].items()]
            lines += [""]
    if "ferumal64" in report:
        lines += ["**FerumalFlowDensity at 64 features** (dequantised digits; ratio to the kernel before "
                  "issue 12, patched in):", ""]
        lines += _rst_table(*_rate_rows(report["ferumal64"], "FerumalFlowDensity, pre-#12 kernel", None))
    if "fit" in report:
        for t, rows in report["fit"].items():
            methods = [k for k in next(iter(rows.values())) if not k.endswith("epochs")]
            plural = "s" if int(t) > 1 else ""
            old_rows = (before or {}).get("fit", {}).get(str(t), {})  # JSON keys are strings
            lines += [f"**Fit time at defaults, {t} thread{plural}** (seconds; in brackets the ratio to a "
                      "5-fold cross-validated GaussianMixture search in the same run, the epochs"
                      + (", and the ratio before" if old_rows else "") + "):", ""]
            body = []
            for name, row in rows.items():
                gmm, old = row["GaussianMixture CV"], old_rows.get(name, {})
                body.append([name, f"{gmm:.2f}"] + [
                    f"{row[m]:.2f} ({row[m] / gmm:.1f}x, {row[m + ' epochs']} epochs"
                    + (f"; {old[m] / old['GaussianMixture CV']:.1f}x" if m in old else "") + ")"
                    for m in methods[1:]])
            lines += _rst_table(["data", *methods], body)
    if "startup" in report:
        lines += ["**A fresh process** (seconds):", ""]
        keys = list(next(iter(report["startup"].values())))
        lines += _rst_table(["threads", *keys], [[t, *(f"{row[k]:.2f}" for k in keys)]
                                                 for t, row in report["startup"].items()])
    if "gridsearch" in report:
        grid = report["gridsearch"]
        serial, parallel = grid["1"], grid["2"]
        lines += ["**GridSearchCV** of RealNVPDensity (18 fits, 600 rows of 2-D moons, ``max_iter=40``):", ""]
        lines += _rst_table(["n_jobs", "search seconds", "mean seconds per fit"], [
            ["1", f"{serial['search_s']:.1f}", f"{serial['mean_fit_s']:.2f}"],
            ["2", f"{parallel['search_s']:.1f} ({parallel['search_s'] / serial['search_s']:.2f}x)",
             f"{parallel['mean_fit_s']:.2f} ({parallel['mean_fit_s'] / serial['mean_fit_s']:.2f}x)"]])
        if "rounds" in grid:  # runs before the rounds and the control had neither
            control = grid["control"]
            ratios = [p["mean_fit_s"] / s["mean_fit_s"]
                      for s, p in zip(grid["rounds"]["1"], grid["rounds"]["2"])]
            rounds = ", ".join(f"{r:.2f}" for r in ratios)
            lines += [f"Medians of {len(ratios)} interleaved rounds; per round, a fit "
                      f"with ``n_jobs=2`` against one alone: {rounds}.  Control (the same machine, no "
                      "skflow): a fixed single-threaded torch workload took "
                      f"{control['ratio']:.2f}x as long per process when two ran at once as when one ran "
                      f"alone (median of {len(control['alone_s'])}).", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, default=100_000, help="rows scored or drawn per call (at most)")
    parser.add_argument("--budget", type=float, default=1.5, help="about this many seconds per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of the timed models")
    parser.add_argument("--search-rounds", type=int, default=3, help="alternating grid-search rounds")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--no-prototypes", dest="prototypes", action="store_false")
    parser.add_argument("--quick", action="store_true", help="20k rows, 2 repeats, short budget")
    parser.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    parser.add_argument("--docs", action="store_true", help="also write docs/speed_results.rst")
    parser.add_argument("--from-json", type=Path, help="no timing: write the docs page from this run's JSON")
    parser.add_argument("--before", type=Path, help="a run whose inference ratios go in brackets")
    parser.add_argument("--note", default="", help="stored with the run (e.g. the commit)")
    args = parser.parse_args(argv)
    before = json.loads(args.before.read_text()) if args.before else None
    if args.from_json:
        DOCS_PAGE.write_text(docs_page(json.loads(args.from_json.read_text()), before) + "\n")
        print(f"wrote {DOCS_PAGE}")
        return
    if args.quick:
        args.rows, args.repeats, args.budget, args.search_rounds = 20_000, 2, 0.5, 1
    torch.set_num_threads(1)
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": platform.platform(),
              "torch": torch.__version__, "cpus": os.cpu_count(), "note": args.note,
              "command": "python -m benchmarks.speed " + " ".join(argv if argv is not None else sys.argv[1:])}
    started = time.perf_counter()
    if "inference" in args.sections:
        report["inference16"], report["stacks16"] = inference(args)
        for name, stack in report["stacks16"].items():
            print(f"{name}: " + ", ".join(f"{component} {weight:.3f}" for component, weight in stack))
        for clock in ("rows_per_s", "rows_per_cpu_s"):
            title = "16 features, 6 layers, width 64"
            print(rate_table(report["inference16"], "zuko RealNVP f32", title, clock), "\n")
    if "ferumal64" in args.sections:
        report["ferumal64"] = ferumal64(args)
        for clock in ("rows_per_s", "rows_per_cpu_s"):
            reference = "FerumalFlowDensity, pre-#12 kernel"
            print(rate_table(report["ferumal64"], reference, "64 features (digits)", clock), "\n")
    if "fit" in args.sections:
        report["fit"] = fit_times(args)
        print(fit_table(report["fit"]))
    if "startup" in args.sections:
        report["startup"] = startup(args)
        for t, row in report["startup"].items():
            print(f"fresh process, {t} thread(s): " + ", ".join(f"{k} {v:.2f} s" for k, v in row.items()))
        print()
    if "gridsearch" in args.sections:
        report["gridsearch"] = grid_search(args)
        serial, parallel = report["gridsearch"]["1"], report["gridsearch"]["2"]
        print(f"GridSearchCV n_jobs=2 / serial (medians of {args.search_rounds} rounds): search "
              f"{parallel['search_s'] / serial['search_s']:.2f}x, mean fit "
              f"{parallel['mean_fit_s'] / serial['mean_fit_s']:.2f}x\n")
    if "profile" in args.sections:
        report["profile"] = profile(args)
        for key, row in report["profile"].items():
            ops = ", ".join(f"{op} {pct}%" for op, pct in row["top"].items())
            print(f"{key}: {row['ms_per_8192_rows']:.1f} ms / 8192 rows; {ops}")
    report["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {args.out} ({report['seconds']:.0f} s)")
    if args.docs:
        DOCS_PAGE.write_text(docs_page(report, before) + "\n")
        print(f"wrote {DOCS_PAGE}")


if __name__ == "__main__":
    main()
