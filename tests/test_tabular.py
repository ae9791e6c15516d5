"""CSV and JSONL files, long and wide form, written with pandas / json as users write them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingest import tabular_csv, tabular_jsonl
from ingest.errors import IngestError
from ingest.tabular import read_table


def _runs(path: Path) -> dict[str, dict[str, object]]:
    return {r.run.name: {s.key: s for s in r.series} for r in read_table(path)}


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(params=["arrow", "lines"])
def reader(request, monkeypatch):
    """Run JSONL tests through both the pyarrow fast path and the line-by-line reader."""
    if request.param == "lines":
        monkeypatch.setattr(tabular_jsonl, "_jsonl_long_arrow", lambda *a: False)
    return request.param


def test_long_csv_multi_run(tmp_path):
    df = pd.DataFrame({"run": ["a", "a", "b", "a"], "key": ["actor/entropy", "actor/entropy", "actor/entropy", "acc"],
                       "step": [0, 1, 0, 0], "value": [0.9, 0.8, 0.7, 0.1]})
    df.to_csv(path := tmp_path / "m.csv", index=False)
    runs = read_table(path)
    assert [r.run.name for r in runs] == ["a", "b"]
    assert runs[0].run.external_id == f"{path.resolve()}#a"
    got = _runs(path)
    assert got["a"]["actor/entropy"].values.tolist() == [0.9, 0.8]
    assert got["a"]["acc"].steps.tolist() == [0]
    assert got["b"]["actor/entropy"].values.tolist() == [0.7]


def test_wide_csv_single_run_missing_cells_are_no_points(tmp_path):
    df = pd.DataFrame({"step": [1, 2, 3], "entropy": [0.5, 0.4, 0.3], "eval_accuracy": [None, 0.6, None]})
    df.to_csv(path := tmp_path / "trl_run.csv", index=False)
    (run,) = read_table(path)
    assert run.run.name == "trl_run" and run.run.external_id == str(path.resolve())
    s = {x.key: x for x in run.series}
    assert s["entropy"].steps.tolist() == [1, 2, 3]
    assert s["eval_accuracy"].steps.tolist() == [2] and s["eval_accuracy"].values.tolist() == [0.6]


def test_wide_csv_with_run_and_wall_time(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("run,step,wall_time,entropy\nx,0,100.0,1.0\ny,0,100.0,2.0\nx,1,101.0,0.5\n")
    got = _runs(path)
    assert got["x"]["entropy"].values.tolist() == [1.0, 0.5]
    assert got["x"]["entropy"].wall_times.tolist() == [100.0, 101.0]
    assert got["y"]["entropy"].values.tolist() == [2.0]


def test_nan_and_inf_are_kept(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("key,step,value\nentropy,0,nan\nentropy,1,inf\nentropy,2,\nentropy,3,0.5\n")
    s = _runs(path)["n"]["entropy"]
    assert s.steps.tolist() == [0, 1, 2, 3]
    assert np.isnan(s.values[0]) and np.isinf(s.values[1]) and np.isnan(s.values[2])


def test_csv_string_value_names_key_and_line(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("step,entropy,acc\n0,0.5,0.1\n1,0.4,oops\n")
    with pytest.raises(IngestError, match=r"s\.csv, line 3: key 'acc' has value 'oops'"):
        read_table(path)


def test_csv_bad_line_names_the_line(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("key,step,value\nentropy,0,0.5\nentropy,1,0.4,extra,fields\n")
    with pytest.raises(IngestError, match=r"b\.csv, line 3: 5 fields where the header has 3 .*extra value"):
        read_table(path)


def test_csv_negative_and_fractional_steps(tmp_path):
    path = tmp_path / "neg.csv"
    path.write_text("key,step,value\nentropy,0,0.5\n\nentropy,-3,0.4\n")
    with pytest.raises(IngestError, match=r"neg\.csv, line 4: step -3; steps must be >= 0"):
        read_table(path)
    path.write_text("key,step,value\nentropy,1.5,0.5\n")
    with pytest.raises(IngestError, match=r"line 2: step '1\.5' is not an integer; steps are integers written with digits"):
        read_table(path)


def test_duplicate_steps_latest_wall_time_wins(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("key,step,value,wall_time\nentropy,5,0.9,200\nentropy,5,0.1,100\nentropy,6,0.3,300\n")
    s = _runs(path)["d"]["entropy"]
    assert s.steps.tolist() == [5, 6] and s.values.tolist() == [0.9, 0.3]


def test_csv_in_small_chunks_keeps_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular_csv, "CHUNK_ROWS", 3)
    rows = "".join(f"entropy,{i},0.5\n" for i in range(10)) + "entropy,10,bad\n"
    (path := tmp_path / "c.csv").write_text("key,step,value\n" + rows)
    with pytest.raises(IngestError, match=r"line 12: key 'value' has value 'bad'"):
        read_table(path)


def test_unknown_columns_error(tmp_path):
    (path := tmp_path / "u.csv").write_text("a,b\n1,2\n")
    with pytest.raises(IngestError, match="neither long form .* nor wide form"):
        read_table(path)


def test_empty_file_has_no_runs(tmp_path):
    (path := tmp_path / "e.jsonl").write_text("")
    assert read_table(path) == []


# ----------------------------------------------------------------------------------------------- JSONL


def test_long_jsonl(tmp_path, reader):
    recs = [{"run": f"r{r}", "key": k, "step": s, "value": s / 10 + r}
            for r in range(3) for k in ("actor/entropy", "val/acc") for s in range(5)]
    path = _jsonl(tmp_path / "l.jsonl", recs)
    got = _runs(path)
    assert sorted(got) == ["r0", "r1", "r2"]
    assert got["r2"]["val/acc"].values.tolist() == [2.0, 2.1, 2.2, 2.3, 2.4]


def test_long_jsonl_duplicates_null_and_wall_time(tmp_path, reader):
    recs = [{"key": "e", "step": 1, "value": 0.5, "wall_time": 10.0},
            {"key": "e", "step": 1, "value": 0.7, "wall_time": 5.0},
            {"key": "e", "step": 2, "value": None, "wall_time": 11.0}]
    s = _runs(_jsonl(tmp_path / "dup.ndjson", recs))["dup"]["e"]
    assert s.steps.tolist() == [1, 2] and s.values[0] == 0.5 and np.isnan(s.values[1])


def test_jsonl_nan_tokens_are_kept(tmp_path, reader):
    (path := tmp_path / "nan.jsonl").write_text(
        '{"key": "e", "step": 0, "value": NaN}\n{"key": "e", "step": 1, "value": Infinity}\n')
    s = _runs(path)["nan"]["e"]
    assert np.isnan(s.values[0]) and np.isinf(s.values[1])


def test_wide_jsonl(tmp_path, reader):
    recs = [{"step": 0, "entropy": 0.9, "reward": 0.1}, {"step": 1, "entropy": 0.8},
            {"step": 2, "entropy": 0.7, "reward": 0.3, "eval_accuracy": 0.5}]
    got = _runs(_jsonl(tmp_path / "wide.jsonl", recs))["wide"]
    assert got["reward"].steps.tolist() == [0, 2]
    assert got["eval_accuracy"].values.tolist() == [0.5]


def test_jsonl_bad_line_names_the_line(tmp_path, reader):
    (path := tmp_path / "bad.jsonl").write_text(
        '{"key": "e", "step": 0, "value": 1}\n\n{"key": "e", "step": 1, "val\n')
    with pytest.raises(IngestError, match=r"bad\.jsonl, line 3: not valid JSON"):
        read_table(path)


def test_jsonl_string_value_names_key_and_line(tmp_path, reader):
    # one rule with CSV cells: text holding a number is that number, "" is a missing value, other text an error
    path = _jsonl(tmp_path / "str.jsonl", [{"key": "e", "step": 0, "value": 1.0},
                                           {"key": "acc", "step": 1, "value": "0.5"},
                                           {"key": "acc", "step": 2, "value": ""}])
    got = {s.key: (s.steps.tolist(), s.values.tolist()) for s in read_table(path)[0].series}
    assert got["acc"][0] == [1, 2] and got["acc"][1][0] == 0.5 and np.isnan(got["acc"][1][1])
    path = _jsonl(tmp_path / "str.jsonl", [{"key": "e", "step": 0, "value": 1.0},
                                           {"key": "acc", "step": 1, "value": "0.5x"}])
    with pytest.raises(IngestError, match=r"str\.jsonl, line 2: key 'acc' has value '0\.5x', not a number"):
        read_table(path)
    path = _jsonl(tmp_path / "strw.jsonl", [{"step": 0, "acc": 1.0}, {"step": 1, "acc": "high"}])
    with pytest.raises(IngestError, match=r"line 2: key 'acc' has value 'high'"):
        read_table(path)


def test_jsonl_negative_step_names_the_line(tmp_path, reader):
    path = _jsonl(tmp_path / "neg.jsonl", [{"key": "e", "step": 0, "value": 1.0},
                                           {"key": "e", "step": -2, "value": 1.0}])
    with pytest.raises(IngestError, match=r"neg\.jsonl, line 2: step -2; steps must be >= 0"):
        read_table(path)


def test_jsonl_non_object_line(tmp_path, reader):
    (path := tmp_path / "arr.jsonl").write_text('{"step": 0, "e": 1}\n[1, 2]\n')
    with pytest.raises(IngestError, match=r"line 2: expected a JSON object"):
        read_table(path)


def test_large_long_jsonl_streams_in_chunks(tmp_path, monkeypatch, reader):
    monkeypatch.setattr(tabular_jsonl, "CHUNK_ROWS", 1000)
    recs = [{"run": f"r{r}", "key": "e", "step": s, "value": float(s)} for r in range(4) for s in range(2500)]
    got = _runs(_jsonl(tmp_path / "big.jsonl", recs))
    assert all(len(got[f"r{r}"]["e"]) == 2500 for r in range(4))
    assert got["r3"]["e"].values[-1] == 2499.0


def _built(key: str, steps, values, walls=None, lines=None):
    from db.records import Series

    return Series.build(key, np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64),
                        None if walls is None else np.asarray(walls, dtype=np.float64), lines=lines)


def _same(a, b) -> None:
    assert a.key == b.key
    assert a.steps.dtype == b.steps.dtype == np.int64 and a.steps.tolist() == b.steps.tolist()
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.wall_times, b.wall_times)
    assert a.lines.tolist() == b.lines.tolist()
    assert a.repeats == b.repeats


@pytest.mark.parametrize("chunk_rows", [200_000, 4])
def test_wide_csv_many_runs_every_point_as_series_build_gives_it(tmp_path, monkeypatch, chunk_rows):
    """Runs grouped in one pass over each chunk: interleaved runs, a run with steps out of order and a repeat
    (the latest line kept, counted), missing cells, runs across chunk borders: each series is what
    ``Series.build`` makes of that run's lines."""
    monkeypatch.setattr(tabular_csv, "CHUNK_ROWS", chunk_rows)
    rows = [("a", 1, "0.9", "0.1"), ("b", 1, "0.8", ""), ("a", 2, "0.7", "0.2"), ("c", 5, "0.6", "0.3"),
            ("c", 3, "0.5", "0.4"), ("b", 2, "0.4", "0.5"), ("c", 5, "0.3", "0.6"), ("a", 3, "", "0.7"),
            ("d", 0, "1.5", "1.6")]
    path = tmp_path / "sweep.csv"
    path.write_text("run,step,actor/entropy,score\n" + "".join(f"{r},{s},{h},{v}\n" for r, s, h, v in rows))
    got = {r.run.name: {s.key: s for s in r.series} for r in read_table(path)}
    assert list(got) == ["a", "b", "c", "d"]
    for run, keys in got.items():
        assert list(keys) == [k for k in ("actor/entropy", "score") if any(
            r[0] == run and r[2 if k == "actor/entropy" else 3] for r in rows)]
        for key, series in keys.items():
            col = 2 if key == "actor/entropy" else 3
            mine = [(s, float(row[col]), line) for line, row in enumerate(rows, start=2)
                    for r, s in [row[:2]] if r == run and row[col]]
            want = _built(key, [m[0] for m in mine], [m[1] for m in mine], lines=[m[2] for m in mine])
            _same(series, want)
    assert got["c"]["score"].steps.tolist() == [3, 5] and got["c"]["score"].values.tolist() == [0.4, 0.6]
    assert got["c"]["score"].repeats.dropped == 1 and got["c"]["score"].repeats.dropped_line == 5
    assert got["a"]["actor/entropy"].steps.tolist() == [1, 2]


def test_wide_csv_ten_thousand_runs_grouped_by_run(tmp_path):
    n, steps = 10_000, 3
    run = np.repeat([f"r{i:05d}" for i in range(n)], steps)
    step = np.tile(np.arange(steps), n)
    h = np.arange(n * steps) / 7.0
    pd.DataFrame({"run": run, "step": step, "h": h}).to_csv(path := tmp_path / "tiny.csv", index=False)
    runs = read_table(path)
    assert len(runs) == n and [r.run.name for r in runs[:2]] == ["r00000", "r00001"]
    (s,) = runs[1234].series
    np.testing.assert_array_equal(s.values, h[1234 * steps:1235 * steps])
    assert s.steps.tolist() == [0, 1, 2] and s.lines.tolist() == [2 + 1234 * steps + i for i in range(3)]


def test_wide_csv_many_runs_bad_value_names_its_line_and_stores_nothing(tmp_path, store):
    from ingest.files import FileSource
    from ingest.sync import sync_source

    lines = [f"r{i % 50},{i // 50},{0.5 + i / 1e4}" for i in range(2_000)]
    lines[1_234] = "r34,24,oops"
    path = tmp_path / "sweep.csv"
    path.write_text("run,step,h\n" + "\n".join(lines) + "\n")
    with pytest.raises(IngestError, match=r"sweep\.csv, line 1236: key 'h' has value 'oops', not a number"):
        read_table(path)
    with pytest.raises(IngestError, match="line 1236"):
        sync_source(store, FileSource(str(path)))
    assert store.runs_frame().empty
