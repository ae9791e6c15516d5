"""The command-line contract on real data: the verl console logs in ../shared through `ingest file`, the
--json documents of fit/backtest/scaling/runs, the same flow on PostgreSQL, and `demo --no-browser`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from analysis.version import SCHEMA_VERSION
from db import Store
from entropy_dash.cli import main
from tests.fixtures_servers import free_port, stop


def cli_json(capsys, *argv: str):
    code = main([*argv, "--json", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _ingest_verl(capsys, db: str, verl_logs) -> dict:
    folder = str(verl_logs[0].parent)
    return cli_json(capsys, "ingest", "file", folder, "--db", db)


def test_verl_logs_fit_stage_collapse_and_backtest(capsys, tmp_path, verl_logs):
    db = f"sqlite:///{tmp_path / 's.db'}"
    summary = _ingest_verl(capsys, db, verl_logs)
    assert summary["runs"] == 3
    runs = {r["run"]: r for r in cli_json(capsys, "runs", "--db", db)}
    qwen = runs["Qwen2.5-0.5B-bsz256_2-prompt1024-resp512-0.567"]
    assert qwen["entropy_key"] == "actor/entropy_loss"
    assert qwen["performance_key"] == "val/test_score/openai/gsm8k"
    assert (qwen["n_entropy"], qwen["n_performance"]) == (435, 45)  # 43 in-loop + initial + final validation
    assert qwen["state"] == "finished" and qwen["progress"] == "finished at step 435"
    # the gemma log has no final validation line: its source does not say it finished, so it teaches nothing
    gemma = runs["gemma-2-2b-it-ppo-bsz512_4-prompt1024-resp-512-0.640"]
    assert gemma["state"] == "unknown" and gemma["finished"] is False
    assert gemma["progress"].startswith("state unknown at step 106: not used as a finished run")
    bt = cli_json(capsys, "backtest", "--db", db)
    assert len(bt["runs"]) == 2 and [s["run"] for s in bt["skipped"]] == [gemma["run"]]
    assert bt["skipped"][0]["reason"].startswith("not finished (state unknown at step 106")
    # the user knows it finished: --finished (remembered for the source) makes it teach
    assert cli_json(capsys, "ingest", "file", str(verl_logs[0].parent), "--finished", "--db", db)["analysed"] == 3
    fits = {f["run"]: f for f in cli_json(capsys, "fit", "--db", db)}
    for name, f in fits.items():
        final = float(name.rsplit("-", 1)[1].removesuffix(".log"))  # the file name ends in the final score
        assert f["status"] == "ok" and f["a"] > 0
        assert f["ceiling_ci"][0] < f["ceiling"] < f["ceiling_ci"][1]
        assert f["ceiling"] > final - 0.02  # the law's ceiling lies at or above where the run ended
        assert f["forecast"] is None and f["forecast_reason"].startswith("finished")
        if name.startswith("Qwen"):  # format learning in the first 20 steps: excluded, and the ceiling is the end
            assert f["excluded_steps"] == [0, 10, 20] and "below the law" in f["warmup"]["reason"]
            assert abs(f["ceiling"] - final) < 0.01 and f["n"] == 42
        assert f["plateau_step"] is not None and f["plateau_range"][0] <= f["plateau_step"] <= f["plateau_range"][1]
        assert f["collapse"]["verdict"] in ("healthy", "converging", "collapsing", "collapsed")
        assert f["backtest"]["cutoff"] == 0.3 and abs(f["backtest"]["error"]) < 0.05
    q = fits["Qwen2.5-0.5B-bsz256_2-prompt1024-resp512-0.567"]
    assert q["plateau_step"] < 435 / 2  # the rising stage ends in the first half
    bt = cli_json(capsys, "backtest", "--db", db)
    assert SCHEMA_VERSION == bt["schema_version"] == q["schema_version"] == qwen["schema_version"] == 1
    assert bt["cutoff"] == 0.3 and len(bt["runs"]) == 3 and bt["skipped"] == []
    for r in bt["runs"]:
        assert {"law", "last_value", "recent_mean"} <= set(r["baselines"])  # curves need 6+ evaluations
        assert r["method"] == "stacked" and sum(r["weights"].values()) == pytest.approx(1.0)
        assert r["predicted_final"] == pytest.approx(sum(w * r["baselines"][m]["predicted"]
                                                         for m, w in r["weights"].items()))
        assert r["error"] == pytest.approx(r["predicted_final"] - r["observed_final"])
        assert r["error"] == pytest.approx(fits[r["run"]]["backtest"]["error"])  # fit and backtest agree
    scores = bt["summary"]["scores"]
    assert scores["law"]["mae"] < scores["last_value"]["mae"]
    assert bt["summary"]["winner"] in scores and bt["summary"]["sentence"]
    assert [d["cutoff"] for d in bt["cutoffs"]] == [0.1, 0.2, 0.3, 0.5]
    later = cli_json(capsys, "backtest", "--cutoff", "0.5", "--cutoff", "0.4", "--db", db)
    assert later["cutoff"] == 0.5 and [d["cutoff"] for d in later["cutoffs"]] == [0.5, 0.4]
    assert all(r["cutoff_step"] > b["cutoff_step"] for r, b in zip(later["runs"], bt["runs"], strict=True))
    at40 = later["cutoffs"][1]  # not a stored cutoff: computed in memory, same protocol
    assert len(at40["runs"]) == 3 and at40["summary"]["n_runs"] == 3
    scaling = cli_json(capsys, "scaling", "--db", db)
    sizes = {r["run"]: r["size"] for r in scaling["runs"]}
    assert sizes["Qwen2.5-0.5B-bsz256_2-prompt1024-resp512-0.567"] == 0.5
    assert sizes["gemma-2-2b-it-ppo-bsz512_4-prompt1024-resp-512-0.640"] == 2.0
    assert {f["coefficient"] for f in scaling["fits"]} == {"a", "b", "ceiling"}
    robust = {f["run"]: f for f in cli_json(capsys, "fit", "--robust", "soft_l1", "--db", db)}
    rq = robust["Qwen2.5-0.5B-bsz256_2-prompt1024-resp512-0.567"]
    assert rq["loss"] == "soft_l1" and rq["n"] == 42 - rq["n_excluded"]  # on top of the warm-up exclusion
    kept = {f["run"]: f for f in cli_json(capsys, "fit", "--keep-warmup", "--db", db)}
    kq = kept["Qwen2.5-0.5B-bsz256_2-prompt1024-resp512-0.567"]
    assert kq["excluded_steps"] == [] and kq["n"] == 45 and kq["warmup"]["mode"] == "keep"
    assert abs(kq["ceiling"] - 0.567) > abs(q["ceiling"] - 0.567)  # kept, the warm-up drags the ceiling up
    again = cli_json(capsys, "ingest", "file", str(verl_logs[0].parent), "--db", db)
    assert again["points"] == 0


def test_same_flow_on_postgresql(capsys, postgres_url, verl_logs):
    summary = _ingest_verl(capsys, postgres_url, verl_logs)
    assert summary["runs"] == 3 and summary["points"] > 39_000
    fits = cli_json(capsys, "fit", "--db", postgres_url)
    assert len(fits) == 3 and all(f["status"] == "ok" for f in fits)
    assert Store.open(postgres_url, create=False).count_points() == summary["points"]


def test_bad_arguments_are_one_line_errors(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["init", "--db", db]) == 0
    assert main(["fit", "--run", "nope", "--db", db]) == 2
    assert capsys.readouterr().err.strip().endswith("error: no run 'nope' in the store: see `entropy-dash runs`")
    assert main(["backtest", "--cutoff", "2", "--db", db]) == 2
    assert "--cutoff must be a fraction" in capsys.readouterr().err
    assert main(["ingest", "file", str(tmp_path / "missing.csv"), "--db", db]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main(["runs", "--db", "mysql://x/y"]) == 2
    assert "unsupported database 'mysql'" in capsys.readouterr().err


def test_demo_builds_runs_and_serves_the_dashboard(tmp_path):
    port = free_port()
    env = {**os.environ, "ENTROPY_DASH_DB": f"sqlite:///{tmp_path / 'demo.db'}"}
    proc = subprocess.Popen([sys.executable, "-m", "entropy_dash.cli", "demo", "--no-browser", "--port", str(port),
                             "--dir", str(tmp_path / "demo-data")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(1)
        else:
            pytest.fail("the demo's dashboard did not come up")
        store = Store.open(env["ENTROPY_DASH_DB"], create=False)
        runs = store.runs_frame()
        assert len(runs) == 7 and set(runs["source_kind"]) == {"mlflow"}
        assert (tmp_path / "demo-data" / "mlflow.db").exists()
        assert len(store.analyses_frame("summary")) == 7
    finally:
        stop(proc)
    assert f"dashboard: http://127.0.0.1:{port}" in proc.stdout.read()


def test_global_options_work_before_the_command(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["--db", db, "--quiet", "init"]) == 0
    assert main(["--db", db, "runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert (tmp_path / "s.db").exists() and not (tmp_path / "entropy-dash.db").exists()


def test_performance_key_chosen_per_source_is_remembered(capsys, tmp_path, verl_logs):
    db = f"sqlite:///{tmp_path / 's.db'}"
    log = str(verl_logs[0])
    cli_json(capsys, "ingest", "file", log, "--db", db, "--performance-key", "critic/score/mean")
    (run,) = cli_json(capsys, "runs", "--db", db)
    assert run["performance_key"] == "critic/score/mean" and run["performance_kind"] == "override"
    cli_json(capsys, "ingest", "file", log, "--db", db)  # a plain re-ingest keeps the choice
    (fit,) = cli_json(capsys, "fit", "--db", db)
    assert fit["performance_key"] == "critic/score/mean" and fit["n"] > 400  # training reward every step
    cli_json(capsys, "ingest", "file", log, "--db", db, "--performance-key", "val/test_score/openai/gsm8k")
    (fit,) = cli_json(capsys, "fit", "--db", db)
    assert fit["performance_key"] == "val/test_score/openai/gsm8k" and fit["n"] == 45 - len(fit["excluded_steps"])


def test_dashboard_and_demo_serve_headless_on_loopback_unless_told():
    from entropy_dash.cli import build_parser
    from entropy_dash.commands.serve import local_url, streamlit_command

    for argv in (["dashboard"], ["demo"]):
        args = build_parser().parse_args(argv)
        assert args.host == "127.0.0.1" and args.port == 8501 and not args.no_browser
    assert build_parser().parse_args(["dashboard", "--host", "0.0.0.0"]).host == "0.0.0.0"
    cmd = streamlit_command("0.0.0.0", 8600)
    assert cmd[1:4] == ["-m", "dashboard.server", "run"]  # Streamlit's command line, pages' imports preloaded
    opts = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert opts["--server.headless"] == "true" and opts["--server.address"] == "0.0.0.0"
    assert opts["--browser.gatherUsageStats"] == "false" and opts["--server.port"] == "8600"
    # the URL printed and opened is the loopback one, whatever the bind address
    assert local_url("0.0.0.0", 8600) == local_url("127.0.0.1", 8600) == "http://127.0.0.1:8600"
    assert local_url("10.1.2.3", 8600) == "http://10.1.2.3:8600" and local_url("::1", 1) == "http://[::1]:1"


def test_the_dashboard_server_preloads_modules_that_exist():
    from dashboard.server import LIBRARIES, PAGE_MODULES, preload

    assert preload(LIBRARIES + PAGE_MODULES) == []
    assert preload(("dashboard.no_such_module",)) == ["dashboard.no_such_module"]
