"""Benchmark: the ``entropy-dash ingest`` commands as a user meets them — whole processes, analyses included —
next to the naive way, in the same run.

Run: ``python bench/ingest.py`` (part of ``make bench``; ``--small`` for a quick check, ``--reps N`` for the
number of repetitions whose median is printed). In one process it

1. starts ``mlflow server`` (SQLite backend, 1 worker) on a loopback port and logs 50 runs × 3 keys ×
   5,000 steps into it with ``log_batch``;
2. times, each as a process and each into a fresh SQLite store: ``entropy-dash ingest mlflow URL`` (the
   whole command: start-up, sync, analyses), the same with ``--no-analyse`` (the sync alone), and the naive
   way — a Python process running ``MlflowClient.get_metric_history`` per run and key +
   ``DataFrame.to_sql`` — and prints the medians, points/s, the ratios (goal ≥ 5×) and the server's CPU
   time per point;
3. the same against a server with MLflow's default 4 workers on the same backend, and the sync alone from
   that backend's store URI (``sqlite:///…/mlflow.db``, read with SQL) against the naive loop on that URI;
4. a re-sync of the 50 unchanged runs (whole command; goal ≤ 1 s) and ``entropy-dash --help`` (goal ≤ 0.3 s).

``ingest file`` of a 2-million-point JSONL is ``bench/ingest_file.py``.

Exits 0; the goals are printed next to the figures, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEYS = ("actor/entropy", "critic/score/mean", "val-core/bench/acc/mean_at_1")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
Row = tuple[str, str, str]


def entropy_dash() -> list[str]:
    """The console script beside this interpreter (what a user runs), on this tree (PYTHONPATH)."""
    script = Path(sys.executable).with_name("entropy-dash")
    return [str(script)] if script.exists() else [sys.executable, "-m", "entropy_dash.cli"]


def log_runs(url: str, experiment: str, n_runs: int, steps: int, prefix: str, threads: int = 4) -> list[str]:
    """``n_runs`` runs × len(KEYS) keys × ``steps`` steps, 1,000 metrics per ``log_batch`` call."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    now = int(time.time() * 1000)

    def one(i: int) -> str:
        run_id = client.create_run(exp_id, run_name=f"{prefix}-{i:03d}").info.run_id
        rng = np.random.default_rng(i)
        t = np.arange(1, steps + 1)
        vals = {KEYS[0]: 1.2 * np.exp(-t / (steps / 4)) + 0.05, KEYS[1]: rng.uniform(0, 1, steps),
                KEYS[2]: 0.9 - 0.3 * np.exp(-t / (steps / 4))}
        ms = [Metric(k, float(v), now + int(s), int(s)) for k, vs in vals.items()
              for s, v in zip(t.tolist(), vs.tolist(), strict=True)]
        for lo in range(0, len(ms), 1000):
            client.log_batch(run_id, metrics=ms[lo : lo + 1000])
        client.set_terminated(run_id)
        return run_id

    # MLflow prints 'View run …' links on stdout: keep them off the benchmark's table
    with contextlib.redirect_stdout(sys.stderr), ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n_runs)))


# ---------------------------------------------------------------------------------------------- processes
def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall time of a whole process and its stdout; a failure stops the benchmark with its stderr."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return dt, out.stdout


def ingest_cmd(url: str, db: Path, *extra: str) -> list[str]:
    return [*entropy_dash(), "ingest", "mlflow", url, "--experiment", "bench", "--db", f"sqlite:///{db}",
            "--json", "--quiet", *extra]


def naive_child(url: str, run_ids_file: str, db: str) -> None:
    """The naive way, as its own process: get_metric_history per run and key + DataFrame.to_sql."""
    import pandas as pd
    from mlflow.tracking import MlflowClient
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{db}")
    client = MlflowClient(url)
    n = 0
    for rid in Path(run_ids_file).read_text().split():
        for key in KEYS:
            hist = client.get_metric_history(rid, key)
            df = pd.DataFrame({"run_id": rid, "key": key, "step": [m.step for m in hist],
                               "value": [m.value for m in hist], "timestamp": [m.timestamp for m in hist]})
            df.to_sql("metric_points", engine, if_exists="append", index=False)
            n += len(df)
    print(json.dumps({"points": n}))


def server_cpu(pid: int) -> float:
    """CPU seconds used so far by the processes that answer requests: ``pid`` and its descendants, except
    the server's background job runner and its queue consumers (they poll, whatever the load)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            p = int(stat.parent.name)
            parent[p] = int(fields[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
            background = b"huey" in cmdline or b"_job_runner" in cmdline
            cpu[p] = 0.0 if background else (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {pid}, [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier and p not in tree]
        tree.update(kids)
        frontier = kids
    return sum(cpu.get(p, 0.0) for p in tree)


def warm_up(server) -> None:  # noqa: ANN001 - tests.fixtures_servers.MlflowServer
    """Every worker opens its tracking store on its first requests (seconds of CPU): not part of any timing."""
    import requests

    def one(_: int) -> None:
        requests.post(f"{server.url}/api/2.0/mlflow/runs/search", json={"experiment_ids": ["0", "1"],
                                                                       "max_results": 1}, timeout=120)

    with ThreadPoolExecutor(2 * server.workers) as pool:
        list(pool.map(one, range(8 * server.workers)))


def repeat(reps: int, fn: Callable[[int], float]) -> tuple[float, list[float]]:
    times = [fn(i) for i in range(reps)]
    return statistics.median(times), times


def spread(times: list[float]) -> str:
    return "runs: " + ", ".join(f"{t:.1f}" for t in times) + " s"


def compare(server, run_ids_file: Path, total: int, n_runs: int, tmp: Path, label: str, reps: int) -> list[Row]:
    """Whole command, sync alone and the naive loop against one server: the table rows."""
    cpu: dict[str, list[float]] = {"ours": [], "naive": []}
    slug = f"w{server.workers}"

    def ours(i: int, *extra: str) -> float:
        db = tmp / f"ours-{slug}-{'sync' if extra else 'whole'}-{i}.db"
        c0 = server_cpu(server.proc.pid)
        dt, out = timed(ingest_cmd(server.url, db, *extra))
        if not extra:
            cpu["ours"].append(server_cpu(server.proc.pid) - c0)
        summary = json.loads(out)
        assert summary["points"] == total, summary
        assert summary["analysed"] == (0 if extra else n_runs), summary
        return dt

    def naive(i: int) -> float:
        db = tmp / f"naive-{slug}-{i}.db"
        c0 = server_cpu(server.proc.pid)
        dt, out = timed([sys.executable, __file__, "--naive-child", server.url, str(run_ids_file), str(db)])
        cpu["naive"].append(server_cpu(server.proc.pid) - c0)
        assert json.loads(out.strip().splitlines()[-1])["points"] == total
        return dt

    warm_up(server)
    t_naive, naive_runs = repeat(reps, naive)
    t_whole, whole_runs = repeat(reps, ours)
    t_sync, sync_runs = repeat(reps, lambda i: ours(i, "--no-analyse"))
    us = {k: statistics.median(v) / total * 1e6 for k, v in cpu.items()}
    return [
        (f"[{label}] entropy-dash ingest mlflow, whole command", f"{t_whole:.1f} s",
         f"{total / t_whole:,.0f} points/s; {spread(whole_runs)}"),
        (f"[{label}]   the sync alone (--no-analyse)", f"{t_sync:.1f} s",
         f"{total / t_sync:,.0f} points/s; analyses ≈ {t_whole - t_sync:.1f} s; {spread(sync_runs)}"),
        (f"[{label}] naive process (get_metric_history + to_sql)", f"{t_naive:.1f} s",
         f"{total / t_naive:,.0f} points/s; {spread(naive_runs)}"),
        (f"[{label}] ratio naive / ours: whole command", f"{t_naive / t_whole:.1f}×", "goal ≥ 5×"),
        (f"[{label}] ratio naive / ours: sync alone", f"{t_naive / t_sync:.1f}×", ""),
        (f"[{label}] server CPU per point: ours / naive", f"{us['ours']:.1f} / {us['naive']:.1f} µs",
         "the server's floor: its CPU time divided among its workers"),
    ]


def store_uri_rows(backend: Path, run_ids_file: Path, total: int, tmp: Path, reps: int) -> list[Row]:
    """The same runs read from the server's SQLite store by URI (no server): our SQL read vs the naive loop
    through MLflow's own store."""
    uri = f"sqlite:///{backend}"

    def ours(i: int) -> float:
        dt, out = timed(ingest_cmd(uri, tmp / f"ours-uri-{i}.db", "--no-analyse"))
        assert json.loads(out)["points"] == total, out
        return dt

    def naive(i: int) -> float:
        dt, out = timed([sys.executable, __file__, "--naive-child", uri, str(run_ids_file), str(tmp / f"naive-uri-{i}.db")])
        assert json.loads(out.strip().splitlines()[-1])["points"] == total
        return dt

    t_naive, naive_runs = repeat(reps, naive)
    t_ours, ours_runs = repeat(reps, ours)
    return [("[store URI sqlite:///…/mlflow.db] ingest mlflow --no-analyse (SQL)", f"{t_ours:.1f} s",
             f"{total / t_ours:,.0f} points/s; {spread(ours_runs)}"),
            ("[store URI] naive process (get_metric_history + to_sql)", f"{t_naive:.1f} s",
             f"{total / t_naive:,.0f} points/s; {spread(naive_runs)}"),
            ("[store URI] ratio naive / ours: sync alone", f"{t_naive / t_ours:.1f}×", "")]


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick check: 10 runs × 1,000 steps")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each timed command (median printed)")
    ap.add_argument("--naive-child", nargs=3, metavar=("URL", "RUN_IDS", "DB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive_child:
        naive_child(*args.naive_child)
        return 0
    from tests.fixtures_servers import MlflowServer

    n_runs, steps = (10, 1_000) if args.small else (50, 5_000)
    total = n_runs * steps * len(KEYS)
    load0 = os.getloadavg()[0]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="entropy-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = MlflowServer(tmp)
        server.start()
        try:
            t0 = time.perf_counter()
            run_ids = log_runs(server.url, "bench", n_runs, steps, "big")
            run_ids_file = tmp / "run_ids.txt"
            run_ids_file.write_text("\n".join(run_ids))
            print(f"logged {n_runs} runs × {len(KEYS)} keys × {steps:,} steps = {total:,} points into "
                  f"{server.url} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            rows += compare(server, run_ids_file, total, n_runs, tmp, "1 server worker", args.reps)
        finally:
            server.stop()
        # the same backend behind MLflow's default of 4 workers, which answer concurrent requests in parallel
        server = MlflowServer(tmp, workers=4)
        server.start()
        try:
            rows += compare(server, run_ids_file, total, n_runs, tmp, "4 server workers (MLflow's default)",
                            args.reps)
            db = tmp / "ours-w4-whole-0.db"
            t_re, re_runs = repeat(max(args.reps, 5), lambda i: timed(ingest_cmd(server.url, db))[0])
            rows.append((f"re-sync of the {n_runs} unchanged runs, whole command", f"{t_re:.2f} s",
                         f"goal ≤ 1 s; {', '.join(f'{t:.2f}' for t in re_runs)} s"))
        finally:
            server.stop()
        rows += store_uri_rows(server.root / "mlflow.db", run_ids_file, total, tmp, args.reps)
        t_help, help_runs = repeat(5, lambda i: timed([*entropy_dash(), "--help"])[0])
        rows.append(("entropy-dash --help", f"{t_help:.2f} s",
                     f"goal ≤ 0.3 s; {', '.join(f'{t:.2f}' for t in help_runs)} s"))
    width = max(len(r[0]) for r in rows)
    print(f"{'ingest benchmark':{width}}  {'median':>14}  note")
    for name, fig, note in rows:
        print(f"{name:{width}}  {fig:>14}  {note}")
    print(f"{os.cpu_count()} cores; load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
          f"mlflow server on SQLite, {args.reps} repetitions each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
