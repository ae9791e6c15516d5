"""Hard edges of the store, the options and the services (issue 21, items 2-5): each case runs the real
`entropy-dash` (in this process, or as a process where a signal or a second process is involved), on SQLite
and on the session's PostgreSQL server where a store is involved, and asserts the exit code, the one-line
message and the rows stored afterwards."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from db import Store
from db.migrate import head_revision
from entropy_dash.cli import main
from tests.conftest import ROOT

ENTROPY_DASH = str(Path(sys.executable).with_name("entropy-dash"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CSV = "step,actor/entropy,val/acc\n1,0.9,0.30\n2,0.7,0.45\n3,0.5,0.55\n4,0.4,0.60\n"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'store.db'}"


def _csv(tmp_path: Path, name: str = "run.csv", body: str = CSV) -> str:
    path = tmp_path / name
    path.write_text(body)
    return str(path)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), err
    return lines[-1]


def _points(db: str) -> int:
    return Store.open(db, create=False).count_points()


# ---------------------------------------------------------------------------------------------- no false success
@pytest.mark.parametrize(("url", "message"), [
    ("sqlite://", "in-memory store keeps nothing"),
    ("sqlite:///:memory:", "in-memory store keeps nothing"),
    ("", "--db is empty"),
])
def test_stores_that_keep_nothing_are_refused(capsys, tmp_path, monkeypatch, url, message):
    monkeypatch.chdir(tmp_path)
    for argv in (["ingest", "file", _csv(tmp_path)], ["runs"], ["init"]):
        assert main([*argv, "--db", url, "--quiet"]) == 2
        assert message in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.csv"]  # no default store was made instead


def test_a_sqlite_path_cut_at_a_question_mark_is_refused(capsys, tmp_path):
    url = f"sqlite:///{tmp_path}/a?b#c.db"
    assert main(["ingest", "file", _csv(tmp_path), "--db", url]) == 2
    line = _error(capsys)
    assert "would be cut at '?'" in line and "%3F" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.csv"]  # no file named 'a'
    encoded = f"sqlite:///{tmp_path}/a%3Fb%23c.db"  # the way to name such a file
    assert main(["ingest", "file", _csv(tmp_path), "--db", encoded, "--quiet"]) == 0
    assert (tmp_path / "a?b#c.db").exists() and _points(encoded) == 8


def test_mode_ro_reads_and_refuses_writes(capsys, tmp_path):
    path = tmp_path / "store.db"
    assert main(["ingest", "file", _csv(tmp_path), "--db", f"sqlite:///{path}", "--quiet"]) == 0
    capsys.readouterr()
    before = path.stat().st_mtime_ns, _points(f"sqlite:///{path}")
    ro = f"sqlite:///{path}?mode=ro"
    assert main(["runs", "--json", "--db", ro]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["run"]
    for argv in (["ingest", "file", _csv(tmp_path, "b.csv")], ["analyse", "--all"], ["init"]):
        assert main([*argv, "--db", ro, "--quiet"]) == 2
        assert "is read-only here (the URL says ?mode=ro)" in _error(capsys)
    assert (path.stat().st_mtime_ns, _points(f"sqlite:///{path}")) == before
    missing = tmp_path / "none.db"
    assert main(["runs", "--db", f"sqlite:///{missing}?mode=ro"]) == 2
    assert "opened read-only (?mode=ro), so it is not created" in _error(capsys)
    assert not missing.exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["ingest", "file", "X", "--planned-steps", "-5"], "'-5' is not a planned length in steps"),
    (["ingest", "file", "X", "--planned-steps", "0"], "'0' is not a planned length in steps"),
    (["ingest", "file", "X", "--planned-steps", "1e23"], "'1e23' is not a planned length in steps"),
    (["dashboard", "--port", "70000"], "'70000' is not a TCP port: a whole number from 1 to 65535"),
    (["dashboard", "--host", "999.1.1.1"], "'999.1.1.1' is not an IP address or a host name"),
    (["demo", "--port", "0"], "'0' is not a TCP port"),
    (["runs", "--busy-timeout", "-1"], "'-1' is not a wait in seconds"),
    (["backtest", "--cutoff", "nan"], "--cutoff must be a fraction between 0.05 and 0.95, got nan"),
])
def test_numeric_options_are_range_checked(capsys, tmp_path, argv, message):
    db = f"sqlite:///{tmp_path / 's.db'}"
    if argv[0] == "backtest":
        assert main(["init", "--db", db, "--quiet"]) == 0
    argv = [_csv(tmp_path) if a == "X" else a for a in argv]
    assert main([*argv, "--db", db]) == 2
    line = _error(capsys)
    assert message in line and len(line) < 300
    if argv[0] != "backtest":
        assert not (tmp_path / "s.db").exists()


def test_a_taken_port_is_one_line_before_any_address_is_printed(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([ENTROPY_DASH, "dashboard", "--no-browser", "--port", str(port), "--db",
                               f"sqlite:///{tmp_path / 's.db'}"], capture_output=True, text=True, timeout=60, env=ENV)
    assert proc.returncode == 2 and proc.stdout == ""  # no "dashboard: http://…" for a server that never ran
    assert proc.stderr.strip() == f"error: port {port} on 127.0.0.1 is taken by another program: stop it, or give " \
                                  "another --port"


# ---------------------------------------------------------------------------------------------- no traceback
def test_a_store_from_a_newer_version_is_read_by_nothing_and_never_migrated(capsys, tmp_path, db):
    assert main(["ingest", "file", _csv(tmp_path), "--db", db, "--quiet"]) == 0
    engine = create_engine(db)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for argv in (["runs"], ["init"], ["ingest", "file", _csv(tmp_path, "b.csv")], ["fit"]):
        assert main([*argv, "--db", db]) == 2
        line = _error(capsys)
        assert f"was written by a newer entropy-dash (schema revision 9999; this one knows up to {head_revision()}): " \
               "upgrade entropy-dash" in line, line
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
        assert conn.execute(text("SELECT count(*) FROM metric_points")).scalar() == 8
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 1


def _hold_lock(db: str) -> tuple[subprocess.Popen, str]:
    """Another process holding the store's write lock (SQLite) or an exclusive table lock (PostgreSQL)
    until its stdin closes, and how a message names it (its pid; on PostgreSQL its server process's pid and
    its application name); returns once it holds the lock."""
    if db.startswith("sqlite:///"):
        code = ("import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                "c.execute('BEGIN IMMEDIATE'); print('pid', os.getpid(), flush=True); sys.stdin.read()")
        arg = db.removeprefix("sqlite:///")
    else:
        code = ("import psycopg, sys; c = psycopg.connect(sys.argv[1], application_name='the-holder'); "
                "c.execute('LOCK TABLE sources IN ACCESS EXCLUSIVE MODE'); "
                "print('pid', c.info.backend_pid, 'of role', flush=True); sys.stdin.read()")
        arg = db.replace("postgresql+psycopg://", "postgresql://")
    proc = subprocess.Popen([sys.executable, "-c", code, arg], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def test_a_busy_store_names_its_holder_after_the_wait_asked_for(tmp_path, db):
    csv = _csv(tmp_path)
    assert main(["ingest", "file", csv, "--db", db, "--quiet"]) == 0
    holder, name = _hold_lock(db)
    try:
        proc = subprocess.run([ENTROPY_DASH, "--busy-timeout", "1", "ingest", "file", _csv(tmp_path, "b.csv"),
                               "--db", db, "--quiet"], capture_output=True, text=True, timeout=120, env=ENV)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "is busy: another " in line and "for more than 1 s" in line, line
    assert name in line, line  # who holds it
    assert db.startswith("sqlite") or "(the-holder, idle in transaction" in line, line
    assert "--busy-timeout SECONDS" in line and "does its folder exist" not in line
    assert _points(db) == 8  # nothing of b.csv
    assert main(["ingest", "file", _csv(tmp_path, "b.csv"), "--db", db, "--quiet"]) == 0  # free again: it works
    assert _points(db) == 16


def test_a_read_only_store_file_is_one_line(tmp_path):
    """The file and its folder belong to root and are read-only; the command runs without the capability
    that lets root write anyway (as the corpus's unprivileged cases do)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = f"sqlite:///{folder / 'store.db'}"
    assert main(["ingest", "file", _csv(tmp_path), "--db", db, "--quiet"]) == 0
    Store.open(db).engine.dispose()
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)
    cmd = [ENTROPY_DASH, "ingest", "file", _csv(tmp_path, "b.csv"), "--db", db, "--quiet"]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
    finally:
        folder.chmod(0o755)
        for p in folder.iterdir():
            p.chmod(0o644)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "is read-only here" in line and "this command writes to it" in line, line
    assert _points(db) == 8


def test_page_query_parameters_are_checked_not_trusted():
    from dashboard.state import checked_ids

    assert checked_ids("3,7, 12,3") == ([3, 7, 12], "")
    ids, bad = checked_ids("1,2," + "9" * 5000)
    assert ids == [1, 2] and bad == "999999999999… (5000 characters)"
    ids, bad = checked_ids("1,x,-4,١")
    assert ids == [1] and bad == "x, -4, ١"
    ids, bad = checked_ids(",".join(["5"] * 30_000))
    assert ids == [5] and bad.endswith("everything after the first 20000 characters")


# ---------------------------------------------------------------------------------------------- no orphans
def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def test_sigkill_of_ingest_during_its_analyses_leaves_no_process(tmp_path):
    # Linux (process groups read from /proc) with 2+ cores (on one the analyses run in the ingest process
    # itself): the machines this project runs on, CI's included; anything else is a failure, not a skip
    assert sys.platform.startswith("linux") and (os.cpu_count() or 1) >= 2, "needs Linux and two cores"
    runs = tmp_path / "runs"
    runs.mkdir()
    for r in range(48):
        rows = [f"{s},{0.05 + 1.2 * 0.99 ** s:.5f},{'' if s % 10 else round(0.9 - 0.3 * 1.01 ** -s, 5)}"
                for s in range(1, 401)]
        (runs / f"r{r:02d}.csv").write_text("step,actor/entropy,val/acc\n" + "\n".join(rows) + "\n")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["ingest", "file", str(runs), "--db", db, "--no-analyse", "--quiet"]) == 0
    # a new planned length re-analyses all 48 runs: in worker processes
    proc = subprocess.Popen([ENTROPY_DASH, "ingest", "file", str(runs), "--planned-steps", "500", "--db", db,
                             "--quiet"], env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while len(_group(proc.pid)) < 3:  # the ingest and its two workers
            assert proc.poll() is None, "the ingest ended before its workers were seen"
            assert time.monotonic() < deadline, "no analysis workers started"
            time.sleep(0.05)
        workers = [p for p in _group(proc.pid) if p != proc.pid]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group(proc.pid) == [], f"alive 10 s after the ingest was killed: {_group(proc.pid)}"
    finally:
        for pid in _group(proc.pid):
            os.kill(pid, signal.SIGKILL)
    assert workers
    from db.diagnose import open_by

    assert open_by(str(tmp_path / "store.db")) == []  # nothing holds the store
    assert main(["analyse", "--db", db, "--quiet"]) == 0  # and the next writer finishes the job


# ---------------------------------------------------------------------------------------------- inert text
EVIL = "evil\x1b]0;pwned\x07\x1b[2J\u202e"


def test_stored_text_is_inert_on_a_terminal_and_exact_in_json(capsys, tmp_path, db):
    csv = _csv(tmp_path, f"{EVIL}.csv", CSV.replace("val/acc", "val/acc\x1b[31m"))
    assert main(["ingest", "file", csv, "--db", db, "--quiet"]) == 0
    capsys.readouterr()
    for argv in (["runs"], ["fit"], ["backtest"], ["scaling"]):
        assert main([*argv, "--db", db]) == 0
        out = capsys.readouterr().out
        assert not any(c in out for c in "\x1b\x07\u202e"), (argv, out)
        if argv != ["backtest"] and argv != ["scaling"]:
            assert "evil\\x1b]0;pwned\\x07\\x1b[2J\\u202e" in out
    assert main(["runs", "--json", "--db", db]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert run["run"] == EVIL  # JSON keeps the name exactly (its own escapes)
    out_dir = tmp_path / f"rep{EVIL}"
    assert main(["report", "--out", str(out_dir), "--format", "json", "--db", db]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "rep" in printed and (out_dir / "report.json").exists()


# ---------------------------------------------------------------------------------------------- what the README says
def test_runs_table_says_why_a_key_was_chosen_and_lists_unrecognised_keys(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    body = "step,actor/entropy,val/acc,my/custom,lr\n1,0.9,0.3,1,2\n2,0.7,0.45,1,2\n3,0.5,0.55,1,2\n"
    assert main(["ingest", "file", _csv(tmp_path, body=body), "--db", db, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["runs", "--json", "--db", db]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert main(["runs", "--db", db]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2] == f"      performance key: {run['key_reason']}" and run["key_reason"]
    assert sorted(run["unrecognised_keys"]) == ["lr", "my/custom"]
    assert table[3] == f"      unrecognised keys (2): {', '.join(run['unrecognised_keys'])}"


def test_a_failed_ingest_prints_its_error_first(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x")
    proc = subprocess.run([ENTROPY_DASH, "ingest", "file", str(bad), "--db", f"sqlite:///{tmp_path / 's.db'}"],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no data rows in ")  # no blank line before it
    assert proc.stderr.count("\n") == 1


def test_report_for_no_matching_run_leaves_no_folder(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["ingest", "file", _csv(tmp_path), "--db", db, "--quiet"]) == 0
    out = tmp_path / "reports" / "today"
    assert main(["report", "--out", str(out), "--run", "nope", "--db", db]) == 2
    assert _error(capsys) == "error: no run 'nope' in the store: see `entropy-dash runs`"
    assert not (tmp_path / "reports").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there before stays
    assert main(["report", "--out", str(tmp_path / "kept"), "--run", "nope", "--db", db]) == 2
    assert (tmp_path / "kept").is_dir()


# ---------------------------------------------------------------------------------------------- the scheduler
def test_scheduler_values_are_checked_and_a_failed_report_is_a_failed_job(capsys, tmp_path, db):
    from entropy_dash import scheduler

    csv = _csv(tmp_path)
    cfg = tmp_path / "sources.toml"
    for every, message in (("0.001", "0.001 is 0.001 s: an interval must be from 1 s to 366 days"),
                           ('"0s"', "is not a positive interval"), ("1e300", "must be from 1 s to 366 days")):
        cfg.write_text(f'[[source]]\nkind = "file"\nuri = "{csv}"\nevery = {every}\n')
        assert main(["schedule", "--config", str(cfg), "--db", db]) == 2
        assert message in _error(capsys)
    (tmp_path / "afile").write_text("")
    cfg.write_text(f'[[source]]\nkind = "file"\nuri = "{csv}"\nevery = "1s"\n[report]\nout = "afile/reports"\n')
    assert main(["schedule", "--config", str(cfg), "--db", db]) == 2
    assert f"{tmp_path / 'afile'} (above {tmp_path / 'afile' / 'reports'}) is a file, not a folder" in _error(capsys)
    # a folder that becomes a file after the config was read: the report fails, and sync_log says so
    cfg.write_text(f'[[source]]\nkind = "file"\nuri = "{csv}"\n[report]\nout = "later"\n')
    config = scheduler.load_config(cfg, require_trigger=False)
    (tmp_path / "later").write_text("")
    assert scheduler.run(config, db=db, once=True) == 1
    log = Store.open(db, create=False).sync_log_frame()
    assert sorted(log["status"]) == ["error", "ok"]
    (error,) = log.loc[log["status"] == "error", "error"]
    assert error.startswith(f"report to {tmp_path / 'later'} failed: ") and _points(db) == 8


@pytest.mark.postgres
def test_a_select_only_role_reads_and_its_writes_are_one_line(capsys, tmp_path, postgres_url):
    assert main(["ingest", "file", _csv(tmp_path), "--db", postgres_url, "--quiet"]) == 0
    with create_engine(postgres_url).begin() as conn:
        conn.execute(text("DROP ROLE IF EXISTS edge_reader"))
        conn.execute(text("CREATE ROLE edge_reader LOGIN"))
        conn.execute(text("GRANT SELECT ON ALL TABLES IN SCHEMA public TO edge_reader"))
    reader = postgres_url.replace("://postgres@", "://edge_reader@")
    capsys.readouterr()
    assert main(["runs", "--json", "--db", reader]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["run"]
    assert main(["ingest", "file", _csv(tmp_path, "b.csv"), "--db", reader, "--quiet"]) == 2
    line = _error(capsys)
    assert "the role 'edge_reader' of " in line and "cannot write (it may not write to the tables)" in line, line
    assert _points(postgres_url) == 8


def test_a_store_being_created_by_another_process_is_busy_not_missing(tmp_path):
    path = tmp_path / "new.db"
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE');"
            " c.execute('CREATE TABLE x (a)'); print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    try:
        proc = subprocess.run([ENTROPY_DASH, "--busy-timeout", "0.5", "ingest", "file", _csv(tmp_path), "--db",
                               f"sqlite:///{path}"], capture_output=True, text=True, timeout=120, env=ENV)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"the store {path} is busy" in proc.stderr and f"held by pid {holder.pid}: " in proc.stderr
    assert "does its folder exist" not in proc.stderr
