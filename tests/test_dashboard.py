"""The dashboard: every page runs without exception on real stored data (AppTest) and shows the stored
numbers; bad states say what is missing and which command fixes it; the Collapse and Ceiling pages draw
their charts in headless Chromium against `streamlit run`; a run named with markup shows literally."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis.payloads import backtest_payload, fit_payload
from analysis.pipeline import current_results, refresh_analyses
from analysis.results import Collapse, RunAnalysis
from dashboard.text import md_text, step_list
from db import Store
from db.errors import StoreReadOnly
from db.records import RunData, RunInfo, Series
from entropy_dash.demo_data import log_known_law, log_runs
from entropy_dash.simulator import simulate, sized
from ingest.files import FileSource
from ingest.keys import resolve_roles
from ingest.mlflow_source import MlflowSource
from ingest.sync import sync_source
from tests.service_checks import wait_drawn

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PAGES = ("runs", "collapse", "health", "groups", "ceiling", "compare", "backtest", "sources")
MARKUP = "<img src=x onerror=alert(1)>"
ENTROPY, VAL = "actor/entropy", "val-core/gsm8k-sim/acc/mean@1"


def _write(store: Store, source_id: int, ext: str, name: str, series: dict[str, tuple],
           status: str | None = None) -> None:
    data = RunData(RunInfo(ext, name, project="bad-cases", model="Qwen2.5-1.5B", algorithm="grpo",
                           tags={"intervention": "none", "note": "<b>bold?</b>"}, status=status),
                   tuple(Series.build(k, s, v, 1.7e9 + 30.0 * np.asarray(s, float)) for k, (s, v) in series.items()))
    store.write_run(source_id, data, resolve_roles(data.all_keys()))


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory) -> str:
    """Three simulated GRPO runs ingested through MLflow, plus (written directly) a run named with markup,
    a run without entropy and a run whose law fit fails."""
    root = tmp_path_factory.mktemp("dash")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    sims = [simulate(sized(size, seed=seed, steps=80, val_samples=4, **extra))
            for size, seed, extra in (("0.5B", 1, {}), ("1.5B", 2, {}), ("1.5B", 6, {"clip_cov": 0.02}))]
    log_runs(sims, tracking, "dash")
    url = f"sqlite:///{root / 'store.db'}"
    store = Store.open(url)
    sync_source(store, MlflowSource(tracking, {"experiments": ["dash"]}))
    bad = store.source_id("file", str(root / "gone"))  # a source whose path no longer exists
    hs, hv = sims[2].entropy
    vs, vv = sims[2].validation
    # the source says the markup run finished: its Ceiling page draws the backtest's figure too
    _write(store, bad, "markup", MARKUP, {ENTROPY: (hs, hv), VAL: (vs, vv)}, status="finished")
    _write(store, bad, "noent", "no-entropy-run", {VAL: (vs, vv), "critic/score/mean": sims[0].score})
    _write(store, bad, "nofit", "two-evals-run", {ENTROPY: (hs, hv), VAL: (vs[:2], vv[:2])})
    refresh_analyses(store)
    return url


@pytest.fixture(scope="module")
def law_store(tmp_path_factory) -> str:
    """One known-law run (a = 0.3, b = 1.2: ceiling 0.9) ingested through MLflow."""
    root = tmp_path_factory.mktemp("law")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    log_known_law(tracking, "dash", a=0.3, b=1.2, steps=120, noise=0.003, seed=1)
    url = f"sqlite:///{root / 'store.db'}"
    store = Store.open(url)
    sync_source(store, MlflowSource(tracking, {"experiments": ["dash"]}))
    refresh_analyses(store)
    return url


@pytest.fixture(scope="module")
def many_store(tmp_path_factory) -> str:
    """20 analysed runs of 1,200 steps (entropy every step, accuracy every 10): more runs than the Collapse
    page draws bands for; the entropy series have a stored level (32-step buckets)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('many') / 'store.db'}"
    store = Store.open(url)
    sid = store.source_id("file", "/many")
    rng = np.random.default_rng(5)
    steps = np.arange(1, 1_201)
    for i in range(20):
        h = 0.05 + 1.1 * np.exp(-steps / rng.uniform(200, 500)) * (1 + 0.05 * rng.standard_normal(steps.size))
        rs = steps[::10]
        r = np.clip(1.0 - 0.3 * np.exp(h[rs - 1]) + 0.01 * rng.standard_normal(rs.size), 0, 1)
        data = RunData(RunInfo(f"m{i}", f"many-{i:02d}", project="many", model=("7B", "1.5B")[i % 2],
                               algorithm="grpo"),
                       (Series.build(ENTROPY, steps, h, 1.7e9 + 30.0 * steps), Series.build(VAL, rs, r)))
        store.write_run(sid, data, resolve_roles(data.all_keys()))
    refresh_analyses(store)
    return url


def _spec_points(spec: dict) -> int:
    """Points a plotly figure spec (as Streamlit sends it) draws: every x value of every trace."""
    import base64

    total = 0
    for t in spec["data"]:
        x = t.get("x")
        if isinstance(x, dict):
            total += len(base64.b64decode(x["bdata"])) // np.dtype(x["dtype"]).itemsize
        elif x is not None:
            total += len(x)
    return total


def _app(monkeypatch, url: str, query: dict[str, str] | None = None) -> AppTest:
    monkeypatch.setenv("ENTROPY_DASH_DB", url)
    at = AppTest.from_file(APP, default_timeout=90)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def _results(url: str) -> dict[int, RunAnalysis]:
    return {r.run_id: r for r in current_results(Store.open(url, create=False))}


def _fits(url: str) -> dict[int, dict]:
    store = Store.open(url, create=False)
    return {r["run_id"]: r for r in fit_payload(store, current_results(store))}


def _close(a, b) -> bool:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None or (isinstance(a, float) and math.isnan(a))
    return a == pytest.approx(b)


# ------------------------------------------------------------------------------------------ AppTest
def test_runs_page_shows_every_stored_number(monkeypatch, sim_store):
    at = _app(monkeypatch, sim_store)
    df = at.dataframe[0].value.set_index("id")
    results, fits = _results(sim_store), _fits(sim_store)
    assert set(df.index) == set(results) and len(results) == 6
    with_law = {r.run for r in results.values() if r.law is not None}
    assert len(with_law) == 4 and not with_law & {"no-entropy-run", "two-evals-run"}  # the rows below check a law
    for run_id, res in results.items():
        row = df.loc[run_id]
        law = res.law
        assert row["run"] == res.run
        for col, val in (("a", law and law.a), ("b", law and law.b), ("ceiling", law and law.ceiling),
                         ("R²", law and law.r2), ("headroom", res.headroom),
                         ("R best", res.best_performance), ("R last", res.last_performance)):
            assert _close(row[col], val), (run_id, col)
        assert _close(row["backtest error"], fits[run_id]["backtest"].get("error"))
        assert row["state"] == res.progress
        if law:
            assert row["± (95% CI)"] == pytest.approx((law.ceiling_hi - law.ceiling_lo) / 2)
            assert row["collapse"].split(" ")[0] == res.collapse.verdict
    by_name = df.set_index("run")
    assert by_name.loc["no-entropy-run", "status"].startswith("skipped: no entropy")
    assert by_name.loc["two-evals-run", "status"].startswith("degenerate: too few evaluations")
    assert by_name.loc[MARKUP, "tags"] == "intervention=none, note=<b>bold?</b>"  # plain text in the table
    expander_text = " ".join(w.value for w in at.warning)
    assert md_text("no-entropy-run") in expander_text and "entropy-dash ingest" in expander_text
    assert md_text(MARKUP) in expander_text or md_text("two-evals-run") in expander_text


def test_runs_filters_and_selection_carry_over_in_session_and_url(monkeypatch, sim_store):
    at = _app(monkeypatch, sim_store)
    at.text_input(key="f_search").input("IMG SRC").run()
    assert list(at.dataframe[0].value["run"]) == [MARKUP]
    at.text_input(key="f_search").input("").run()
    at.multiselect(key="f_algorithm").select("grpo").run()
    assert len(at.dataframe[0].value) == 6
    at.multiselect(key="_pick_runs").set_value([2, 3]).run()
    assert at.query_params["runs"] == ["2,3"] or at.query_params["runs"] == "2,3"
    _page(at, "collapse")
    assert at.multiselect(key="_pick_collapse").value == [2, 3]
    _page(at, "ceiling")
    assert at.selectbox(key="_one_ceiling").value == 2
    _page(at, "compare")
    assert at.multiselect(key="_pick_compare").value == [2, 3]
    # a URL alone reproduces the view
    at2 = _app(monkeypatch, sim_store, {"runs": "3,1"})
    at2 = _page(at2, "collapse")
    assert at2.multiselect(key="_pick_collapse").value == [3, 1]


def test_collapse_page_shows_stored_verdicts_and_warns_about_missing_entropy(monkeypatch, sim_store):
    results = _results(sim_store)
    ids = sorted(results)
    at = _app(monkeypatch, sim_store, {"runs": ",".join(map(str, ids))})
    _page(at, "collapse")
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value.set_index("id")
    judged = {res.run for res in results.values() if isinstance(res.collapse, Collapse) and res.collapse.verdict}
    assert len(judged) == 5 and "no-entropy-run" not in judged  # every run with an entropy curve has a verdict
    for run_id, res in results.items():
        coll = res.collapse
        if isinstance(coll, Collapse) and coll.verdict:
            assert table.loc[run_id, "verdict"].split(" ")[0] == coll.verdict
            assert _close(table.loc[run_id, "projected floor step"], coll.projected_floor_step)
    warnings = " ".join(w.value for w in at.warning)
    assert md_text("no-entropy-run") in warnings and "no entropy curve" in warnings and "entropy-dash ingest" in warnings
    at.slider(key="c_smooth").set_value(0.9).run()
    at.toggle(key="c_log").set_value(True).run()
    at.radio(key="c_x").set_value("wall time").run()
    at.selectbox(key="c_group").set_value("model").run()
    assert not at.exception, at.exception


def test_collapse_page_with_many_runs_keeps_the_budget_and_draws_one_marker_per_run(monkeypatch, many_store):
    import json

    from dashboard.collapse_figure import DETAIL_RUNS
    from plots.downsample import CHART_BUDGET, trace_budget

    results = _results(many_store)
    ids = sorted(results)
    assert len(ids) == 20 > DETAIL_RUNS
    at = _page(_app(monkeypatch, many_store, {"runs": ",".join(map(str, ids))}), "collapse")
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    drawn = _spec_points(spec)
    caption = " ".join(c.value for c in at.caption)
    assert f"{drawn:,} points drawn (budget {CHART_BUDGET:,} per chart" in caption
    assert "each run has one marker on its entropy curve" in caption and "Shaded" not in caption
    (summary,) = [t for t in spec["data"] if t.get("name") == "stage / collapse (one per run)"]
    assert len(summary["text"]) == 20 and not spec["layout"].get("shapes")
    table = at.dataframe[0].value.set_index("id")
    n_out = trace_budget(40, 20)
    # 2,000 points a line: a level of 1,200 steps has fewer rows, so every point is read (and said so)
    assert n_out == 2_000 and "0 of 40 curves read from the stored downsampled levels" in caption
    assert all(v == "1,200 of 1,200 points" for v in table["H drawn of read"])
    at.slider(key="c_smooth").set_value(0.9).run()  # smoothing: every stored point, EMA first
    caption = " ".join(c.value for c in at.caption)
    assert "every stored point read" in caption and _spec_points(json.loads(at.get("plotly_chart")[0].proto.spec)) \
        <= CHART_BUDGET
    assert table["H drawn of read"].map(lambda v: int(v.split(" of ")[0].replace(",", ""))).max() <= n_out
    assert any("Groups page" in str(getattr(e, "proto", "")) for e in at.main)


def test_groups_page_buckets_follow_the_data(monkeypatch, many_store):
    at = _page(_app(monkeypatch, many_store), "groups")
    at.selectbox(key="g_by").set_value("model").run()
    caption = " ".join(c.value for c in at.caption)
    # 1,200 steps: 400 buckets of 3 steps for the entropy logged every step, one per evaluation for the
    # accuracy logged every 10; a stored level (32 steps) is coarser than that, so every point is read
    assert "20 runs in 2 groups" in caption and "buckets of 3 steps (H) and 10 steps (R)" in caption
    assert "0 of 40 series were read from a stored downsampled level" in caption
    table = at.dataframe[0].value.set_index("group")
    assert table["runs"].to_dict() == {"1.5B": 10, "7B": 10}


@pytest.mark.postgres
def test_collapse_and_groups_pages_read_levels_as_a_select_only_role(monkeypatch, postgres_server, postgres_url):
    """As the deployment's dashboard does: a role that may only SELECT. The pages read the stored levels and
    never write (a write would fail with 'permission denied')."""
    import psycopg
    from sqlalchemy.engine import make_url

    store = Store.open(postgres_url)
    sid = store.source_id("file", "/ro")
    steps = np.arange(1, 20_001)
    rng = np.random.default_rng(11)
    for i in range(3):
        h = 0.05 + 1.1 * np.exp(-steps / (3_000 + 500 * i)) * (1 + 0.05 * rng.standard_normal(steps.size))
        rs = steps[::10]
        data = RunData(RunInfo(f"ro{i}", f"ro-{i}", project="ro", model="7B"),
                       (Series.build(ENTROPY, steps, h), Series.build(VAL, rs, 1.0 - 0.3 * np.exp(h[rs - 1]))))
        store.write_run(sid, data, resolve_roles(data.all_keys()))
    refresh_analyses(store)
    db = make_url(postgres_url).database
    role = f"ro_{db[-12:]}".lower()
    with psycopg.connect(f"host=127.0.0.1 port={postgres_server.port} user=postgres dbname={db}",
                         autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    reader = postgres_server.url(db, role)
    at = _page(_app(monkeypatch, reader, {"runs": "1,2,3"}), "collapse")
    caption = " ".join(c.value for c in at.caption)
    assert "3 of 6 curves read from the stored downsampled levels" in caption  # entropy: level 1 (2,500 rows)
    assert all(v.endswith("in level 1") for v in at.dataframe[0].value["H drawn of read"])
    _page(at, "groups")
    # 20,000 steps: buckets of 64 steps (50 a bucket fill 400), read from level 1 (32 steps)
    caption = " ".join(c.value for c in at.caption)
    assert "buckets of 64 steps" in caption and "6 of 6 series were read from a stored downsampled level" in caption
    with pytest.raises(StoreReadOnly, match="cannot write"):  # the role really is read-only
        Store.open(reader, create=False).rebuild_lod()


def test_groups_page_numbers_equal_the_stored_results_and_points(monkeypatch, sim_store):
    from dashboard.grouping import entropy_spent, group_of

    results = _results(sim_store)
    store = Store.open(sim_store, create=False)
    info = store.runs_frame().set_index("id", drop=False)
    at = _page(_app(monkeypatch, sim_store), "groups")
    at.selectbox(key="g_by").set_value("model").run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 2  # the bands and the runs as points
    table = at.dataframe[0].value.set_index("group")
    groups = {i: group_of(info.loc[i].to_dict(), "model") for i in results}
    assert sorted(table.index) == sorted(set(groups.values()))
    for g, row in table.iterrows():
        ids = [i for i in results if groups[i] == g]
        ceilings = [results[i].law.ceiling for i in ids if results[i].law is not None]
        spent = []
        for i in ids:
            key = results[i].entropy_key
            pts = store.points(i, key) if key else np.empty((0, 3))
            pts = pts[np.isfinite(pts[:, 1])]
            if len(pts):
                spent.append(entropy_spent(pts[0, 1], pts[-1, 1]))
        assert row["runs"] == len(ids) and row["with a ceiling"] == len(ceilings)
        assert _close(row["median ceiling"], float(np.median(ceilings)) if ceilings else None), g
        assert _close(row["median entropy spent"], float(np.median(spent)) if spent else None), g
    odd = at.dataframe[1].value.set_index("run")  # runs without a ceiling, with their status
    assert odd.loc["two-evals-run", "status"] == "degenerate" and odd.loc["no-entropy-run", "status"] == "skipped"
    at.selectbox(key="g_by").set_value("tag: intervention").run()
    assert not at.exception, at.exception
    by_tag = at.dataframe[0].value.set_index("group")["runs"].to_dict()
    want = pd.Series([group_of(info.loc[i].to_dict(), "tag: intervention") for i in results]).value_counts()
    assert by_tag == want.to_dict() and sum(by_tag.values()) == len(results)


def test_ceiling_page_equals_stored_fit_and_shows_the_backtest_at_each_cutoff(monkeypatch, sim_store):
    results, fits = _results(sim_store), _fits(sim_store)
    at = _app(monkeypatch, sim_store, {"run": "2"})
    _page(at, "ceiling")
    res, bt = results[2], fits[2]["backtest"]
    law = res.law
    m = {x.label: x.value for x in at.metric}
    assert m["ceiling R(H=0)"] == f"{law.ceiling:.4f}"
    assert m["95% CI"] == f"{law.ceiling_lo:.3f}–{law.ceiling_hi:.3f}"
    assert m["backtest error (30%)"] == f"{bt['error']:+.4f}"
    assert m["predicted final"] == f"{bt['predicted_final']:.4f}"
    assert m["observed final"] == f"{bt['observed_final']:.4f}"
    assert len(at.get("plotly_chart")) == 3
    doc = backtest_payload(Store.open(sim_store, create=False), list(results.values()))
    at.select_slider(key="cutoff").set_value(0.5).run()
    assert not at.exception, at.exception
    row = next(r for d in doc["cutoffs"] if d["cutoff"] == 0.5 for r in d["runs"] if r["run_id"] == 2)
    m = {x.label: x.value for x in at.metric}
    assert m["error"] == f"{row['error']:+.4f}" and m["predicted final"] == f"{row['predicted_final']:.4f}"
    # the replay's summary over every finished run (the page reads it as stored, not from every run's row)
    summary = next(d["summary"]["sentence"] for d in doc["cutoffs"] if d["cutoff"] == 0.5)
    assert any(md_text(summary) in c.value for c in at.caption)
    table = at.dataframe[0].value.set_index("method")
    for name, b in row["baselines"].items():
        assert table.loc[name, "error"] == pytest.approx(b["error"])
        assert table.loc[name, "weight"] == pytest.approx(row["weights"].get(name, 0.0))
    assert sum(row["weights"].values()) == pytest.approx(1.0)


def test_backtest_page_draws_mae_and_coverage_against_the_fraction_done(monkeypatch, sim_store):
    """The replay as stored: MAE and coverage per method and for the headline at every grid fraction."""
    import json

    from models.backtest import GRID

    results = _results(sim_store)
    doc = backtest_payload(Store.open(sim_store, create=False), list(results.values()), list(GRID))
    at = _app(monkeypatch, sim_store)
    _page(at, "backtest")
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 2
    for spec, what in zip(charts, ("mae", "coverage"), strict=True):
        traces = {t["name"]: t for t in spec["data"]}
        assert "headline" in traces and "law" in traces
        for name in ("headline", "law"):
            want = [(100 * d["cutoff"], 100 * d["summary"]["scores"][name][what]) for d in doc["cutoffs"]
                    if d["summary"] and name in d["summary"]["scores"]]
            assert len(traces[name]["x"]) == len(want) >= 10
            assert traces[name]["x"] == pytest.approx([x for x, _ in want])
            assert traces[name]["y"] == pytest.approx([y for _, y in want])


def test_backtest_page_gives_each_reason_once_with_its_runs(monkeypatch, many_store, sim_store):
    """20 unfinished runs: one line for their one reason (how many, the first five named), not 20 lines."""
    at = _page(_app(monkeypatch, many_store), "backtest")
    from dashboard.text import md_text

    (line,) = [c.value for c in at.caption]
    names = md_text("many-00, many-01, many-02, many-03, many-04")
    assert line.startswith(f"20 run(s) ({names} and 15 more): {md_text('not finished')}")
    # with finished runs: the runs left out are grouped the same way, every one counted once
    doc = backtest_payload(Store.open(sim_store, create=False), list(_results(sim_store).values()))
    at = _page(_app(monkeypatch, sim_store), "backtest")
    counted = [int(c.value.split(" run(s)")[0]) for c in at.caption if " run(s) (" in c.value]
    assert sum(counted) == len(doc["skipped"]) > 0
    assert len(counted) == len({s["reason"] for s in doc["skipped"]})


def test_ceiling_page_on_the_known_law(monkeypatch, law_store):
    at = _page(_app(monkeypatch, law_store), "ceiling")
    (res,) = _results(law_store).values()
    law = res.law
    m = {x.label: x.value for x in at.metric}
    assert m["ceiling R(H=0)"] == f"{law.ceiling:.4f}"
    assert law.ceiling_lo < 0.9 < law.ceiling_hi


def test_compare_page_coefficients_and_lift_equal_stored_fits(monkeypatch, sim_store):
    results = _results(sim_store)
    fitted = sorted(i for i, r in results.items() if r.law is not None)
    at = _app(monkeypatch, sim_store, {"runs": ",".join(map(str, fitted))})
    _page(at, "compare")
    coef = at.dataframe[0].value.set_index("id")
    for i in fitted:
        law = results[i].law
        assert coef.loc[i, "a"] == pytest.approx(law.a) and coef.loc[i, "ceiling"] == pytest.approx(law.ceiling)
    assert coef.loc[1, "size (B)"] == 0.5 and coef.loc[2, "size (B)"] == 1.5
    at.selectbox(key="baseline").set_value(2).run()
    lift = at.dataframe[1].value.set_index("id")
    base = results[2].law.ceiling
    for i in fitted:
        assert lift.loc[i, "lift"] == pytest.approx(results[i].law.ceiling - base)
    assert len(at.get("plotly_chart")) == 4  # coefficients, a/b vs size, laws, lift


def _sync_now(at: AppTest, source_id: int) -> AppTest:
    """Click "sync now" and poll the page (as its fragment does every second) until the job has ended; the
    page answers while the ingest runs in the background."""
    at.selectbox(key="sync_source").set_value(source_id).run()
    at.button(key="sync_now").click().run()
    assert not at.exception, at.exception
    deadline, polls = time.monotonic() + 300, 0
    while not (at.success or at.error):
        assert time.monotonic() < deadline, "the sync did not end"
        assert any("running for" in i.value for i in at.info)  # progress, while the page stays usable
        assert polls == 0 or at.button(key="sync_now").disabled  # one job per source at a time
        time.sleep(0.5)
        at.run()
        polls += 1
        assert not at.exception, at.exception
    assert polls >= 1  # the click returned before the ingest ended
    return at


def test_sources_page_and_sync_now_in_the_background(monkeypatch, sim_store):
    at = _page(_app(monkeypatch, sim_store), "sources")
    table = at.dataframe[0].value.set_index("kind")
    assert table.loc["mlflow", "runs"] == 3 and table.loc["file", "runs"] == 3
    assert table.loc["mlflow", "status"] == "ok" and table.loc["file", "status"] == "never synced"
    at = _sync_now(at, 1)  # the MLflow source: nothing new, exit 0
    assert "sync finished" in at.success[0].value
    assert at.code[0].value.startswith("entropy-dash ingest mlflow sqlite:///") and "--db" not in at.code[0].value
    at = _sync_now(at, 2)  # its folder is gone: the CLI says so, exit ≠ 0
    assert "sync failed" in at.error[0].value
    assert "gone" in at.code[-1].value
    log = at.dataframe[1].value
    assert (log["status"] == "ok").sum() >= 2


def test_sync_now_is_hidden_on_a_read_only_store(monkeypatch, sim_store):
    url = f"sqlite:///file:{sim_store.removeprefix('sqlite:///')}?mode=ro&uri=true"
    assert not Store.open(url, create=False).is_writable()
    assert Store.open(sim_store, create=False).is_writable()
    at = _page(_app(monkeypatch, url), "sources")
    assert len(at.dataframe[0].value) == 2  # the sources are shown …
    assert not [b for b in at.button if b.key == "sync_now"]  # … but not the button
    assert any("read-only" in i.value and "entropy-dash schedule" in i.value for i in at.info)


def test_every_page_says_what_is_missing_on_an_absent_or_empty_store(monkeypatch, tmp_path):
    absent = f"sqlite:///{tmp_path / 'absent.db'}"
    at = _app(monkeypatch, absent)
    for page in PAGES:
        _page(at, page)
        assert "entropy-dash init" in at.warning[0].value, page
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    Store.open(empty)
    at = _app(monkeypatch, empty)
    for page in PAGES:
        _page(at, page)
        assert "entropy-dash ingest" in at.info[0].value and "entropy-dash demo" in at.info[0].value, page


def test_pages_on_runs_without_a_fit(monkeypatch, tmp_path, sim_store):
    """Only unfit runs (no entropy; too few evaluations): the pages say why and how to fix it."""
    url = f"sqlite:///{tmp_path / 'unfit.db'}"
    store = Store.open(url)
    sid = store.source_id("file", "/nowhere")
    steps = np.arange(1, 60)
    _write(store, sid, "a", "no-entropy-run", {VAL: (steps[::5], np.linspace(0.2, 0.6, 12))})
    _write(store, sid, "b", "two-evals-run", {ENTROPY: (steps, np.linspace(1.0, 0.2, 59)),
                                              VAL: (np.array([0, 5]), np.array([0.2, 0.3]))})
    at = _app(monkeypatch, url)  # ingested but not analysed yet: the pages analyse in memory, writing nothing
    assert len(at.dataframe[0].value) == 2
    assert Store.open(url, create=False).analyses_frame().empty
    refresh_analyses(store)
    at = _app(monkeypatch, url)
    assert len(at.dataframe[0].value) == 2
    at = _page(_app(monkeypatch, url, {"runs": "1,2"}), "collapse")
    assert any("no entropy curve" in w.value for w in at.warning)
    _page(at, "compare")
    assert "No run has a fitted law" in at.info[0].value
    text = " ".join(w.value for w in at.warning)
    assert md_text("no-entropy-run") in text and "entropy_key" in text
    assert md_text("two-evals-run") in text and "too few evaluations" in text
    _page(at, "ceiling")  # the run with entropy is shown with its status instead of numbers
    text = " ".join(w.value for w in at.warning)
    assert "too few evaluations" in text and not at.metric


def test_pages_on_real_verl_logs(monkeypatch, tmp_path, verl_logs):
    url = f"sqlite:///{tmp_path / 'verl.db'}"
    store = Store.open(url)
    sync_source(store, FileSource(str(verl_logs[0].parent)))
    refresh_analyses(store)
    results = _results(url)
    assert len(results) == len(verl_logs)
    at = _app(monkeypatch, url, {"runs": ",".join(map(str, results))})
    df = at.dataframe[0].value.set_index("id")
    for i, res in results.items():
        assert df.loc[i, "ceiling"] == pytest.approx(res.law.ceiling)
    for page in PAGES[1:]:
        _page(at, page)
    at = _page(at, "ceiling")
    first = results[min(results)].law
    assert {x.label: x.value for x in at.metric}["ceiling R(H=0)"] == f"{first.ceiling:.4f}"


# ------------------------------------------------------------------------------------------ Chromium
def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1500, "height": 2600})
    page.on("dialog", lambda d: pytest.fail(f"a dialog fired: {d.message!r} — markup in a name was executed"))
    page.goto(url, wait_until="networkidle")
    return page


def _wait_charts(page, title: str, n: int, texts: tuple[str, ...] = ()) -> None:
    """The page has drawn (its script run ended, ``texts`` shown, every chart drawn) with ``n`` charts: the
    charts' containers may come after the texts, so their count is waited for too, then their drawing."""
    wait_drawn(page, title, texts)
    page.wait_for_function("n => document.querySelectorAll('[data-testid=\"stPlotlyChart\"]').length >= n",
                           arg=n, timeout=120_000)
    wait_drawn(page, title, texts)
    assert page.locator('[data-testid="stPlotlyChart"]').count() == n


@pytest.mark.browser
def test_collapse_and_ceiling_pages_draw_in_chromium(sim_store, streamlit_app, browser, tmp_path):
    app = streamlit_app(sim_store)
    page = _open(browser, f"{app.url}/collapse?runs=1,2,3")
    names = {i: r.run for i, r in _results(sim_store).items()}
    _wait_charts(page, "Collapse", 1, tuple(f"{names[i]} (#{i})" for i in (1, 2, 3)))
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 6  # H and R of 3 runs (+ markers)
    assert "policy entropy H" in page.inner_text("body")
    page.screenshot(path=str(tmp_path / "collapse.png"))
    page.goto(f"{app.url}/ceiling?run=2", wait_until="networkidle")
    law = _results(sim_store)[2].law
    _wait_charts(page, "Ceiling", 3, (f"{law.ceiling:.4f}",))
    assert page.locator('[data-testid="stException"]').count() == 0
    text = page.inner_text("body")
    assert "ceiling R(H=0)" in text and f"{law.ceiling:.4f}" in text and "backtest error (30%)" in text
    page.screenshot(path=str(tmp_path / "ceiling.png"))
    assert (tmp_path / "collapse.png").stat().st_size > 20_000 and (tmp_path / "ceiling.png").stat().st_size > 20_000
    page.close()


@pytest.mark.browser
def test_groups_page_draws_in_chromium(sim_store, streamlit_app, browser, tmp_path):
    app = streamlit_app(sim_store)
    page = _open(browser, f"{app.url}/groups")
    _wait_charts(page, "Groups", 2, ("ceiling against entropy spent", "6 runs in "))
    assert page.locator('[data-testid="stException"]').count() == 0
    text = page.inner_text("body")
    assert "Median and interquartile range per group" in text and "ceiling against entropy spent" in text
    assert page.locator(".js-plotly-plot").nth(1).locator(".scatterlayer .trace .point").count() >= 3  # runs + medians
    page.screenshot(path=str(tmp_path / "groups.png"))
    assert (tmp_path / "groups.png").stat().st_size > 20_000
    page.close()


@pytest.mark.browser
def test_markup_in_a_run_name_shows_literally(sim_store, streamlit_app, browser, tmp_path):
    app = streamlit_app(sim_store)
    (markup_id,) = [i for i, r in _results(sim_store).items() if r.run == MARKUP]
    label = f"{MARKUP} (#{markup_id})"  # as the run pickers name it
    page = _open(browser, f"{app.url}/collapse?runs={markup_id}")
    _wait_charts(page, "Collapse", 1, (label,))
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator("img[src='x']").count() == 0
    legend = page.locator(".js-plotly-plot .legend").first.text_content()
    assert MARKUP in legend  # plotly shows the escaped name as text
    page.screenshot(path=str(tmp_path / "markup-collapse.png"))
    page.goto(f"{app.url}/ceiling?run={markup_id}", wait_until="networkidle")
    _wait_charts(page, "Ceiling", 3, (MARKUP,))
    assert page.locator("img[src='x']").count() == 0
    # the Runs page, with the run selected: its name shown in the picker (the table is drawn on a canvas)
    page.goto(f"{app.url}/?runs={markup_id}", wait_until="networkidle")
    wait_drawn(page, "Runs", (label,))
    assert page.locator("img[src='x']").count() == 0 and page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(tmp_path / "markup-runs.png"))
    page.close()


def test_login_is_required_when_streamlit_auth_is_configured(monkeypatch, law_store):
    monkeypatch.setenv("ENTROPY_DASH_DB", law_store)
    at = AppTest.from_file(APP, default_timeout=90)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
                          "client_id": "id", "client_secret": "s",
                          "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}
    at.run()
    assert not at.exception, at.exception
    assert [b.label for b in at.button] == ["Log in"] and not at.dataframe  # no data before logging in
    plain = _app(monkeypatch, law_store)  # without [auth]: no login (the deployment puts a proxy in front)
    assert not [b for b in plain.button if b.label == "Log in"] and len(plain.dataframe[0].value) == 1


def test_compare_page_shows_the_scaling_fit_of_scaling_json(monkeypatch, sim_store):
    """The Compare page reads the size trend from analysis (as `scaling --json` does), not a fit of its own."""
    from analysis.payloads import scaling_payload

    results = _results(sim_store)
    fitted = sorted(i for i, r in results.items() if r.law is not None)
    at = _page(_app(monkeypatch, sim_store, {"runs": ",".join(map(str, fitted))}), "compare")
    doc = scaling_payload(Store.open(sim_store, create=False), [results[i] for i in fitted])
    fits = {f["coefficient"]: f for f in doc["fits"] if f["group"] is None}
    captions = " ".join(c.value for c in at.caption)
    for coef in ("a", "b"):
        f = fits[coef]
        assert "reason" not in f, f  # 0.5B and 1.5B runs: a size trend can be fitted
        lo, hi = f["k_ci"]
        assert (f"{coef} = k·ln(size) + c with k = {f['k']:.4g} (95% CI {lo:.4g} – {hi:.4g}), c = {f['c']:.4g}, "
                f"R² {f['r2']:.3f}, n = {f['n']} runs") in captions


def test_step_list_shortens_long_lists_and_keeps_the_last_step():
    assert step_list([0]) == "0"
    assert step_list([5, 10, 15, 20, 25, 30]) == "5, 10, 15, 20, 25, 30"
    assert step_list(range(1, 302)) == "1, 2, 3, 4, …, 301"
