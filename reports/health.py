"""The run-health part of a report: each run's findings at info and above, worst first, and what was skipped
(the findings come with the fit document, ``fit --json``'s ``health``)."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

SHOWN = ("critical", "warn", "info")


def _shown(fit_row: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [f for f in fit_row.get("health") or [] if f["severity"] in SHOWN]


def _label(f: Mapping[str, Any]) -> str:
    return f["detector"] + (f" [{f['benchmark']}]" if f.get("benchmark") else "")


def health_markdown(fit_doc: list[Mapping[str, Any]], md=str) -> list[str]:  # noqa: ANN001 - md: escaper
    """Markdown lines of the "Run health" section (``md`` escapes user strings)."""
    lines = ["### Run health", ""]
    for r in fit_doc:
        shown = _shown(r)
        skipped = [f for f in r.get("health") or [] if f["severity"] == "skipped"]
        lines.append(f"**{md(r['run'])}** (id {r['run_id']}): worst {r.get('health_worst') or 'skipped'}"
                     + ("" if shown else ", nothing at info or above"))
        lines += [f"- {f['severity']} · {md(_label(f))}: {md(f['sentence'])}" for f in shown]
        if skipped:
            lines.append("- skipped: " + "; ".join(f"{md(_label(f))} (needs {md(f['needs'])})" for f in skipped))
        lines.append("")
    return [*lines, ""]


def health_html(fit_row: Mapping[str, Any]) -> str:
    """One run's findings as an HTML list (every string escaped)."""
    shown = _shown(fit_row)
    skipped = [f for f in fit_row.get("health") or [] if f["severity"] == "skipped"]
    if not shown and not skipped:
        return ""
    items = "".join(f"<li class='sev-{escape(f['severity'])}'><b>{escape(f['severity'])}</b> "
                    f"{escape(_label(f))}: {escape(f['sentence'])}"
                    + ("<br><small>do: " + escape(f["advice"][0]) + "</small>" if f.get("advice") else "") + "</li>"
                    for f in shown)
    skip = ("<p class='note'>skipped: " + "; ".join(f"{escape(_label(f))} (needs {escape(f['needs'] or '')})"
                                                    for f in skipped) + "</p>") if skipped else ""
    none = "" if shown else "<p>nothing at info or above</p>"
    return f"<h3>Run health (worst: {escape(str(fit_row.get('health_worst')))})</h3>{none}<ul>{items}</ul>{skip}"
