"""``report.md``: the summary table and one line per run, fit for a PR comment or a CI step summary; every
user string stays text in a table cell."""

from __future__ import annotations

from typing import Any

from reports.document import ReportData
from reports.health import health_markdown
from reports.wording import HOW_CEILING, fmt, fmt_pt, run_sentences, summary_rows


def md(s: Any) -> str:
    """A user or log string as Markdown text that stays text in a table cell: no markup, no HTML, no pipes."""
    text = " ".join(("" if s is None else str(s)).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*_[]|#!~":
        text = text.replace(ch, "\\" + ch)
    return text


def render_markdown(data: ReportData) -> str:
    """Summary table and per-run lines, fit for a PR comment or a CI step summary."""
    rows = summary_rows(data)
    bt = data.backtest
    lines = ["## Ceiling report", "",
             f"{len(rows)} run{'s' if len(rows) != 1 else ''} · store {md(data.store)} · generated "
             f"{md(data.generated_at)}" + _md_filters(data), ""]
    if not rows:
        lines.append("No runs yet: ingest some with `entropy-dash ingest …`.")
        return "\n".join(lines) + "\n"
    head = ["run", "id", "state", "ceiling R(H=0)", "95% CI", "best so far", "headroom", "plateau", "collapse",
            f"backtest error ({bt['cutoff']:.0%} cutoff)", "forecast at the planned end"]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---:", "---", "---:", "---", "---:", "---:", "---",
                                                               "---", "---:", "---"]) + "|"]
    for r in rows:
        cells = [r.run, str(r.run_id), r.progress, r.ceiling if r.status == "ok" else r.status, r.interval, r.best,
                 r.headroom, r.plateau, r.collapse, r.backtest_error, r.forecast]
        lines.append("| " + " | ".join(md(c) for c in cells) + " |")
    lines.append("")
    summary = bt.get("summary")
    if summary:
        lines.append(f"**Backtest** ({bt['cutoff']:.0%} cutoff, {summary['n_runs']} runs): {md(summary['sentence'])}")
        lines.append("")
        lines.append("MAE per method: " + " · ".join(f"{md(m)} {fmt_pt(s['mae'], sign=False)}"
                                                     for m, s in summary["scores"].items()))
        lines.append("")
        lines.append("Headline error against the cutoff: " + " · ".join(
            f"{d['cutoff']:.0%}: {fmt_pt(d['summary']['scores']['headline']['mae'], sign=False)} "
            f"(coverage {fmt(100 * d['summary']['scores']['headline']['coverage'], 0)}%, {d['summary']['n_runs']} runs)"
            for d in bt.get("cutoffs") or [] if d.get("summary")))
        lines.append("")
    runs_by_id = {r["run_id"]: r for r in data.runs}
    lines += ["### Runs", ""]
    for f in data.fit:
        lines.append(f"- **{md(f['run'])}** (id {f['run_id']}): "
                     + " ".join(md(s) for s in run_sentences(f, runs_by_id.get(f["run_id"]), detail=False)))
    lines += ["", *health_markdown(data.fit, md), md(HOW_CEILING)]
    return "\n".join(lines) + "\n"


def _md_filters(data: ReportData) -> str:
    parts = [f"{k} {', '.join(md(v) for v in vals)}" for k, vals in data.filters.items() if vals]
    return (" · selected " + "; ".join(parts)) if parts else ""
