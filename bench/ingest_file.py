"""Benchmark: ``entropy-dash ingest file`` of a 2-million-point JSONL as the user runs it, and its re-sync.

Run: ``python bench/ingest_file.py`` (part of ``make bench``; ``--small`` for a quick check: 10 runs × 2,000
steps). In one run, on the same machine and the same file, it times

1. ``entropy-dash --help`` (start-up of the command line);
2. the whole ``entropy-dash ingest file points.jsonl`` command as a process into a fresh SQLite store (100
   runs × 10,000 steps of ``actor/entropy`` and ``critic/score/mean`` every step and a validation score
   every 50 steps, long form: run, key, step, value) — the sync and the analyses of the 100 new runs after it (goal ≤ 25 s);
3. the ingest part alone: ``FileSource`` + ``sync_source`` in a fresh process into another fresh store;
4. the naive way: ``json.loads`` line by line into lists, a ``DataFrame`` per 200,000 lines and
   ``DataFrame.to_sql`` into a fresh SQLite file;
5. the re-sync of the unchanged file — the whole command again (goal ≤ 0.5 s) and the sync part alone —
   beside the naive re-sync (read the whole file again, ``to_sql(if_exists="replace")``).

Prints one table; exits 0. Goals are printed next to the figures, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENTROPY_DASH = str(Path(sys.executable).with_name("entropy-dash"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


VAL_EVERY = 50
VAL = "val-core/openai/gsm8k/acc/mean@1"


def write_jsonl(path: Path, n_runs: int, steps: int) -> int:
    t = np.arange(1, steps + 1)
    with path.open("w") as fh:
        for r in range(n_runs):
            vals = 1.2 * np.exp(-t / (steps / 4)) + 0.01 * r
            score = 0.9 - 0.6 * np.exp(-t / (steps / 4)) + 0.001 * r
            ev = t[t % VAL_EVERY == 0]
            acc = 0.85 - 0.5 * np.exp(-ev / (steps / 4)) + 0.001 * r
            for key, ss, vs in (("actor/entropy", t, vals), ("critic/score/mean", t, score), (VAL, ev, acc)):
                fh.writelines(f'{{"run": "run-{r:03d}", "key": "{key}", "step": {s}, "value": {v!r}}}\n'
                              for s, v in zip(ss.tolist(), vs.tolist(), strict=True))
    return n_runs * (2 * steps + steps // VAL_EVERY)


CPU: dict[str, float] = {}  # command label → CPU seconds of its process (user + system)


def timed(cmd: list[str], label: str = "") -> tuple[float, str]:
    """Wall-clock seconds of ``cmd`` as a process, and its stdout; its CPU time goes into ``CPU[label]`` (on a
    shared, loaded machine the wall clock also counts waiting for a core)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if label:
        CPU[label] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return dt, proc.stdout


def sync_child(path: str, db: str) -> None:
    """In a fresh process: the ingest part only (no analyses), timed from after the imports."""
    from db import Store
    from ingest.files import FileSource
    from ingest.sync import sync_source

    t0, c0 = time.perf_counter(), time.process_time()
    store = Store.open(f"sqlite:///{db}")
    res = sync_source(store, FileSource(path))
    print(json.dumps({"points": res.points, "runs": res.runs_seen, "seconds": time.perf_counter() - t0,
                      "cpu": time.process_time() - c0}))


def naive(path: Path, db: Path, if_exists: str = "append") -> tuple[int, float, float]:
    """json.loads line by line, a DataFrame per 200,000 lines, DataFrame.to_sql into SQLite."""
    import pandas as pd
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{db}")
    t0, c0 = time.perf_counter(), time.process_time()
    n, first = 0, True
    cols: dict[str, list] = {"run": [], "key": [], "step": [], "value": []}

    def flush() -> None:
        nonlocal first
        pd.DataFrame(cols).to_sql("metric_points", engine, index=False,
                                  if_exists=if_exists if first else "append")
        first = False
        for v in cols.values():
            v.clear()

    with path.open() as fh:
        for line in fh:
            rec = json.loads(line)
            for k in cols:
                cols[k].append(rec[k])
            n += 1
            if len(cols["run"]) >= 200_000:
                flush()
    if cols["run"]:
        flush()
    engine.dispose()
    return n, time.perf_counter() - t0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a quick check: 10 runs × 2,000 steps")
    ap.add_argument("--sync-child", nargs=2, metavar=("FILE", "DB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sync_child:
        sync_child(*args.sync_child)
        return 0
    n_runs, steps = (10, 2_000) if args.small else (100, 10_000)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="entropy-bench-file-") as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "points.jsonl"
        n = write_jsonl(path, n_runs, steps)
        size = path.stat().st_size / 2**20
        label = f"{n:,}-point JSONL ({n_runs} runs × {steps:,} steps, {size:.0f} MB)"
        print(f"wrote {label}", file=sys.stderr)

        t_help, _ = timed([ENTROPY_DASH, "--help"], "help")
        rows.append(("entropy-dash --help (start-up)", f"{t_help:.2f} s", f"goal ≤ 0.3 s; CPU {CPU['help']:.2f} s"))

        db = tmp / "whole.db"
        t_whole, out = timed([ENTROPY_DASH, "ingest", "file", str(path), "--db", f"sqlite:///{db}", "--quiet",
                              "--json"], "whole")
        summary = json.loads(out)
        assert summary["points"] == n, summary
        _, out = timed([sys.executable, __file__, "--sync-child", str(path), str(tmp / "sync.db")])
        child = json.loads(out.strip().splitlines()[-1])
        assert child["points"] == n, child
        n_naive, t_naive, c_naive = naive(path, tmp / "naive.db")
        assert n_naive == n
        rows += [(f"ingest file, whole command (sync + analyses of {summary['analysed']} runs), {label}",
                  f"{t_whole:.1f} s", f"goal ≤ 25 s; {n / t_whole:,.0f} points/s; CPU {CPU['whole']:.1f} s"),
                 ("  of which the ingest part (FileSource + sync_source, own process)", f"{child['seconds']:.1f} s",
                  f"{n / child['seconds']:,.0f} points/s; CPU {child['cpu']:.1f} s"),
                 ("  naive: json.loads line by line + DataFrame.to_sql", f"{t_naive:.1f} s",
                  f"CPU {c_naive:.1f} s; ingest part {c_naive / child['cpu']:.1f}× less CPU than naive, whole "
                  f"command {c_naive / CPU['whole']:.2f}×")]

        t_re, out = timed([ENTROPY_DASH, "ingest", "file", str(path), "--db", f"sqlite:///{db}", "--quiet",
                           "--json"], "resync")
        again = json.loads(out)
        assert again["points"] == 0 and again["unchanged_files"] == 1, again
        _, out = timed([sys.executable, __file__, "--sync-child", str(path), str(tmp / "sync.db")])
        child_re = json.loads(out.strip().splitlines()[-1])
        assert child_re["points"] == 0, child_re
        _, t_naive_re, c_naive_re = naive(path, tmp / "naive.db", if_exists="replace")
        rows += [("re-sync of the unchanged file, whole command", f"{t_re:.2f} s",
                  f"goal ≤ 0.5 s; CPU {CPU['resync']:.2f} s"),
                 ("  of which the sync part (own process, after imports)", f"{child_re['seconds']:.3f} s",
                  f"CPU {child_re['cpu']:.3f} s"),
                 ("  naive: read the whole file again + to_sql(if_exists='replace')", f"{t_naive_re:.1f} s",
                  f"CPU {c_naive_re:.1f} s; {t_naive_re / t_re:.0f}× the whole command's time")]
    width = max(len(r[0]) for r in rows)
    print(f"{'ingest file benchmark':{width}}  {'figure':>9}  note")
    for name, fig, note in rows:
        print(f"{name:{width}}  {fig:>9}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
