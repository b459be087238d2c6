"""The one report writer of the skflow benchmarks.

Statistics (mean and standard error over test rows, *paired* differences,
win counts), number formatting, tables as markdown or reStructuredText
(``list-table``), JSON with non-finite numbers, and a record of the machine
and versions.  A report is a list of sections ``(title, intro, header, body)``
where ``header`` is a list of strings and ``body`` a list of rows of strings.

Paired standard errors: all methods score the same test rows, so the
standard error of a difference of two mean log-likelihoods comes from the
per-row differences, much smaller than the two marginal errors combined.

Examples
--------
>>> import numpy as np
>>> from benchmarks.report import paired_difference, markdown_table
>>> a, b = np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.5, 2.0])
>>> paired_difference(a, b)[0]
0.6666666666666666
>>> print(markdown_table(["x", "y"], [["1", "2"]]))
| x | y |
|---|---:|
| 1 | 2 |
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "fmt_ll",
    "fmt_num",
    "json_safe",
    "load_json",
    "machine_info",
    "markdown_table",
    "mean_se",
    "paired_difference",
    "rst_table",
    "to_markdown",
    "to_rst",
    "win_counts",
    "write_json",
]


# -------------------------------------------------------------- statistics
def mean_se(values) -> tuple[float, float, int]:
    """Mean, standard error of the mean and number of non-finite values.

    Any non-finite value makes the mean ``-inf`` (a model that gives a test
    row zero density has an infinitely bad held-out log-likelihood).
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        return -math.inf, math.nan, int((~finite).sum())
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else math.nan
    return float(values.mean()), se, 0


def paired_difference(a, b) -> tuple[float, float]:
    """Mean of ``a - b`` over the same rows and its standard error (``-inf``/nan if not finite)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean, se, bad = mean_se(diff)
    if bad:
        # -inf when a gives some row zero density, +inf when b does, nan when both do.
        with np.errstate(invalid="ignore"):
            return float(np.mean(diff)), math.nan
    return mean, se


def win_counts(scores: dict[str, dict[str, float]], methods) -> dict[str, int]:
    """Rows won by each method: ``scores[row][method]`` -> number of rows where it is best."""
    wins = {m: 0 for m in methods}
    for by_method in scores.values():
        finite = {m: v for m, v in by_method.items() if m in wins and v is not None and math.isfinite(v)}
        if finite:
            wins[max(finite, key=finite.get)] += 1
    return wins


# --------------------------------------------------------------- formatting
def fmt_ll(mean, se=None, digits=3, bold=False) -> str:
    """``mean ± se`` with a true minus sign; ``−inf`` for a non-finite mean."""
    if mean is None or not math.isfinite(mean):
        return "−inf"
    text = f"{mean:.{digits}f}"
    if se is not None and math.isfinite(se):
        text += f" ± {se:.{digits}f}"
    text = text.replace("-", "−")
    return f"**{text}**" if bold else text


def fmt_num(value, digits=3) -> str:
    """A compact number: ``—`` when missing, thousands separators above 1000."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


# ------------------------------------------------------------------ tables
def markdown_table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _rst_escape(text: str) -> str:
    if not text:
        return ".."  # an empty cell needs a comment to keep the list item
    if text.startswith("**") and text.endswith("**"):
        return "**" + text.strip("*").replace("|", "\\|") + "**"
    return text.replace("*", "\\*").replace("|", "\\|")


def rst_table(header, body, caption: str = "") -> str:
    lines = [f".. list-table::{' ' + caption if caption else ''}", "   :header-rows: 1", ""]
    for row in [header, *body]:
        cells = [_rst_escape(c) for c in row]
        lines.append("   * - " + cells[0])
        lines += [f"     - {c}" for c in cells[1:]]
    return "\n".join(lines) + "\n"


def to_markdown(title: str, preamble: str, sections) -> str:
    """A markdown document: ``# title``, a paragraph, then ``## section`` + intro + table each."""
    lines = [f"# {title}", "", preamble]
    for section_title, intro, header, body in sections:
        lines += ["", f"## {section_title}", ""]
        if intro:
            lines += [intro, ""]
        lines.append(markdown_table(header, body))
    return "\n".join(lines) + "\n"


def to_rst(command: str, preamble: str, sections, level: str = "~", after: dict | None = None) -> str:
    """An RST fragment for the docs (headings underlined with ``level``), marked as generated.

    ``after`` maps a section title to RST lines placed after its table (figures).
    """
    lines = [f".. This file is generated by ``{command}``; do not edit by hand.", "", preamble, ""]
    for title, intro, header, body in sections:
        lines += [title, level * len(title), ""]
        if intro:
            lines += [intro.replace("`", "``"), ""]
        lines.append(rst_table(header, body))
        lines += (after or {}).get(title, [])
    return "\n".join(lines)


# -------------------------------------------------------------------- JSON
def json_safe(value):
    """Non-finite floats become ``None`` (JSON has no ``inf``); numpy scalars become Python numbers."""
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(payload), indent=1) + "\n")


def load_json(path: Path):
    return json.loads(Path(path).read_text())


# ------------------------------------------------------------------ machine
def machine_info(command: str, **extra) -> dict:
    """Date, command, CPU, threads and library versions, for the record."""
    import sklearn
    import torch

    import skflow

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {
        "python": platform.python_version(),
        "skflow": skflow.__version__,
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
    }
    try:
        import zuko

        versions["zuko"] = zuko.__version__
    except ImportError:
        pass
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": " ".join([command, shlex.join(sys.argv[1:])]).strip(),
        "platform": platform.platform(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
        **extra,
    }
