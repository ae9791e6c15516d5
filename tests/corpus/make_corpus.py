"""The hostile-input corpus of issue 12: every bad input a fair but hostile user tries, generated on the fly.

Each ``Case`` writes its inputs into a folder and says what must happen: the command's exit code, the shape
of its one-line error (or a note on the run), and the exact points stored afterwards. ``tests/test_corpus.py``
runs every case through ``entropy-dash`` on SQLite and on PostgreSQL. Nothing large is committed: the 50 MB
field and the 2 MiB lines are written at test time.

Run ``python tests/corpus/make_corpus.py OUT`` to write the inputs of every case into OUT (one folder per case)
and list them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: a stored point: (run name, key, step, value or None for a missing value)
Point = tuple[str, str, int, float | None]

ENT, ACC = "actor/entropy", "val-core/gsm8k/acc/mean@1"
MB = 1 << 20


@dataclass(frozen=True)
class Step:
    """One command of a case: prepare the inputs, run ``entropy-dash <args…> --db DB``, expect ``exit`` and (for
    a failure) a one-line error matching ``error`` that names ``names``."""

    prepare: Callable[[Path], list[str]]  # writes files under the case folder, returns the command's arguments
    exit: int = 0
    error: str | None = None  # regex the "error: …" line must match
    names: str | None = None  # text the error must contain (the input), relative to the case folder if a path


@dataclass(frozen=True)
class Case:
    name: str
    item: str  # which part of issue 12 it probes
    steps: tuple[Step, ...]
    points: tuple[Point, ...] | None = ()  # stored afterwards (None: no store may exist at all)
    note: str | None = None  # regex one of the runs' notes must match
    backends: tuple[str, ...] = ("sqlite", "postgres")
    needs: tuple[str, ...] = ()  # "unprivileged" (a process that cannot read a chmod 0 file), "wandb_down"
    skipped: int | None = None  # files named as skipped ("skipped: …" lines)
    check: Callable[[object], None] | None = None  # more assertions on the store (a ``db.Store``)


# ---------------------------------------------------------------------------------------------- writers
def _w(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def csv_long(rows: list[tuple], header: str = "run,key,step,value") -> str:
    return header + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows)


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def verl(lines: list[str], pid: int = 7) -> str:
    return "".join(f"\x1b[36m(main_task pid={pid})\x1b[0m {ln}\n" for ln in lines)


GOOD_ROWS = [("r", ENT, s, v) for s, v in ((1, 0.9), (2, 0.8), (3, 0.7))] + [("r", ACC, 0, 0.2), ("r", ACC, 2, 0.5)]
GOOD_POINTS: tuple[Point, ...] = tuple(GOOD_ROWS)


def good_csv(path: Path) -> Path:
    return _w(path, csv_long(GOOD_ROWS))


def file_args(path: Path, *extra: str) -> list[str]:
    return ["ingest", "file", str(path), *extra]


def one(path_fn: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    return lambda d: file_args(path_fn(d), *extra)


def pts(run: str, key: str, values: dict[int, float | None]) -> tuple[Point, ...]:
    return tuple((run, key, s, v) for s, v in values.items())


# ---------------------------------------------------------------------------------------------- cases
def _cases() -> list[Case]:
    c: list[Case] = []
    add = c.append

    # 1. one value poisons the whole store -----------------------------------------------------------
    def two_runs(v: str) -> Callable[[Path], list[str]]:
        rows = GOOD_ROWS + [("bad", ENT, 1, 0.9), ("bad", ENT, 2, v), ("bad", ENT, 3, 0.7), ("bad", ACC, 0, 0.2)]
        return one(lambda d: _w(d / "m.csv", csv_long(rows)))

    add(Case("entropy_1e200_in_one_run", "values", (Step(two_runs("1e200")),),
             GOOD_POINTS + (("bad", ENT, 1, 0.9), ("bad", ENT, 2, None), ("bad", ENT, 3, 0.7), ("bad", ACC, 0, 0.2)),
             note=r"m\.csv, line 8, run 'bad', key 'actor/entropy', step 2: value 1e\+200 is too large to use "
                  r"\(\|value\| >= 1e100\): stored as a missing value, excluded from fits"))
    add(Case("entropy_negative", "values", (Step(two_runs("-0.5")),),
             GOOD_POINTS + (("bad", ENT, 1, 0.9), ("bad", ENT, 2, None), ("bad", ENT, 3, 0.7), ("bad", ACC, 0, 0.2)),
             note=r"line 8, run 'bad', key 'actor/entropy', step 2: value -0\.5 is outside the plausible range of a "
                  r"mean token entropy \(0 to 20 nats\)"))
    add(Case("entropy_above_20_nats", "values", (Step(two_runs("25")),),
             GOOD_POINTS + (("bad", ENT, 1, 0.9), ("bad", ENT, 2, None), ("bad", ENT, 3, 0.7), ("bad", ACC, 0, 0.2)),
             note=r"step 2: value 25 is outside the plausible range"))
    add(Case("entropy_1e155_jsonl", "values", (Step(one(lambda d: _w(d / "v.jsonl", jsonl(
        [{"key": ENT, "step": 1, "value": 0.5}, {"key": ENT, "step": 2, "value": 1.5e155},
         {"key": ENT, "step": 3, "value": 2e300}, {"key": ENT, "step": 4, "value": 0.4},
         {"key": ACC, "step": 0, "value": 0.2}, {"key": ACC, "step": 3, "value": 0.5}])))),),
             pts("v", ENT, {1: 0.5, 2: None, 3: None, 4: 0.4}) + pts("v", ACC, {0: 0.2, 3: 0.5}),
             note=r"v\.jsonl, line 2, run 'v', key 'actor/entropy', step 2: value 1\.5e\+155 is too large to use "
                  r".* \(and 1 more values of this key\)"))
    add(Case("reward_1e120_any_key", "values", (Step(one(lambda d: _w(d / "w.csv", "step,critic/score/mean\n1,0.5\n"
                                                                       "2,-1e120\n"))),),
             pts("w", "critic/score/mean", {1: 0.5, 2: None}), note=r"line 3, run 'w', key 'critic/score/mean', step 2"))
    add(Case("inf_and_nan_tokens_stay_missing", "values", (Step(one(lambda d: _w(d / "n.csv", csv_long(
        [("n", ENT, 1, "inf"), ("n", ENT, 2, "nan"), ("n", ENT, 3, 0.5)])))),),
             pts("n", ENT, {1: None, 2: None, 3: 0.5})))
    add(Case("json_number_overflowing_double", "values", (Step(one(lambda d: _w(
        d / "o.jsonl", '{"key": "actor/entropy", "step": 1, "value": 1e400}\n'
                       '{"key": "actor/entropy", "step": 2, "value": 0.4}\n'))),),
             pts("o", ENT, {1: None, 2: 0.4})))
    add(Case("entropy_1e200_in_a_verl_log", "values", (Step(one(lambda d: _w(d / "run.log", verl(
        [f"step:1 - {ENT}:0.500 - critic/score/mean:0.1", f"step:2 - {ENT}:1e200 - critic/score/mean:0.2",
         f"step:3 - {ENT}:0.400 - critic/score/mean:0.3"])))),),
             pts("run", ENT, {1: 0.5, 2: None, 3: 0.4}) + pts("run", "critic/score/mean", {1: 0.1, 2: 0.2, 3: 0.3}),
             note=r"run\.log, line 2, run 'run', key 'actor/entropy', step 2: value 1e\+200"))
    add(Case("value_1e155_inside_a_folder", "values (folder)", (Step(lambda d: file_args(
        (good_csv(d / "f" / "a.csv"), _w(d / "f" / "b.csv", "step,actor/entropy\n1,0.5\n2,1e156\n"))[0].parent)),),
             GOOD_POINTS + pts("b", ENT, {1: 0.5, 2: None}), note=r"b\.csv, line 3"))

    # 2. torn lines, missing fields, duplicate columns ---------------------------------------------------
    def torn_csv(d: Path) -> list[str]:
        p = d / "t.csv"
        if not p.exists():
            _w(p, csv_long([("r", ENT, 5, 0.9), ("r", ENT, 6, 0.8)]))
        else:
            with p.open("a") as fh:
                fh.write(f"r,{ENT},6")
        return file_args(p)

    add(Case("torn_last_csv_line_keeps_stored_value", "torn lines", (Step(torn_csv), Step(torn_csv)),
             pts("r", ENT, {5: 0.9, 6: 0.8})))

    def torn_then_completed(d: Path) -> list[str]:
        p = d / "g.csv"
        if not p.exists():
            _w(p, csv_long([("r", ENT, 5, 0.9)]) + f"r,{ENT},6")
        else:
            with p.open("a") as fh:
                fh.write(",0.7\n")
        return file_args(p)

    add(Case("torn_last_csv_line_fresh_store", "torn lines", (Step(one(lambda d: _w(
        d / "tf.csv", csv_long([("r", ENT, 5, 0.9)]) + f"r,{ENT},6"))),), pts("r", ENT, {5: 0.9})))
    add(Case("torn_csv_line_read_once_completed", "torn lines (tailing)", (Step(torn_then_completed),
                                                                        Step(torn_then_completed)),
             pts("r", ENT, {5: 0.9, 6: 0.7})))
    add(Case("torn_csv_line_cut_inside_a_character", "torn lines", (Step(one(lambda d: _w(
        d / "u.csv", (csv_long([("r", ENT, 1, 0.5)]) + "r,entrop").encode() + "é".encode()[:1]))),),
             pts("r", ENT, {1: 0.5})))
    add(Case("torn_last_jsonl_line", "torn lines", (Step(one(lambda d: _w(
        d / "t.jsonl", jsonl([{"key": ENT, "step": 1, "value": 0.5}]) + '{"key": "actor/entropy", "step": 2, "va'))),),
             pts("t", ENT, {1: 0.5})))
    add(Case("complete_unterminated_jsonl_line_is_taken", "torn lines", (Step(one(lambda d: _w(
        d / "c.jsonl", jsonl([{"key": ENT, "step": 1, "value": 0.5}]) + json.dumps(
            {"key": ENT, "step": 2, "value": 0.4})))),),
             pts("c", ENT, {1: 0.5, 2: 0.4})))
    add(Case("torn_last_verl_line", "torn lines", (Step(one(lambda d: _w(d / "v.log", verl(
        [f"step:1 - {ENT}:0.500 - critic/score/mean:0.1 - response_length/mean:100"]) + "\x1b[36m(main_task pid=7)"
        f"\x1b[0m step:2 - {ENT}:0.4"))),),
             pts("v", ENT, {1: 0.5}) + pts("v", "critic/score/mean", {1: 0.1})
             + pts("v", "response_length/mean", {1: 100.0})))
    add(Case("jsonl_line_without_value", "missing field", (Step(one(lambda d: _w(d / "nv.jsonl", jsonl(
        [{"key": ENT, "step": 1, "value": 0.5}, {"key": ENT, "step": 2}, {"key": ENT, "step": 3, "value": 0.3}]))),
        exit=2, error=r"nv\.jsonl, line 2, key 'actor/entropy': no 'value' field", names="nv.jsonl"),)))
    add(Case("jsonl_first_line_without_value", "missing field", (Step(one(lambda d: _w(d / "nv1.jsonl", jsonl(
        [{"key": ENT, "step": 1}, {"key": ENT, "step": 2, "value": 0.3}]))), exit=2,
        error=r"nv1\.jsonl, line 1: a 'key' and a 'step' column but no 'value' column", names="nv1.jsonl"),)))
    add(Case("wide_jsonl_line_without_step", "missing field", (Step(one(lambda d: _w(d / "ns.jsonl", jsonl(
        [{"step": 1, ENT: 0.5}, {ENT: 0.4}]))), exit=2, error=r"ns\.jsonl, line 2: no 'step' field",
        names="ns.jsonl"),)))
    add(Case("csv_row_with_a_missing_field", "missing field", (Step(one(lambda d: _w(
        d / "mf.csv", csv_long([("r", ENT, 1, 0.5), ("r", ENT, 2), ("r", ENT, 3, 0.3)]))), exit=2,
        error=r"mf\.csv, line 3: 3 fields where the header has 4 .*missing value", names="mf.csv"),)))
    add(Case("csv_row_with_an_extra_field", "missing field", (Step(one(lambda d: _w(
        d / "xf.csv", csv_long([("r", ENT, 1, 0.5, 7)]))), exit=2,
        error=r"xf\.csv, line 2: 5 fields where the header has 4 .*extra value", names="xf.csv"),)))
    add(Case("duplicate_csv_column", "duplicate column", (Step(one(lambda d: _w(
        d / "dup.csv", f"step,{ENT},{ENT}\n1,0.5,0.6\n")), exit=2,
        error=r"dup\.csv, line 1: column 'actor/entropy' appears twice in the header \(columns 2 and 3\)",
        names="dup.csv"),)))
    add(Case("csv_unnamed_index_column_is_passed_over", "duplicate column", (Step(one(lambda d: _w(
        d / "idx.csv", f",step,{ENT}\n0,1,0.5\n1,2,0.4\n"))),), pts("idx", ENT, {1: 0.5, 2: 0.4})))

    # 3. a folder does not stop at its first bad file ------------------------------------------------------
    def folder(d: Path) -> Path:
        f = d / "runs"
        _w(f / "a_bad.jsonl", jsonl([{"key": ENT, "step": 1}, {"key": ENT, "step": 2, "value": 0.3}]))
        good_csv(f / "b_good.csv")
        _w(f / "c_good.jsonl", jsonl([{"key": ENT, "step": 1, "value": 0.6}]))
        return f

    add(Case("folder_continues_past_a_bad_file", "folder", (Step(lambda d: file_args(folder(d)), exit=2,
             error=r"1 file\(s\) skipped, the others are in the store: .*a_bad\.jsonl, line 1",
             names="runs"),), GOOD_POINTS + pts("c_good", ENT, {1: 0.6}),
             skipped=1))
    add(Case("folder_fail_fast_stops_at_the_bad_file", "folder", (Step(lambda d: file_args(folder(d), "--fail-fast"),
                                                                      exit=2, error=r"a_bad\.jsonl, line 1",
                                                                      names="a_bad.jsonl"),)))

    def many_bad(d: Path) -> list[str]:
        f = d / "many"
        _w(f / "1.csv", "step,e,e\n1,2,3\n")
        _w(f / "2.csv", b"step,e\n1,\xe9\n")
        _w(f / "3.jsonl", "[1, 2]\n")
        _w(f / "4.csv", "")
        (f / "5.csv").symlink_to(f / "5.csv")
        _w(f / "6.log", verl([f"step:{2**63} - {ENT}:0.5"]))
        _w(f / "7.csv", "step,actor/entropy\n1,0.25\n")
        return file_args(f)

    add(Case("folder_names_every_skipped_file_and_why", "folder", (Step(many_bad, exit=2,
             error=r"6 file\(s\) skipped, the others are in the store: .* \(and 5 more\)", names="many"),), pts("7", ENT, {1: 0.25}),
             skipped=6))

    def tb_folder(d: Path) -> list[str]:
        from tests.test_tensorboard import _simple_values

        _simple_values(d / "tb" / "good", [(ENT, 1, 0.5, 1e9), (ENT, 2, 0.25, 1e9 + 1)])
        bad = _simple_values(d / "tb" / "bad", [(ENT, 1, 0.5, 1e9)])
        data = bytearray(bad.read_bytes())
        data[-10] ^= 0xFF
        bad.write_bytes(bytes(data))
        return ["ingest", "tensorboard", str(d / "tb")]

    add(Case("tensorboard_folder_continues_past_a_corrupt_run", "folder", (Step(tb_folder, exit=2,
             error=r"1 run folder\(s\) skipped, the others are in the store: .*corrupt event file", names="bad"),),
             pts("good", ENT, {1: 0.5, 2: 0.25}), skipped=1))

    # 4. linear parsing, lines over the limit ------------------------------------------------------------
    add(Case("pid_line_400KB_in_a_folder_is_fast", "quadratic parsing", (Step(lambda d: file_args(
        (_w(d / "q" / "out.log", "(" + "pid=1 " * 70_000 + "\n"), good_csv(d / "q" / "g.csv"))[1].parent)),),
             GOOD_POINTS))
    add(Case("whitespace_line_400KB_named_explicitly", "quadratic parsing", (Step(one(lambda d: _w(
        d / "ws.txt", "x" + " " * 400_000 + "x\n")), exit=2, error=r"ws\.txt: unknown file format", names="ws.txt"),),
             points=None))
    add(Case("verl_log_with_a_2MiB_line_of_output", "line limit", (Step(one(lambda d: _w(d / "big.log", verl(
        [f"step:1 - {ENT}:0.500", "sample: " + "a" * (2 * MB), f"step:2 - {ENT}:0.400"])))),),
             pts("big", ENT, {1: 0.5, 2: 0.4}), note=r"line 2 is longer than 1 MiB \(program output, not a step line\)"))
    add(Case("verl_step_line_over_1MiB", "line limit", (Step(one(lambda d: _w(d / "huge.log", verl(
        [f"step:1 - {ENT}:0.500", "step:2 - " + " - ".join(f"k{i}:0.1" for i in range(200_000))]))), exit=2,
        error=r"huge\.log, line 2: a step line longer than the 1 MiB line limit", names="huge.log"),)))
    add(Case("csv_line_over_1MiB", "line limit", (Step(one(lambda d: _w(d / "long.csv", "step,note\n1," + "x" * (2 * MB)
                                                                         + "\n")), exit=2,
        error=r"long\.csv, line 2: longer than the 1 MiB line limit", names="long.csv"),)))
    add(Case("jsonl_50MB_field_in_message_and_sync_log", "unbounded messages", (Step(one(lambda d: _w(
        d / "f50.jsonl", '{"key": "actor/entropy", "step": 1, "value": "' + "9" * (50 * MB) + '"}\n')), exit=2,
        error=r"f50\.jsonl, line 1: longer than the 1 MiB line limit", names="f50.jsonl"),)))
    add(Case("jsonl_500KB_string_value_is_quoted_short", "unbounded messages", (Step(one(lambda d: _w(
        d / "f500.jsonl", '{"key": "actor/entropy", "step": 1, "value": "' + "9" * 500_000 + '"}\n')), exit=2,
        error=r"f500\.jsonl, line 1: key 'actor/entropy' has value '9{20,}…' \(500000 characters\), not a number",
        names="f500.jsonl"),)))
    add(Case("key_of_50MB_is_rejected_not_stored", "unbounded names", (Step(one(lambda d: _w(
        d / "k50.csv", "step," + "k" * (50 * MB) + "\n1,0.5\n")), exit=2,
        error=r"k50\.csv, line 1: the header is longer than the 1 MiB line limit", names="k50.csv"),)))

    # 5. paths, store files, URLs and drivers ------------------------------------------------------------
    def loop(d: Path) -> list[str]:
        (d / "loop").symlink_to(d / "loop")
        return file_args(d / "loop")

    add(Case("symlink_loop_as_path", "paths", (Step(loop, exit=2, error=r"loop: cannot resolve the path \(a symlink "
                                                                         r"loop\)", names="loop"),), points=None))
    add(Case("missing_path", "paths", (Step(lambda d: file_args(d / "nope.csv"), exit=2,
                                            error=r"nope\.csv: no such file or folder", names="nope.csv"),),
             points=None))
    add(Case("broken_symlink_in_a_folder", "paths", (Step(lambda d: file_args(
        (good_csv(d / "bs" / "a.csv"), (d / "bs" / "z.csv").symlink_to(d / "gone.csv"))[0].parent), exit=2,
        error=r"z\.csv: a broken symlink or a symlink loop", names="z.csv"),),
             GOOD_POINTS, skipped=1))
    add(Case("unreadable_file", "paths", (Step(lambda d: file_args(_unreadable(d / "secret.csv")), exit=2,
                                               error=r"secret\.csv: cannot read \(Permission denied\)",
                                               names="secret.csv"),),
             points=None, needs=("unprivileged",)))
    add(Case("unreadable_file_in_a_folder", "paths", (Step(lambda d: file_args(
        (good_csv(d / "ur" / "a.csv"), _unreadable(d / "ur" / "b.csv"))[0].parent), exit=2,
        error=r"b\.csv: cannot read \(Permission denied\)", names="b.csv"),),
             GOOD_POINTS, needs=("unprivileged",), skipped=1))
    for name, url, err in (
            ("db_url_psycopg2_driver", "postgresql+psycopg2://u@127.0.0.1:1/x", r"database driver 'psycopg2' in "
             r"'postgresql\+psycopg2://u@127\.0\.0\.1:1/x' is not supported: write the URL as postgresql://"),
            ("db_url_asyncpg_driver", "postgresql+asyncpg://u:pw@127.0.0.1:1/x", r"database driver 'asyncpg' in "
             r"'postgresql\+asyncpg://u:\*\*\*@127\.0\.0\.1:1/x' is not supported"),
            ("db_url_aiosqlite_driver", "sqlite+aiosqlite:///x.db", r"database driver 'aiosqlite'"),
            ("db_url_mysql", "mysql://u@h/x", r"unsupported database 'mysql'"),
            ("db_url_not_a_url", "just some words", r"not a database URL: 'just some words'")):
        add(Case(name, "store URLs", (Step(lambda d, url=url: [*file_args(good_csv(d / "g.csv")), "--db", url], exit=2,
                                           error=err, names=url.split(":")[0]),), points=None, backends=("none",)))
    add(Case("db_file_that_is_not_sqlite", "store files", (Step(lambda d: [
        *file_args(good_csv(d / "g.csv")), "--db", f"sqlite:///{_w(d / 'notes.txt', 'not a database, just text')}"],
        exit=2, error=r"notes\.txt is not an SQLite database \(file is not a database\)", names="notes.txt"),),
             points=None, backends=("none",)))
    add(Case("db_file_in_a_missing_folder", "store files", (Step(lambda d: [
        *file_args(good_csv(d / "g.csv")), "--db", f"sqlite:///{d / 'no' / 'such' / 's.db'}"], exit=2,
        error=r"cannot open the SQLite database .*s\.db: unable to open database file", names="s.db"),),
             points=None, backends=("none",)))
    add(Case("read_command_on_a_non_sqlite_file", "store files", (Step(lambda d: [
        "runs", "--db", f"sqlite:///{_w(d / 'x.csv', 'a,b')}"], exit=2, error=r"x\.csv is not an SQLite database",
        names="x.csv"),), points=None, backends=("none",)))

    # 6. unbounded and misleading messages; names and keys over the limits; unreachable servers ---------
    add(Case("key_over_512_characters", "limits", (Step(one(lambda d: _w(d / "k.jsonl", jsonl(
        [{"key": ENT, "step": 1, "value": 0.5}, {"key": "k" * 600, "step": 1, "value": 0.5}]))), exit=2,
        error=r"k\.jsonl, line 2: metric key 'k{20,}…' \(600 characters\) is longer than the 512-character limit",
        names="k.jsonl"),)))
    add(Case("wide_csv_column_over_512_characters", "limits", (Step(one(lambda d: _w(
        d / "kc.csv", "step," + "c" * 513 + "\n1,0.5\n")), exit=2,
        error=r"kc\.csv, line 1: column 2 name 'c{20,}…' \(513 characters\) is longer than the 512-character",
        names="kc.csv"),)))
    add(Case("run_name_over_512_characters", "limits", (Step(one(lambda d: _w(d / "rn.csv", csv_long(
        [("x" * 700, ENT, 1, 0.5)]))), exit=2,
        error=r"rn\.csv, line 2: run name 'x{20,}…' \(700 characters\) is longer than the 512-character limit",
        names="rn.csv"),)))
    add(Case("nul_byte_in_a_key", "limits", (Step(one(lambda d: _w(d / "nul.jsonl", jsonl(
        [{"key": "actor/\u0000entropy", "step": 1, "value": 0.5}]))), exit=2,
        error=r"nul\.jsonl, line 1: metric key 'actor/\\x00entropy' contains a NUL byte", names="nul.jsonl"),)))
    add(Case("nul_byte_in_a_run_name", "limits", (Step(one(lambda d: _w(d / "nulr.csv", b"run,key,step,value\n"
                                                                        b"a\x00b,actor/entropy,1,0.5\n")), exit=2,
        error=r"nulr\.csv, line 2: run name 'a\\x00b' contains a NUL byte", names="nulr.csv"),)))
    add(Case("nul_byte_in_a_csv_header", "limits", (Step(one(lambda d: _w(d / "nulh.csv", b"step,ent\x00ropy\n1,0.5\n")),
                                                         exit=2, error=r"nulh\.csv, line 1: column 2 name .* contains "
                                                                       r"a NUL byte", names="nulh.csv"),)))
    deep = "d" * 60

    def deep_path(d: Path) -> list[str]:
        p = d / deep / deep / deep / deep / "metrics.csv"  # external id over 255 characters
        return file_args(_w(p, "step,actor/entropy\n1,0.5\n2,0.4\n"))

    add(Case("external_id_over_255_characters", "limits", (Step(deep_path), Step(deep_path)),
             pts("metrics", ENT, {1: 0.5, 2: 0.4})))
    def long_project(store: object) -> None:
        run = store.runs_frame().iloc[0]  # type: ignore[attr-defined]
        assert run["project"] == "p" * 254 + "…" and run["algorithm"] == "grpo"
        assert run["params"]["trainer.experiment_name"] == "a\ufffdb"

    add(Case("verl_config_with_long_project_and_nul_param", "limits", (Step(one(lambda d: _w(d / "cfg.log", verl([
        "{'trainer': {'project_name': '" + "p" * 400 + "', 'experiment_name': 'a\\x00b'},",
        " 'algorithm': {'adv_estimator': 'grpo'}}", f"step:1 - {ENT}:0.500"])))),),
             pts("cfg", ENT, {1: 0.5}), check=long_project))
    add(Case("unreachable_postgres_for_ingest", "unreachable servers", (Step(lambda d: [
        *file_args(good_csv(d / "g.csv")), "--db", "postgresql://postgres@127.0.0.1:9/nowhere"], exit=2,
        error=r"cannot reach the PostgreSQL server of postgresql\+psycopg://postgres@127\.0\.0\.1:9/nowhere "
              r"\(is it running, is the address right\?\): .*refused", names="127.0.0.1:9"),), points=None,
             backends=("none",)))
    add(Case("unreachable_postgres_for_a_read_command", "unreachable servers", (Step(lambda d: [
        "runs", "--db", "postgresql://postgres@127.0.0.1:9/nowhere"], exit=2,
        error=r"cannot reach the PostgreSQL server", names="127.0.0.1:9"),), points=None, backends=("none",)))
    add(Case("postgres_database_that_does_not_exist", "unreachable servers", (Step(lambda d: [
        "runs", "--db", "{pg_missing_db}"], exit=2,
        error=r"cannot connect to postgresql\+psycopg://postgres@127\.0\.0\.1:\d+/no_such_db: .*does not exist",
        names="no_such_db"),), points=None, backends=("postgres_server",)))
    add(Case("unreachable_mlflow_writes_nothing", "unreachable servers", (Step(lambda d: [
        "ingest", "mlflow", "http://127.0.0.1:9"], exit=2, error=r"cannot reach MLflow tracking server "
                                                                  r"http://127\.0\.0\.1:9", names="127.0.0.1:9"),),
             points=None))
    add(Case("unreachable_wandb_writes_nothing", "unreachable servers", (Step(lambda d: [
        "ingest", "wandb", "ent/proj"], exit=2, error=r"W&B project ent/proj: cannot reach the W&B server "
                                                      r"http://127\.0\.0\.1:9: connection refused",
        names="ent/proj"),), points=None, needs=("wandb_down",)))

    # encodings and steps
    add(Case("latin1_bytes_in_a_csv_row", "encoding", (Step(one(lambda d: _w(d / "l1.csv", b"step,acc\n1,0.5\n"
                                                                             b"2,caf\xe9\n3,0.7\n")), exit=2,
        error=r"l1\.csv, line 3: bytes b'\\xe9' are not UTF-8", names="l1.csv"),)))
    add(Case("latin1_bytes_in_a_jsonl_line", "encoding", (Step(one(lambda d: _w(
        d / "l1.jsonl", b'{"key": "actor/entropy", "step": 1, "value": 0.5}\n{"key": "caf\xe9", "step": 1, '
                        b'"value": 0.5}\n')), exit=2, error=r"l1\.jsonl, line 2: not valid JSON",
        names="l1.jsonl"),)))
    add(Case("step_2_to_the_63_in_csv", "steps", (Step(one(lambda d: _w(d / "s63.csv", csv_long(
        [("r", ENT, 1, 0.5), ("r", ENT, 2**63, 0.4)]))), exit=2,
        error=r"s63\.csv, line 3: step 9223372036854775808; steps must be at most 2\^53", names="s63.csv"),)))
    add(Case("step_2_to_the_63_in_jsonl", "steps", (Step(one(lambda d: _w(d / "s63.jsonl", jsonl(
        [{"key": ENT, "step": 1, "value": 0.5}, {"key": ENT, "step": 2**63, "value": 0.4}]))), exit=2,
        error=r"s63\.jsonl, line 2: step 9223372036854775808; steps must be at most 2\^53", names="s63.jsonl"),)))
    add(Case("step_2_to_the_63_in_wide_jsonl", "steps", (Step(one(lambda d: _w(d / "w63.jsonl", jsonl(
        [{"step": 2**63, ENT: 0.5}]))), exit=2, error=r"w63\.jsonl, line 1, key 'actor/entropy': step "
                                                      r"9223372036854775808; steps must be at most", names="w63.jsonl"),
    )))
    add(Case("step_2_to_the_63_in_a_verl_log", "steps", (Step(one(lambda d: _w(d / "s63.log", verl(
        [f"step:1 - {ENT}:0.5", f"step:{2**63} - {ENT}:0.4"]))), exit=2,
        error=r"s63\.log, line 2: step '9223372036854775808' is too large", names="s63.log"),)))
    add(Case("negative_step", "steps", (Step(one(lambda d: _w(d / "neg.csv", csv_long([("r", ENT, -1, 0.5)]))), exit=2,
                                             error=r"neg\.csv, line 2: step -1; steps must be >= 0",
                                             names="neg.csv"),)))
    add(Case("string_value_in_a_verl_log", "values", (Step(one(lambda d: _w(d / "sv.log", verl(
        [f"step:1 - {ENT}:0.5 - acc:oops"]))), exit=2, error=r"sv\.log, line 1: key 'acc' has value 'oops', not a "
                                                             r"number", names="sv.log"),)))

    # 7. empty inputs ------------------------------------------------------------------------------------
    for name, fname, text, why in (
            ("zero_byte_csv", "z.csv", "", "the file is empty"),
            ("header_only_csv", "h.csv", "run,key,step,value\n", "a header and no rows"),
            ("blank_jsonl", "b.jsonl", "\n\n  \n", "only blank lines"),
            ("zero_byte_jsonl", "z.jsonl", "", "the file is empty"),
            ("zero_byte_log", "z.log", "", "the file is empty"),
            ("empty_log_history", "trainer_state.json", json.dumps({"global_step": 0, "log_history": []}),
             "log_history is empty")):
        add(Case(name, "empty inputs", (Step(one(lambda d, f=fname, t=text: _w(d / f, t)), exit=2,
                                             error=rf"no data rows in .*{fname.replace('.', '[.]')} \({why}",
                                             names=fname),)))
        if name in ("header_only_csv", "blank_jsonl"):
            add(Case(name + "_allowed", "empty inputs", (Step(one(lambda d, f=fname, t=text: _w(d / f, t),
                                                                  "--allow-empty")),)))
    return c


def _unreadable(path: Path) -> Path:
    good_csv(path)
    path.chmod(0)
    return path


def _all_cases() -> list[Case]:
    from tests.corpus.hard_edges import hard_edge_cases

    return _cases() + hard_edge_cases()


CASES = _all_cases()


def main(out: str) -> None:
    root = Path(out)
    for case in CASES:
        d = root / case.name
        d.mkdir(parents=True, exist_ok=True)
        for step in case.steps:
            args = step.prepare(d)
            print(f"{case.name}: entropy-dash {' '.join(a if len(a) < 80 else a[:77] + '...' for a in args)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "corpus-out")
