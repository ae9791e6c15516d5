"""``report.html``: one self-contained page — plotly.js inlined from the installed plotly package (it opens
offline, and its Content-Security-Policy forbids any network request), every user or log string escaped."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from reports.document import ReportData
from reports.health import health_html
from reports.sections import Sections, sections_of
from reports.wording import HOW_BACKTEST, HOW_CEILING, SummaryRow, fmt, fmt_pt, run_sentences, summary_rows


def esc(s: Any) -> str:
    """A user or log string as HTML text."""
    return html.escape("" if s is None else str(s), quote=True)



# No network at all: scripts and styles only inline, images only data:/blob: URLs (plotly's own).
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
       "font-src data:")
CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;
 padding:24px;color:#1d2330}
h1{margin:0 0 4px}h2{margin-top:36px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
.meta{color:#5b6472;margin:0 0 16px}
table{border-collapse:collapse;margin:12px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d8dce3;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.num{text-align:right}
section.run{border:1px solid #d8dce3;border-radius:6px;padding:4px 18px 12px;margin:26px 0}
.status-skipped,.status-failed{color:#a33}.note{color:#5b6472;font-size:13px}
.sentence{background:#f6f8fa;border-left:4px solid #1f77b4;padding:8px 12px}
"""


def render_html(data: ReportData, figures: Mapping[int, Mapping[str, Any]] | None = None,
                sections: Sections | None = None) -> str:
    """One self-contained page: plotly.js inlined once, every user string escaped; a section (and the
    ``figures``) for the runs of ``sections`` (default: ``reports.sections.sections_of``), every run in the
    summary table."""
    from plotly.offline import get_plotlyjs

    figures = figures or {}
    sections = sections or sections_of(data.fit)
    rows = summary_rows(data)
    bt = data.backtest
    body = [f"<h1>Ceiling report</h1><p class='meta'>{len(rows)} run{'s' if len(rows) != 1 else ''} · store "
            f"<code>{esc(data.store)}</code> · generated {esc(data.generated_at)}{_html_filters(data)}</p>",
            f"<p>{esc(HOW_CEILING)}</p>"]
    if not rows:
        body.append("<p>No runs yet: ingest some with <code>entropy-dash ingest …</code>.</p>")
    else:
        shown = set(sections.run_ids)
        body.append(_html_summary(rows, bt["cutoff"], shown))
        body.append(_html_backtest(bt))
        if sections.sentence():
            body.append(f"<p class='sentence sections'>{esc(sections.sentence())}</p>")
        runs_by_id = {r["run_id"]: r for r in data.runs}
        fit_by_id = {f["run_id"]: f for f in data.fit}
        for run_id in sections.run_ids:
            body.append(_html_run(fit_by_id[run_id], runs_by_id.get(run_id), figures.get(run_id, {})))
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Ceiling report · {esc(data.generated_at)}</title><style>{CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _html_filters(data: ReportData) -> str:
    parts = [f"{esc(k)} {', '.join(esc(v) for v in vals)}" for k, vals in data.filters.items() if vals]
    return (" · selected " + "; ".join(parts)) if parts else ""


def _html_summary(rows: list[SummaryRow], cutoff: float, shown: set[int]) -> str:
    head = ("<tr><th>run</th><th>id</th><th>state</th><th>ceiling R(H=0)</th><th>95% CI</th><th>best so far</th>"
            f"<th>headroom</th><th>plateau</th><th>collapse</th><th>backtest error ({cutoff:.0%} cutoff)</th>"
            "<th>forecast at the planned end</th></tr>")
    lines = []
    for r in rows:
        status = "" if r.status == "ok" else f" <span class='status-{esc(r.status)}'>({esc(r.status)})</span>"
        lines.append(
            f"<tr><td>{_html_name(r, shown)}{status}</td><td class='num'>{r.run_id}</td>"
            f"<td>{esc(r.progress)}</td>"
            f"<td class='num'>{esc(r.ceiling)}</td><td>{esc(r.interval)}</td><td class='num'>{esc(r.best)}</td>"
            f"<td class='num'>{esc(r.headroom)}</td><td>{esc(r.plateau)}</td><td>{esc(r.collapse)}</td>"
            f"<td class='num'>{esc(r.backtest_error)}</td><td>{esc(r.forecast)}</td></tr>")
    return "<h2>Summary</h2><table class='summary'>" + head + "".join(lines) + "</table>"


def _html_name(row: SummaryRow, shown: set[int]) -> str:
    """The run's name, a link to its section when it has one."""
    return f"<a href='#run-{row.run_id}'>{esc(row.run)}</a>" if row.run_id in shown else esc(row.run)


def _html_backtest(bt: Mapping[str, Any]) -> str:
    out = [f"<h2>How well the forecasts backtested</h2><p>{esc(HOW_BACKTEST)}</p>"]
    summary = bt.get("summary")
    if summary:
        out.append(f"<p class='sentence'>{esc(summary['sentence'])}</p>")
        out.append(f"<table class='mae'><tr><th>method ({bt['cutoff']:.0%} cutoff)</th><th>MAE</th><th>RMSE</th>"
                   "<th>interval coverage</th><th>runs</th></tr>")
        for m, s in summary["scores"].items():
            mark = " (lowest MAE)" if m == summary["winner"] else ""
            out.append(f"<tr><td>{esc(m)}{mark}</td><td class='num'>{fmt_pt(s['mae'], sign=False)}</td>"
                       f"<td class='num'>{fmt_pt(s['rmse'], sign=False)}</td>"
                       f"<td class='num'>{fmt(100 * s['coverage'], 0) if s['coverage'] is not None else '–'}%</td>"
                       f"<td class='num'>{s['n']}</td></tr>")
        out.append("</table>")
        docs = [d for d in bt.get("cutoffs") or [] if d.get("summary")]
        if docs:  # from which point can the forecast be trusted on runs like these?
            out.append("<p>Error of the headline against how much of the run it saw:</p><table class='cutoffs'><tr>"
                       "<th>cutoff</th><th>runs</th><th>headline MAE</th><th>coverage</th><th>best single method</th></tr>")
            for d in docs:
                sc = d["summary"]["scores"]
                best = d["summary"]["best_method"]
                out.append(f"<tr><td>{d['cutoff']:.0%}</td><td class='num'>{d['summary']['n_runs']}</td>"
                           f"<td class='num'>{fmt_pt(sc['headline']['mae'], sign=False)}</td>"
                           f"<td class='num'>{fmt(100 * sc['headline']['coverage'], 0)}%</td>"
                           f"<td>{esc(best)} {fmt_pt(sc[best]['mae'], sign=False)}</td></tr>")
            out.append("</table>")
    else:
        out.append("<p>No run could be backtested yet.</p>")
    if bt.get("skipped"):
        out.append("<p class='note'>Not backtested: " + "; ".join(
            f"{esc(s['run'])}: {esc(s['reason'])}" for s in bt["skipped"]) + "</p>")
    return "".join(out)


def _html_run(f: Mapping[str, Any], runs_row: Mapping[str, Any] | None, figs: Mapping[str, Any]) -> str:
    out = [f"<section class='run' id='run-{f['run_id']}'><h2>{esc(f['run'])} "
           f"<small class='note'>id {f['run_id']}{_html_origin(runs_row)}</small></h2>"]
    out.append("<p>" + " ".join(esc(s) for s in run_sentences(f, runs_row)) + "</p>")
    if f["status"] == "ok" and f.get("a") is not None:
        ci = f["ceiling_ci"]
        cells = [("a", fmt(f["a"], 4) + " ± " + fmt(f["a_se"], 4)), ("b", fmt(f["b"], 4) + " ± " + fmt(f["b_se"], 4)),
                 ("ceiling b − a", fmt(f["ceiling"], 4)), ("95% CI", f"{fmt(ci[0], 4)} – {fmt(ci[1], 4)}"),
                 ("R²", fmt(f["r2"], 4)), ("paired points", str(f["n"])), ("best so far", fmt(f["best_performance"], 4)),
                 ("headroom", fmt_pt(f["headroom"]))]
        bt = f.get("backtest") or {}
        if f.get("ceiling_raw") is not None and abs(f["ceiling_raw"] - f["ceiling"]) > 1e-12:
            cells.insert(3, ("b − a (unbounded)", fmt(f["ceiling_raw"], 4)))
        if bt.get("error") is not None:
            cells += [("backtest predicted", f"{fmt(bt['predicted_final'], 4)} [{fmt(bt['interval'][0], 4)}, "
                                             f"{fmt(bt['interval'][1], 4)}]"),
                      ("backtest observed", fmt(bt["observed_final"], 4)), ("backtest error", fmt_pt(bt["error"]))]
        out.append("<table class='numbers'><tr>" + "".join(f"<th>{esc(k)}</th>" for k, _ in cells) + "</tr><tr>"
                   + "".join(f"<td class='num'>{esc(v)}</td>" for _, v in cells) + "</tr></table>")
    out.append(health_html(f))
    for name in ("fit", "forecast"):
        if name in figs:
            out.append(figs[name].to_html(full_html=False, include_plotlyjs=False, default_width="100%",
                                          config={"displaylogo": False, "responsive": True}))
    out.append("</section>")
    return "".join(out)


def _html_origin(runs_row: Mapping[str, Any] | None) -> str:
    if not runs_row:
        return ""
    return f" · {esc(runs_row.get('source'))}" + (f" · experiment {esc(runs_row['project'])}"
                                                   if runs_row.get("project") else "")
