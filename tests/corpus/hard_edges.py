"""Corpus cases of issue 21's ingestion half ("hard edges"): steps read as integers in every format, repeated
steps reported, several runs in one verl log, files rewritten from the start, run names, and messages that say
what happened. Added to ``make_corpus.CASES``; each case states exit code, message (or note) and stored rows.
The README's "Rules and limits" table states the same rules."""

from __future__ import annotations

import json


def hard_edge_cases() -> list:
    from tests.corpus.make_corpus import ENT, Case, Step, _w, csv_long, jsonl, one, verl

    big = 2**53
    c: list = []
    add = c.append

    # steps: integers, read exactly, one rule for text, one limit --------------------------------------------
    add(Case("steps_2_53_and_its_neighbour_csv", "integer steps", (Step(one(lambda d: _w(d / "b.csv", csv_long(
        [("r", ENT, big - 1, 0.5), ("r", ENT, big, 0.4)])))),),
        points=(("r", ENT, big - 1, 0.5), ("r", ENT, big, 0.4))))
    add(Case("steps_2_53_and_its_neighbour_jsonl", "integer steps", (Step(one(lambda d: _w(d / "b.jsonl", jsonl(
        [{"key": ENT, "step": big - 1, "value": 0.5}, {"key": ENT, "step": big, "value": 0.4}])))),),
        points=(("b", ENT, big - 1, 0.5), ("b", ENT, big, 0.4))))
    add(Case("steps_2_53_and_its_neighbour_trainer_state", "integer steps", (Step(one(lambda d: _w(
        d / "out" / "trainer_state.json", json.dumps({"log_history": [{"step": big - 1, "loss": 0.5},
                                                                      {"step": big, "loss": 0.4}]})))),),
        points=(("out", "loss", big - 1, 0.5), ("out", "loss", big, 0.4))))
    add(Case("step_2_53_plus_1_refused_csv", "integer steps", (Step(one(lambda d: _w(d / "p.csv", csv_long(
        [("r", ENT, 1, 0.5), ("r", ENT, big + 1, 0.4)]))), exit=2,
        error=r"p\.csv, line 3: step 9007199254740993; steps must be at most 2\^53", names="p.csv"),)))
    add(Case("step_text_spaces_and_plus_accepted", "integer steps", (Step(one(lambda d: _w(
        d / "t.csv", "step,acc\n 7 ,0.5\n+8,0.6\n"))),), points=(("t", "acc", 7, 0.5), ("t", "acc", 8, 0.6))))
    for i, text in enumerate(("1.0", "1e3", "1_000")):
        add(Case(f"step_text_{text.replace('.', '_')}_refused_csv", "integer steps", (Step(one(
            lambda d, t=text, i=i: _w(d / f"s{i}.csv", f"step,acc\n1,0.5\n{t},0.6\n")), exit=2,
            error=rf"s{i}\.csv, line 3: step '{text}' is not an integer; steps are integers written with digits",
            names=f"s{i}.csv"),)))
    add(Case("step_float_refused_jsonl", "integer steps", (Step(one(lambda d: _w(
        d / "f.jsonl", '{"key": "acc", "step": 1, "value": 0.5}\n{"key": "acc", "step": 2.0, "value": 0.6}\n')),
        exit=2, error=r"f\.jsonl, line 2: step 2\.0 is not an integer", names="f.jsonl"),)))
    add(Case("step_float_refused_trainer_state", "integer steps", (Step(one(lambda d: _w(
        d / "o" / "trainer_state.json", json.dumps({"log_history": [{"step": 1.0, "loss": 0.5}]}))), exit=2,
        error=r"trainer_state\.json, log_history\[0\]: step 1\.0 is not an integer", names="trainer_state.json"),)))
    add(Case("jsonl_string_value_read_as_a_csv_cell_is", "integer steps", (Step(one(lambda d: _w(
        d / "s.jsonl", jsonl([{"key": "acc", "step": 1, "value": "0.5"}, {"key": "acc", "step": 2, "value": ""}])))),),
        points=(("s", "acc", 1, 0.5), ("s", "acc", 2, None))))

    # the same (run, key, step) twice in one input: one point kept, a note with the count; --strict refuses
    rows = [("r", ENT, 1, 0.9), ("r", ENT, 2, 0.8), ("r", ENT, 1, 0.5)]
    add(Case("repeated_step_in_a_csv_is_noted", "repeated steps", (Step(one(lambda d: _w(d / "rep.csv", csv_long(
        rows)))),), points=(("r", ENT, 1, 0.5), ("r", ENT, 2, 0.8)),
        note=r"rep\.csv, run 'r', key 'actor/entropy': 1 point\(s\) given at a step already given \(1 with a "
             r"different value; first at step 1, lines 2 and 4\): the one with the latest wall time is kept"))
    add(Case("repeated_step_in_a_csv_strict_is_refused", "repeated steps", (Step(one(lambda d: _w(
        d / "rep.csv", csv_long(rows)), "--strict"), exit=2, error=r"rep\.csv, run 'r', key 'actor/entropy': 1 "
        r"point\(s\) given at a step already given .*: refused \(--strict", names="rep.csv"),)))
    add(Case("repeated_step_in_a_trainer_state_is_noted", "repeated steps", (Step(one(lambda d: _w(
        d / "o" / "trainer_state.json", json.dumps({"log_history": [{"step": 1, "loss": 0.5},
                                                                    {"step": 1, "loss": 0.4}]})))),),
        points=(("o", "loss", 1, 0.4),), note=r"key 'loss': 1 point\(s\) given at a step already given \(1 "
                                              r"with a different value; first at step 1\)"))
    add(Case("repeated_step_in_a_verl_log_is_noted", "repeated steps", (Step(one(lambda d: _w(d / "v.log", verl(
        [f"step:1 - {ENT}:0.9", f"step:2 - {ENT}:0.8", f"step:2 - {ENT}:0.7"])))),),
        points=(("v", ENT, 1, 0.9), ("v", ENT, 2, 0.7)),
        note=r"key 'actor/entropy': 1 point\(s\) given at a step already given \(1 with a different value; "
             r"first at step 2, lines 2 and 3\)"))
    add(Case("nan_value_is_noted_on_the_run", "repeated steps (values)", (Step(one(lambda d: _w(
        d / "n.csv", "step,acc\n1,0.5\n2,nan\n"))),), points=(("n", "acc", 1, 0.5), ("n", "acc", 2, None)),
        note=r"n\.csv, line 3, run 'n', key 'acc': 1 value\(s\) NaN or ±inf \(first at step 2: nan\)"))

    # several runs in one verl console log: refused naming the lines; a resumed trainer is the same run
    def e(step: int, v: float) -> str:
        return f"step:{step} - {ENT}:{v}"

    add(Case("two_pids_in_one_verl_log_refused", "verl multi-run", (Step(one(lambda d: _w(
        d / "two.log", verl([e(1, 0.9), e(2, 0.8)], pid=7) + verl([e(1, 0.5), e(2, 0.4)], pid=9))), exit=2,
        error=r"two\.log, line 3: a second run starts \('main_task pid=9' logs step:1 again after 'main_task "
              r"pid=7' started at step:1, line 2 its last\): two runs in one log are refused", names="two.log"),)))
    add(Case("interleaved_pids_in_one_verl_log_refused", "verl multi-run", (Step(one(lambda d: _w(
        d / "mix.log", verl([e(1, 0.9)], pid=7) + verl([e(2, 0.8)], pid=9) + verl([e(3, 0.7)], pid=7))), exit=2,
        error=r"mix\.log, line 3: step lines of two processes are interleaved \('main_task pid=9' at line 2, "
              r"'main_task pid=7' again at line 3\)", names="mix.log"),)))

    def dump(name: str) -> list[str]:
        return ["{'trainer': {'project_name': 'p',", f"             'experiment_name': '{name}'}}}}"]

    add(Case("two_experiments_in_one_verl_log_refused", "verl multi-run", (Step(one(lambda d: _w(
        d / "exp.log", verl([*dump("a"), e(1, 0.9)]) + verl([*dump("b"), e(5, 0.5)]))), exit=2,
        error=r"exp\.log, line 5: a second run \(experiment_name 'b'\) starts in a log of experiment_name 'a' "
              r"\(line 2\)", names="exp.log"),)))
    add(Case("resumed_trainer_in_one_verl_log_is_one_run", "verl multi-run", (Step(one(lambda d: _w(
        d / "res.log", verl([e(1, 0.9), e(2, 0.8)], pid=7) + verl([e(2, 0.6), e(3, 0.5)], pid=9)))),),
        points=(("res", ENT, 1, 0.9), ("res", ENT, 2, 0.6), ("res", ENT, 3, 0.5)),
        note=r"line 3: the trainer was launched again \(main_task pid=9 after main_task pid=7\), going on from "
             r"step:2: read as the same run resumed"))

    # a file rewritten from the start with other values at its first steps: a new launch, a run of its own
    def rewritten(values: list[float]):
        def prepare(d):
            return ["ingest", "file", str(_w(d / "re.csv", "step,acc\n" + "".join(
                f"{i},{v}\n" for i, v in enumerate(values, start=1))))]
        return prepare

    add(Case("file_rewritten_from_the_start_is_a_new_launch", "rewritten files", (
        Step(rewritten([0.1, 0.2, 0.3, 0.4])), Step(rewritten([0.5, 0.6]))),
        points=(("re", "acc", 1, 0.1), ("re", "acc", 2, 0.2), ("re", "acc", 3, 0.3), ("re", "acc", 4, 0.4),
                ("re (launch 2)", "acc", 1, 0.5), ("re (launch 2)", "acc", 2, 0.6)),
        note=r"re\.csv: rewritten from the start \(shorter than before .*\) with other values at its first steps: "
             r"a new launch, stored as run 're \(launch 2\)'; the earlier launch stays as run 're'"))
    add(Case("file_rewritten_with_more_rows_is_the_same_run", "rewritten files", (
        Step(rewritten([0.1, 0.2])), Step(rewritten([0.1, 0.25, 0.3]))),
        points=(("re", "acc", 1, 0.1), ("re", "acc", 2, 0.25), ("re", "acc", 3, 0.3))))

    # messages that say what happened
    def fifo(d):
        import os
        p = d / "pipe.csv"
        if not p.exists():
            os.mkfifo(p)
        return ["ingest", "file", str(p)]

    add(Case("fifo_is_not_a_regular_file", "messages", (Step(fifo, exit=2, error=r"pipe\.csv: not a regular file "
                                                             r"\(a FIFO, device or socket\)", names="pipe.csv"),),
             points=None))
    add(Case("dev_zero_is_not_a_regular_file", "messages", (Step(lambda d: ["ingest", "file", "/dev/zero"], exit=2,
        error=r"/dev/zero: not a regular file", names="/dev/zero"),), points=None))
    deep = "[" * 200_000 + "]" * 200_000
    add(Case("trainer_state_nested_200000_deep", "messages", (Step(one(lambda d: _w(
        d / "o" / "trainer_state.json", '{"log_history": ' + deep + "}")), exit=2,
        error=r"trainer_state\.json: JSON nested too deeply \(more than about 1,000 levels", names="trainer_state.json"
    ),)))
    add(Case("jsonl_line_nested_200000_deep", "messages", (Step(one(lambda d: _w(
        d / "deep.jsonl", '{"key": "a", "step": 1, "value": 0.5}\n{"key": "a", "step": 2, "value": ' + deep + "}\n")),
        exit=2, error=r"deep\.jsonl, line 2: JSON nested too deeply", names="deep.jsonl"),)))
    add(Case("long_string_value_is_quoted_to_60_characters", "messages", (Step(one(lambda d: _w(
        d / "o" / "trainer_state.json", json.dumps({"log_history": [{"step": 1, "loss": "x" * 5000}]}))), exit=2,
        error=r"key 'loss' has value 'x{60}…' \(5000 characters\), not a number$", names="trainer_state.json"),)))
    add(Case("unnamed_index_column_is_noted_on_the_run", "messages", (Step(one(lambda d: _w(
        d / "ix.csv", ",step,acc\n0,1,0.5\n"))),), points=(("ix", "acc", 1, 0.5),),
        note=r"ix\.csv: column\(s\) 1 of the header have no name \(a pandas index written by to_csv\?\): passed "
             r"over"))
    add(Case("wandb_offline_empty_folder_creates_no_store", "messages", (Step(lambda d: (
        d.joinpath("empty").mkdir(exist_ok=True), ["ingest", "wandb", "--offline", str(d / "empty")])[1], exit=2,
        error=r"no W&B run files \(run-\*\.wandb\) under .*empty", names="empty"),), points=None))

    # text shapes read as text: CR-only line ends, UTF-16 with a BOM, RFC 4180 quoted line ends
    add(Case("cr_only_line_ends_csv_are_read", "text shapes", (Step(one(lambda d: _w(
        d / "cr.csv", b"step,acc\r1,0.5\r2,0.6\r"))),), points=(("cr", "acc", 1, 0.5), ("cr", "acc", 2, 0.6)),
        note=r"cr\.csv: lines end in CR alone \(old Mac line ends\): read as lines"))
    add(Case("utf16_csv_with_a_bom_is_read", "text shapes", (Step(one(lambda d: _w(
        d / "u16.csv", "step,acc\r\n1,0.5\r\n2,0.6\r\n".encode("utf-16")))),),
        points=(("u16", "acc", 1, 0.5), ("u16", "acc", 2, 0.6)),
        note=r"u16\.csv: UTF-16 text \(byte-order mark\): read as text, whole at every sync"))
    add(Case("utf16_verl_log_with_a_bom_is_read", "text shapes", (Step(one(lambda d: _w(
        d / "u16.log", verl([f"step:1 - {ENT}:0.5", f"step:2 - {ENT}:0.4"]).encode("utf-16")))),),
        points=(("u16", ENT, 1, 0.5), ("u16", ENT, 2, 0.4))))
    add(Case("quoted_newline_in_a_csv_field_is_read", "text shapes", (Step(one(lambda d: _w(
        d / "q.csv", 'run,key,step,value\n"two\nlines",acc,1,0.5\nr,acc,2,0.6\n'))),),
        points=(("two\nlines", "acc", 1, 0.5), ("r", "acc", 2, 0.6))))
    add(Case("unclosed_quote_in_a_csv_is_refused", "text shapes", (Step(one(lambda d: _w(
        d / "uq.csv", 'run,key,step,value\n"open,acc,1,0.5\nr,acc,2,0.6\n')), exit=2,
        error=r"uq\.csv, line 2: not a readable CSV record \(unexpected end of data; a quoted field must end with a "
              r"quote\)", names="uq.csv"),)))

    # run names: blank ones get the file's name; the same name from two files of a folder is told apart
    add(Case("blank_run_name_gets_the_file_name", "run names", (Step(one(lambda d: _w(
        d / "bl.csv", "run,key,step,value\n,acc,1,0.5\n"))),), points=(("bl", "acc", 1, 0.5),),
        note=r"bl\.csv: run name '' is blank: stored as 'bl' \(the file's name\)"))
    add(Case("spaces_run_name_gets_the_file_name_jsonl", "run names", (Step(one(lambda d: _w(
        d / "sp.jsonl", jsonl([{"run": "   ", "key": "acc", "step": 1, "value": 0.5}])))),),
        points=(("sp", "acc", 1, 0.5),), note=r"run name '   ' is blank: stored as 'sp'"))

    def two_files(d):
        _w(d / "runs" / "a" / "run.csv", "step,acc\n1,0.5\n")
        _w(d / "runs" / "b" / "run.csv", "step,acc\n1,0.6\n")
        return ["ingest", "file", str(d / "runs")]

    add(Case("same_run_name_in_two_files_is_told_apart", "run names", (Step(two_files),),
        points=(("a/run", "acc", 1, 0.5), ("b/run", "acc", 1, 0.6)),
        note=r"a/run\.csv: run name 'run' is also another file's in this folder: stored as 'a/run'"))
    return c
