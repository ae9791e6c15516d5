"""README promises of the command line, each run through `entropy-dash` on files it ingests: `analyse`
(stale runs only, `--run`, `--all`) and a failed analysis that leaves the other runs alone; `--planned-steps`
and `--entropy-key` (and that both are remembered for later ingests of the source); the per-run
`[source.runs."name"]` settings of a schedule config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from db import Store
from entropy_dash.cli import main

ENTROPY, OTHER_H, VAL, TRAIN = "actor/entropy", "my/entropy", "val-core/x/acc/mean@1", "critic/score/mean"


def _cli(capsys, *argv: str, code: int = 0):
    got = main([*argv, "--quiet"])
    out = capsys.readouterr()
    assert got == code, out.err
    return json.loads(out.out) if "--json" in argv else out


def _law_csv(path: Path, runs: dict[str, tuple[float, float]], steps: int = 60) -> Path:
    """A wide CSV, one run per (a, b): entropy every step, accuracy R = −a·e^H + b every 5 steps; a second
    entropy-like key ``my/entropy`` (twice the entropy: not on the law) and a training reward every step."""
    lines = [f"run,step,{ENTROPY},{OTHER_H},{VAL},{TRAIN}"]
    rng = np.random.default_rng(3)
    for name, (a, b) in runs.items():
        for s in range(1, steps + 1):
            h = 0.1 + 1.1 * math.exp(-s / 25)
            val = f"{-a * math.exp(h) + b + 0.002 * rng.standard_normal():.6f}" if s % 5 == 0 else ""
            lines.append(f"{name},{s},{h:.6f},{2 * h:.6f},{val},{0.3 + 0.004 * s:.6f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_analyse_recomputes_stale_runs_only_and_a_failed_analysis_leaves_the_others(capsys, caplog, tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    csv = _law_csv(tmp_path / "runs.csv", {"run-a": (0.3, 1.2), "run-b": (0.2, 1.0), "run-c": (0.25, 1.1)})
    summary = _cli(capsys, "ingest", "file", str(csv), "--db", db, "--no-analyse", "--json")
    assert summary["runs"] == 3 and summary["analysed"] == 0
    store = Store.open(db, create=False)
    assert store.analyses_frame().empty  # stored points only
    assert "3 runs analysed and stored" in _cli(capsys, "analyse", "--db", db).out
    assert len(store.analyses_frame("summary")) == 3
    assert "0 runs analysed and stored" in _cli(capsys, "analyse", "--db", db).out  # nothing stale
    assert "1 run analysed and stored" in _cli(capsys, "analyse", "--run", "run-b", "--db", db).out
    assert "3 runs analysed and stored" in _cli(capsys, "analyse", "--all", "--db", db).out
    _cli(capsys, "analyse", "--run", "nope", "--db", db, code=2)
    stored = {r["run"]: r for r in store.analyses_frame("summary")["result"]}
    fits = {f["run"]: f for f in _cli(capsys, "fit", "--db", db, "--json")}
    for name, (a, b) in {"run-a": (0.3, 1.2), "run-b": (0.2, 1.0), "run-c": (0.25, 1.1)}.items():
        assert stored[name]["status"] == fits[name]["status"] == "ok"
        assert fits[name]["a"] == pytest.approx(a, abs=0.02) and fits[name]["ceiling"] == pytest.approx(b - a, abs=0.02)

    # run-b's settings in the store cannot be read (a performance range of one number, as a store written by
    # hand or by an older version might hold): its analysis fails, with the reason; the others are as before
    sid = int(store.runs_frame()["source_id"].iloc[0])
    kind, uri = store.sources_frame().set_index("id").loc[sid, ["kind", "uri"]]
    store.source_id(kind, uri, {"runs": {"run-b": {"performance_range": [0.5]}}})
    assert "3 runs analysed and stored" in _cli(capsys, "analyse", "--all", "--db", db).out
    assert "(run-b): analysis failed: IndexError" in caplog.text  # logged, and the command goes on
    stored = {r["run"]: r for r in store.analyses_frame("summary")["result"]}
    assert stored["run-b"]["status"] == "failed" and stored["run-b"]["reason"].startswith("analysis failed: IndexError")
    after = {f["run"]: f for f in _cli(capsys, "fit", "--db", db, "--json")}
    assert after["run-b"]["status"] == "failed" and after["run-b"]["ceiling"] is None
    for name in ("run-a", "run-c"):
        assert after[name] == fits[name]  # unaffected, to the last digit
    runs = {r["run"]: r for r in _cli(capsys, "runs", "--db", db, "--json")}
    assert set(runs) == {"run-a", "run-b", "run-c"}  # the failed run is still listed


def test_planned_steps_makes_a_run_in_progress_with_a_forecast_to_that_step(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    csv = _law_csv(tmp_path / "live.csv", {"live": (0.3, 1.2)})
    _cli(capsys, "ingest", "file", str(csv), "--db", db)
    (run,) = _cli(capsys, "runs", "--db", db, "--json")
    assert run["progress"] == ("state unknown at step 60: not used as a finished run (the source does not say it "
                               "finished; mark it with `--finished` or finished = true in sources.toml)")
    (fit,) = _cli(capsys, "fit", "--db", db, "--json")
    assert fit["forecast"] is None
    _cli(capsys, "ingest", "file", str(csv), "--db", db, "--planned-steps", "200")
    (run,) = _cli(capsys, "runs", "--db", db, "--json")
    assert run["progress"] == "in progress: step 60 of 200 (state unknown)" and run["state"] != "finished"
    (fit,) = _cli(capsys, "fit", "--db", db, "--json")
    fc = fit["forecast"]
    assert fc["horizon_step"] == 200 and fc["from_step"] == 60
    lo, hi = fc["interval"]
    assert 0.0 <= lo <= fc["predicted_final"] <= hi <= 1.0
    assert "not finished" in fit["backtest"]["reason"]  # never backtested as if it were finished
    _cli(capsys, "ingest", "file", str(csv), "--db", db)  # remembered for the source
    (again,) = _cli(capsys, "fit", "--db", db, "--json")
    assert again["forecast"]["horizon_step"] == 200


def test_entropy_key_chooses_the_entropy_metric_and_is_remembered(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    csv = _law_csv(tmp_path / "keys.csv", {"k": (0.3, 1.2)})
    _cli(capsys, "ingest", "file", str(csv), "--db", db)
    (fit,) = _cli(capsys, "fit", "--db", db, "--json")
    assert fit["entropy_key"] == ENTROPY and fit["a"] == pytest.approx(0.3, abs=0.02)
    _cli(capsys, "ingest", "file", str(csv), "--db", db, "--entropy-key", OTHER_H)
    (fit,) = _cli(capsys, "fit", "--db", db, "--json")
    assert fit["entropy_key"] == OTHER_H
    # R = −0.3·e^H + 1.2 with H = my/entropy / 2: another law (a smaller a), paired with my/entropy at step 6 on
    assert fit["a"] < 0.2 and fit["h_range"][1] == pytest.approx(2 * (0.1 + 1.1 * math.exp(-6 / 25)), abs=1e-3)
    (run,) = _cli(capsys, "runs", "--db", db, "--json")
    assert run["entropy_key"] == OTHER_H
    _cli(capsys, "ingest", "file", str(csv), "--db", db)  # a plain re-ingest keeps the choice
    (fit,) = _cli(capsys, "fit", "--db", db, "--json")
    assert fit["entropy_key"] == OTHER_H


def test_per_run_settings_of_a_schedule_config(capsys, tmp_path):
    """`[source.runs."name"]` applies to that run only; the source's own keys to the others."""
    _law_csv(tmp_path / "runs.csv", {"run-a": (0.3, 1.2), "run-b": (0.2, 1.0)})
    cfg = tmp_path / "sources.toml"
    cfg.write_text('db = "sqlite:///s.db"\n\n[[source]]\nkind = "file"\nuri = "runs.csv"\nevery = "1h"\n'
                   f'planned_steps = 300\n\n[source.runs."run-b"]\nperformance_key = "{TRAIN}"\n'
                   f'entropy_key = "{OTHER_H}"\nplanned_steps = 60\n')
    assert main(["schedule", "--config", str(cfg), "--once", "--quiet"]) == 0
    db = f"sqlite:///{tmp_path / 's.db'}"
    fits = {f["run"]: f for f in _cli(capsys, "fit", "--db", db, "--json")}
    runs = {r["run"]: r for r in _cli(capsys, "runs", "--db", db, "--json")}
    a, b = fits["run-a"], fits["run-b"]
    assert (a["entropy_key"], a["performance_key"]) == (ENTROPY, VAL)
    assert (b["entropy_key"], b["performance_key"]) == (OTHER_H, TRAIN)
    assert b["n"] == 60 - len(b["excluded_steps"])  # the training reward is logged every step
    assert runs["run-a"]["progress"] == "in progress: step 60 of 300 (state unknown)" and a["forecast"]["horizon_step"] == 300
    assert runs["run-b"]["progress"] == ("state unknown at step 60 of 60: not used as a finished run (the source does "
                                         "not say it finished; mark it with `--finished` or finished = true in sources.toml)")
    assert b["forecast"] is None
