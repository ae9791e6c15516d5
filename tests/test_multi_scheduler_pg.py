"""Three `entropy-dash schedule` processes (real subprocesses, each with its own HOME) on one PostgreSQL store
with three file sources on a per-minute cron trigger, judged by what they leave in the store and say on
stderr: each source is synced by one of them per trigger (``sync_log``), the others say so and skip it, and
every analysis — one per run and data version — is computed by exactly one of them, the work split between
them (rows claimed with SKIP LOCKED, ``db.claims``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text

ENTROPY_DASH = str(Path(sys.executable).with_name("entropy-dash"))
STEPS, VAL_EVERY = 300, 20
SIZES = {"big": 48, "mid": 6, "small": 3}  # runs per source folder
CLAIMED = re.compile(r"claimed and analysed runs ([\d,]+) \(data versions ([\d,]+)\)")
SKIPPED = re.compile(r"(\S+): synced by another scheduler")

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(480)]


def write_run(path: Path, seed: int, start: int = 1, steps: int = STEPS) -> None:
    """A wide verl-like CSV: entropy, score every step, a validation accuracy every 20 steps."""
    rng = np.random.default_rng(seed)
    step = np.arange(start, start + steps)
    tau = rng.uniform(60, 200)
    h = 0.05 + 1.2 * np.exp(-step / tau)
    score = 0.9 - 0.6 * np.exp(-step / tau) + 0.02 * rng.standard_normal(steps)
    val = 0.85 - 0.55 * np.exp(-step / tau)
    lines = [] if start > 1 else ["step,actor/entropy,critic/score/mean,val-core/openai/gsm8k/acc/mean@1"]
    lines += [f"{s},{e:.6g},{c:.6g}," + (f"{v:.6g}" if s % VAL_EVERY == 0 else "")
              for s, e, c, v in zip(step, h, score, val, strict=True)]
    with open(path, "a") as fh:
        fh.write("\n".join(lines) + "\n")


class Fleet:
    """Three scheduler processes on one config; their stderr in files."""

    def __init__(self, tmp: Path, config: Path, n: int = 3) -> None:
        self.logs = [tmp / f"schedule-{i}.err" for i in range(n)]
        self.procs = []
        for i, log in enumerate(self.logs):
            home = tmp / f"home-{i}"
            home.mkdir()
            env = {k: v for k, v in os.environ.items() if k != "ENTROPY_DASH_DB"} | {"HOME": str(home)}
            with open(log, "wb") as out:
                self.procs.append(subprocess.Popen([ENTROPY_DASH, "--debug", "schedule", "--config", str(config)],
                                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                   env=env, cwd=home, start_new_session=True))

    def text(self, i: int) -> str:
        return self.logs[i].read_text(errors="replace")

    def stop(self) -> list[int]:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(60))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                codes.append(p.wait(10))
        return codes


def sync_log(engine) -> pd.DataFrame:  # noqa: ANN001
    with engine.connect() as conn:
        df = pd.read_sql(text("SELECT l.id, l.source_id, s.uri, l.started_at, l.status, l.runs, l.points, "
                              "l.pid FROM sync_log l JOIN sources s ON s.id = l.source_id ORDER BY l.id"), conn)
    df["trigger"] = pd.to_datetime(df["started_at"], utc=True).dt.floor("min")
    return df


def stale(engine) -> int:  # noqa: ANN001
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM runs r LEFT JOIN analyses a ON a.run_id = r.id AND a.kind = 'summary' "
            "WHERE a.id IS NULL OR a.data_version <> r.data_version")).scalar())


def wait_for_triggers(engine, fleet: Fleet, n: int, after: pd.Timestamp | None, timeout: float = 200.0):  # noqa: ANN001
    """Until every source has a finished sync in ``n`` triggers after ``after`` and nothing is stale."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, p in enumerate(fleet.procs):
            assert p.poll() is None, f"scheduler {i} exited with {p.returncode}:\n{fleet.text(i)[-3000:]}"
        df = sync_log(engine)
        if after is not None:
            df = df[df["trigger"] > after]
        done = df[df["status"] == "ok"].groupby("source_id")["trigger"].nunique()
        if (len(done) == len(SIZES) and (done >= n).all() and not (df["status"] == "running").any()
                and stale(engine) == 0):
            return df
        time.sleep(1.0)
    raise AssertionError(f"the schedulers did not finish {n} trigger(s) in {timeout:g} s:\n{sync_log(engine)}\n"
                         + "\n".join(fleet.text(i)[-1500:] for i in range(len(fleet.procs))))


def test_three_schedulers_sync_each_source_once_per_trigger_and_split_the_analyses(
        tmp_path: Path, postgres_url: str) -> None:
    folders = {}
    for name, n in SIZES.items():
        folders[name] = tmp_path / "logs" / name
        folders[name].mkdir(parents=True)
        for i in range(n):
            write_run(folders[name] / f"{name}-{i:02d}.csv", seed=hash((name, i)) % 10_000)
    # the big folder is stored without its analyses: the first trigger finds 48 runs to analyse at once
    subprocess.run([ENTROPY_DASH, "ingest", "file", str(folders["big"]), "--no-analyse", "--db", postgres_url],
                   check=True, capture_output=True, timeout=300)
    config = tmp_path / "sources.toml"
    config.write_text(f'db = "{postgres_url}"\n' + "".join(
        f'\n[[source]]\nkind = "file"\nuri = "{folder}"\ncron = "* * * * *"\n' for folder in folders.values()))
    engine = create_engine(postgres_url)
    fleet = Fleet(tmp_path, config)
    try:
        # all three must be up before the minute they fire at
        deadline = time.monotonic() + 120
        while not all("scheduled" in fleet.text(i) for i in range(3)):
            assert time.monotonic() < deadline, "\n".join(fleet.text(i) for i in range(3))
            time.sleep(0.5)
        started = pd.Timestamp.now(tz="UTC").floor("min")
        first = wait_for_triggers(engine, fleet, 1, after=started)
        # new steps in some runs of two sources: the next trigger syncs and re-analyses just these
        changed = [folders["big"] / f"big-{i:02d}.csv" for i in range(0, 48, 8)] + [folders["mid"] / "mid-01.csv"]
        for k, path in enumerate(changed):
            write_run(path, seed=k, start=STEPS + 1, steps=40)
        second = wait_for_triggers(engine, fleet, 1, after=first["trigger"].max())
    finally:
        codes = fleet.stop()
    assert codes == [0, 0, 0], [fleet.text(i)[-2000:] for i in range(3)]

    log = pd.concat([first, second])
    with engine.connect() as conn:
        n_sources = int(conn.execute(text("SELECT count(*) FROM sources")).scalar())
        versions = dict(conn.execute(text("SELECT id, data_version FROM runs")).all())
        computed_at = dict(conn.execute(text("SELECT run_id, data_version FROM analyses WHERE kind = 'summary'")).all())
    engine.dispose()
    assert n_sources == 3  # the ingest and the schedulers name the same sources
    # each source synced once per trigger, by one of the three; the others said so
    per_trigger = log.groupby(["source_id", "trigger"]).size()
    assert (per_trigger == 1).all(), per_trigger
    assert len(per_trigger) == 2 * len(SIZES)
    skips = Counter(m for i in range(3) for m in SKIPPED.findall(fleet.text(i)))
    assert sum(skips.values()) >= 2 * len(SIZES), skips  # the two others skipped each source in each trigger
    # the second trigger wrote exactly the new steps of the changed runs
    assert int(second["points"].sum()) == len(changed) * (40 * 2 + 40 // VAL_EVERY)
    # every analysis computed once: 57 runs at their first data version, 7 again at their second
    done = []
    for i in range(3):
        for ids, vers in CLAIMED.findall(fleet.text(i)):
            done += [(int(r), int(v), i) for r, v in zip(ids.split(","), vers.split(","), strict=True)]
    pairs = Counter((r, v) for r, v, _ in done)
    assert max(pairs.values()) == 1, [p for p, c in pairs.items() if c > 1]
    assert len(pairs) == sum(SIZES.values()) + len(changed)
    assert {(r, v) for r, v in versions.items()} <= set(pairs)  # each run's current version among them
    assert computed_at == versions  # and stored as current
    # … split between the schedulers: the first trigger's 48 stale runs were claimed by more than one
    by_worker = Counter(i for _, _, i in done)
    assert len(by_worker) >= 2, by_worker
