"""Time every gallery example of the documentation build.

sphinx-gallery calls :data:`CLOCK` before and after each example (it is named
in ``reset_modules`` of ``docs/conf.py``, with ``reset_modules_order="both"``).
The budget is wall time (about 30 s per example on 2 cores).  Wall time
depends on what else the machine runs, CPU time much less, so both are
printed: each example as it finishes and all of them, slowest first, when
the build ends.  CPU time counts the build process and its child processes
(the joblib workers some examples fit in), so an example that uses both
cores shows about twice its wall time.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import torch
from sphinx.util import logging

__all__ = ["CLOCK", "ExampleClock"]

_logger = logging.getLogger(__name__)


def _children_cpu(pid: int) -> float:
    """CPU seconds of the live descendants of ``pid`` (Linux ``/proc``; 0 elsewhere)."""
    total, stack, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    while stack:
        try:
            children = Path(f"/proc/{stack.pop()}/task").glob("*/children")
            kids = [int(k) for f in children for k in f.read_text().split()]
        except OSError:
            continue
        for kid in kids:
            try:
                fields = Path(f"/proc/{kid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
            stack.append(kid)
    return total


def _cpu_seconds() -> float:
    """This process's CPU time plus that of its children, reaped or alive."""
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + reaped.ru_utime + reaped.ru_stime + _children_cpu(os.getpid())


class ExampleClock:
    """Record wall and CPU seconds per example; report them.

    Parameters
    ----------
    budget_s : float
        Wall seconds an example may take; slower ones are flagged.
    """

    def __init__(self, budget_s: float = 30.0) -> None:
        self.budget_s = budget_s
        self.started: dict[str, tuple[float, float]] = {}
        self.costs: dict[str, tuple[float, float]] = {}

    def __repr__(self) -> str:
        # sphinx-gallery hashes its configuration to decide what to re-run;
        # a stable repr keeps unchanged examples cached.
        return f"ExampleClock(budget_s={self.budget_s})"

    def __call__(self, gallery_conf: dict, fname: str, when: str) -> None:
        # One thread: the examples fit small models, where more threads only
        # contend with each other and with anything else on the machine.
        torch.set_num_threads(1)
        now = (time.perf_counter(), _cpu_seconds())
        if when == "before":
            self.started[fname] = now
            return
        wall, cpu = (b - a for a, b in zip(self.started.pop(fname), now))
        self.costs[fname] = (wall, cpu)
        flag = "  OVER BUDGET" if wall > self.budget_s else ""
        _logger.info(f"    {fname}: {wall:.1f} s wall, {cpu:.1f} s CPU{flag}")

    def summary(self, app, exception) -> None:
        """Log every timed example, slowest first (a ``build-finished`` handler)."""
        if exception is not None or not self.costs:
            return
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        _logger.info(
            f"gallery examples, slowest first (budget {self.budget_s:.0f} s wall each; "
            f"load average {load} on {os.cpu_count()} CPUs):"
        )
        for fname, (wall, cpu) in sorted(self.costs.items(), key=lambda kv: -kv[1][0]):
            flag = "  OVER BUDGET" if wall > self.budget_s else ""
            _logger.info(f"    {fname:32s} {wall:6.1f} s wall {cpu:6.1f} s CPU{flag}")
        total_wall = sum(w for w, _ in self.costs.values())
        total_cpu = sum(c for _, c in self.costs.values())
        _logger.info(f"    {'total':32s} {total_wall:6.1f} s wall {total_cpu:6.1f} s CPU")


CLOCK = ExampleClock()
