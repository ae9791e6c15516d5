"""Versioned results on the real verl console logs of ../shared: every ``--json`` document the CLI prints
carries ``schema_version`` and still holds every key it held before it was versioned (add, never rename);
every stored analysis (per-run summary, per-run forecast row, the store-wide replay summary) carries it too."""

from __future__ import annotations

import json

import pytest

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
    assert [u.backtest for u in bt.replayed] == [r["backtests"]["0.3"] for r in results]
    assert [bt.row(i)["cutoff_step"] for i in range(3)] == [int(r["backtests"]["0.3"]["cutoff_step"]) for r in results]
