"""`entropy-dash report`: the HTML opens offline in headless Chromium with every run, its ceiling and its
backtest error; the JSON equals `runs/fit/backtest --json`; the Markdown table is well formed; a run named
like markup stays text in all three formats. On the simulated demo sweep (through MLflow) and on the real
verl console logs."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from db import Store
from entropy_dash.cli import build_parser, main
from entropy_dash.demo_data import log_runs
from entropy_dash.simulator import demo_sweep, simulate
from reports.document import collect_report
from reports.markdown import md
from reports.sections import SECTION_LIMIT, sections_of
from reports.wording import fmt, fmt_pt
from reports.writer import report_folders, write_report, write_scheduled_report

EVIL = "<img src=x onerror=alert(1)>"
PIPE = "pipe|run `x` *y*"


def cli(capsys, *argv: str) -> str:
    code = main([*argv, "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def cli_json(capsys, *argv: str):
    return json.loads(cli(capsys, *argv, "--json"))


def _log_named_run(tracking: str, experiment: str, name: str, a: float, b: float, seed: int) -> None:
    """A run with a user-chosen name whose accuracy follows the law (verl keys, as MLflow stores them)."""
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=name)
    rng = np.random.default_rng(seed)
    now = int(time.time() * 1000)
    h = 0.1 + 1.1 * np.exp(-np.arange(0, 121) / 30.0)
    ms = [Metric("actor/entropy", float(h[t]), now + t, t) for t in range(1, 121)]
    ms += [Metric("val-core/x/acc/mean_at_1", float(b - a * np.exp(h[min(t + 1, 120)]) + rng.normal(0, 0.004)),
                  now + t, t) for t in range(0, 121, 5)]
    client.log_batch(run.info.run_id, metrics=ms)
    client.set_terminated(run.info.run_id)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> str:
    """The demo sweep (7 simulated GRPO runs) plus two runs with markup in their names, via MLflow."""
    root = tmp_path_factory.mktemp("report-demo")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    log_runs([simulate(c) for c in demo_sweep(steps=120)], tracking, "sweep")
    _log_named_run(tracking, "sweep", EVIL, 0.3, 1.2, seed=1)
    _log_named_run(tracking, "other", PIPE, 0.25, 1.1, seed=2)
    db = f"sqlite:///{root / 'store.db'}"
    assert main(["ingest", "mlflow", tracking, "--db", db, "--quiet"]) == 0
    return db


@pytest.fixture(scope="module")
def verl_db(tmp_path_factory, verl_logs) -> str:
    db = f"sqlite:///{tmp_path_factory.mktemp('report-verl') / 'store.db'}"
    assert main(["ingest", "file", str(verl_logs[0].parent), "--db", db, "--quiet"]) == 0
    return db


def _run_section(html: str, run_id: int) -> str:
    start = html.index(f"<section class='run' id='run-{run_id}'>")
    return html[start: html.index("</section>", start)]


def _check_html_has_every_run(html: str, fit: list[dict]) -> None:
    summary = html[html.index("<table class='summary'>"): html.index("</table>", html.index("<table class='summary'>"))]
    for f in fit:
        section = _run_section(html, f["run_id"])
        assert f"<a href='#run-{f['run_id']}'>" in summary
        if f["status"] == "ok":
            assert fmt(f["ceiling"]) in summary and fmt(f["ceiling"], 4) in section
        bt = f["backtest"]
        if bt["error"] is not None:
            assert fmt_pt(bt["error"]) in summary and fmt_pt(bt["error"]) in section
        else:
            assert "Backtest not possible" in section


def _open_offline(browser, html_path: Path, screenshot: Path) -> dict:
    """Open the report from disk with every non-file request blocked; what was attempted and logged."""
    attempted, errors, dialogs = [], [], []
    page = browser.new_page(viewport={"width": 1300, "height": 1500})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    def route(r) -> None:
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            attempted.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(html_path.as_uri(), wait_until="load")
    # every figure of the page drawn (plotly's SVG in each of its divs), not just the first
    page.wait_for_function("() => { const d = [...document.querySelectorAll('.plotly-graph-div')]; "
                           "return d.length > 0 && d.every(x => x.querySelector('.main-svg .scatterlayer .trace')); }",
                           timeout=60_000)
    page.screenshot(path=str(screenshot))
    out = {"attempted": attempted, "errors": errors, "dialogs": dialogs,
           "plots": page.locator(".js-plotly-plot").count(),
           "traces": page.locator(".js-plotly-plot .scatterlayer .trace").count(),
           "imgs": page.locator("img").count(),
           "headings": page.locator("section.run h2").all_inner_texts(),
           "summary_rows": page.locator("table.summary tr").count()}
    page.close()
    return out


# ------------------------------------------------------------------------------------------ demo runs
def test_html_report_has_every_run_ceiling_and_backtest_error(demo_db, tmp_path, capsys):
    out = cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path / "r"))
    # kaleido is installed (test extras): by default the figures are drawn as PNGs too
    assert {line.split(":")[0] for line in out.splitlines()} == {"html", "md", "json", "figures"}
    assert len(list((tmp_path / "r" / "figures").glob("run-*-fit.png"))) == 9
    html = (tmp_path / "r" / "report.html").read_text()
    fit = cli_json(capsys, "fit", "--db", demo_db)
    assert len(fit) == 9 and all(f["status"] == "ok" for f in fit)
    _check_html_has_every_run(html, fit)
    assert "MAE" in html and cli_json(capsys, "backtest", "--db", demo_db)["summary"]["sentence"] in html
    # self-contained: plotly.js inline (no <script src>, no <link>); the CSP forbids any fetch anyway
    assert not re.search(r"<script[^>]+src=|<link", html)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_html_opens_offline_in_chromium(demo_db, tmp_path, browser, capsys):
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path), "--format", "html")
    shot = tmp_path / "report-demo.png"
    seen = _open_offline(browser, tmp_path / "report.html", shot)
    print(f"screenshot: {shot}")
    assert seen["attempted"] == [] and seen["errors"] == [] and seen["dialogs"] == []
    assert seen["plots"] == 2 * 9  # the fit and the backtest forecast of every run
    assert seen["traces"] > 2 * 9 * 3
    assert seen["summary_rows"] == 1 + 9
    assert seen["imgs"] == 0  # the run named <img …> is text, not an image
    assert any(h.startswith(EVIL) for h in seen["headings"])
    assert shot.stat().st_size > 50_000


def test_json_report_equals_the_cli_documents(demo_db, tmp_path, capsys):
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path), "--format", "json")
    doc = json.loads((tmp_path / "report.json").read_text())
    assert set(doc) == {"schema", "generated_at", "store", "filters", "runs", "fit", "backtest", "schema_version"}
    assert doc["schema_version"] == doc["backtest"]["schema_version"] == 1
    assert doc["schema"] == "entropy-dash.report/1"
    assert doc["filters"] == {"experiments": [], "runs": []}
    assert doc["runs"] == cli_json(capsys, "runs", "--db", demo_db)
    assert doc["fit"] == cli_json(capsys, "fit", "--db", demo_db)
    assert doc["backtest"] == cli_json(capsys, "backtest", "--db", demo_db)
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "report.md").exists()


def test_markdown_table_is_well_formed(demo_db, tmp_path, capsys):
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path), "--format", "md")
    text = (tmp_path / "report.md").read_text()
    lines = text.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    cells = [re.split(r"(?<!\\)\|", ln)[1:-1] for ln in table]
    assert len(table) == 2 + 9 and len({len(c) for c in cells}) == 1 and len(cells[0]) == 11
    assert all(re.fullmatch(r"-{3,}:?", c) for c in cells[1])
    fit = {f["run_id"]: f for f in cli_json(capsys, "fit", "--db", demo_db)}
    for row in cells[2:]:
        f = fit[int(row[1].strip())]
        assert row[2].strip() == md(f["progress"]) and row[3].strip() == fmt(f["ceiling"])
        assert row[9].strip() == fmt_pt(f["backtest"]["error"])
    bullets = [ln for ln in lines if ln.startswith("- **")]
    assert len(bullets) == 9
    assert "MAE per method: headline " in text and "Headline error against the cutoff: 20%" in text


def test_markup_in_a_run_name_stays_text_in_every_format(demo_db, tmp_path, capsys):
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path))
    html = (tmp_path / "report.html").read_text()
    md = (tmp_path / "report.md").read_text()
    doc = json.loads((tmp_path / "report.json").read_text())
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "pipe\\|run \\`x\\` \\*y\\*" in md
    assert {f["run"] for f in doc["fit"]} >= {EVIL, PIPE}  # JSON keeps the name exactly


def test_filters_select_runs_and_recompute_the_backtest_summary(demo_db, tmp_path, capsys):
    fit = cli_json(capsys, "fit", "--db", demo_db)
    pipe_id = next(f["run_id"] for f in fit if f["run"] == PIPE)
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path / "a"), "--experiment", "other", "--format", "json")
    doc = json.loads((tmp_path / "a" / "report.json").read_text())
    assert [f["run_id"] for f in doc["fit"]] == [pipe_id] and doc["filters"]["experiments"] == ["other"]
    assert doc["backtest"]["summary"]["n_runs"] == 1
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path / "b"), "--run", "1", "--run", EVIL)
    doc = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [f["run"] for f in doc["fit"]] == [fit[0]["run"], EVIL]
    assert [r["run"] for r in doc["backtest"]["runs"]] == [fit[0]["run"], EVIL]
    # a selection's summary is recomputed over its runs alone
    rows = doc["backtest"]["runs"]
    assert doc["backtest"]["summary"]["n_runs"] == 2
    assert doc["backtest"]["summary"]["scores"]["law"]["mae"] == pytest.approx(
        float(np.mean([abs(r["baselines"]["law"]["error"]) for r in rows])))
    html = (tmp_path / "b" / "report.html").read_text()
    assert html.count("<section class='run'") == 2
    for argv, message in ((["--run", "nope"], "no run 'nope'"), (["--experiment", "nope"], "no runs in experiment"),
                          (["--format", "pdf"], "report format 'pdf' unknown")):
        assert main(["report", "--db", demo_db, "--out", str(tmp_path / "c"), *argv]) == 2
        assert message in capsys.readouterr().err


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path  # a PNG file
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR width, height


def test_png_figures_are_drawn_by_kaleido_with_the_system_chromium(demo_db, tmp_path, capsys):
    """kaleido (in the test extras) drives Debian's Chromium: every figure of the HTML report as a PNG."""
    store = Store.open(demo_db, create=False)
    written = write_report(store, tmp_path / "one", formats=("md",), runs=["1"], png=True)
    assert written["md"].exists()
    pngs = sorted(written["figures"].iterdir())
    assert [p.name for p in pngs] == ["run-1-fit.png", "run-1-forecast.png"]
    for p in pngs:
        width, height = _png_size(p)
        assert width == 1100 and height >= 400 and p.stat().st_size > 20_000  # drawn, not blank
    # the CLI: --png asks for them (two runs: four figures), --no-png never makes them
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path / "cli"), "--format", "json", "--run", "1",
        "--run", "2", "--png")
    assert sorted(p.name for p in (tmp_path / "cli" / "figures").iterdir()) == [
        "run-1-fit.png", "run-1-forecast.png", "run-2-fit.png", "run-2-forecast.png"]
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path / "none"), "--format", "md", "--run", "1",
        "--no-png")
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["report.md"]


def test_png_figures_without_kaleido_are_skipped_and_said_so(demo_db, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "kaleido", None)  # `import kaleido` raises ImportError, as when not installed
    from reports.pngs import kaleido_available

    assert not kaleido_available()
    store = Store.open(demo_db, create=False)
    with caplog.at_level(logging.WARNING):
        written = write_report(store, tmp_path, formats=("md",), runs=["1"], png=True)
    assert written["md"].exists() and "figures" not in written and not (tmp_path / "figures").exists()
    assert "PNG figures skipped: kaleido is not installed (pip install kaleido)" in caplog.text


def test_scheduled_reports_keep_the_last_n_folders(demo_db, tmp_path):
    store = Store.open(demo_db, create=False)
    made = [write_scheduled_report(store, tmp_path, ("json", "md"), keep=2) for _ in range(3)]
    folders = report_folders(tmp_path)
    assert [p.name for p in folders] == [m["json"].parent.name for m in made[1:]]
    assert all(m["md"].exists() for m in made[1:]) and not made[0]["json"].exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written folder left


def test_report_on_an_empty_store(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    Store.open(db)
    cli(capsys, "report", "--db", db, "--out", str(tmp_path / "r"))
    assert "No runs yet" in (tmp_path / "r" / "report.md").read_text()
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["fit"] == [] and doc["backtest"]["summary"] is None


# ------------------------------------------------------------------------------------------ real verl logs
def test_report_on_real_verl_logs(verl_db, tmp_path, browser, capsys):
    cli(capsys, "report", "--db", verl_db, "--out", str(tmp_path))
    fit = cli_json(capsys, "fit", "--db", verl_db)
    assert len(fit) == 3
    html = (tmp_path / "report.html").read_text()
    _check_html_has_every_run(html, fit)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["fit"] == fit and doc["backtest"] == cli_json(capsys, "backtest", "--db", verl_db)
    assert doc["runs"] == cli_json(capsys, "runs", "--db", verl_db)
    shot = tmp_path / "report-verl.png"
    seen = _open_offline(browser, tmp_path / "report.html", shot)
    print(f"screenshot: {shot}")
    assert seen["attempted"] == [] and seen["errors"] == [] and seen["dialogs"] == []
    n_figs = sum((f["status"] == "ok") + (f["backtest"]["error"] is not None) for f in fit)
    assert seen["plots"] == n_figs >= 3 and seen["summary_rows"] == 4
    md_lines = [ln for ln in (tmp_path / "report.md").read_text().splitlines() if ln.startswith("|")]
    assert len(md_lines) == 2 + 3


# ------------------------------------------------------------------------------------------ per-run sections
def _ends(fit: list[dict], n_high: int, n_low: int) -> list[int]:
    """The run ids of the n_high highest and n_low lowest fitted ceilings, highest first (ties by id)."""
    ranked = sorted((f for f in fit if f["status"] == "ok" and f["ceiling"] is not None),
                    key=lambda f: (-f["ceiling"], f["run_id"]))
    return [f["run_id"] for f in ranked[:n_high] + ranked[len(ranked) - n_low:]]


def test_more_runs_than_the_section_limit_get_sections_for_the_highest_and_lowest_ceilings(demo_db, tmp_path,
                                                                                           capsys):
    fit = cli_json(capsys, "fit", "--db", demo_db)
    assert len(fit) == 9 > 4
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path / "r"), "--sections", "4", "--png")
    html = (tmp_path / "r" / "report.html").read_text()
    want = _ends(fit, 2, 2)
    assert [int(m) for m in re.findall(r"<section class='run' id='run-(\d+)'>", html)] == want
    ceilings = {f["run_id"]: f["ceiling"] for f in fit}
    assert min(ceilings[i] for i in want[:2]) >= max(c for i, c in ceilings.items() if i not in want)
    assert max(ceilings[i] for i in want[2:]) <= min(c for i, c in ceilings.items() if i not in want)
    sentence = ("This report covers more than 4 runs, so sections below for 4 of the 9 runs: the 2 highest and the "
                "2 lowest fitted ceilings. The summary table lists all 9 runs; a report of 4 runs or fewer (select "
                "them with --run or --experiment) has a section for each.")
    assert f"<p class='sentence sections'>{sentence}</p>" in html
    # the summary table lists all 9 runs, with a link for the 4 that have a section
    summary = html[html.index("<table class='summary'>"): html.index("</table>", html.index("<table class='summary'>"))]
    assert summary.count("<tr>") == 1 + 9 and sorted(int(m) for m in re.findall(r"href='#run-(\d+)'", summary)) == sorted(want)
    for f in fit:
        assert f"<td class='num'>{f['run_id']}</td>" in summary and fmt(f["ceiling"]) in summary
    # a section is a whole one: the numbers and the figures of those runs, the PNGs of those runs only
    _check_html_has_every_run(html, [f for f in fit if f["run_id"] in want])
    assert html.count("class=\"plotly-graph-div\"") == 2 * 4
    assert sorted(p.name for p in (tmp_path / "r" / "figures").iterdir()) == sorted(
        f"run-{i}-{name}.png" for i in want for name in ("fit", "forecast"))
    # report.md and report.json still hold every run
    md_text = (tmp_path / "r" / "report.md").read_text()
    assert len([ln for ln in md_text.splitlines() if ln.startswith("- **")]) == 9
    assert json.loads((tmp_path / "r" / "report.json").read_text())["fit"] == fit
    # the sentence's promise: a report of 4 runs or fewer has a section for each, and says nothing of a limit
    four = [str(f["run_id"]) for f in fit if f["run_id"] not in want][:4]
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path / "four"), "--sections", "4", "--format", "html",
        "--no-png", *[a for i in four for a in ("--run", i)])
    html = (tmp_path / "four" / "report.html").read_text()
    assert re.findall(r"<section class='run' id='run-(\d+)'>", html) == four and "sentence sections" not in html
    # by default (12) the demo sweep's 9 runs each have a section
    cli(capsys, "report", "--db", demo_db, "--out", str(tmp_path / "all"), "--format", "html", "--no-png")
    html = (tmp_path / "all" / "report.html").read_text()
    assert html.count("<section class='run'") == 9 and "sentence sections" not in html
    assert main(["report", "--db", demo_db, "--out", str(tmp_path / "bad"), "--sections", "-1"]) == 2


def test_section_rule_when_few_runs_have_a_ceiling_and_when_turned_off(demo_db):
    store = Store.open(demo_db, create=False)
    fit = collect_report(store).fit
    assert build_parser().parse_args(["report", "--out", "x"]).sections == SECTION_LIMIT == 12
    assert sections_of(fit).run_ids == tuple(f["run_id"] for f in fit)
    assert sections_of(fit).sentence() is None
    # the real fit rows, two of them with the law failed: 7 have a ceiling, more than a limit of 6
    failed = [{**f, "status": "failed", "ceiling": None} if i < 2 else f for i, f in enumerate(fit)]
    six = sections_of(failed, 6)
    assert list(six.run_ids) == _ends(failed, 3, 3) and not set(six.run_ids) & {fit[0]["run_id"], fit[1]["run_id"]}
    # a limit of 7 or 8: every run with a ceiling, said so
    seven = sections_of(failed, 8)
    assert list(seven.run_ids) == _ends(failed, 7, 0) and seven.sentence() == (
        "This report covers more than 8 runs, so sections below for the 7 of the 9 runs with a fitted ceiling. The "
        "summary table lists all 9 runs; a report of 8 runs or fewer (select them with --run or --experiment) has a "
        "section for each.")
    one = sections_of(fit, 1)
    assert list(one.run_ids) == _ends(fit, 1, 0) and one.sentence().startswith(
        "This report covers more than 1 run, so sections below for 1 of the 9 runs: the highest fitted ceiling. "
        "The summary table lists all 9 runs; a report of 1 run or fewer")
    off = sections_of(fit, 0)
    assert off.run_ids == () and off.sentence() == ("Per-run sections are turned off (--sections 0): the summary "
                                                     "table lists the 9 runs.")
    none = sections_of([{**f, "status": "failed", "ceiling": None} for f in fit], 3)
    assert none.run_ids == () and none.sentence().startswith(
        "This report covers more than 3 runs, so no run has a section: none of the 9 runs has a fitted ceiling. ")


def test_sections_on_real_verl_logs(verl_db, tmp_path):
    """Three real verl runs, a limit of 2: the run with the highest ceiling and the one with the lowest."""
    store = Store.open(verl_db, create=False)
    written = write_report(store, tmp_path, formats=("html", "md"), png=False, sections=2)
    html = written["html"].read_text()
    fit = collect_report(store).fit
    assert len(fit) == 3 and all(f["status"] == "ok" for f in fit)
    want = _ends(fit, 1, 1)
    assert [int(m) for m in re.findall(r"<section class='run' id='run-(\d+)'>", html)] == want
    _check_html_has_every_run(html, [f for f in fit if f["run_id"] in want])
    assert ("so sections below for 2 of the 3 runs: the highest and the lowest fitted ceilings. The summary table "
            "lists all 3 runs;") in html
    assert len([ln for ln in written["md"].read_text().splitlines() if ln.startswith("| ")]) == 1 + 3
