"""Typed, versioned results on the real verl logs of ../shared: every ``--json`` document the CLI prints
carries ``schema_version`` and still holds every key it held before it was versioned (add, never rename);
every stored analysis (per-run summary, per-run forecast row, the store-wide replay summary) carries it too;
a stored analysis loads back exactly through ``analysis.results.RunAnalysis`` (finished, degenerate, empty,
in progress and failed runs)."""

from __future__ import annotations

import json

import pytest

from analysis.results import Backtest, Collapse, Failure, Forecast, Law, RunAnalysis, Stage
from analysis.version import CROSS_RUN_KIND, FORECAST_KIND, KIND, SCHEMA_VERSION
from db import Store
from entropy_dash.cli import main

#: the keys each document held before ``schema_version`` (schema version 1 keeps every one of them)
RUNS_KEYS = {"benchmarks", "entropy_key", "external_id", "finished", "key_reason", "last_step", "n_entropy",
             "n_nonfinite", "n_performance", "notes", "performance_key", "performance_kind", "planned_from",
             "planned_steps", "progress", "project", "reason", "run", "run_id", "source", "source_kind", "state",
             "status", "unrecognised_keys"}
FIT_KEYS = {"a", "a_se", "b", "b_se", "backtest", "benchmarks", "best_performance", "ceiling", "ceiling_ci",
            "ceiling_ci_raw", "ceiling_raw", "ceiling_se", "collapse", "cov_ab", "entropy_key", "excluded_steps",
            "finished", "flags", "forecast", "forecast_reason", "h_range", "headline_rule", "headroom", "health",
            "health_worst", "last_step", "loss", "n", "n_excluded", "performance_key", "planned_steps",
            "plateau_range", "plateau_step", "progress", "r2", "range", "reason", "rmse", "run", "run_id",
            "stage_reason", "state", "status", "warmup", "weak"}
BACKTEST_KEYS = {"cutoff", "cutoffs", "runs", "skipped", "summary"}
BACKTEST_ROW_KEYS = {"baselines", "calibrated", "ceiling", "ceiling_interval", "covered", "cutoff", "cutoff_step",
                     "error", "excluded", "final_steps", "fraction_done", "interval", "label", "method",
                     "n_evaluations_before_cutoff", "n_pairs_before_cutoff", "observed_final", "planned_end_step",
                     "pool", "predicted_final", "rule", "run", "run_id", "warmup_steps", "weights"}
INGEST_KEYS = {"analysed", "changed_runs", "notes", "points", "runs", "skipped", "source", "unchanged_files"}


def _json(capsys, *argv: str):
    code = main([*argv, "--json", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.fixture(scope="module")
def verl_db(verl_logs, tmp_path_factory) -> str:
    """The three real verl console runs, ingested (and analysed) as finished runs."""
    db = f"sqlite:///{tmp_path_factory.mktemp('results') / 'store.db'}"
    assert main(["--db", db, "--quiet", "ingest", "file", str(verl_logs[0].parent), "--finished"]) == 0
    return db


def test_every_json_document_carries_schema_version_and_keeps_its_keys(capsys, verl_db, verl_logs):
    again = _json(capsys, "ingest", "file", str(verl_logs[0].parent), "--db", verl_db)
    assert again["schema_version"] == SCHEMA_VERSION and set(again) >= INGEST_KEYS and again["points"] == 0
    runs = _json(capsys, "runs", "--db", verl_db)
    assert isinstance(runs, list) and len(runs) == 3  # a list stays a list: every row carries the version
    for r in runs:
        assert r["schema_version"] == SCHEMA_VERSION and set(r) == RUNS_KEYS | {"schema_version"}
    fits = _json(capsys, "fit", "--db", verl_db)
    assert isinstance(fits, list) and len(fits) == 3
    for f in fits:
        assert f["schema_version"] == SCHEMA_VERSION and set(f) == FIT_KEYS | {"schema_version"}
        assert f["status"] == "ok" and f["ceiling_ci"][0] < f["ceiling"] < f["ceiling_ci"][1]
    bt = _json(capsys, "backtest", "--db", verl_db)
    assert bt["schema_version"] == SCHEMA_VERSION and set(bt) == BACKTEST_KEYS | {"schema_version"}
    assert len(bt["runs"]) == 3 and all(set(r) == BACKTEST_ROW_KEYS for r in bt["runs"])
    assert [d["cutoff"] for d in bt["cutoffs"]] == [0.1, 0.2, 0.3, 0.5]
    doctor = _json(capsys, "doctor", "--db", verl_db)
    assert doctor["schema_version"] == SCHEMA_VERSION and {"fail_on", "failing", "runs"} <= set(doctor)
    assert len(doctor["runs"]) == 3
    scaling = _json(capsys, "scaling", "--db", verl_db)
    assert scaling["schema_version"] == SCHEMA_VERSION and {"fits", "group_by", "note", "runs"} <= set(scaling)
    analysed = _json(capsys, "analyse", "--db", verl_db)
    assert analysed == {"analysed": 0, "schema_version": SCHEMA_VERSION}  # nothing was stale


def test_every_stored_analysis_carries_schema_version(verl_db):
    store = Store.open(verl_db, create=False)
    summaries = store.analyses_frame(KIND)
    forecasts = store.analyses_frame(FORECAST_KIND)
    assert len(summaries) == 3 and len(forecasts) == 3
    assert [r["schema_version"] for r in summaries["result"]] == [SCHEMA_VERSION] * 3
    assert [r["schema_version"] for r in forecasts["result"]] == [SCHEMA_VERSION] * 3
    version, _, doc = store.cross_run(CROSS_RUN_KIND)
    assert doc["schema_version"] == SCHEMA_VERSION and doc["track"]
    stored = [*summaries["result"], *forecasts["result"], doc]
    assert sum(len(r["backtests"]) for r in summaries["result"]) == 3 * 17  # every run replayed at every fraction
    assert not [k for d in stored for k in _keys(d) if k.startswith("_")]  # nothing private rides in a result


def _keys(doc):
    """Every key of a JSON document, at any depth."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield k
            yield from _keys(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _keys(v)


def test_a_replayed_run_pairs_its_own_analysis_with_its_backtest(verl_db):
    from analysis.forecasting import Replayed, backtest_at
    from analysis.pipeline import current_results

    results = current_results(Store.open(verl_db, create=False))
    bt = backtest_at(results, 0.3)
    assert [type(u) for u in bt.replayed] == [Replayed] * 3
    assert all(u.result is r for u, r in zip(bt.replayed, results, strict=True))  # the analysis itself, not a copy
    assert [u.backtest for u in bt.replayed] == [r.backtests["0.3"] for r in results]
    assert [bt.row(i)["cutoff_step"] for i in range(3)] == [int(r.backtests["0.3"].cutoff_step) for r in results]


def _round_trips(result: dict) -> RunAnalysis:
    typed = RunAnalysis.from_dict(result)
    assert json.dumps(typed.to_dict()) == json.dumps(result)  # the same keys in the same order: the same JSON
    return typed


def test_stored_analyses_of_the_real_runs_load_back_exactly(verl_db):
    results = Store.open(verl_db, create=False).analyses_frame(KIND)["result"]
    typed = [_round_trips(r) for r in results]
    for t, r in zip(typed, results, strict=True):
        assert t.status == "ok" and isinstance(t.law, Law) and t.law.ceiling == r["law"]["ceiling"]
        assert t.law.ceiling_ci == tuple(r["law"]["ceiling_ci"]) and t.law.flags == tuple(r["law"]["flags"])
        assert [b.key for b in t.benchmarks] == [b["key"] for b in r["benchmarks"]]
        assert isinstance(t.stage, Stage) and t.stage.step == r["stage"]["step"]
        assert isinstance(t.collapse, Collapse) and t.collapse.verdict == r["collapse"]["verdict"]
        assert t.forecast is None and len(t.backtests) == 17  # finished: replayed, no live forecast
        for f, bt in t.backtests.items():
            if isinstance(bt, Failure):
                assert bt.cause == r["backtests"][f]["cause"] and bt.error == r["backtests"][f]["error"]
            else:
                assert isinstance(bt, Backtest) and bt.observed_final == r["backtests"][f]["observed_final"]
    failures = [bt for t in typed for bt in t.backtests.values() if isinstance(bt, Failure)]
    assert failures and {f.cause for f in failures} == {"too_few_points_before_cutoff"}  # the earliest cuts


def test_degenerate_empty_live_and_failed_analyses_load_back_exactly(shared_data, verl_logs, tmp_path, capsys):
    tb = f"sqlite:///{tmp_path / 'tb.db'}"
    assert main(["--db", tb, "--quiet", "ingest", "tensorboard", str(shared_data / "verl-tensorboard")]) == 0
    typed = [_round_trips(r) for r in Store.open(tb, create=False).analyses_frame(KIND)["result"]]
    assert {"ok", "degenerate", "skipped"} <= {t.status for t in typed}
    assert all(t.stage is None and t.collapse is None and t.law is None for t in typed if t.status == "skipped")
    assert any(b.status == "degenerate" and b.law is None for t in typed for b in t.benchmarks)

    # runs in progress toward a planned 1,000 steps (live forecasts), and one run whose stored settings cannot
    # be read (a performance range of one number): its analysis fails with the reason, and loads back too
    db = f"sqlite:///{tmp_path / 'live.db'}"
    assert main(["--db", db, "--quiet", "ingest", "file", str(verl_logs[0].parent), "--planned-steps", "1000"]) == 0
    store = Store.open(db, create=False)
    kind, uri = store.sources_frame().iloc[0][["kind", "uri"]]
    victim = verl_logs[0].stem
    store.source_id(kind, uri, {"planned_steps": 1000, "runs": {victim: {"performance_range": [0.5]}}})
    assert main(["--db", db, "--quiet", "analyse", "--all"]) == 0
    typed = {t.run: t for t in map(_round_trips, store.analyses_frame(KIND)["result"])}
    failed = typed.pop(victim)
    assert failed.status == "failed" and failed.reason.startswith("analysis failed: IndexError")
    assert failed.law is None and failed.benchmarks == () and failed.stage is None and failed.forecast is None
    assert len(typed) == 2 and all(isinstance(t.forecast, Forecast) and t.forecast.horizon_step == 1000
                                   and t.backtests == {} for t in typed.values())
    capsys.readouterr()  # what ingest and analyse printed
    fits = {f["run"]: f for f in _json(capsys, "fit", "--db", db)}  # the stored rows, read through from_dict
    assert fits[victim]["status"] == "failed" and all(fits[n]["forecast"]["horizon_step"] == 1000 for n in typed)


def test_a_stored_result_missing_a_key_is_an_error_naming_it(verl_db):
    from analysis.errors import AnalysisError

    result = dict(Store.open(verl_db, create=False).analyses_frame(KIND)["result"].iloc[0])
    del result["status"]
    with pytest.raises(AnalysisError, match=r"RunAnalysis: the stored result has no status \(run 1,"):
        RunAnalysis.from_dict(result)


def test_readers_get_the_typed_analyses_and_nothing_private(verl_db):
    """``current_results`` hands readers ``RunAnalysis`` objects: the stored rows loaded, field for field, and a
    result built in memory (a read-time choice) is the same type, dumping back to what would be stored."""
    from analysis.pipeline import Options, current_results

    store = Store.open(verl_db, create=False)
    stored = {int(i): r for i, r in zip(*store.analyses_frame(KIND)[["run_id", "result"]].to_numpy().T, strict=True)}
    results = current_results(store)
    assert [type(r) for r in results] == [RunAnalysis] * 3
    for r in results:
        assert json.dumps(r.to_dict()) == json.dumps(stored[r.run_id])
        assert r.law.ceiling == stored[r.run_id]["law"]["ceiling"] and r.finished is stored[r.run_id]["finished"]
        assert r.entropy_key == stored[r.run_id]["entropy_key"] and r.range == stored[r.run_id]["range"]
        assert not [k for k in _keys(r.to_dict()) if k.startswith("_")]
    in_memory = current_results(store, options=Options(keep_warmup=True))
    assert [type(r) for r in in_memory] == [RunAnalysis] * 3 and all(r.excluded_steps == () for r in in_memory)
