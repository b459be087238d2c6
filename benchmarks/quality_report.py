"""Tables and summary of :mod:`benchmarks.quality` (issue 11's targets), from its JSON payload.

The payload has ``info``, ``methods`` (label -> method name and parameter
overrides) and ``rows`` (one per task x training size, as built by
:func:`benchmarks.quality.aggregate`).  :func:`summary` computes the targets
(a)-(d) per configuration of skflow estimators; :func:`write_reports` writes
``<stem>.json``, ``<stem>.md``, ``<stem>.rst`` and, with ``docs=True``,
``docs/quality_results.rst``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import REPO
from .baselines import GMM, KDE, SKFLOW_ESTIMATORS
from .report import fmt_ll, fmt_num, to_markdown, to_rst, win_counts, write_json

__all__ = ["BASELINES", "payload_tables", "summary", "write_reports"]

BASELINES = (GMM, KDE, "zuko NSF", "zuko MAF")
FERUMAL = "FerumalFlowDensity"
# A skflow estimator is "worse than the CV-GMM" when its paired difference is below -2 SE.
WORSE_SE = 2.0
DOCS_PAGE = REPO / "docs" / "quality_results.rst"


def _ll(row, label):
    stats = row["methods"].get(label, {})
    value = stats.get("loglik")
    return -math.inf if value is None else value


def _groups(payload) -> dict[str, list[str]]:
    """Configuration text -> skflow labels run with it (one group without ``--ablation``)."""
    groups = {}
    for label, spec in payload["methods"].items():
        if spec["method"] in SKFLOW_ESTIMATORS:
            key = ", ".join(f"{k}={v}" for k, v in spec["params"].items()) or "defaults"
            groups.setdefault(key, []).append(label)
    return groups


def _row_name(row):
    return f"{row['task']} (n={row['n_train']})"


def _catastrophic(row, label):
    stats = row["methods"].get(label, {})
    if "loglik" not in stats:
        return False
    return stats["loglik"] is None or stats["loglik"] < stats["trimmed"] - 1.0


def summary(payload) -> dict:
    """Issue 11's targets per configuration: fractions (a), (b) and the rows of (c), (d)."""
    rows = payload["rows"]
    baselines = [b for b in BASELINES if b in payload["methods"]]
    out = {}
    for config, labels in _groups(payload).items():
        beats_all = beats_gmm = 0
        worse, catastrophic = [], []
        ferumal = next((lab for lab in labels if payload["methods"][lab]["method"] == FERUMAL), None)
        for row in rows:
            best = max(_ll(row, lab) for lab in labels)
            if baselines and math.isfinite(best) and best > max(_ll(row, b) for b in baselines):
                beats_all += 1
            if ferumal and math.isfinite(_ll(row, ferumal)) and _ll(row, ferumal) > _ll(row, GMM):
                beats_gmm += 1
            for lab in labels:
                diff, se = row["paired"].get(lab, {}).get(GMM, (None, None))
                if diff is None and lab in row["methods"] and not math.isfinite(_ll(row, lab)):
                    diff = -math.inf  # failed, or zero density on some test row (JSON stores -inf as null)
                if diff is not None and (not math.isfinite(diff) or diff < -WORSE_SE * (se or 0.0)):
                    worse.append([_row_name(row), lab, diff, se])
            for lab in [*labels, *baselines]:  # not the other configurations' estimators
                if _catastrophic(row, lab):
                    stats = row["methods"][lab]
                    catastrophic.append([_row_name(row), lab, stats["loglik"], stats["trimmed"]])
        n = len(rows)
        out[config] = {
            "rows": n,
            "baselines": baselines,
            "a_best_skflow_beats_all_baselines": beats_all / n if n else None,
            "b_ferumal_beats_gmm": beats_gmm / n if (n and ferumal) else None,
            "c_worse_than_gmm_by_2se": worse,
            "d_catastrophic": catastrophic,
            "d_catastrophic_skflow": [c for c in catastrophic if c[1] in labels],
        }
    return out


def _fmt_diff(diff, se):
    if diff is None or not math.isfinite(diff):
        return "−inf" if diff is not None and diff < 0 else "—"
    mark = " ▼" if diff < -WORSE_SE * se else (" ▲" if diff > WORSE_SE * se else "")
    return fmt_ll(diff, se, digits=2) + mark


def payload_tables(payload):
    """The report: a list of ``(title, intro, header, body)`` sections."""
    rows, labels = payload["rows"], list(payload["methods"])
    skflow = [lab for group in _groups(payload).values() for lab in group]
    summ = summary(payload)
    sections = []

    header = ["configuration", "rows", "(a) best skflow beats all baselines", "(b) Ferumal beats CV-GMM",
              "(c) skflow < CV-GMM − 2 SE", "(d) catastrophic (skflow / all)"]
    def percent(value):
        return "—" if value is None else f"{value:.0%}"

    body = [[config, str(s["rows"]), percent(s["a_best_skflow_beats_all_baselines"]), percent(s["b_ferumal_beats_gmm"]),
             str(len(s["c_worse_than_gmm_by_2se"])),
             f"{len(s['d_catastrophic_skflow'])} / {len(s['d_catastrophic'])}"] for config, s in summ.items()]
    sections.append(("Summary", "Issue 11's targets. (a) Fraction of rows where the best skflow estimator has a "
                     "higher held-out log-likelihood than every baseline (" + ", ".join(
                         next(iter(summ.values()))["baselines"] if summ else []) + "); (b) fraction where "
                     "FerumalFlowDensity beats the CV-tuned GaussianMixture; (c) (row, estimator) pairs more than 2 "
                     "paired standard errors below the CV-GMM; (d) (row, method) pairs whose mean held-out "
                     "log-likelihood is more than 1 nat below the 1%-trimmed mean of the same scores.",
                     header, body))

    wins = win_counts({_row_name(r): {m: _ll(r, m) for m in labels} for r in rows}, labels)
    header = ["task", "n_train", "d", "truth", *labels]
    body = []
    for r in rows:
        best = max(_ll(r, m) for m in labels)
        cells = []
        for m in labels:
            stats = r["methods"].get(m)
            if stats is None:
                cells.append("—")
            elif "error" in stats:
                cells.append("failed")
            else:
                cells.append(fmt_ll(stats["loglik"], stats["se"], digits=2, bold=_ll(r, m) >= best))
        truth = fmt_ll(r["truth"][0], digits=2) if r["truth"] else ""
        body.append([r["task"], str(r["n_train"]), str(r["n_features"]), truth, *cells])
    body.append(["rows won", "", "", "", *[str(wins[m]) for m in labels]])
    sections.append(("Held-out log-likelihood", "Mean log-density of the test rows (nats per row, data units, "
                     "higher is better) ± its standard error; best per row in bold. *truth*: the mean true "
                     "log-density of the same rows (synthetic tasks).", header, body))

    header = ["task", "n_train", *skflow]
    body = [[r["task"], str(r["n_train"]),
             *[_fmt_diff(*r["paired"].get(m, {}).get(GMM, (None, None))) for m in skflow]] for r in rows]
    sections.append(("Paired difference to the CV-GMM", "Mean per-row difference of held-out log-densities, "
                     "skflow estimator minus CV-tuned GaussianMixture, ± its paired standard error; ▲/▼: better/"
                     "worse by more than 2 standard errors.", header, body))

    others = [m for m in labels if m != GMM]
    header = ["task", "n_train", "CV-GMM s", *others]
    body = [[r["task"], str(r["n_train"]), fmt_num(r["methods"].get(GMM, {}).get("fit_seconds"), 2),
             *[fmt_num(r["methods"].get(m, {}).get("fit_ratio_gmm"), 2) for m in others]] for r in rows]
    sections.append(("Fit time relative to the CV-GMM", f"Fit seconds of the CV-tuned {GMM} (its whole grid "
                     f"search) and every other method's fit time divided by it; {KDE}'s includes its own "
                     "search, flows fit once with early stopping. Ratios, not seconds, travel between machines.",
                     header, body))

    listed = [(c, s) for c, s in summ.items() if s["c_worse_than_gmm_by_2se"] or s["d_catastrophic"]]
    for config, s in listed:
        body = [[name, lab, _fmt_diff(d, se), ""] for name, lab, d, se in s["c_worse_than_gmm_by_2se"]]
        body += [[name, lab, fmt_ll(ll, digits=2), fmt_ll(tr, digits=2)] for name, lab, ll, tr in s["d_catastrophic"]]
        title = "Rows behind (c) and (d)" + ("" if len(summ) == 1 else f": {config}")
        sections.append((title, "First the (c) rows (difference to the CV-GMM ± paired SE), then the (d) rows "
                         "(mean vs 1%-trimmed mean).", ["row", "method", "value", "trimmed mean"], body))
    return sections


def write_reports(payload, out: Path, stem: str, docs: bool = False) -> str:
    """Write JSON, markdown and RST (and the docs page); return the markdown."""
    payload = {**payload, "summary": summary(payload)}
    info = payload["info"]
    preamble = (f"`{info['command'].strip()}` on {info['date']}; {info['cpu']}, {info['logical_cpus']} logical CPUs, "
                f"{info['torch_threads']} torch thread(s) per process; "
                + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
                + f"; {info.get('seeds', 1)} seed(s). Time ratios, not seconds, carry over to other machines.")
    if info.get("note"):
        preamble += f" Note: {info['note']}."
    sections = payload_tables(payload)
    markdown = to_markdown("skflow quality benchmark (issue 11)", preamble, sections)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", payload)
    (out / f"{stem}.md").write_text(markdown)
    rst = to_rst("python -m benchmarks.quality --docs", preamble.replace("`", "``"), sections)
    (out / f"{stem}.rst").write_text(rst)
    if docs:
        DOCS_PAGE.write_text(rst)
    return markdown


def load_payload(path: Path):
    return json.loads(Path(path).read_text())
