"""Benchmark: per-run overhead — one CSV holding many tiny runs, ``entropy-dash ingest file X.csv``.

Run: ``python bench/tiny_runs.py`` (part of ``make bench``; ``--sizes 1000,10000,100000``). Per size it writes
(once, cached in ``/tmp/entropy-dash-bench-tiny``) one wide CSV with a run column: N runs × 10 steps × three
keys (``actor/entropy``, ``critic/score/mean``, ``response_length/mean``), runs one after another, generated
with numpy. Then it times, each as a fresh process into a fresh store:

1. ``entropy-dash ingest file X.csv`` (the sync and the analyses of the new runs);
2. the naive way: pandas ``read_csv`` + ``melt`` + ``to_sql`` of the same file into a fresh SQLite file;

and prints runs/s of both beside the 2,000 runs/s goal, with peak resident memory. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENTROPY_DASH = str(Path(sys.executable).with_name("entropy-dash"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CACHE = Path(tempfile.gettempdir()) / "entropy-dash-bench-tiny"
STEPS = 10
KEYS = ("actor/entropy", "critic/score/mean", "response_length/mean")
GOAL = 2_000  # runs/s


def write_csv(path: Path, n_runs: int) -> int:
    """One wide CSV of ``n_runs`` tiny runs (written once, reused). Returns the points."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(n_runs)
        run = np.repeat(np.arange(n_runs), STEPS)
        step = np.tile(np.arange(1, STEPS + 1), n_runs)
        h = 1.2 * np.exp(-step / 5) + 0.01 * rng.standard_normal(len(step))
        score = 0.9 - 0.6 * np.exp(-step / 5) + 0.01 * rng.standard_normal(len(step))
        length = rng.normal(500, 50, len(step))
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            fh.write(",".join(["run", "step", *KEYS]) + "\n")
            fh.writelines(f"tiny-{r:06d},{s},{a:.6g},{b:.6g},{c:.6g}\n"
                          for r, s, a, b, c in zip(run.tolist(), step.tolist(), h.tolist(), score.tolist(),
                                                   length.tolist(), strict=True))
        tmp.rename(path)
    return n_runs * STEPS * len(KEYS)


NAIVE = """
import sys, pandas as pd, sqlalchemy as sa
eng = sa.create_engine("sqlite:///" + sys.argv[2])
long = pd.read_csv(sys.argv[1]).melt(id_vars=["run", "step"], var_name="key").dropna()
long.to_sql("points", eng, if_exists="append", index=False, chunksize=100_000)
"""


def timed(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak resident MB and exit code of a command run as a child process."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            err.seek(0)
            print(f"  {' '.join(cmd[1:3])} exited {code}: {err.read()[-300:]!r}", file=sys.stderr)
    return dt, usage.ru_maxrss / 1024, code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"| tiny runs in one CSV ({STEPS} steps × {len(KEYS)} keys) | entropy-dash ingest file | "
          f"naive read_csv+melt+to_sql | goal |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="entropy-dash-tiny-") as tmp:
        for n in sizes:
            print(f"{n:,} tiny runs …", file=sys.stderr)
            csv = CACHE / f"tiny-{n}.csv"
            write_csv(csv, n)
            ours, ours_mb, code = timed([ENTROPY_DASH, "ingest", "file", str(csv), "--db",
                                         f"sqlite:///{tmp}/store-{n}.db"])
            naive, naive_mb, _ = timed([sys.executable, "-c", NAIVE, str(csv), f"{tmp}/naive-{n}.db"])
            failed = "" if code in (0, 1) else f" (exited {code})"
            print(f"| {n:,} runs | {ours:.1f} s, {n / ours:,.0f} runs/s, {ours_mb:.0f} MB{failed} | "
                  f"{naive:.1f} s, {n / naive:,.0f} runs/s, {naive_mb:.0f} MB | ≥ {GOAL:,} runs/s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
