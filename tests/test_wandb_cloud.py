"""W&B cloud source against ``FakeWandbApi`` / ``FakeRun``.

THESE ARE FAKES standing in for the W&B cloud: no W&B server can run here. They mimic the attribute names
and behaviour of ``wandb.apis.public.Api`` / ``Run`` in wandb 0.31 that the source relies on:
``Api.runs(path)``; ``run.id``, ``name``, ``config``, ``tags``, ``state``, ``group``, ``job_type``,
``created_at``, ``heartbeat_at``, ``history_keys`` ({"lastStep", "keys": {key: {"typeCounts": …}}}),
``summary_metrics``, ``lastHistoryStep`` (-1 when nothing was logged); ``run.scan_history(keys=,
min_step=, max_step=, page_size=)`` yields only the rows holding *all* requested keys, with ``min_step``
inclusive and ``max_step`` exclusive, like the real one. ``run.history()`` (the sampled 500-point API) fails
the test if called.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from db.records import RunData
from ingest.errors import IngestError
from ingest.wandb_cloud import WandbCloudSource

SECRET = "fake-key-0123456789abcdef0123456789abcdef"  # a made-up value, only ever set in the test env


class FakeRun:
    """Fake of ``wandb.apis.public.Run`` (see module docstring)."""

    def __init__(self, run_id: str, name: str, rows: list[dict[str, Any]], *, state: str = "running",
                 config: dict[str, Any] | None = None, tags: list[str] | None = None) -> None:
        self.id = run_id
        self.name = name
        self.state = state
        self.config = config or {}
        self.tags = tags or []
        self.group = "sweep-a"
        self.job_type = None
        self.created_at = "2025-03-01T10:00:00Z"
        self.heartbeat_at = "2025-03-01T12:00:00Z"
        self.rows = rows
        self.scans: list[dict[str, Any]] = []

    @property
    def lastHistoryStep(self) -> int:  # noqa: N802  (the real attribute's name)
        return max((r["_step"] for r in self.rows), default=-1)

    @property
    def history_keys(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {}
        for row in self.rows:
            for k, v in row.items():
                kind = "number" if isinstance(v, int | float) else "string"
                counts.setdefault(k, {}).setdefault(kind, 0)
                counts[k][kind] += 1
        return {
            "lastStep": self.lastHistoryStep,
            "keys": {k: {"typeCounts": [{"type": t, "count": n} for t, n in c.items()]} for k, c in counts.items()},
        }

    @property
    def summary_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for row in self.rows:
            out.update(row)
        return out

    def scan_history(self, keys: list[str] | None = None, page_size: int = 1000, min_step: int = 0,
                     max_step: int | None = None, use_cache: bool = True) -> Iterator[dict[str, Any]]:
        self.scans.append({"keys": keys, "min_step": min_step, "max_step": max_step, "page_size": page_size})
        stop = self.lastHistoryStep + 1 if max_step is None else min(max_step, self.lastHistoryStep + 1)
        for row in self.rows:
            if min_step <= row["_step"] < stop and all(k in row for k in keys or ()):
                yield {k: row[k] for k in keys} if keys else dict(row)

    def history(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("run.history() is sampled (500 points) and must never be used")

    def log(self, step: int, **values: Any) -> None:
        """Test helper: the training job logs one more step."""
        self.rows.append({"_step": step, "_timestamp": 1_700_000_000.0 + step, "_runtime": float(step), **values})


class FakeWandbApi:
    """Fake of ``wandb.Api()`` (see module docstring)."""

    def __init__(self, projects: dict[str, list[FakeRun]]) -> None:
        self.projects = projects
        self.calls: list[str] = []

    def runs(self, path: str, filters: dict[str, Any] | None = None, **kwargs: Any) -> list[FakeRun]:
        self.calls.append(path)
        if path not in self.projects:
            raise ValueError(f"Could not find project {path}")
        return self.projects[path]


def make_run(run_id: str, steps: int, **kw: Any) -> FakeRun:
    run = FakeRun(run_id, f"name-{run_id}", [], config={"lr": 1e-6, "model": {"size": 7}}, tags=["grpo"], **kw)
    for s in range(steps):
        vals: dict[str, Any] = {"actor/entropy": 1.0 / (s + 1), "critic/score/mean": s * 0.01,
                                "sample": f"text {s}"}
        if s % 5 == 0:
            vals["val-core/gsm8k/acc/mean@1"] = 0.3 + s / 100
        run.log(s, **vals)
    return run


def read(src: WandbCloudSource, marks: dict | None = None) -> dict[str, RunData]:
    return {rd.run.external_id: rd for rd in src.iter_runs(marks or {})}


def watermarks(runs: dict[str, RunData]) -> dict[str, dict[str, int]]:
    return {rid: {s.key: int(s.steps[-1]) for s in rd.series if len(s)} for rid, rd in runs.items()}


@pytest.fixture
def api() -> FakeWandbApi:
    return FakeWandbApi({"lab/gsm8k": [make_run("r1", 12), make_run("r2", 7, state="finished")]})


def test_full_read_uses_scan_history_per_key(api: FakeWandbApi) -> None:
    src = WandbCloudSource("lab/gsm8k", api=api)
    runs = read(src)
    assert set(runs) == {"r1", "r2"}
    r1 = runs["r1"]
    assert r1.run.name == "name-r1" and r1.run.project == "gsm8k" and r1.run.status == "running"
    assert dict(r1.run.params) == {"lr": 1e-6, "model.size": 7}
    assert dict(r1.run.tags) == {"grpo": True, "wandb.entity": "lab", "wandb.group": "sweep-a"}
    assert r1.run.started_at is not None and r1.run.started_at.isoformat() == "2025-03-01T10:00:00+00:00"
    got = {s.key: s for s in r1.series}
    assert set(got) == {"actor/entropy", "critic/score/mean", "val-core/gsm8k/acc/mean@1"}
    np.testing.assert_array_equal(got["actor/entropy"].steps, np.arange(12))
    np.testing.assert_array_equal(got["actor/entropy"].values, [1.0 / (s + 1) for s in range(12)])
    np.testing.assert_array_equal(got["val-core/gsm8k/acc/mean@1"].steps, [0, 5, 10])
    np.testing.assert_array_equal(got["actor/entropy"].wall_times, 1_700_000_000.0 + np.arange(12))
    assert any("sample" in n and "not fetched" in n for n in r1.notes)

    run1 = api.projects["lab/gsm8k"][0]
    assert {tuple(c["keys"]) for c in run1.scans} == {
        (k, "_step", "_timestamp") for k in ("actor/entropy", "critic/score/mean", "val-core/gsm8k/acc/mean@1")
    }
    assert all(c["min_step"] == 0 and c["max_step"] == 12 for c in run1.scans)


def test_incremental_min_step_from_watermarks_and_nothing_refetched(api: FakeWandbApi) -> None:
    src = WandbCloudSource("lab/gsm8k", api=api)
    marks = watermarks(read(src))
    run1, run2 = api.projects["lab/gsm8k"]
    run1.scans.clear()
    run2.scans.clear()

    # nothing changed: no scan at all, no run yielded
    assert read(src, marks) == {}
    assert run1.scans == [] and run2.scans == []

    # r1 logs three more steps; r2 is unchanged
    for s in range(12, 15):
        run1.log(s, **{"actor/entropy": 1.0 / (s + 1), "critic/score/mean": s * 0.01})
    run1.log(15, **{"actor/entropy": math.nan, "critic/score/mean": 0.15, "val-core/gsm8k/acc/mean@1": 0.45})
    new = read(src, marks)
    assert set(new) == {"r1"} and run2.scans == []
    mins = {c["keys"][0]: c["min_step"] for c in run1.scans}
    assert mins == {"actor/entropy": 12, "critic/score/mean": 12, "val-core/gsm8k/acc/mean@1": 11}
    got = {s.key: s for s in new["r1"].series}
    np.testing.assert_array_equal(got["actor/entropy"].steps, [12, 13, 14, 15])
    assert math.isnan(got["actor/entropy"].values[-1])  # NaN kept
    np.testing.assert_array_equal(got["val-core/gsm8k/acc/mean@1"].steps, [15])


def test_explicit_keys_option_and_string_values(api: FakeWandbApi) -> None:
    run = make_run("r3", 4)
    run.rows[2]["actor/entropy"] = "oops"
    api.projects["lab/gsm8k"] = [run]
    src = WandbCloudSource("lab/gsm8k", {"keys": ["actor/entropy"], "page_size": 50}, api=api)
    rd = read(src)["r3"]
    assert [s.key for s in rd.series] == ["actor/entropy"]
    np.testing.assert_array_equal(rd.series[0].steps, [0, 1, 3])
    assert rd.notes == ("key 'actor/entropy': 1 non-numeric values skipped (e.g. 'oops')",)
    assert run.scans == [{"keys": ["actor/entropy", "_step", "_timestamp"], "min_step": 0, "max_step": 4,
                          "page_size": 50}]


def test_empty_run_is_reported(api: FakeWandbApi) -> None:
    api.projects["lab/gsm8k"] = [FakeRun("r0", "fresh", [])]
    rd = read(WandbCloudSource("lab/gsm8k", api=api))["r0"]
    assert rd.series == () and rd.notes == ("no history rows yet",)


def test_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    src = WandbCloudSource("lab/gsm8k")
    with pytest.raises(IngestError, match="W&B project lab/gsm8k: WANDB_API_KEY is not set"):
        list(src.iter_runs({}))
    assert src.count_runs() is None


def test_bad_project_path() -> None:
    with pytest.raises(IngestError, match="ENTITY/PROJECT"):
        WandbCloudSource("just-a-project")


class ExplodingRun(FakeRun):
    """A fake run whose scans fail the way a dropped connection or a rejected key does."""

    def scan_history(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        raise ConnectionError(f"401 Unauthorized for api_key={SECRET}")


def test_api_errors_name_the_project_and_never_the_key(monkeypatch: pytest.MonkeyPatch,
                                                       api: FakeWandbApi) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    bad = ExplodingRun("r9", "boom", [])
    bad.log(0, **{"actor/entropy": 1.0})
    api.projects["lab/gsm8k"].append(bad)
    src = WandbCloudSource("lab/gsm8k", api=api)
    seen: list[RunData] = []
    with pytest.raises(IngestError) as err:
        seen.extend(src.iter_runs({}))
    text = str(err.value)
    assert "W&B project lab/gsm8k" in text and "run r9" in text and "ConnectionError" in text
    assert SECRET not in text and "***" in text
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert [rd.run.external_id for rd in seen] == ["r1", "r2"]
    assert SECRET not in repr(seen)

    with pytest.raises(IngestError, match="W&B project lab/other: listing runs failed: ValueError"):
        list(WandbCloudSource("lab/other", api=api).iter_runs({}))
