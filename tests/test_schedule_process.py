"""`entropy-dash schedule --config` as a process, judged by what it leaves in the store and says on stderr (not
by its internals): a SIGTERM in the middle of a sync stops it after the run being written and a rerun completes
it without a duplicate; a second signal exits at once; a cron trigger fires at its minute, in UTC; a source
whose previous sync is still running is skipped, not stacked."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures_servers import free_port

ENTROPY_DASH = str(Path(sys.executable).with_name("entropy-dash"))
N_MORE, N_STEPS = 3000, 20
DEADLINE_S = 180.0


class Schedule:
    """A scheduler process on ``config``, its stderr in a file, its store a SQLite file beside the config."""

    def __init__(self, tmp: Path, source: str, *, env: dict[str, str] | None = None) -> None:
        self.db = tmp / "s.db"
        self.config = tmp / "sources.toml"
        self.config.write_text(f'db = "sqlite:///{self.db}"\n\n[[source]]\n{source}')
        self.err = tmp / "schedule.err"
        with open(self.err, "wb") as out:
            self.proc = subprocess.Popen([ENTROPY_DASH, "schedule", "--config", str(self.config)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **(env or {})})

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def query(self, sql: str) -> list[tuple]:
        """Rows of the store (empty until the scheduler has created its schema)."""
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db, timeout=30) as conn:
            if not conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sync_log'").fetchone()[0]:
                return []
            return conn.execute(sql).fetchall()

    def count(self, table: str) -> int:
        rows = self.query(f"SELECT count(*) FROM {table}")
        return int(rows[0][0]) if rows else 0

    def log(self) -> pd.DataFrame:
        rows = self.query("SELECT started_at, ended_at, status, runs, points, error FROM sync_log ORDER BY id")
        df = pd.DataFrame(rows, columns=["started", "ended", "status", "runs", "points", "error"])
        for col in ("started", "ended"):
            df[col] = pd.to_datetime(df[col], utc=True)
        return df

    def wait(self, check, what: str, deadline_s: float = DEADLINE_S):  # noqa: ANN001, ANN201 - a predicate, its value
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            assert self.proc.poll() is None, f"exited with {self.proc.returncode} before {what}:\n{self.stderr()}"
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {deadline_s:.0f} s:\n{self.stderr()[-3000:]}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def exit_code(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_sigterm_mid_sync_stops_after_the_run_being_written_and_a_rerun_completes(more_logs, tmp_path):
    sched = Schedule(tmp_path, f'kind = "file"\nuri = "{more_logs}"\nevery = "1h"\n')
    try:
        sched.wait(lambda: sched.count("runs") >= 1, "first run written")
        sched.signal()
        assert sched.exit_code() == 0, sched.stderr()
    finally:
        sched.kill()
    err = sched.stderr()
    assert "SIGTERM received" in err and "scheduler stopped" in err
    (job,) = sched.log().itertuples()
    assert job.status != "running" and "stopped" in job.error  # the job's row says it was stopped
    runs = sched.count("runs")
    assert 1 <= job.runs == runs < N_MORE  # it stopped part-way …
    per_run = sched.query("SELECT run_id, count(*) FROM metric_points GROUP BY run_id")
    assert len(per_run) == runs and {n for _, n in per_run} == {N_STEPS}  # … after whole runs only
    # the next sync picks up where it stopped: every run, every point, nothing twice
    done = subprocess.run([ENTROPY_DASH, "schedule", "--config", str(sched.config), "--once", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sched.count("runs") == N_MORE
    assert sched.query("SELECT count(*), count(DISTINCT run_id || '-' || step) FROM metric_points")[0] == (
        N_MORE * N_STEPS, N_MORE * N_STEPS)


def test_a_second_signal_exits_at_once(tmp_path):
    """The first SIGTERM waits for the job in progress (here: retries of an unreachable server, with backoff);
    the second one ends the process there and then."""
    dead = f"http://127.0.0.1:{free_port()}"
    sched = Schedule(tmp_path, f'kind = "mlflow"\nuri = "{dead}"\nevery = "1h"\n')
    try:
        sched.wait(lambda: "retry 1/3" in sched.stderr(), "retry of the unreachable server")
        sched.signal()
        sched.wait(lambda: "SIGTERM received" in sched.stderr(), "first signal handled")
        assert sched.proc.poll() is None  # still waiting for the job
        sched.signal()
        code = sched.exit_code(timeout=60)
    finally:
        sched.kill()
    assert code == 128 + signal.SIGTERM, sched.stderr()
    assert "second SIGTERM: exiting now" in sched.stderr()
    assert "retry 3/3" not in sched.stderr()  # it did not wait for the last retry


def test_a_cron_trigger_fires_at_its_minute_in_utc(tmp_path):
    """No sync at start (only interval sources sync at once); one at the minute the crontab line names, read
    in UTC even when the process's local time zone is 5 h 45 min away."""
    (tmp_path / "a.csv").write_text("key,step,value\nactor/entropy,1,0.5\nactor/entropy,2,0.4\n")
    now = datetime.now(UTC)
    first = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (first - now).total_seconds() < 5:
        first += timedelta(minutes=1)
    # two minutes named: the later one fires when the process (slow on a loaded machine) is up too late for
    # the first
    second = first + timedelta(minutes=1)
    hours = ",".join(dict.fromkeys(str(t.hour) for t in (first, second)))
    cron = f"{first.minute},{second.minute} {hours} * * *"
    sched = Schedule(tmp_path, f'kind = "file"\nuri = "{tmp_path / "a.csv"}"\ncron = "{cron}"\n',
                     env={"TZ": "Asia/Kathmandu"})
    try:
        sched.wait(lambda: "scheduled" in sched.stderr(), "the cron source scheduled", 240)
        while datetime.now(UTC) < first - timedelta(seconds=1):
            assert sched.log().empty, "a cron source synced before its minute"
            assert sched.proc.poll() is None, sched.stderr()
            time.sleep(0.5)
        wait_s = (second - datetime.now(UTC)).total_seconds() + 90
        sched.wait(lambda: len(sched.log().dropna(subset=["ended"])) >= 1, "sync at a cron minute", wait_s)
        sched.signal()
        assert sched.exit_code() == 0, sched.stderr()
    finally:
        sched.kill()
    (job,) = sched.log().itertuples()
    assert job.status == "ok" and job.points == 2
    at = first if job.started < pd.Timestamp(second) else second  # the minute the process was up in time for
    assert pd.Timestamp(at) <= job.started < pd.Timestamp(at + timedelta(seconds=30))


@pytest.fixture(scope="module")
def more_logs(tmp_path_factory) -> Path:
    """3,000 one-run CSV files: a first sync of them (written in batches) outlasts a few 1 s intervals."""
    folder = tmp_path_factory.mktemp("more-logs")
    body = "key,step,value\n" + "".join(f"actor/entropy,{s},{1.0 / s:.5f}\n" for s in range(1, N_STEPS + 1))
    for i in range(N_MORE):
        (folder / f"run-{i:04d}.csv").write_text(body)
    return folder


def test_a_source_still_syncing_is_skipped_not_stacked(more_logs, tmp_path):
    """Every second, but the first sync (3,000 new runs) takes longer than two of them: the triggers that fall
    inside it are skipped, so afterwards the syncs keep to the grid instead of running back to back."""
    every = 1.0
    sched = Schedule(tmp_path, f'kind = "file"\nuri = "{more_logs}"\nevery = "{every:g}s"\n')
    try:
        sched.wait(lambda: len(sched.log().dropna(subset=["ended"])) >= 4, "four finished syncs")
        sched.signal()
        assert sched.exit_code() == 0, sched.stderr()
    finally:
        sched.kill()
    log = sched.log().dropna(subset=["ended"]).reset_index(drop=True)
    first = log.iloc[0]
    assert first.runs == N_MORE and (first.ended - first.started).total_seconds() > 2 * every, \
        "the first sync must outlast two intervals for this test to say anything"
    assert (log["status"] == "ok").all() and (log["points"].iloc[1:] == 0).all()
    for prev, nxt in zip(log.itertuples(), log.iloc[1:].itertuples(), strict=False):
        assert nxt.started >= prev.ended  # never two syncs of the source at once
    starts = log["started"].iloc[1:].tolist()
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps and min(gaps) > every / 2, gaps  # on the interval's grid: no burst of queued syncs
