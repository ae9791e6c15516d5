"""Benchmark: ``ingest mlflow`` vs the naive way against a real ``mlflow server``, re-sync of unchanged runs,
and a 2-million-point JSONL file through ``ingest file``.

Run: ``python bench/ingest.py`` (part of ``make bench``; ``--small`` for a quick check). In one process it

1. starts ``mlflow server`` (sqlite backend, 1 worker) on a loopback port and logs 50 runs × 3 keys ×
   5,000 steps into it with ``log_batch`` (1,000 metrics a call, a few threads);
2. times ``MlflowSource`` + ``sync_source`` into a fresh SQLite store against the naive way —
   ``MlflowClient.get_metric_history`` per run and key + ``DataFrame.to_sql`` into another fresh SQLite
   file — and prints points/s of both and their ratio (goal ≥ 5×);
3. adds 50 smaller runs (100 in the experiment), syncs them, then times a re-sync when nothing changed
   (goal ≤ 1 s);
4. writes a JSONL file of 100 runs × 20,000 steps (long form: run, key, step, value) and ingests it with
   ``FileSource`` + ``sync_source`` in a child process, reporting points/s and the child's peak resident
   memory (``VmHWM``; goal ≤ 500 MB).

Exits 0; the goals are printed next to the figures, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEYS = ("actor/entropy", "critic/score/mean", "val-core/bench/acc/mean_at_1")


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


def ours(url: str, experiment: str, db: Path) -> tuple[int, float]:
    from db import Store
    from ingest.mlflow_source import MlflowSource
    from ingest.sync import sync_source

    store = Store.open(f"sqlite:///{db}")
    t0 = time.perf_counter()
    res = sync_source(store, MlflowSource(url, {"experiments": [experiment]}))
    return res.points, time.perf_counter() - t0


def naive(url: str, run_ids: list[str], db: Path) -> tuple[int, float]:
    """get_metric_history per run and key, then DataFrame.to_sql into a fresh SQLite file."""
    import pandas as pd
    from mlflow.tracking import MlflowClient
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{db}")
    client = MlflowClient(url)
    t0 = time.perf_counter()
    n = 0
    for rid in run_ids:
        for key in KEYS:
            hist = client.get_metric_history(rid, key)
            df = pd.DataFrame({"run_id": rid, "key": key, "step": [m.step for m in hist],
                               "value": [m.value for m in hist], "timestamp": [m.timestamp for m in hist]})
            df.to_sql("metric_points", engine, if_exists="append", index=False)
            n += len(df)
    return n, time.perf_counter() - t0


def resync(url: str, experiment: str, db: Path) -> tuple[int, int, float]:
    from db import Store
    from ingest.mlflow_source import MlflowSource
    from ingest.sync import sync_source

    store = Store.open(f"sqlite:///{db}")
    sync_source(store, MlflowSource(url, {"experiments": [experiment]}))  # the 50 new runs
    t0 = time.perf_counter()
    res = sync_source(store, MlflowSource(url, {"experiments": [experiment]}))
    return res.runs_seen, res.points, time.perf_counter() - t0


def write_jsonl(path: Path, n_runs: int, steps: int) -> int:
    t = np.arange(1, steps + 1)
    with path.open("w") as fh:
        for r in range(n_runs):
            vals = 1.2 * np.exp(-t / (steps / 4)) + 0.01 * r
            fh.writelines(f'{{"run": "run-{r:03d}", "key": "actor/entropy", "step": {s}, "value": {v!r}}}\n'
                          for s, v in zip(t.tolist(), vals.tolist(), strict=True))
    return n_runs * steps


def jsonl_child(path: str, db: str) -> None:
    """In a child process: ingest the file, print points, seconds and peak RSS (MB) as JSON."""
    from db import Store
    from ingest.files import FileSource
    from ingest.sync import sync_source

    store = Store.open(f"sqlite:///{db}")
    t0 = time.perf_counter()
    res = sync_source(store, FileSource(path))
    dt = time.perf_counter() - t0
    rss_mb = peak_rss_mb()
    print(json.dumps({"points": res.points, "seconds": dt, "rss_mb": rss_mb}))


def compare(url: str, run_ids: list[str], total: int, tmp: Path, label: str) -> list[tuple[str, str, str]]:
    """Naive vs ours into fresh SQLite files, same server, same run: the table rows."""
    for name in ("naive.db", "ours.db"):
        (tmp / name).unlink(missing_ok=True)
    n_naive, t_naive = naive(url, run_ids, tmp / "naive.db")
    n_ours, t_ours = ours(url, "bench", tmp / "ours.db")
    assert n_ours == n_naive == total, (n_ours, n_naive, total)
    return [(f"[{label}] ingest mlflow (MlflowSource + sync_source)", f"{n_ours / t_ours:,.0f} points/s",
             f"{t_ours:.1f} s"),
            (f"[{label}] naive (get_metric_history + to_sql)", f"{n_naive / t_naive:,.0f} points/s",
             f"{t_naive:.1f} s"),
            (f"[{label}] ratio", f"{t_naive / t_ours:.1f}×", "goal ≥ 5×")]


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM belongs to the address space and starts afresh at exec;
    getrusage's ru_maxrss does not (Linux keeps it across execve), so a child forked from a big parent
    would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB on most systems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick check: 10 runs × 1,000 steps, 200k JSONL points")
    ap.add_argument("--jsonl-child", nargs=2, metavar=("FILE", "DB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.jsonl_child:
        jsonl_child(*args.jsonl_child)
        return 0
    from tests.fixtures_servers import MlflowServer

    n_runs, steps = (10, 1_000) if args.small else (50, 5_000)
    j_runs, j_steps = (10, 20_000) if args.small else (100, 20_000)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="entropy-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = MlflowServer(tmp)
        server.start()
        try:
            t0 = time.perf_counter()
            run_ids = log_runs(server.url, "bench", n_runs, steps, "big")
            total = n_runs * steps * len(KEYS)
            print(f"logged {n_runs} runs × {len(KEYS)} keys × {steps:,} steps = {total:,} points into "
                  f"{server.url} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            rows += compare(server.url, run_ids, total, tmp, "1 server worker")
        finally:
            server.stop()
        # the same backend behind a server with MLflow's default 4 workers, which answers our concurrent
        # window requests in parallel (the naive loop asks one thing at a time)
        server = MlflowServer(tmp, workers=4)
        server.start()
        try:
            rows += compare(server.url, run_ids, total, tmp, "4 server workers (MLflow's default)")
            log_runs(server.url, "bench", n_runs, max(steps // 10, 100), "small")
            seen, added, t_re = resync(server.url, "bench", tmp / "ours.db")
            rows.append((f"re-sync, nothing changed ({seen} runs, {added} new points)", f"{t_re:.2f} s", "goal ≤ 1 s"))
        finally:
            server.stop()
        path = tmp / "points.jsonl"
        n_j = write_jsonl(path, j_runs, j_steps)
        out = subprocess.run([sys.executable, __file__, "--jsonl-child", str(path), str(tmp / "jsonl.db")],
                             check=True, capture_output=True, text=True)
        child = json.loads(out.stdout.strip().splitlines()[-1])
        assert child["points"] == n_j, (child, n_j)
        rows += [(f"ingest file, {n_j:,}-point JSONL ({path.stat().st_size / 2**20:.0f} MB)",
                  f"{n_j / child['seconds']:,.0f} points/s", f"{child['seconds']:.1f} s"),
                 ("  peak resident memory of that process", f"{child['rss_mb']:.0f} MB", "goal ≤ 500 MB")]
    width = max(len(r[0]) for r in rows)
    print(f"{'ingest benchmark':{width}}  {'figure':>20}  note")
    for name, fig, note in rows:
        print(f"{name:{width}}  {fig:>20}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
