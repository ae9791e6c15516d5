"""MLflow: all runs of one or more experiments, from a tracking server URL or a store URI.

How runs and points are read, incrementally:

1. One search per 1,000 runs reports every metric's *latest* step per run. A key whose latest step is not
   beyond the stored watermark is skipped without a request.
2. New steps ``[watermark + 1, latest]`` are read according to what the URI names:

   - **a tracking server** (``http(s)://…``): plain HTTP to its REST API, MLflow's Python package not
     imported (``ingest.mlflow_rest``). Points come from ``get-history-bulk-interval``, one key a request, in
     windows of at most 2,499 steps and about 2,500 points a request, several requests at once. That endpoint
     *samples* a window holding more than ``max_results`` (2,500) rows of a run, so a run that comes back
     with 2,500 rows is fetched again with its window split in two — nothing is ever sampled away. (Windows
     are one step shorter than ``max_results`` so that the usual run, one value per step, never comes back
     "full".) A server without that route is read through the public ``metrics/get-history``.
   - **an SQLite store** (``sqlite:///…/mlflow.db``) of a schema revision this version knows: MLflow's tables
     read with SQL directly, read-only (``ingest.mlflow_sql``); any other revision: as the next item.
   - **any other store URI** (``postgresql://``, ``file:``, ``databricks``…): ``MlflowClient`` in-process,
     with the same windows as a server (``ingest.mlflow_store``).

   Where a faster path MLflow does not promise is missing, the public one is taken and every run's notes
   (shown by ``entropy-dash runs``) and the sync's messages say which.

3. Runs are handed to the store in search order as soon as all their points are in, while the requests of
   the next runs are already under way.

Only keys with a known role (entropy, performance, train reward, response length, KL, clip fraction) are
fetched, plus any listed in the ``keys`` option (``all_keys: true`` fetches every key); the rest are still
recorded as seen, so ``runs`` can list them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from db.records import RunData, Series
from ingest.base import Source, Watermarks
from ingest.credentials import split_credentials
from ingest.errors import IngestError
from ingest.keys import resolve_role
from ingest.mlflow_common import (
    CHUNK_POINTS,
    MAX_POINTS_PER_RUN,
    MAX_RUNS_PER_CALL,
    ListedRun,
    Points,
    Reader,
)
from ingest.registry import Option, SourceKind, boolean, names, register

__all__ = ["MAX_POINTS_PER_RUN", "MlflowSource"]


@dataclass(frozen=True)
class _Call:
    """One request: steps [start, end] of ``key`` for ``run_ids``; ``chunk``: the group of runs it feeds."""

    chunk: int
    run_ids: tuple[str, ...]
    key: str
    start: int
    end: int



class MlflowSource(Source):
    kind = "mlflow"

    def __init__(self, uri: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(uri, options)
        # self.uri is shown and stored (password masked); the readers connect with the real one
        self.uri, connect_uri = split_credentials(uri, self.options)
        self.experiments: list[str] = list(self.options.get("experiments") or [])
        self.extra_keys: set[str] = set(self.options.get("keys") or [])
        self.all_keys = bool(self.options.get("all_keys", False))
        self.is_server = uri.startswith(("http://", "https://"))
        # each reader is imported when a URI names it: every command line lists this kind (requests, SQLAlchemy)
        if self.is_server:
            from ingest.mlflow_rest import RestReader

            self._reader: Reader = RestReader(self.uri, connect_uri)
        elif uri.startswith("sqlite:"):
            from ingest.mlflow_sql import SqliteReader

            self._reader = SqliteReader(self.uri, connect_uri)
        else:
            from ingest.mlflow_store import TrackingStoreReader

            self._reader = TrackingStoreReader(self.uri, connect_uri)
        self._connect_uri = connect_uri
        self._picked = not uri.startswith("sqlite:")
        self.concurrency = max(1, int(self.options.get("concurrency", self._reader.concurrency)))
        self._exps: dict[str, str] | None = None
        self._runs: list[ListedRun] | None = None

    # ------------------------------------------------------------------ runs
    def _pick_reader(self) -> None:
        """An SQLite store of a schema revision this version does not know is read through MlflowClient."""
        if not self._picked:
            self._picked = True
            why = self._reader.unsupported()
            if why is not None:
                from ingest.mlflow_store import TrackingStoreReader  # as in __init__

                self._reader = TrackingStoreReader(self.uri, self._connect_uri)
                self._reader.note(f"read through MlflowClient, not with SQL: {why}")
                self.concurrency = max(1, int(self.options.get("concurrency", self._reader.concurrency)))

    def _experiment_ids(self) -> dict[str, str]:
        self._pick_reader()
        if self._exps is None:
            self._exps = self._reader.experiments(self.experiments)
        return self._exps

    def _search(self) -> list[ListedRun]:
        if self._runs is None:
            exps = self._experiment_ids()
            self._runs = self._reader.runs(exps) if exps else []
        return self._runs

    def check(self) -> None:
        self._pick_reader()
        self._reader.check()
        self._experiment_ids()

    def count_runs(self) -> int | None:
        return len(self._search())

    def wanted(self, key: str) -> bool:
        return self.all_keys or key in self.extra_keys or resolve_role(key) != "other"

    # ------------------------------------------------------------------ points
    def iter_runs(self, watermarks: Watermarks) -> Iterator[RunData]:
        runs = self._search()
        self._reader.prepare()  # the path to the points is chosen before they are planned
        chunks, calls = self._plan(runs, watermarks)
        remaining = [0] * len(chunks)
        for call in calls:
            remaining[call.chunk] += 1
        got: dict[int, dict[tuple[str, str], list[Points]]] = {}
        todo = iter(calls)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="mlflow-fetch") if self.concurrency > 1 else None
        pending: deque[tuple[_Call, Future | None]] = deque()

        def submit_next() -> None:
            call = next(todo, None)
            if call is not None:
                pending.append((call, pool.submit(self._fetch_call, call) if pool else None))

        try:
            for _ in range(4 * self.concurrency):  # requests ahead of the runs being written
                submit_next()
            for index, chunk in enumerate(chunks):
                while remaining[index]:  # requests finish in submission order, i.e. chunk by chunk
                    call, future = pending.popleft()
                    part = future.result() if future is not None else self._fetch_call(call)
                    submit_next()
                    into = got.setdefault(call.chunk, {})
                    for k, arrays in part.items():
                        into.setdefault(k, []).extend(arrays)
                    remaining[call.chunk] -= 1
                for data in self._run_data(chunk, got.pop(index, {})):
                    yield replace(data, notes=(*data.notes, *self._reader.notes)) if self._reader.notes else data
        finally:
            for note in (f"MLflow {self.uri}: {n}" for n in self._reader.notes):
                if note not in self.notices:
                    self.notices.append(note)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _plan(self, runs: Sequence[ListedRun], watermarks: Watermarks) -> tuple[list[list[ListedRun]], list[_Call]]:
        """Group runs (in search order) into chunks of about ``CHUNK_POINTS`` new points and cut each
        chunk's new steps into requests: [(runs)], [_Call]."""
        chunks: list[list[ListedRun]] = [[]]
        needs: list[list[tuple[str, str, int, int]]] = [[]]
        size = 0
        for run in runs:
            marks = watermarks.get(run.info.external_id, {})
            mine = []
            for key, latest in run.latest.items():
                if not self.wanted(key):
                    continue
                start = marks.get(key, -1) + 1
                if latest >= start:
                    mine.append((key, run.info.external_id, start, latest))
            n = sum(end - start + 1 for *_, start, end in mine)
            if chunks[-1] and (size + n > CHUNK_POINTS or len(chunks[-1]) >= MAX_RUNS_PER_CALL):
                chunks.append([])
                needs.append([])
                size = 0
            chunks[-1].append(run)
            needs[-1].extend(mine)
            size += n
        calls = []
        for index, items in enumerate(needs):
            by_key: dict[str, list[tuple[str, int, int]]] = {}
            for key, rid, start, end in items:
                by_key.setdefault(key, []).append((rid, start, end))
            for key, members in by_key.items():
                for rids, lo, hi in _windows(members, self._reader.window_steps, self._reader.points_per_call):
                    calls.append(_Call(index, tuple(rids), key, lo, hi))
        return chunks, calls

    def _fetch_call(self, call: _Call) -> dict[tuple[str, str], list[Points]]:
        out: dict[tuple[str, str], list[Points]] = {}
        self._fetch_window(list(call.run_ids), call.key, call.start, call.end, out)
        return out

    def _fetch_window(self, run_ids: list[str], key: str, start: int, end: int,
                      out: dict[tuple[str, str], list[Points]]) -> None:
        """Fetch one window into ``out``, splitting it where the backend might have sampled."""
        got = self._bulk_interval(run_ids, key, start, end)
        full = [r for r, pts in got.items() if self._reader.samples and len(pts[0]) >= MAX_POINTS_PER_RUN]
        for rid, pts in got.items():
            if rid not in full:
                out.setdefault((rid, key), []).append(pts)
        if full:
            if end <= start:
                raise IngestError(f"MLflow {self.uri}: more than {MAX_POINTS_PER_RUN} values of {key!r} at step "
                                  f"{start} in run {full[0]}: cannot be fetched without sampling")
            mid = (start + end) // 2
            self._fetch_window(full, key, start, mid, out)
            self._fetch_window(full, key, mid + 1, end, out)

    def _bulk_interval(self, run_ids: list[str], key: str, start: int, end: int) -> dict[str, Points]:
        """Every value of ``key`` at steps [start, end] of ``run_ids`` (a server may sample a window holding
        more than ``MAX_POINTS_PER_RUN`` values of a run: see ``_fetch_window``). Runs without any are left
        out."""
        return self._reader.points(run_ids, key, start, end)

    def _run_data(self, runs: Sequence[ListedRun], got: Mapping[tuple[str, str], list[Points]]) -> Iterator[RunData]:
        for run in runs:
            ext = run.info.external_id
            series = []
            for key in sorted(run.latest):
                parts = got.get((ext, key))
                if parts:
                    steps, values, walls = (np.concatenate(c) for c in zip(*parts, strict=True))
                    series.append(Series.build(key, steps, values, walls, where=f"MLflow run {run.info.name!r} ({ext})"))
            yield RunData(run=run.info, series=tuple(series), keys_seen=tuple(sorted(run.latest)))



def _windows(items: list[tuple[str, int, int]], window_steps: int | None,
             points_per_call: int) -> Iterator[tuple[list[str], int, int]]:
    """Group (run, start, end) by start and cut each group into windows of ≤ ``window_steps`` steps, with
    about ``points_per_call`` points (one value per step) and at most ``MAX_RUNS_PER_CALL`` runs a call."""
    by_start: dict[int, list[tuple[str, int]]] = {}
    for rid, start, end in items:
        by_start.setdefault(start, []).append((rid, end))
    for start, members in by_start.items():
        members.sort(key=lambda m: m[1])
        end = max(e for _, e in members)
        lo = start
        while lo <= end:
            hi = end if window_steps is None else min(lo + window_steps - 1, end)
            rids = [r for r, e in members if e >= lo]
            # the window end is the largest end of the group; runs ending earlier answer fewer points
            per_call = max(1, min(MAX_RUNS_PER_CALL, points_per_call // (hi - lo + 1)))
            for i in range(0, len(rids), per_call):
                yield rids[i : i + per_call], lo, hi
            lo = hi + 1



register(SourceKind(
    kind="mlflow", build=MlflowSource, help="runs of an MLflow tracking server or store URI",
    uri_help="http://host:5000 or a store URI such as sqlite:///path/mlflow.db",
    options=(
        Option("experiments", names, "experiment name (repeatable; default all)", flag="--experiment", many=True,
               metavar="NAME"),
        Option("keys", names, "metric keys to fetch beside the recognised ones"),
        Option("all_keys", boolean, "fetch every metric, not only the recognised ones", flag="--all-keys",
               switch=True),
    )))
