"""Ceiling-prediction reports: one self-contained HTML file, a Markdown summary and a JSON document.

Every number comes from ``analysis.payloads`` — the documents ``runs --json``, ``fit --json`` and
``backtest --json`` print — so a report can never disagree with the command line. The HTML inlines
plotly.js from the installed plotly package (it opens offline, and its Content-Security-Policy forbids any
network request); every string that came from a user or a log (run names, keys, messages) is escaped.

``write_report`` is the public entry point (the CLI's ``report`` command and the scheduler call it);
``write_scheduled_report`` writes into a new time-stamped folder and keeps the last N.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from db import Store
from db.values import json_safe
from reports.errors import ReportError

log = logging.getLogger(__name__)

FORMATS = ("html", "md", "json")
FILENAMES = {"html": "report.html", "md": "report.md", "json": "report.json"}
SCHEMA = "entropy-dash.report/1"
STAMP = "%Y%m%dT%H%M%S%fZ"  # the scheduler's folder names (entropy_dash.scheduler._STAMP)
CHROMIUM = "/usr/bin/chromium"


# ---------------------------------------------------------------------------- data
@dataclass(frozen=True)
class ReportData:
    """What a report shows: the three CLI documents (filtered to the selected runs) and the stored results."""

    generated_at: str
    store: str
    filters: dict[str, list[str]]
    runs: list[dict[str, Any]]
    fit: list[dict[str, Any]]
    backtest: dict[str, Any]
    results: dict[int, dict[str, Any]] = field(repr=False)  # run id → stored analysis (for the figures)

    def document(self) -> dict[str, Any]:
        """The JSON report (schema in README, "Reports")."""
        return json_safe({"schema": SCHEMA, "generated_at": self.generated_at, "store": self.store,
                          "filters": self.filters, "runs": self.runs, "fit": self.fit, "backtest": self.backtest})


def collect_report(store: Store, experiments: Sequence[str] | None = None,
                   runs: Sequence[str] | None = None) -> ReportData:
    """The payloads of ``runs``/``fit``/``backtest --json``, restricted to the selected runs.

    ``experiments`` match a run's project (MLflow experiment, W&B project); ``runs`` match a run id or
    name. Both given: runs matching both. A name that matches nothing is an error naming it. With a
    selection, the backtest (headline weights, intervals, MAE per method, sentence) is recomputed over the
    selected runs alone — exactly what ``backtest --json`` prints for a store holding only those runs; the
    live forecasts of runs in progress still learn from every finished run of the store.
    Nothing is written to the store: stale analyses are computed in memory.
    """
    from analysis.payloads import backtest_payload, fit_payload, runs_payload
    from analysis.pipeline import current_results

    all_results = current_results(store)
    runs_doc = runs_payload(store, all_results)
    fit_doc = fit_payload(store, all_results)
    keep = _select(runs_doc, list(experiments or []), list(runs or []))
    selected = all_results if keep is None else [r for r in all_results if r["run_id"] in keep]
    if keep is not None:
        runs_doc = [r for r in runs_doc if r["run_id"] in keep]
        fit_doc = [r for r in fit_doc if r["run_id"] in keep]
    bt_doc = backtest_payload(store, selected)
    return ReportData(generated_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                      store=store.url, filters={"experiments": list(experiments or []), "runs": list(runs or [])},
                      runs=runs_doc, fit=fit_doc, backtest=bt_doc,
                      results={int(r["run_id"]): r for r in selected})


def _select(runs_doc: list[dict[str, Any]], experiments: list[str], runs: list[str]) -> set[int] | None:
    if not experiments and not runs:
        return None
    keep = {r["run_id"] for r in runs_doc}
    if experiments:
        projects = {r["project"] for r in runs_doc}
        unknown = [e for e in experiments if e not in projects]
        if unknown:
            raise ReportError(f"no runs in experiment {unknown[0]!r}; experiments in the store: "
                              f"{', '.join(sorted(str(p) for p in projects if p)) or 'none'}")
        keep &= {r["run_id"] for r in runs_doc if r["project"] in experiments}
    if runs:
        for want in runs:
            if not any(str(r["run_id"]) == want or r["run"] == want for r in runs_doc):
                raise ReportError(f"no run {want!r} in the store: see `entropy-dash runs`")
        keep &= {r["run_id"] for r in runs_doc if str(r["run_id"]) in runs or r["run"] in runs}
    if not keep:
        raise ReportError(f"no run matches both --experiment {experiments} and --run {runs}")
    return keep


# ---------------------------------------------------------------------------- writing
def write_report(store: Store, out_dir: str | Path, formats: Iterable[str] = FORMATS,
                 experiments: Sequence[str] | None = None, runs: Sequence[str] | None = None, *,
                 png: bool | None = None) -> dict[str, Path]:
    """Write ``report.html`` / ``report.md`` / ``report.json`` into ``out_dir`` (created if missing).

    Returns format → file written (plus ``"figures"`` → the PNG folder when PNGs were made). ``png``: True
    asks for PNG figures (kaleido + Chromium), False never makes them, None makes them when kaleido can be
    imported. Missing PNG support is logged, never an error. Each file is written to a temporary name and
    renamed, so a reader never sees half a report.
    """
    formats = _formats(formats)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the report folder {out}: {exc}") from exc
    data = collect_report(store, experiments, runs)
    written: dict[str, Path] = {}
    if "json" in formats:
        written["json"] = _write(out / FILENAMES["json"],
                                 json.dumps(data.document(), indent=2, allow_nan=False) + "\n")
    if "md" in formats:
        written["md"] = _write(out / FILENAMES["md"], render_markdown(data))
    want_png = kaleido_available() if png is None else png
    if "html" in formats or want_png:
        figures = build_figures(store, data)
        if "html" in formats:
            written["html"] = _write(out / FILENAMES["html"], render_html(data, figures))
        if want_png and figures:
            folder = write_pngs(figures, out / "figures")
            if folder is not None:
                written["figures"] = folder
    return written


def write_scheduled_report(store: Store, root: str | Path, formats: Iterable[str] = FORMATS,
                           keep: int | None = 10) -> dict[str, Path]:
    """A report in a new time-stamped folder under ``root`` (``20250101T120000123456Z``), then only the last
    ``keep`` such folders are kept (None: all). The folder appears complete or not at all (written under a
    hidden name, then renamed)."""
    if keep is not None and keep < 1:
        raise ReportError(f"keep must be at least 1, got {keep}")
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime(STAMP)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stamp}-", dir=base))
    try:
        written = write_report(store, tmp, formats)
        final = base / stamp
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep is not None:
        for old in report_folders(base)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return {k: final / p.relative_to(tmp) for k, p in written.items()}


def report_folders(root: str | Path) -> list[Path]:
    """The time-stamped report folders under ``root``, oldest first."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = []
    for p in base.iterdir():
        try:
            datetime.strptime(p.name, STAMP)
        except ValueError:
            continue
        if p.is_dir():
            found.append(p)
    return sorted(found, key=lambda p: p.name)


def _formats(formats: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = formats.split(",")
    out = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise ReportError(f"report format {bad[0] if bad else ''!r} unknown: choose among {', '.join(FORMATS)}")
    return out


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ReportError(f"cannot write the report file {path}: {exc}") from exc
    return path


# ---------------------------------------------------------------------------- figures
def build_figures(store: Store, data: ReportData) -> dict[int, dict[str, Any]]:
    """Per run id: ``fit`` (R vs H with the law) and ``forecast`` (the live forecast of a run in progress, or
    the backtest of a finished one at the report's cutoff) plotly figures, where the run has them."""
    from analysis.pipeline import run_series
    from reports.figures import fit_figure, forecast_figure

    backtests = {r["run_id"]: r for r in data.backtest.get("runs") or []}
    live = {f["run_id"]: f["forecast"] for f in data.fit if f.get("forecast")}
    figures: dict[int, dict[str, Any]] = {}
    for run_id, res in data.results.items():
        if res.get("status") == "skipped" or not res.get("entropy_key") or not res.get("performance_key"):
            continue
        h, r = run_series(store, res)
        figs: dict[str, Any] = {}
        if res.get("law"):
            figs["fit"] = fit_figure(h, r, res)
        headline = live.get(run_id) or backtests.get(run_id)
        if headline and res.get("range"):
            figs["forecast"] = forecast_figure(h, r, res, headline)
        if figs:
            figures[run_id] = figs
    return figures


def kaleido_available() -> bool:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return True


def write_pngs(figures: Mapping[int, Mapping[str, Any]], folder: Path) -> Path | None:
    """``run-<id>-<fit|forecast>.png`` through kaleido (and Debian Chromium when kaleido finds no browser of
    its own). Returns the folder, or None (logged) when PNGs cannot be made here."""
    if not kaleido_available():
        log.warning("PNG figures skipped: kaleido is not installed (pip install kaleido); the HTML report has "
                    "the interactive figures")
        return None
    if Path(CHROMIUM).exists():
        os.environ.setdefault("BROWSER_PATH", CHROMIUM)
    import plotly.io as pio  # plotly takes half a second to import: only when PNGs are made

    items = [(fig, folder / f"run-{run_id}-{name}.png") for run_id, figs in figures.items()
             for name, fig in figs.items()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # one Chromium for every figure (a browser per figure costs seconds each)
        pio.write_images([fig for fig, _ in items], [path for _, path in items], width=1100, scale=1)
    except Exception as exc:  # noqa: BLE001 - kaleido/Chromium failures of any kind must not fail the report
        log.warning("PNG figures skipped: %s", exc)
        return None
    return folder


def esc(s: Any) -> str:
    """A user or log string as HTML text."""
    return html.escape("" if s is None else str(s), quote=True)


# ---------------------------------------------------------------------------- shared wording
HOW_CEILING = (
    "For each run, every evaluation R is paired with the policy entropy H of the rollouts that produced it, and "
    "R = −a·e^H + b is fitted by ordinary least squares (R is linear in e^H). The ceiling is the fitted R at "
    "H = 0 — the score left once entropy is exhausted — b − a, with a 95% t-interval from the fit's covariance. "
    "Headroom is the ceiling minus the best evaluation so far. 1 pt = 0.01 of the metric."
)
HOW_BACKTEST = (
    "Backtest: from the first part of each finished run's steps only, its final score (the mean of its last 3 "
    "evaluations) is forecast by every method — the law through an entropy forecast, saturating, sigmoid and "
    "power curves in the step, the last value, the mean of the last three evaluations, and a model learned from "
    "the other finished runs — and the error is predicted − observed. The headline is a weighted mean of the "
    "methods whose weights were learned on the other finished runs only (the run never grades its own "
    "forecast), with a 95% interval calibrated on their errors. Runs still in progress are never backtested."
)


@dataclass(frozen=True)
class SummaryRow:
    """One run's line of the summary table, as plain (unescaped) text."""

    run_id: int
    run: str
    status: str
    ceiling: str
    interval: str
    best: str
    headroom: str
    plateau: str
    collapse: str
    backtest_error: str
    progress: str
    forecast: str


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _pt(v: Any, sign: bool = True) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{100 * v:+.1f} pt" if sign else f"{100 * v:.2f} pt"


def summary_rows(data: ReportData) -> list[SummaryRow]:
    rows = []
    for f in data.fit:
        ci = f.get("ceiling_ci") or [None, None]
        pr = f.get("plateau_range")
        plateau = "–" if f.get("plateau_step") is None else (
            f"step {f['plateau_step']}" + (f" ({pr[0]}–{pr[1]})" if pr else ""))
        col = f.get("collapse") or {}
        collapse = col.get("verdict") or "–"
        if col.get("projected_floor_step") is not None:
            collapse += f" (floor ≈ step {_f(col['projected_floor_step'], 0)})"
        bt = f.get("backtest") or {}
        fc = f.get("forecast")
        forecast = (f"{_f(fc['predicted_final'])} [{_f(fc['interval'][0])}, {_f(fc['interval'][1])}] at step "
                    f"{fc['horizon_step']}" + (f", backtest MAE {_pt(fc['backtest_mae'], sign=False)} (n {fc['backtest_n']})"
                                                if fc.get("backtest_mae") is not None else "")) if fc else "–"
        rows.append(SummaryRow(
            run_id=f["run_id"], run=f["run"], status=f["status"], ceiling=_f(f.get("ceiling")),
            interval=f"{_f(ci[0])} – {_f(ci[1])}" if f.get("ceiling") is not None else "–",
            best=_f(f.get("best_performance")), headroom=_pt(f.get("headroom")), plateau=plateau,
            collapse=collapse, backtest_error=_pt(bt.get("error")) if bt.get("error") is not None else "–",
            progress=f.get("progress") or "–", forecast=forecast))
    return rows


def run_sentences(fit: Mapping[str, Any], runs_row: Mapping[str, Any] | None, *, detail: bool = True) -> list[str]:
    """How this run's ceiling was computed and how well it backtested, in plain words (``detail``: with the
    evidence behind the stage boundary and the collapse verdict, and why these keys were chosen)."""
    if fit["status"] == "skipped":
        return [f"Not analysed: {fit['reason']}."]
    keys = f"Entropy key {fit['entropy_key']}, performance key {fit['performance_key']}"
    if detail and runs_row and runs_row.get("key_reason"):
        keys += f" ({runs_row['key_reason']})"
    out = [keys + ".", f"State: {fit.get('progress') or 'unknown'}."]
    if fit.get("excluded_steps"):
        out.append(f"{(fit.get('warmup') or {}).get('reason') or 'Warm-up excluded'}; these evaluations are left out "
                   "of the law.")
    if len(fit.get("benchmarks") or []) > 1:
        out.append("Benchmarks: " + "; ".join(
            f"{b['benchmark']}: " + (f"ceiling {_f(b['ceiling'])} [{_f(b['ceiling_ci'][0])}, {_f(b['ceiling_ci'][1])}], "
                                     f"R² {_f(b['r2'])}" if b["status"] == "ok" else str(b["reason"]))
            for b in fit["benchmarks"]) + f" (headline: {fit['performance_key']}).")
    if fit["status"] != "ok" or fit.get("a") is None:
        out.append(f"No law could be fitted: {fit['reason']}.")
    else:
        h0, h1 = fit.get("h_range") or [None, None]
        ci = fit["ceiling_ci"]
        out.append(f"Fitted R = −{_f(fit['a'], 4)}·e^H + {_f(fit['b'], 4)} on {fit['n']} paired evaluations "
                   f"(R² {_f(fit['r2'])}, RMSE {_f(fit['rmse'], 4)}; a ± {_f(fit['a_se'], 4)}, "
                   f"b ± {_f(fit['b_se'], 4)}), entropy observed from {_f(h0)} to {_f(h1)}.")
        out.append(f"At H = 0 this gives a ceiling of {_f(fit['ceiling'])} (95% CI {_f(ci[0])} to {_f(ci[1])}); the "
                   f"best evaluation so far is {_f(fit.get('best_performance'))}, so the headroom is "
                   f"{_pt(fit.get('headroom'))}.")
        out += [f"Warning: {flag}." for flag in fit.get("flags") or []]
    if fit.get("plateau_step") is not None:
        pr = fit.get("plateau_range")
        out.append(f"The rising stage ended around step {fit['plateau_step']}"
                   + (f" (range {pr[0]}–{pr[1]})" if pr else "")
                   + (f": {fit.get('stage_reason') or ''}." if detail else "."))
    elif fit.get("stage_reason"):
        out.append(f"No stage boundary: {fit['stage_reason']}.")
    col = fit.get("collapse") or {}
    if col.get("verdict") or col.get("message"):
        floor = col.get("projected_floor_step")
        out.append(f"Collapse check: {col.get('verdict') or 'not available'}"
                   + (f" — {col.get('message') or ''}." if detail else
                      (f" (entropy floor projected at step {_f(floor, 0)})." if floor is not None else ".")))
    fc = fit.get("forecast")
    if fc:
        record = (f"; this forecast's track record on {fc['backtest_n']} finished runs at {fc['backtest_cutoff']:.0%}: "
                  f"MAE {_pt(fc['backtest_mae'], sign=False)}" + (f", its interval covered {_f(100 * fc['coverage'], 0)}%"
                                                                    if fc.get("coverage") is not None else "")
                  if fc.get("backtest_mae") is not None else
                  "; too few finished runs to learn from: the weights come from this run's own rolling-origin errors")
        out.append(f"Forecast: at its planned end (step {fc['horizon_step']}) the run should score "
                   f"{_f(fc['predicted_final'])} (95% interval {_f(fc['interval'][0])} to {_f(fc['interval'][1])}; "
                   f"{fc['label']}){record}.")
    elif fit.get("forecast_reason") and not fit.get("finished"):
        out.append(f"No forecast: {fit['forecast_reason']}.")
    bt = fit.get("backtest") or {}
    if bt.get("error") is not None:
        lo, hi = bt["interval"]
        covered = "inside" if lo <= bt["observed_final"] <= hi else "outside"
        out.append(f"Backtest: from the first {bt['cutoff']:.0%} of the run, the headline forecast of the final score "
                   f"was {_f(bt['predicted_final'])} (95% interval {_f(lo)} to {_f(hi)}); the run ended at "
                   f"{_f(bt['observed_final'])}, an error of {_pt(bt['error'])} ({covered} the interval).")
    elif fit.get("finished"):
        out.append(f"Backtest not possible: {bt.get('reason') or 'not computed'}.")
    return out


# ---------------------------------------------------------------------------- Markdown
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
        lines.append("MAE per method: " + " · ".join(f"{md(m)} {_pt(s['mae'], sign=False)}"
                                                     for m, s in summary["scores"].items()))
        lines.append("")
        lines.append("Headline error against the cutoff: " + " · ".join(
            f"{d['cutoff']:.0%}: {_pt(d['summary']['scores']['headline']['mae'], sign=False)} "
            f"(coverage {_f(100 * d['summary']['scores']['headline']['coverage'], 0)}%, {d['summary']['n_runs']} runs)"
            for d in bt.get("cutoffs") or [] if d.get("summary")))
        lines.append("")
    runs_by_id = {r["run_id"]: r for r in data.runs}
    lines += ["### Runs", ""]
    for f in data.fit:
        lines.append(f"- **{md(f['run'])}** (id {f['run_id']}): "
                     + " ".join(md(s) for s in run_sentences(f, runs_by_id.get(f["run_id"]), detail=False)))
    lines += ["", md(HOW_CEILING)]
    return "\n".join(lines) + "\n"


def _md_filters(data: ReportData) -> str:
    parts = [f"{k} {', '.join(md(v) for v in vals)}" for k, vals in data.filters.items() if vals]
    return (" · selected " + "; ".join(parts)) if parts else ""


# ---------------------------------------------------------------------------- HTML
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


def render_html(data: ReportData, figures: Mapping[int, Mapping[str, Any]] | None = None) -> str:
    """One self-contained page: plotly.js inlined once, every user string escaped."""
    from plotly.offline import get_plotlyjs

    figures = figures or {}
    rows = summary_rows(data)
    bt = data.backtest
    body = [f"<h1>Ceiling report</h1><p class='meta'>{len(rows)} run{'s' if len(rows) != 1 else ''} · store "
            f"<code>{esc(data.store)}</code> · generated {esc(data.generated_at)}{_html_filters(data)}</p>",
            f"<p>{esc(HOW_CEILING)}</p>"]
    if not rows:
        body.append("<p>No runs yet: ingest some with <code>entropy-dash ingest …</code>.</p>")
    else:
        body.append(_html_summary(rows, bt["cutoff"]))
        body.append(_html_backtest(bt))
        runs_by_id = {r["run_id"]: r for r in data.runs}
        for f in data.fit:
            body.append(_html_run(f, runs_by_id.get(f["run_id"]), figures.get(f["run_id"], {})))
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Ceiling report · {esc(data.generated_at)}</title><style>{CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _html_filters(data: ReportData) -> str:
    parts = [f"{esc(k)} {', '.join(esc(v) for v in vals)}" for k, vals in data.filters.items() if vals]
    return (" · selected " + "; ".join(parts)) if parts else ""


def _html_summary(rows: list[SummaryRow], cutoff: float) -> str:
    head = ("<tr><th>run</th><th>id</th><th>state</th><th>ceiling R(H=0)</th><th>95% CI</th><th>best so far</th>"
            f"<th>headroom</th><th>plateau</th><th>collapse</th><th>backtest error ({cutoff:.0%} cutoff)</th>"
            "<th>forecast at the planned end</th></tr>")
    lines = []
    for r in rows:
        status = "" if r.status == "ok" else f" <span class='status-{esc(r.status)}'>({esc(r.status)})</span>"
        lines.append(
            f"<tr><td><a href='#run-{r.run_id}'>{esc(r.run)}</a>{status}</td><td class='num'>{r.run_id}</td>"
            f"<td>{esc(r.progress)}</td>"
            f"<td class='num'>{esc(r.ceiling)}</td><td>{esc(r.interval)}</td><td class='num'>{esc(r.best)}</td>"
            f"<td class='num'>{esc(r.headroom)}</td><td>{esc(r.plateau)}</td><td>{esc(r.collapse)}</td>"
            f"<td class='num'>{esc(r.backtest_error)}</td><td>{esc(r.forecast)}</td></tr>")
    return "<h2>Summary</h2><table class='summary'>" + head + "".join(lines) + "</table>"


def _html_backtest(bt: Mapping[str, Any]) -> str:
    out = [f"<h2>How well the forecasts backtested</h2><p>{esc(HOW_BACKTEST)}</p>"]
    summary = bt.get("summary")
    if summary:
        out.append(f"<p class='sentence'>{esc(summary['sentence'])}</p>")
        out.append(f"<table class='mae'><tr><th>method ({bt['cutoff']:.0%} cutoff)</th><th>MAE</th><th>RMSE</th>"
                   "<th>interval coverage</th><th>runs</th></tr>")
        for m, s in summary["scores"].items():
            mark = " (lowest MAE)" if m == summary["winner"] else ""
            out.append(f"<tr><td>{esc(m)}{mark}</td><td class='num'>{_pt(s['mae'], sign=False)}</td>"
                       f"<td class='num'>{_pt(s['rmse'], sign=False)}</td>"
                       f"<td class='num'>{_f(100 * s['coverage'], 0) if s['coverage'] is not None else '–'}%</td>"
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
                           f"<td class='num'>{_pt(sc['headline']['mae'], sign=False)}</td>"
                           f"<td class='num'>{_f(100 * sc['headline']['coverage'], 0)}%</td>"
                           f"<td>{esc(best)} {_pt(sc[best]['mae'], sign=False)}</td></tr>")
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
        cells = [("a", _f(f["a"], 4) + " ± " + _f(f["a_se"], 4)), ("b", _f(f["b"], 4) + " ± " + _f(f["b_se"], 4)),
                 ("ceiling b − a", _f(f["ceiling"], 4)), ("95% CI", f"{_f(ci[0], 4)} – {_f(ci[1], 4)}"),
                 ("R²", _f(f["r2"], 4)), ("paired points", str(f["n"])), ("best so far", _f(f["best_performance"], 4)),
                 ("headroom", _pt(f["headroom"]))]
        bt = f.get("backtest") or {}
        if f.get("ceiling_raw") is not None and abs(f["ceiling_raw"] - f["ceiling"]) > 1e-12:
            cells.insert(3, ("b − a (unbounded)", _f(f["ceiling_raw"], 4)))
        if bt.get("error") is not None:
            cells += [("backtest predicted", f"{_f(bt['predicted_final'], 4)} [{_f(bt['interval'][0], 4)}, "
                                             f"{_f(bt['interval'][1], 4)}]"),
                      ("backtest observed", _f(bt["observed_final"], 4)), ("backtest error", _pt(bt["error"]))]
        out.append("<table class='numbers'><tr>" + "".join(f"<th>{esc(k)}</th>" for k, _ in cells) + "</tr><tr>"
                   + "".join(f"<td class='num'>{esc(v)}</td>" for _, v in cells) + "</tr></table>")
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
