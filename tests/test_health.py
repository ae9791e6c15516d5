"""Run-health detectors: each on real-shaped series that should and should not fire (alarms counted over
seeds, as the collapse tests count them), the findings on the shared verl runs, and `entropy-dash doctor`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect, text

from analysis.health import health_payload
from analysis.keys import choose_keys
from analysis.pipeline import (
    cross_run_is_current,
    current_cross_run,
    current_health,
    current_health_grid,
    current_results,
    health_grid_row,
    refresh_analyses,
)
from analysis.results import RunAnalysis
from analysis.version import CROSS_RUN_KIND, HEALTH_KIND
from db import Store
from db.migrate import alembic_config, current_revision, head_revision
from db.store_analyses import AnalysesMixin
from entropy_dash.cli import main
from ingest.keys import resolve_role, resolve_roles
from models.health import (
    DETECTORS,
    Finding,
    advantage_collapse,
    clipping,
    divergence,
    entropy_blowup,
    entropy_collapse,
    gradients,
    kl_drift,
    length,
    plateau,
)
from models.health.series import Curve
from tests import analyses

N = 300
T = np.arange(1, N + 1)
EV = np.arange(0, N + 1, 10)
SEEDS = range(20)
ALARM = ("warn", "critical")


def ar1(rng: np.random.Generator, sd: np.ndarray | float, n: int = N) -> np.ndarray:
    sd = np.broadcast_to(sd, (n,))
    out = np.empty(n)
    out[0] = rng.normal() * sd[0]
    for i in range(1, n):
        out[i] = 0.5 * out[i - 1] + rng.normal() * sd[i] * np.sqrt(0.75)
    return out


def entropy_curve(h: np.ndarray, rng: np.random.Generator) -> Curve:
    return Curve.of("actor/entropy", T, np.maximum(h + ar1(rng, 0.02 + 0.03 * h), 1e-3))


def eval_curve(r: np.ndarray, rng: np.random.Generator, key: str = "val-core/openai/gsm8k/acc/mean@1") -> Curve:
    return Curve.of(key, EV, np.interp(EV, T, r) + rng.normal(0, 0.006, EV.size))


def reward_curve(r: np.ndarray, rng: np.random.Generator) -> Curve:
    return Curve.of("critic/score/mean", T, r + rng.normal(0, 0.015, N))


def count(sev: list[str], levels=ALARM) -> int:
    return sum(s in levels for s in sev)


# --- entropy collapse ---------------------------------------------------------------------------------------

def test_entropy_collapse_fires_on_spent_entropy_with_a_flat_score_and_not_while_it_rises() -> None:
    collapsed, converging, steady = [], [], []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        h = 0.05 + 0.95 * np.exp(-T / 40)  # 94% spent
        r = 0.2 + 0.5 * (1 - np.exp(-T / 30))  # flat for the last two thirds
        f = entropy_collapse.detect(entropy_curve(h, rng), eval_curve(r, rng), scale=1.0)
        collapsed.append(f.severity)
        h2 = 1.0 - 0.0025 * T  # falling steadily, the score still rising with it (the law)
        f2 = entropy_collapse.detect(entropy_curve(h2, rng), eval_curve(1.2 - 0.3 * np.exp(h2), rng), scale=1.0)
        converging.append(f2.severity)
        h3 = np.full(N, 0.8)
        steady.append(entropy_collapse.detect(entropy_curve(h3, rng), eval_curve(1.2 - 0.3 * np.exp(h3), rng),
                                              scale=1.0).severity)
    assert count(collapsed) >= 19, collapsed
    assert count(converging) == 0 and count(steady) == 0, (converging, steady)  # false alarms over 40 runs: 0
    assert f.evidence["entropy_spent"] == pytest.approx(0.94, abs=0.05)
    assert f.evidence["projected_floor_step"] is None or f.evidence["projected_floor_step"] > 0
    assert "spent by step 300" in f.sentence and f.keys == ("actor/entropy", "val-core/openai/gsm8k/acc/mean@1")


def test_entropy_collapse_without_a_score_says_what_it_needs() -> None:
    f = entropy_collapse.detect(entropy_curve(np.full(N, 0.5), np.random.default_rng(0)), None)
    assert f.severity == "skipped" and "performance metric" in f.needs


# --- entropy blow-up ----------------------------------------------------------------------------------------

def test_entropy_blowup_fires_on_rising_entropy_with_a_falling_reward_only() -> None:
    blown, healthy = [], []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        h = np.where(T < 150, 0.6 - 0.002 * T, 0.3 + 0.006 * (T - 150))  # back up to 1.2 (2× the start)
        r = np.where(T < 150, 0.3 + 0.002 * T, 0.6 - 0.002 * (T - 150))
        blown.append(entropy_blowup.detect(entropy_curve(h, rng), reward_curve(r, rng)).severity)
        h2 = 0.3 + 0.3 * np.exp(-T / 60)
        healthy.append(entropy_blowup.detect(entropy_curve(h2, rng),
                                             reward_curve(0.8 - 0.5 * np.exp(-T / 60), rng)).severity)
    assert count(blown) >= 19, blown
    assert count(healthy, ("info", "warn", "critical")) == 0, healthy


# --- advantage collapse -------------------------------------------------------------------------------------

def test_advantage_collapse_measured_and_estimated_from_the_group_size() -> None:
    rng = np.random.default_rng(1)
    frac = Curve.of("frac_reward_zero_std", T, np.clip(0.2 + 0.6 * T / N + rng.normal(0, 0.03, N), 0, 1))
    f = advantage_collapse.detect(frac)
    assert f.severity == "warn" and f.evidence["measured"] == "yes"  # 72% of groups uniform: < 80%
    assert f.evidence["zero_std_fraction"] == pytest.approx(0.725, abs=0.02)
    low = advantage_collapse.detect(Curve.of("frac_reward_zero_std", T, np.full(N, 0.1)))
    assert low.severity == "ok"
    # a 0/1 score at 0.9 with 8 rollouts per prompt: at least 0.9^8 + 0.1^8 = 43% of groups uniform
    score = Curve.of("critic/score/mean", T, np.full(N, 0.9))
    est = advantage_collapse.detect(None, score, group_size=8, score_range=(0.0, 1.0))
    assert est.evidence["zero_std_fraction"] == pytest.approx(0.9 ** 8 + 0.1 ** 8)
    assert est.severity == "info" and "at least 43%" in est.sentence and "estimated" in est.sentence
    assert advantage_collapse.detect(None, score, group_size=32, score_range=(0.0, 1.0)).severity == "ok"
    skip = advantage_collapse.detect(None, score)
    assert skip.severity == "skipped" and "rollout.n" in skip.needs


# --- divergence ---------------------------------------------------------------------------------------------

def test_divergence_fires_when_the_held_out_score_falls_while_reward_rises() -> None:
    fired, quiet = [], []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        reward = reward_curve(0.4 + 0.5 * (1 - np.exp(-T / 80)), rng)
        falling = 0.55 - 0.0001 * np.maximum(T - 30, 0) + 0.02 * (1 - np.exp(-T / 10))  # −2.7 pt after step 30
        fired.append(divergence.detect(reward, eval_curve(falling, rng), name="MATH", scale=1.0).severity)
        rising = 0.3 + 0.5 * (1 - np.exp(-T / 80))
        quiet.append(divergence.detect(reward, eval_curve(rising, rng), name="gsm8k", scale=1.0).severity)
    assert count(fired) >= 19, fired
    assert count(quiet) == 0, quiet


def test_a_constant_held_out_score_is_degenerate_never_reward_hacking() -> None:
    rng = np.random.default_rng(0)
    reward = reward_curve(-2 + 1.0 * (1 - np.exp(-T / 5)), rng)
    f = divergence.detect(reward, Curve.of("val-core/game2048/acc/mean@1", EV, np.full(EV.size, -1.0)),
                          name="game2048")
    assert f.evidence["degenerate"] == "constant" and "degenerate" in f.sentence
    assert "not evidence of reward hacking" in f.sentence and f.severity == "warn"
    p = plateau.detect(Curve.of("k", EV, np.full(EV.size, -1.0)), name="game2048")
    assert p.severity == "skipped" and "degenerate" in p.sentence


# --- length, clipping, KL, gradients ------------------------------------------------------------------------

def test_length_pathology_on_truncation_and_run_away_length() -> None:
    rng = np.random.default_rng(2)
    clip = Curve.of("response_length/clip_ratio", T, np.clip(0.02 + 0.25 * T / N + rng.normal(0, 0.01, N), 0, 1))
    mean = Curve.of("response_length/mean", T, 300 * (1 + 2 * T / N) + rng.normal(0, 10, N))
    f = length.detect(clip, mean)
    assert f.severity == "warn" and f.evidence["length_ratio"] > 2 and "hit the length limit" in f.sentence
    ok = length.detect(Curve.of("response_length/clip_ratio", T, np.full(N, 0.001)),
                       Curve.of("response_length/mean", T, 250 + rng.normal(0, 10, N)))
    assert ok.severity == "ok"
    assert length.detect(None, None).severity == "skipped"


def test_clip_saturation_thresholds_over_every_clip_key() -> None:
    lo = Curve.of("actor/pg_clipfrac_lower", T, np.full(N, 0.01))
    hi = Curve.of("actor/pg_clipfrac", T, np.linspace(0.05, 0.4, N))
    f = clipping.detect([lo, hi])
    assert f.severity == "critical" and f.evidence["worst_key"] == "actor/pg_clipfrac"
    assert clipping.detect([lo]).severity == "ok"
    assert clipping.detect([]).needs.startswith("actor/pg_clipfrac")


def test_kl_drift_to_the_reference_and_per_update() -> None:
    ref = Curve.of("actor/kl_loss", T, 0.003 * T)  # 0.9 nats at the end, still rising
    f = kl_drift.detect([ref, Curve.of("actor/ppo_kl", T, np.full(N, 1e-4))])
    assert f.severity == "warn" and "rising" in f.sentence
    assert kl_drift.detect([Curve.of("actor/ppo_kl", T, np.full(N, 0.3))]).severity == "critical"
    noise = np.random.default_rng(4).normal(0, 0.005, N)
    flat = kl_drift.detect([Curve.of("kl", T, 0.2 * (1 - np.exp(-T / 30)) + noise)])  # levelled off at 0.2
    assert flat.severity == "ok"


def test_gradient_spikes_and_non_finite_norms_counted_over_seeds() -> None:
    spiky, calm = [], []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        g = 0.15 * np.exp(rng.normal(0, 0.1, N))
        calm.append(gradients.detect(Curve.of("actor/grad_norm", T, g)).severity)
        g2 = g.copy()
        g2[[60, 140, 220]] *= 8
        spiky.append(gradients.detect(Curve.of("actor/grad_norm", T, g2)).severity)
    assert count(spiky) == 20 and count(calm, ("info", "warn", "critical")) <= 1, (spiky, calm)
    g3 = 0.15 * np.ones(N)
    g3[100] = np.nan
    f = gradients.detect(Curve.of("grad_norm", T, g3))
    assert f.severity == "critical" and f.evidence["nonfinite"] == 1 and "step 101" in f.sentence


def test_plateau_counts_steps_and_hours_since_the_best() -> None:
    rng = np.random.default_rng(3)
    r = 0.3 + 0.3 * (1 - np.exp(-T / 20)) - 0.0002 * np.maximum(T - 100, 0)
    c = eval_curve(r, rng)
    c = Curve(c.key, c.steps, c.values, 1.7e9 + 60.0 * c.steps)  # one minute per step
    f = plateau.detect(c, name="gsm8k", scale=1.0)
    assert f.severity == "warn" and f.evidence["steps_since_best"] >= 150
    assert f.evidence["hours_since_best"] == pytest.approx(f.evidence["steps_since_best"] / 60)
    rising = plateau.detect(eval_curve(0.3 + 0.0015 * T, rng), name="gsm8k", scale=1.0)
    assert rising.severity == "ok"


def test_finding_round_trips_and_checks_its_severity() -> None:
    f = Finding("plateau", "warn", "s", {"a": np.float64(1.5), "b": None}, ("k",), (1, 2), ("do",), ("ref",), "b")
    assert Finding.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    assert isinstance(f.to_dict()["evidence"]["a"], float)
    with pytest.raises(ValueError, match="severity"):
        Finding("x", "warning", "s")


# --- keys ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "role"), [
    ("actor/grad_norm", "grad_norm"), ("grad_norm", "grad_norm"), ("response_length/clip_ratio", "clip_ratio"),
    ("completions/clipped_ratio", "clip_ratio"), ("actor/pg_clipfrac_lower", "pg_clipfrac"),
    ("clip_ratio/low_mean", "pg_clipfrac"), ("train/clip_ratio/region_mean", "pg_clipfrac"),
    ("frac_reward_zero_std", "zero_std_frac"), ("reward_std", "reward_std"), ("kl", "kl"),
    ("actor/kl_loss", "kl"), ("critic/vf_clipfrac", "other"),
])
def test_health_roles(key: str, role: str) -> None:
    assert resolve_role(key) == role


def test_unrecognised_keys_leave_out_what_a_detector_reads_even_in_an_older_store() -> None:
    keys = ["actor/entropy", "critic/score/mean", "actor/grad_norm", "actor/pg_clipfrac_lower", "timing_s/gen",
            "response_length/clip_ratio"]
    assert choose_keys(keys, resolve_roles(keys)).unrecognised == ("timing_s/gen",)
    old = {k: ("other" if k not in ("actor/entropy", "critic/score/mean") else resolve_role(k)) for k in keys}
    assert choose_keys(keys, old).unrecognised == ("timing_s/gen",)


# --- the shared verl runs and the command -------------------------------------------------------------------

@pytest.fixture
def tb_store(shared_data: Path, sqlite_url: str) -> str:
    assert main(["--db", sqlite_url, "-q", "ingest", "tensorboard", str(shared_data / "verl-tensorboard")]) == 0
    return sqlite_url


def _doctor(capsys, url: str, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["--db", url, "-q", "doctor", "--json", *args])
    return rc, json.loads(capsys.readouterr().out)


def test_doctor_on_the_shared_verl_runs(tb_store: str, capsys) -> None:
    rc, doc = _doctor(capsys, tb_store, "--fail-on", "warn")
    assert rc == 1 and doc["failing"] >= 3
    runs = {r["run"].split("/")[-1]: r for r in doc["runs"]}
    math = runs["trtllm-qwen2-7b-tp4-8gpus"]
    by = {(f["detector"], f["benchmark"]): f for f in math["findings"]}
    div = by[("reward_eval_divergence", "DigitalLearningGmbH/MATH-lighteval")]
    assert div["severity"] == "critical" and "0.547 at step 15" in div["sentence"]
    assert div["evidence"]["benchmark_best_value"] == pytest.approx(0.547, abs=1e-3)
    col = by[("entropy_collapse", None)]
    assert col["severity"] in ALARM and "84% spent" in col["sentence"]
    assert by[("plateau", "DigitalLearningGmbH/MATH-lighteval")]["evidence"]["steps_since_best"] == 115
    detectors = {f["detector"] for f in math["findings"]}
    assert len(detectors) == 9  # every detector fired or said why it skipped
    assert all(f["needs"] for f in math["findings"] if f["severity"] == "skipped")
    for name in ("trtllm-qwen2-7b-game2048-tp4-8gpus",):
        g = {(f["detector"], f["benchmark"]): f for f in runs[name]["findings"]}
        d = g[("reward_eval_divergence", "game2048")]
        assert d["evidence"]["degenerate"] == "constant" and "not evidence of reward hacking" in d["sentence"]
    assert not any("hacking" in f["sentence"] and "not evidence" not in f["sentence"]
                   for r in doc["runs"] for f in r["findings"])
    empty = runs["gptoss-20b-game2048-trtllm-tp4"]["findings"]  # the run with no points: each detector says why
    assert len({f["detector"] for f in empty}) == 9 and all(f["severity"] == "skipped" and f["needs"] for f in empty)


def test_doctor_selection_and_usage_errors(tb_store: str, shared_data: Path, capsys) -> None:
    assert main(["--db", tb_store, "-q", "ingest", "file", str(shared_data / "verl-console")]) == 0
    rc, doc = _doctor(capsys, tb_store, "--experiment", "verl_example")
    assert rc == 0 and doc["fail_on"] is None and {r["project"] for r in doc["runs"]} == {"verl_example"}
    assert len(doc["runs"]) == 3
    rc, doc = _doctor(capsys, tb_store, "--run", "1", "--fail-on", "critical")
    assert rc == 1 and [r["run_id"] for r in doc["runs"]] == [1]
    assert main(["--db", tb_store, "-q", "doctor", "--run", "nope"]) == 2
    assert main(["--db", tb_store, "-q", "doctor", "--experiment", "nope"]) == 2
    assert main(["--db", tb_store, "doctor", "--fail-on", "warning"]) == 2
    assert "invalid choice: 'warning'" in capsys.readouterr().err


def test_fit_json_carries_health_and_the_collapse_verdict_is_no_longer_healthy(tb_store: str, capsys) -> None:
    capsys.readouterr()
    assert main(["--db", tb_store, "-q", "fit", "--json", "--run", "1"]) == 0
    fit = json.loads(capsys.readouterr().out)[0]
    assert fit["collapse"]["verdict"] == "collapsed" and "84%" in fit["collapse"]["message"]
    assert fit["health_worst"] == "critical" and len(fit["health"]) == 11
    math = next(b for b in fit["benchmarks"] if "MATH" in b["key"])
    assert math["status"] == "degenerate" and math["reason"].startswith("falling: from 0.547 at best (step 15)")


def test_health_in_context_is_stored_by_the_writer_and_read_as_computed(tb_store: str, monkeypatch) -> None:
    """The findings in context are stored at write time (one ``health`` row per run, and its grid column): read
    as stored they equal what is computed in memory; a store whose cross-run results are of another version
    is computed in memory, never read as stored."""
    store = Store.open(tb_store)
    results = current_results(store)
    assert cross_run_is_current(store)
    stored = current_health(store, results)
    computed = health_payload(results, results, current_cross_run(store, None, results).live())
    assert json.loads(json.dumps(stored)) == json.loads(json.dumps(computed))
    math = next(r for r in stored if r["run"].endswith("/trtllm-qwen2-7b-tp4-8gpus"))
    grid = current_health_grid(store)
    assert grid[math["run_id"]]["reward_eval_divergence"] == "critical"
    assert grid == {int(r["run_id"]): health_grid_row(r["findings"]) for r in computed if r["findings"]}
    assert set(grid[math["run_id"]]) == set(DETECTORS)
    # stored results of the previous cross-run version: not current, so nothing is read from the health rows
    doc = store.cross_run(CROSS_RUN_KIND)
    store.save_cross_run(CROSS_RUN_KIND, doc[0], doc[1], {k: v for k, v in doc[2].items() if k != "cross_run_version"})
    assert not cross_run_is_current(store)
    read: list[str | None] = []
    original = AnalysesMixin.analyses_frame
    monkeypatch.setattr(AnalysesMixin, "analyses_frame",
                        lambda self, kind=None, run_ids=None: read.append(kind) or original(self, kind, run_ids))
    assert json.loads(json.dumps(current_health(store, results[:1]))) == json.loads(json.dumps(computed[:1]))
    assert current_health_grid(store) == grid and HEALTH_KIND not in read
    refresh_analyses(store)  # the next writer stores them again
    assert cross_run_is_current(store)


def test_migration_0008_adds_the_health_column_and_its_downgrade_leaves_nothing_stale(tb_store: str) -> None:
    from alembic import command

    store = Store.open(tb_store)
    grid = current_health_grid(store)
    command.downgrade(alembic_config(store.engine), "0007")  # the previous release's schema
    store.engine.dispose()
    assert "health" not in {c["name"] for c in inspect(store.engine).get_columns("analyses")}
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM analyses WHERE kind = 'health'")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM cross_run")).scalar() == 0
    store = Store.open(tb_store)  # a writer upgrades it
    assert current_revision(store.engine) == head_revision() == "0008"
    assert not cross_run_is_current(store) and current_health_grid(store) == grid  # computed in memory
    refresh_analyses(store)
    assert cross_run_is_current(store) and current_health_grid(store) == grid  # read as stored


# --- read-time context: the finished runs and the live forecast ---------------------------------------------

def _result(run_id: int, finished: bool, findings: list[Finding], spent: dict[str, float],
            hours_per_step: float | None = None) -> RunAnalysis:
    return analyses.analysis(run_id=run_id, run=f"r{run_id}", project="p", progress="", finished=finished,
                             performance_key="val/acc", range={"lo": 0.0, "hi": 1.0},
                             health=[f.to_dict() for f in findings],
                             health_profile={"entropy_spent": spent, "hours_per_step": hours_per_step})


def test_findings_say_where_the_run_stands_and_quote_the_live_forecast() -> None:
    def collapse(spent: float) -> Finding:
        return Finding("entropy_collapse", "warn", "entropy is collapsing.",
                       {"entropy_spent": spent, "performance_recent": 0.60, "cohort_value": spent},
                       ("actor/entropy", "val/acc"), (0, 300))

    def clip(v: float) -> Finding:
        return Finding("clip_saturation", "info", f"{v:.0%} clipped.", {"cohort_metric": "clip fraction",
                                                                        "cohort_value": v}, ("actor/pg_clipfrac",))

    finished = [_result(i, True, [collapse(s), clip(c)], {"20": s, "100": s + 0.1})
                for i, s, c in ((1, 0.2, 0.05), (2, 0.3, 0.12), (3, 0.5, 0.30))]
    live_run = _result(9, False, [collapse(0.45), clip(0.15)], {"20": 0.45}, hours_per_step=0.02)
    live = {9: {"predicted_final": 0.604, "interval": [0.598, 0.611], "horizon_step": 1000, "from_step": 620,
                "fraction_done": 0.62, "method": "law", "backtest_mae": 0.009, "backtest_n": 3}}
    doc = health_payload([*finished, live_run], [live_run], live)
    (run,) = doc
    found = {f["detector"]: f for f in run["findings"]}
    col = found["entropy_collapse"]["sentence"]
    assert "Entropy spent by step 20 (45%): faster than 2 of your 3 finished runs." in col
    assert ("The live forecast for step 1000: the remaining 38% of the planned steps buy +0.4 pt [-0.2, +1.1] "
            "(law; its backtest error on 3 finished runs is 0.9 pt); stopping at step 620 saves 380 steps, "
            "about 7.6 h.") in col
    assert found["entropy_collapse"]["evidence"]["steps_left"] == 380
    assert found["clip_saturation"]["sentence"].endswith("Clip fraction 0.15: higher than 2 of your 3 finished runs.")
    assert run["worst"] == "warn" and run["findings"][0]["detector"] == "entropy_collapse"
    # a finished run quotes no forecast, and is compared with the others only
    (first,) = health_payload([*finished, live_run], [finished[2]], live)
    assert "live forecast" not in first["findings"][0]["sentence"]
    assert "faster than all 2 of your finished runs" in first["findings"][0]["sentence"]


def test_trl_grpo_keys_feed_the_detectors_and_leave_nothing_unrecognised(tmp_path: Path, sqlite_url: str,
                                                                          capsys) -> None:
    """A TRL GRPOTrainer-shaped log (wide CSV: its own key names) through `ingest file` and `doctor`."""
    rng = np.random.default_rng(7)
    cols = {
        "entropy": 0.9 * np.exp(-T / 120) + 0.05 + rng.normal(0, 0.01, N),
        "reward": 0.3 + 0.5 * (1 - np.exp(-T / 60)) + rng.normal(0, 0.02, N),
        "reward_std": 0.4 * np.exp(-T / 150) + 0.02,
        "frac_reward_zero_std": np.clip(0.1 + 0.6 * T / N + rng.normal(0, 0.02, N), 0, 1),
        "kl": 0.002 * T, "clip_ratio/region_mean": np.full(N, 0.004), "clip_ratio/low_mean": np.full(N, 0.001),
        "completions/clipped_ratio": np.full(N, 0.01), "completions/mean_length": 200 + rng.normal(0, 5, N),
        "grad_norm": 0.2 * np.exp(rng.normal(0, 0.1, N)),
    }
    lines = ["step," + ",".join(cols) + ",eval_accuracy"]
    for i, t in enumerate(T):
        ev = f"{0.3 + 0.4 * (1 - np.exp(-t / 60)) + rng.normal(0, 0.005):.4f}" if t % 10 == 0 else ""
        lines.append(f"{t}," + ",".join(f"{v[i]:.6g}" for v in cols.values()) + f",{ev}")
    path = tmp_path / "grpo-run.csv"
    path.write_text("\n".join(lines) + "\n")
    assert main(["--db", sqlite_url, "-q", "ingest", "file", str(path)]) == 0
    _, doc = _doctor(capsys, sqlite_url)
    found = {f["detector"]: f for f in doc["runs"][0]["findings"]}
    assert found["advantage_collapse"]["keys"] == ["frac_reward_zero_std", "reward_std"]
    assert "reward spread (reward_std) went 0.381 → 0.0893" in found["advantage_collapse"]["sentence"]
    assert found["advantage_collapse"]["severity"] == "warn"  # ~66% of groups uniform over the last quarter
    assert found["kl_drift"]["keys"] == ["kl"] and found["kl_drift"]["severity"] == "warn"  # 0.5–0.6 nats
    assert set(found["clip_saturation"]["keys"]) == {"clip_ratio/region_mean", "clip_ratio/low_mean"}
    assert found["length_pathology"]["keys"] == ["completions/clipped_ratio", "completions/mean_length"]
    assert found["gradient_pathology"]["keys"] == ["grad_norm"]
    assert found["reward_eval_divergence"]["keys"] == ["reward", "eval_accuracy"]
    assert all(f["severity"] != "skipped" for f in found.values())
    capsys.readouterr()
    assert main(["--db", sqlite_url, "-q", "runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["unrecognised_keys"] == []  # every TRL key is read or mapped
