"""Ceiling-prediction reports: one self-contained HTML file, a Markdown summary and a JSON document.

Every number comes from ``analysis.payloads`` — the documents ``runs --json``, ``fit --json`` and
``backtest --json`` print — so a report can never disagree with the command line. The HTML inlines
plotly.js from the installed plotly package (it opens offline, and its Content-Security-Policy forbids any
network request); every string that came from a user or a log (run names, keys, messages) is escaped.

``write_report`` is the public entry point (the CLI's ``report`` command and the scheduler call it);
``write_scheduled_report`` writes into a new time-stamped folder and keeps the last N. One module per format:
``reports.document`` (what a report shows; ``report.json``), ``reports.markdown``, ``reports.html_page``,
``reports.pngs``; ``reports.wording`` holds what the Markdown and the HTML say alike.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from db import Store
from reports.document import ReportData, collect_report
from reports.errors import ReportError
from reports.html_page import render_html
from reports.markdown import render_markdown
from reports.pngs import kaleido_available, write_pngs
from reports.sections import SECTION_LIMIT, sections_of

__all__ = ["FORMATS", "collect_report", "report_folders", "write_report", "write_scheduled_report"]

FORMATS = ("html", "md", "json")
FILENAMES = {"html": "report.html", "md": "report.md", "json": "report.json"}
STAMP = "%Y%m%dT%H%M%S%fZ"  # the folder names of write_scheduled_report (UTC, to the microsecond)


def write_report(store: Store, out_dir: str | Path, formats: Iterable[str] = FORMATS,
                 experiments: Sequence[str] | None = None, runs: Sequence[str] | None = None, *,
                 png: bool | None = None, sections: int = SECTION_LIMIT) -> dict[str, Path]:
    """Write ``report.html`` / ``report.md`` / ``report.json`` into ``out_dir`` (created if missing).

    Returns format → file written (plus ``"figures"`` → the PNG folder when PNGs were made). ``png``: True
    asks for PNG figures (kaleido + Chromium), False never makes them, None makes them when kaleido can be
    imported. Missing PNG support is logged, never an error. ``sections``: the most runs drawn in sections
    of their own (HTML and PNGs; which ones above that: ``reports.sections``); the tables list every run.
    Each file is written to a temporary name and renamed, so a reader never sees half a report.
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
        shown = sections_of(data.fit, sections)
        figures = build_figures(store, data, shown.run_ids)
        if "html" in formats:
            written["html"] = _write(out / FILENAMES["html"], render_html(data, figures, shown))
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


def build_figures(store: Store, data: ReportData, run_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Per run id of ``run_ids``: ``fit`` (R vs H with the law) and ``forecast`` (the live forecast of a run
    in progress, or the backtest of a finished one at the report's cutoff) plotly figures, where the run has
    them. Only these runs' series are read."""
    from analysis.headline import HeadlineSpan
    from analysis.pipeline import run_series
    from reports.figures import fit_figure, forecast_figure

    backtests = {r["run_id"]: r for r in data.backtest.get("runs") or []}
    live = {f["run_id"]: f["forecast"] for f in data.fit if f.get("forecast")}
    figures: dict[int, dict[str, Any]] = {}
    for run_id in run_ids:
        res = data.results[run_id]
        if res.status == "skipped" or not res.entropy_key or not res.performance_key:
            continue
        h, r = run_series(store, res)
        figs: dict[str, Any] = {}
        if res.law is not None:
            figs["fit"] = fit_figure(h, r, res)
        if res.range and run_id in live:
            figs["forecast"] = forecast_figure(h, r, res, live[run_id], HeadlineSpan.of_live(live[run_id]))
        elif res.range and run_id in backtests:
            row = backtests[run_id]
            figs["forecast"] = forecast_figure(h, r, res, row, HeadlineSpan.of_backtest(row))
        if figs:
            figures[run_id] = figs
    return figures
