"""Tables and summary of :mod:`benchmarks.quality` (issue 11's targets), from its JSON payload.

The payload has ``info``, ``methods`` (label -> method name and parameter
overrides) and ``rows`` (one per task x training size, as built by
:func:`benchmarks.quality.aggregate`).  :func:`summary` computes the targets
(a)-(d) per configuration of skflow estimators; :func:`write_reports` writes
``<stem>.json``, ``<stem>.md``, ``<stem>.rst`` and, with ``docs=True``,
``docs/quality_results.rst``.  :func:`write_comparison_page` writes instead a
page that puts two runs (before and after a change) side by side, with an
optional ablation run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import REPO
from .baselines import GMM, KDE, SKFLOW_ESTIMATORS
from .report import fmt_ll, fmt_num, rst_table, to_markdown, to_rst, win_counts, write_json

__all__ = ["BASELINES", "comparison_sections", "load_payload", "payload_tables", "restrict", "summary",
           "write_comparison_page", "write_reports"]

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


# ------------------------------------------------------- before/after page
def restrict(payload, labels) -> dict:
    """The payload with only the methods in ``labels`` (to compare runs over the same estimators)."""
    keep = [lab for lab in payload["methods"] if lab in labels]
    rows = [{**r, "methods": {m: s for m, s in r["methods"].items() if m in keep},
             "paired": {a: {b: d for b, d in by.items() if b in keep} for a, by in r["paired"].items() if a in keep}}
            for r in payload["rows"]]
    return {**payload, "methods": {lab: payload["methods"][lab] for lab in keep}, "rows": rows}


def _targets(payload) -> list[str]:
    """The four targets of the first configuration, as table cells."""
    s = next(iter(summary(payload).values()))
    n = s["rows"]

    def fraction(value):
        return "—" if value is None else f"{value:.0%} ({round(value * n)}/{n})"

    return [fraction(s["a_best_skflow_beats_all_baselines"]), fraction(s["b_ferumal_beats_gmm"]),
            str(len(s["c_worse_than_gmm_by_2se"])), f"{len(s['d_catastrophic_skflow'])} / {len(s['d_catastrophic'])}"]


def _by_row(payload):
    return {(r["task"], r["n_train"]): r for r in payload["rows"]}


def comparison_sections(after, before, ablation=None):
    """Sections of the before/after page: targets, per-row scores and fit-time ratios, optional ablation."""
    shared = [lab for lab in after["methods"] if lab in before["methods"]]
    columns = {"before": _targets(before), "after": _targets(after)}
    if len(shared) < len(after["methods"]):
        extra = ", ".join(lab for lab in after["methods"] if lab not in shared)
        columns[f"after, without {extra}"] = _targets(restrict(after, shared))
    targets = ["(a) best skflow beats all baselines", "(b) Ferumal beats CV-GMM", "(c) skflow < CV-GMM − 2 SE",
               "(d) catastrophic (skflow / all)"]
    body = [[t, *[cells[i] for cells in columns.values()]] for i, t in enumerate(targets)]
    sections = [("Summary, before and after", "Issue 11's targets on the same rows. (a) Fraction of rows where the "
                 "best skflow estimator has a higher held-out log-likelihood than every baseline (CV-GMM, CV-KDE, "
                 "zuko NSF, zuko MAF); (b) fraction where FerumalFlowDensity beats the CV-tuned GaussianMixture; "
                 "(c) (row, estimator) pairs more than 2 paired standard errors below the CV-GMM; (d) (row, method) "
                 "pairs whose mean held-out log-likelihood is more than 1 nat below the 1%-trimmed mean of the same "
                 "scores. (c) and (d) count pairs, so they grow with the number of estimators.",
                 ["target", *columns], body)]

    old, labels = _by_row(before), list(after["methods"])
    header, body = ["task", "n_train", "d", "truth", *labels, "best"], []
    for r in after["rows"]:
        prev = old.get((r["task"], r["n_train"]), {"methods": {}})
        cells = []
        for m in labels:
            stats = r["methods"].get(m, {})
            text = "failed" if "error" in stats else fmt_ll(stats.get("loglik"), stats.get("se"), digits=2)
            if m in prev["methods"]:
                text += f" ({fmt_ll(prev['methods'][m].get('loglik'), digits=2)})"
            cells.append(text)
        best = max(labels, key=lambda m: _ll(r, m))
        truth = fmt_ll(r["truth"][0], digits=2) if r["truth"] else ""
        body.append([r["task"], str(r["n_train"]), str(r["n_features"]), truth, *cells, best])
    sections.append(("Held-out log-likelihood after, before in brackets", "Mean log-density of the test rows "
                     "(nats per row, data units, higher is better) ± its standard error in the new run, and in "
                     "brackets the same method's value in the before run (same training and test rows); *best*: "
                     "the highest after value. *truth*: the mean true log-density (synthetic tasks).", header, body))

    others = [m for m in labels if m != GMM]
    header = ["task", "n_train", "CV-GMM s", *others]
    body = []
    for r in after["rows"]:
        prev = old.get((r["task"], r["n_train"]), {"methods": {}})
        cells = []
        for m in others:
            text = fmt_num(r["methods"].get(m, {}).get("fit_ratio_gmm"), 2)
            if m in prev["methods"]:
                text += f" ({fmt_num(prev['methods'][m].get('fit_ratio_gmm'), 2)})"
            cells.append(text)
        gmm = [fmt_num(p["methods"].get(GMM, {}).get("fit_seconds"), 2) for p in (r, prev)]
        body.append([r["task"], str(r["n_train"]), f"{gmm[0]} ({gmm[1]})", *cells])
    sections.append(("Fit time relative to the CV-GMM, after (before)", f"Fit seconds of the CV-tuned {GMM} (its "
                     "whole grid search) and every other method's fit time divided by it, in the new run and in "
                     "brackets the before run. Both runs shared two cores with other work, so ratios within a run "
                     "are meaningful and absolute seconds are not.", header, body))

    for title, intro, head, rows in payload_tables(after):
        if title in ("Paired difference to the CV-GMM", "Rows behind (c) and (d)"):
            sections.append((f"{title} (after)", intro, head, rows))
    if ablation:
        for title, intro, head, rows in payload_tables(ablation):
            if title in ("Summary", "Held-out log-likelihood", "Paired difference to the CV-GMM"):
                if title == "Summary":
                    intro = ("Each skflow estimator at its defaults except for the configuration named in the "
                             "first column, on a subset of the rows, next to the CV-GMM (the only baseline here, "
                             "so (a) is 'beats the CV-GMM').")
                sections.append((f"Ablation: {title.lower()}", intro, head, rows))
    return sections


def write_comparison_page(after, before, ablation=None, path: Path = DOCS_PAGE) -> str:
    """Write the before/after docs fragment (included by ``docs/benchmarks.rst``); return its text."""

    def describe(payload, name):
        info = payload["info"]
        text = (f"*{name}*: ``{info['command'].strip()}`` on {info['date']}, {info.get('seeds', 1)} seed(s), "
                f"{info['torch_threads']} torch thread(s) per process, "
                + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
        if info.get("total_seconds"):
            text += f", {info['total_seconds'] / 60:.0f} minutes"
        return text + (f". Note: {info['note']}." if info.get("note") else ".")

    runs = [describe(before, "before"), describe(after, "after")]
    if ablation:
        runs.append(describe(ablation, "ablation"))
    # A fragment included under a section of docs/benchmarks.rst: no title, subsections underlined with "~".
    lines = [".. This file is generated by ``python -m benchmarks.quality --from-json AFTER --before BEFORE "
             "[--ablation-json ABLATION] --docs``; do not edit by hand.", "",
             f"Before and after a change of skflow's defaults, on {after['info']['cpu']} "
             f"({after['info']['logical_cpus']} logical CPUs shared with other work; time ratios, not seconds, "
             "carry over to other machines):", ""]
    lines += [f"- {run}" for run in runs] + [""]
    for title, intro, header, body in comparison_sections(after, before, ablation):
        lines += [title, "~" * len(title), "", intro.replace("`", "``"), "", rst_table(header, body)]
    text = "\n".join(lines)
    path.write_text(text)
    return text
