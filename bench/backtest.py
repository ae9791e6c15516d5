"""Backtest evidence and analysis speed: how well each forecast did on runs it was not tuned on.

Run: ``python bench/backtest.py [--cutoff 0.1 --cutoff 0.3 …] [--quick]``. For each set of finished runs it
replays every run at the 17 fractions of ``models.backtest.GRID`` (10% to 90%: the run cut there and sent
down the live path) and prints, per fraction, the MAE (points of accuracy) and the coverage of the 95%
interval of every method, the cross-run model and the headline — the headline of each run chosen, and its
interval calibrated, on the *other* runs of the set only (leave-one-run-out: ``analysis.forecasting``),
exactly as ``backtest --json`` does for a store holding that set — and how far the headline is from the best
single method (chosen after the fact, on all the runs), beside the noise of that difference: the standard
error of the paired per-run differences |headline error| − |best method's error|, and the verdict of the
one-sided 95% paired t-test (worse than the best method by more than noise when the gap exceeds
t(0.95; n − 1) standard errors: ``models.selection.gap_to``).
Then the time of the replay for 25, 50 and 100 simulated finished runs: the per-run replays on the grid (what
ingest does for a changed run) and the cross-run step over all of them (what follows every change). Sets:

1. the demo sweep (``entropy_dash.simulator.demo_sweep()``, 7 simulated GRPO runs);
2. 24 more simulated runs: other seeds, learning rates from 0.1 to 1 (some still rising at 30%), harder
   tasks, noisier validation, an entropy bonus;
3. the real verl runs in ``../shared/data``: the three console logs and the gsm8k TensorBoard run (its gsm8k
   benchmark) — skipped when that folder is absent.

Then the speed of the whole per-run analysis (law with interval, benchmarks, stages, collapse, backtests at
four cutoffs; ``analysis.run.analyse_run``) on one core, for 5k-step runs with an evaluation every 10 steps
and 20k-step runs with one every 50, beside the analysis of the first release measured in the same run (its
code taken from git, commit ``BASELINE``; skipped when git or that commit is not available).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.forecasting import backtest_at, cross_run  # noqa: E402
from analysis.results import RunAnalysis  # noqa: E402
from analysis.run import backtest_of, replay_end  # noqa: E402
from analysis.version import ANALYSIS_VERSION, SCHEMA_VERSION  # noqa: E402
from models.backtest import GRID  # noqa: E402
from models.metric_range import metric_range  # noqa: E402
from models.selection import Gap, gap_to  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
BASELINE = "231b9d6"  # the analysis before forecasts were chosen across runs


# --------------------------------------------------------------------------------------------- run sets


def simulated_sets(quick: bool) -> tuple[list, list]:
    from entropy_dash import simulator as sim

    demo = [_sim_run(sim, cfg, "demo") for cfg in sim.demo_sweep()]
    extra = []
    variants = [dict(lr=0.1), dict(lr=0.15), dict(lr=0.25), dict(lr=0.5), dict(lr=1.0), dict(lr=0.5, difficulty=1.6),
                dict(lr=0.25, val_samples=1), dict(lr=0.5, entropy_bonus=0.005)]
    sizes = ["0.5B", "1.5B", "7B"]
    n = 8 if quick else 24
    for i in range(n):
        v = variants[i % len(variants)]
        size = sizes[(i // len(variants)) % len(sizes)]
        cfg = sim.sized(size, seed=1000 + i, steps=300, **{"val_samples": 4, **v})
        extra.append(_sim_run(sim, replace(cfg, name=f"{cfg.name}-s{1000 + i}"), "sims"))
    return demo, extra


def _sim_run(sim, cfg, project: str) -> dict:  # noqa: ANN001 - simulator module and config
    run = sim.simulate(cfg)
    (hs, hv), (ps, pv) = run.entropy, run.validation
    return {"name": cfg.name, "project": project, "h": pd.Series(hv, index=hs), "r": pd.Series(pv, index=ps),
            "key": sim.val_key(cfg.task)}


def real_set() -> list:
    from ingest.tensorboard_events import read_event_files
    from ingest.verl_log import parse_verl_log

    out = []
    for p in sorted((SHARED / "verl-console").glob("*.log")):
        s = {x.key: x for x in parse_verl_log(p).series}
        e, v = s["actor/entropy_loss"], s["val/test_score/openai/gsm8k"]
        out.append({"name": p.stem, "project": "verl-console", "h": pd.Series(e.values, index=e.steps),
                    "r": pd.Series(v.values, index=v.steps), "key": v.key})
    folder = SHARED / "verl-tensorboard" / "verl_grpo_example_gsm8k_math" / "trtllm-qwen2-7b-tp4-8gpus"
    series, _ = read_event_files(sorted(folder.glob("events.out.tfevents.*")), str(folder))
    s = {x.key: x for x in series}
    e, v = s["actor/entropy"], s["val-core/openai/gsm8k/acc/mean@1"]
    out.append({"name": "tb-qwen2-7b-gsm8k", "project": "verl-tb", "h": pd.Series(e.values, index=e.steps),
                "r": pd.Series(v.values, index=v.steps), "key": v.key})
    return out


def results_of(runs: list, cutoffs: list[float]) -> list[dict]:
    """Run analyses as ``analysis.run`` stores them (the parts the cross-run layer reads; the others empty): every
    run replayed toward its last step (these runs have no planned length: they ended where they were planned to)."""
    out = []
    for i, run in enumerate(runs):
        h, r = run["h"].dropna(), run["r"].dropna()
        rng = metric_range(run["key"], r.to_numpy())
        end = replay_end(None, int(max(h.index.max(), r.index.max())))
        out.append(RunAnalysis.from_dict({
            "schema_version": SCHEMA_VERSION, "analysis_version": ANALYSIS_VERSION, "run_id": i + 1,
            "run": run["name"], "project": run["project"], "status": "ok", "reason": None, "law": None,
            "benchmarks": [], "live": None, "entropy_key": "h", "performance_key": run["key"],
            "performance_kind": None, "key_reason": None, "unrecognised_keys": [], "n_entropy": len(h),
            "n_performance": len(r), "n_entropy_nonfinite": 0, "n_performance_nonfinite": 0, "last_step": end,
            "finished": True, "progress": "", "range": rng.to_dict(),
            "backtests": {f"{c:g}": backtest_of(h, r, c, rng, "auto", end) for c in cutoffs}}))
    return out


def report(title: str, runs: list, cutoffs: list[float]) -> None:
    t0 = time.perf_counter()
    results = results_of(runs, cutoffs)
    print(f"\n## {title}: {len(runs)} runs  [replayed at {len(cutoffs)} fractions in {time.perf_counter() - t0:.1f} s]")
    print("MAE pt (coverage of the 95% interval); gap = headline − best single method ± the SE of the paired "
          "|error| differences (within noise: gap ≤ t(0.95; n − 1) SE, a one-sided paired t-test)")
    for c in cutoffs:
        bt = backtest_at(results, c)
        if bt.summary is None:
            print(f"{c:4.0%}: no run could be replayed")
            continue
        sc = bt.summary.scores
        names = ["headline"] + [m for m in sc if m != "headline"]
        g = _gap(bt)
        verdict = "within noise" if g.within_noise else "WORSE than the best method by more than noise"
        print(f"{c:4.0%} ({bt.summary.n_runs} runs)  "
              + "  ".join(f"{m} {100 * sc[m].mae:.2f} ({_pct(sc[m].coverage)})" for m in names)
              + f"  | gap {100 * g.gap:+.2f} ± {100 * g.se:.2f} pt vs {bt.summary.best_method} "
              f"(bound {100 * g.bound:.2f}): {verdict}")
        for s in bt.skipped if c == cutoffs[0] else ():
            print(f"    skipped {s['run']}: {s['reason']}")


def _gap(bt) -> Gap:  # noqa: ANN001 - analysis.forecasting.CutoffBacktest
    """The headline's paired gap to the best single method (``models.selection.gap_to``)."""
    import numpy as np

    t = bt.table
    k = t.methods.index(bt.summary.best_method)
    return gap_to(np.array([h.predicted for h in bt.headlines]) - t.observed, t.errors[:, k])


def replay_speed(quick: bool) -> None:
    """Replay time against the number of finished runs (one process; ingest spreads the per-run part over
    the cores)."""
    from entropy_dash import simulator as sim

    print("\n## replay time (17-point grid; one process)")
    sizes = (10, 25) if quick else (25, 50, 100)
    base = None
    for n in sizes:
        runs = [_sim_run(sim, replace(cfg := sim.sized(("0.5B", "1.5B", "7B")[i % 3], seed=5000 + i, steps=300,
                                                             val_samples=4, lr=(0.25, 0.5, 1.0)[i % 3]),
                                      name=f"{cfg.name}-{i}"), "speed") for i in range(n)]
        t0, c0 = time.perf_counter(), time.process_time()
        results = results_of(runs, list(GRID))
        c1 = time.process_time()
        cross_run(results)
        t2, c2 = time.perf_counter(), time.process_time()
        base = base or ((c2 - c0) / n)
        # CPU time: the per-run part spreads over the cores at ingest (one process per core), the cross-run
        # step does not; on 2 cores the wall time is about per-run / 2 + cross-run
        two_cores = (c1 - c0) / 2 + (c2 - c1)
        print(f"{n:4d} finished runs: per-run replays {c1 - c0:.1f} s CPU ({(c1 - c0) / n * 1000:.0f} ms a run), "
              f"cross-run step {c2 - c1:.1f} s CPU; wall {t2 - t0:.1f} s in one process, ≈ {two_cores:.1f} s on 2 "
              f"cores (goal for 100 runs: ≤ 60 s); CPU per run {(c2 - c0) / n / base:.2f}× the smallest set's")


def fit_flatness(quick: bool) -> None:
    """`fit --run X --json` (a whole command, one run) in a store of 10 and of 100 finished CSV runs:
    the cross-run results are stored at ingest, so the command about one run should cost the same."""
    import os

    from entropy_dash import simulator as sim

    print("\n## `fit --run X --json` against the store's size (whole command; cross-run results read as stored)")
    times = {}
    for n in ((5, 20) if quick else (10, 100)):
        tmp = Path(tempfile.mkdtemp(prefix="entropy-dash-flat-"))
        folder = tmp / "runs"
        folder.mkdir()
        for i in range(n):
            cfg = sim.sized(("0.5B", "1.5B", "7B")[i % 3], seed=7000 + i, steps=300, val_samples=4,
                            lr=(0.25, 0.5, 1.0)[i % 3])
            run = sim.simulate(cfg)
            (hs, hv), (ps, pv) = run.entropy, run.validation
            df = pd.DataFrame({"step": hs, "actor/entropy": hv}).merge(
                pd.DataFrame({"step": ps, "val-core/gsm8k/acc/mean@1": pv}), on="step", how="outer")
            df.sort_values("step").to_csv(folder / f"run-{i:03d}.csv", index=False)
        db = f"sqlite:///{tmp / 'store.db'}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cli = [sys.executable, "-m", "entropy_dash.cli"]
        t0 = time.perf_counter()
        subprocess.run([*cli, "ingest", "file", str(folder), "--finished", "--planned-steps", "300", "--db", db,
                        "--quiet"], check=True, env=env, capture_output=True)
        ingest = time.perf_counter() - t0
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([*cli, "fit", "--run", "run-000", "--json", "--db", db], check=True, env=env,
                           capture_output=True)
            best = min(best, time.perf_counter() - t0)
        times[n] = best
        print(f"{n:4d} finished runs: ingest with analyses and replay {ingest:.1f} s; `fit --run run-000 --json` "
              f"{best:.2f} s (best of 3)")
    a, b = sorted(times)
    print(f"growth {b // a}× the runs: `fit --run` ×{times[b] / times[a]:.2f}")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


# --------------------------------------------------------------------------------------------- speed

SPEED_SCRIPT = r"""
import sys, time, numpy as np, pandas as pd
steps, every, n_runs, new = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "new"
rng = np.random.default_rng(0)
def run(seed):
    r = np.random.default_rng(seed)
    s = np.arange(1, steps + 1); k = r.uniform(20, 200); a = r.uniform(0.4, 0.9)
    h = 0.05 + 0.8 * (s / k + 1) ** -a + r.normal(0, 0.01, steps)
    rs = np.arange(0, steps + 1, every); hr = 0.05 + 0.8 * (rs / k + 1) ** -a
    v = np.clip(1.1 - 0.35 * np.exp(hr) + r.normal(0, 0.01, len(rs)), 0, 1)
    return pd.Series(h, index=s, name="actor/entropy"), pd.Series(v, index=rs, name="val-core/x/acc/mean@1")
keys = pd.DataFrame({"key": ["actor/entropy", "val-core/x/acc/mean@1"], "role": ["entropy", "performance"],
                     "n": [steps, steps // every + 1], "n_nonfinite": [0, 0], "first_step": [1, 0],
                     "last_step": [steps, steps]})
row = {"id": 1, "name": "bench", "keys_seen": list(keys["key"]), "state": "finished", "params": {}}
runs = [run(i) for i in range(n_runs)]
if new:
    from analysis.keys import choose_keys
    from analysis.run import analyse_run
    from analysis.settings import RunSettings
    choice = choose_keys(keys["key"], dict(zip(keys["key"], keys["role"])))
    f = lambda h, r: analyse_run(row, keys, choice, {h.name: h, r.name: r}, RunSettings())
else:
    from entropy_dash.analysis import analyse_run
    from ingest.keys import choose_keys
    choice = choose_keys(keys["key"], dict(zip(keys["key"], keys["role"])))
    def f(h, r):
        s = pd.concat([pd.DataFrame({"key": x.name, "step": x.index, "value": x.values}) for x in (h, r)])
        return analyse_run(row, keys, s, choice)
f(*runs[0])
t0 = time.process_time()
for h, r in runs:
    f(h, r)
print(n_runs / (time.process_time() - t0))
"""


def speed(quick: bool) -> None:
    print("\n## speed of the whole per-run analysis (one core, CPU time)")
    old_tree = _baseline_tree()
    for steps, every in ((5000, 10), (20000, 50)):
        n = 10 if quick else 30
        new = _runs_per_second(ROOT, steps, every, n, "new")
        old = _runs_per_second(old_tree, steps, every, max(2, n // 10), "old") if old_tree else None
        vs = f"; first release {old:.2f} runs/s: {new / old:.0f}× faster" if old else ""
        goal = 20 if steps == 5000 else 5
        print(f"{steps:,} steps, an evaluation every {every}: {new:.1f} runs/s (goal ≥ {goal}){vs}")


def _runs_per_second(tree: Path, steps: int, every: int, n: int, which: str) -> float:
    out = subprocess.run([sys.executable, "-c", SPEED_SCRIPT, str(steps), str(every), str(n), which],
                         env={"PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                              "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True, cwd=tree)
    return float(out.stdout.strip().splitlines()[-1])


def _baseline_tree() -> Path | None:
    tmp = Path(tempfile.mkdtemp(prefix="entropy-dash-baseline-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
    except (OSError, subprocess.CalledProcessError):
        print(f"(the first release's code, commit {BASELINE}, is not available from git: no comparison)")
        return None
    return tmp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutoff", type=float, action="append", help="fraction (repeatable; default the 17-point grid)")
    ap.add_argument("--quick", action="store_true", help="fewer simulated runs and speed repetitions")
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()
    cutoffs = args.cutoff or list(GRID)
    demo, extra = simulated_sets(args.quick)
    report("demo sweep (simulated GRPO)", demo, cutoffs)
    report("more simulated runs (seeds, learning rates, difficulty, noise, entropy bonus)", extra, cutoffs)
    if SHARED.is_dir():
        report("real verl runs (3 console logs + the gsm8k TensorBoard run)", real_set(), cutoffs)
    else:
        print(f"\n(no real logs at {SHARED}: skipped)")
    if not args.no_speed:
        replay_speed(args.quick)
        fit_flatness(args.quick)
        speed(args.quick)


if __name__ == "__main__":
    main()
