"""Where and how a flow runs: dtypes, devices, threads and chunked evaluation.

The one place that decides

- **dtypes**: training in float32 (about 2x faster on the CPU), inference
  in float64 (round trips exact to ~1e-10, scores independent of batching);
  :func:`for_training` and :func:`for_inference` are the only conversions;
- **devices**: :func:`resolve_device` ("cpu", "cuda", "auto"); a fitted
  model always lives on the CPU, so pickles load anywhere;
- **threads**: :func:`thread_budget` and :class:`torch_threads` (small
  models run single-threaded: on a busy 2-core machine two spinning torch
  threads made small fits 4-5x slower than one);
- **chunking**: :func:`map_rows` applies a tensor function to a numpy array
  in cache-sized chunks into a preallocated output (bounded memory).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

__all__ = [
    "INFERENCE_CHUNK",
    "INFER_DTYPE",
    "TRAIN_DTYPE",
    "for_inference",
    "for_training",
    "generate_rows",
    "map_rows",
    "n_parameters",
    "preprocessed_copy",
    "resolve_device",
    "thread_budget",
    "torch_threads",
]

TRAIN_DTYPE = torch.float32
INFER_DTYPE = torch.float64
# Rows per forward pass at inference: bounds memory on arbitrarily long inputs
# and keeps the intermediate activations in cache (measured fastest at 4k-16k).
INFERENCE_CHUNK = 8192
# Below this many multiply-adds per forward pass (rows x parameters, a
# proxy), one thread is as fast as several: the work per op is too small to
# split, and extra threads only spin (and, on a busy machine, wait).
_SINGLE_THREAD_WORK = 2**25
# Environment variable that overrides the thread policy (an integer >= 1).
THREADS_ENV = "SKFLOW_NUM_THREADS"


def resolve_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available) as a device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available; use 'cpu' or 'auto'.")
    return torch.device(device)


def for_training(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Move ``model`` (in place) to ``device`` in the training dtype, train mode."""
    return model.to(device=device, dtype=TRAIN_DTYPE).train()


def for_inference(model: nn.Module) -> nn.Module:
    """Move ``model`` (in place) to the CPU in the inference dtype, eval mode."""
    return model.to(device="cpu", dtype=INFER_DTYPE).eval()


def thread_budget(work: float, requested: int | None = None) -> int:
    """Torch threads for a job of ``work`` multiply-adds per pass.

    ``requested`` (or the ``SKFLOW_NUM_THREADS`` environment variable) wins;
    otherwise small jobs get one thread and larger ones torch's current
    setting, which already honours ``OMP_NUM_THREADS`` (set, for example, by
    joblib's loky workers so that ``n_jobs`` processes share the cores).
    """
    if requested is None and os.environ.get(THREADS_ENV):
        requested = int(os.environ[THREADS_ENV])
    if requested is not None:
        return max(1, int(requested))
    return 1 if work < _SINGLE_THREAD_WORK else torch.get_num_threads()


class torch_threads:
    """Context manager: run torch with ``n`` intra-op threads, then restore the setting."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> torch_threads:
        self.previous = torch.get_num_threads()
        if self.n != self.previous:
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc) -> None:
        if torch.get_num_threads() != self.previous:
            torch.set_num_threads(self.previous)


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def map_rows(
    fn: Callable[[torch.Tensor], torch.Tensor],
    array: np.ndarray,
    shape: tuple[int, ...] = (),
    *,
    chunk: int | None = None,
    dtype: torch.dtype = INFER_DTYPE,
) -> np.ndarray:
    """``fn`` over the rows of ``array`` in chunks, into a preallocated float64 output.

    The output has shape ``(len(array),) + shape``.  Each chunk is copied
    into a tensor (never ``from_numpy`` of a possibly read-only array).
    ``chunk`` defaults to ``INFERENCE_CHUNK``.
    """
    chunk = chunk or INFERENCE_CHUNK
    out = np.empty((array.shape[0], *shape), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, array.shape[0], chunk):
            block = torch.tensor(array[start : start + chunk], dtype=dtype)
            out[start : start + chunk] = fn(block).numpy()
    return out


def generate_rows(
    fn: Callable[[int], torch.Tensor], n: int, features: int, *, chunk: int | None = None
) -> np.ndarray:
    """``fn(size)`` for chunks of ``size`` rows until ``n`` rows, into a float64 array."""
    chunk = chunk or INFERENCE_CHUNK
    out = np.empty((n, features), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            out[start : start + size] = fn(size).numpy()
    return out


def preprocessed_copy(flow: nn.Module, X: np.ndarray) -> torch.Tensor:
    """``flow.preprocess(X)`` as one training-dtype tensor, filled chunk by chunk.

    The one copy of the data that training makes; preprocessing in float64
    first keeps values beyond float32's range usable.
    """
    out = torch.empty(X.shape, dtype=TRAIN_DTYPE)
    with torch.no_grad():
        for start in range(0, X.shape[0], INFERENCE_CHUNK):
            chunk = torch.tensor(X[start : start + INFERENCE_CHUNK], dtype=INFER_DTYPE)
            out[start : start + INFERENCE_CHUNK] = flow.preprocess(chunk)
    return out
