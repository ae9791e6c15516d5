"""Steps are integers in every format, read exactly (``ingest.steps``): 2^53 and 2^53 - 1 stay two steps, the
rule for step text is the same in CSV, JSONL and trainer_state.json, and a float step is refused everywhere."""

from __future__ import annotations

import json

import pytest

from db.errors import RecordError
from db.limits import MAX_STEP
from db.records import Series
from ingest.errors import IngestError
from ingest.steps import StepError, step_from_json, step_from_text
from ingest.tabular import read_table
from ingest.trl_state import parse_trainer_state

BIG = 2**53  # MAX_STEP: the neighbours below it differ by 1 and must stay apart


@pytest.mark.parametrize(("text", "step"), [("7", 7), (" 7 ", 7), ("+8", 8), ("0", 0), (str(BIG), BIG)])
def test_step_text_accepted(text, step):
    assert step_from_text(text) == step


@pytest.mark.parametrize(("text", "why"), [("1.0", "is not an integer"), ("1e3", "is not an integer"),
                                           ("1_000", "is not an integer"), ("0x10", "is not an integer"),
                                           ("-1", "steps must be >= 0"), ("", "missing step"),
                                           (str(BIG + 1), "steps must be at most 2\\^53"), ("nan", "not an integer")])
def test_step_text_refused(text, why):
    with pytest.raises(StepError, match=why):
        step_from_text(text)


def test_json_steps_follow_the_same_rule():
    assert step_from_json(5) == 5 and step_from_json(" 6 ") == 6
    for bad in (5.0, True, None, [1], "1e3"):
        with pytest.raises(StepError):
            step_from_json(bad)


def _pairs(runs):
    return {(s.key, int(st), float(v)) for r in runs for s in r.series for st, v in zip(s.steps, s.values,
                                                                                        strict=True)}


def test_big_neighbouring_steps_stay_apart_in_csv_and_jsonl(tmp_path):
    csv = tmp_path / "b.csv"
    csv.write_text(f"key,step,value\ne,{BIG - 1},0.5\ne,{BIG},0.6\n")
    long = tmp_path / "b.jsonl"  # clean long form: the pyarrow path
    long.write_text(json.dumps({"key": "e", "step": BIG - 1, "value": 0.5}) + "\n"
                    + json.dumps({"key": "e", "step": BIG, "value": 0.6}) + "\n")
    wide = tmp_path / "w.jsonl"
    wide.write_text(json.dumps({"step": BIG - 1, "e": 0.5}) + "\n" + json.dumps({"step": BIG, "e": 0.6}) + "\n")
    messy = tmp_path / "m.jsonl"  # a string value: the line-by-line path
    messy.write_text(json.dumps({"key": "e", "step": BIG - 1, "value": "0.5"}) + "\n"
                     + json.dumps({"key": "e", "step": BIG, "value": 0.6}) + "\n")
    for path in (csv, long, wide, messy):
        assert _pairs(read_table(path)) == {("e", BIG - 1, 0.5), ("e", BIG, 0.6)}, path.name


def test_csv_step_text_rule(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("step,e\n 7 ,0.5\n+8,0.6\n\n")
    assert _pairs(read_table(path)) == {("e", 7, 0.5), ("e", 8, 0.6)}
    for text in ("1.0", "1e3", "1_000"):
        path.write_text(f"step,e\n1,0.5\n{text},0.6\n")
        with pytest.raises(IngestError, match=rf"s\.csv, line 3: step '{text}' is not an integer; steps are "
                                              "integers written with digits"):
            read_table(path)
    path.write_text(f"step,e\n1,0.5\n{BIG + 1},0.6\n")
    with pytest.raises(IngestError, match=rf"line 3: step {BIG + 1}; steps must be at most 2\^53"):
        read_table(path)


def test_jsonl_float_step_is_refused_on_both_paths(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text(json.dumps({"key": "e", "step": 1, "value": 0.5}) + "\n"
                    + '{"key": "e", "step": 2.0, "value": 0.5}\n')
    with pytest.raises(IngestError, match=r"f\.jsonl, line 2: step 2\.0 is not an integer"):
        read_table(path)


def test_trainer_state_steps_are_integers(tmp_path):
    path = tmp_path / "out" / "trainer_state.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"log_history": [{"step": BIG - 1, "loss": 0.5}, {"step": BIG, "loss": 0.4}]}))
    run = parse_trainer_state(path)
    assert _pairs([run]) == {("loss", BIG - 1, 0.5), ("loss", BIG, 0.4)}
    path.write_text(json.dumps({"log_history": [{"step": 3.0, "loss": 0.5}]}))
    with pytest.raises(IngestError, match=r"log_history\[0\]: step 3\.0 is not an integer"):
        parse_trainer_state(path)


def test_series_build_takes_integers_only():
    s = Series.build("k", [BIG, BIG - 1], [1.0, 2.0])
    assert s.steps.tolist() == [BIG - 1, BIG]
    with pytest.raises(RecordError, match="is not an integer"):
        Series.build("k", [1.0], [1.0])
    with pytest.raises(RecordError, match="too large"):
        Series.build("k", [MAX_STEP + 1], [1.0])


def test_repeated_steps_are_counted_and_noted(tmp_path):
    from ingest.values import screen

    path = tmp_path / "d.csv"
    path.write_text("key,step,value\ne,1,0.5\ne,2,0.6\ne,1,0.7\ne,2,0.6\n")
    run = read_table(path)[0]
    (s,) = run.series
    assert s.steps.tolist() == [1, 2] and s.values.tolist() == [0.7, 0.6]
    assert (s.repeats.dropped, s.repeats.differing, s.repeats.step) == (2, 1, 1)
    assert (s.repeats.dropped_line, s.repeats.kept_line) == (2, 4)
    notes = screen(run, {}).notes
    assert any(n.endswith("key 'e': 2 point(s) given at a step already given (1 with a different value; first at "
                          "step 1, lines 2 and 4): the one with the latest wall time is kept, else the later one")
               for n in notes), notes


def test_non_finite_values_are_noted(tmp_path):
    from ingest.values import screen

    path = tmp_path / "n.csv"
    path.write_text("step,e\n1,0.5\n2,nan\n3,inf\n")
    notes = screen(read_table(path)[0], {}).notes
    assert any("n.csv, line 3, run 'n', key 'e': 2 value(s) NaN or ±inf (first at step 2: nan): stored as missing "
               "values, excluded from fits" in n for n in notes), notes
