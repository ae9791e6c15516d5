"""MLflow: all runs of one or more experiments, from a tracking server URL or a store URI.

How runs and points are read, incrementally:

1. One search per 1,000 runs reports every metric's *latest* step per run. A key whose latest step is not
   beyond the stored watermark is skipped without a request.
2. New steps ``[watermark + 1, latest]`` are read according to what the URI names:

   - **a tracking server** (``http(s)://…``): plain HTTP to its REST API; MLflow's Python package is not
     imported. Points come from ``get-history-bulk-interval``, one key a request, in windows of at most
     2,499 steps and about 2,500 points a request, several requests at once. That endpoint *samples* a
     window holding more than ``max_results`` (2,500) rows of a run, so a run that comes back with 2,500
     rows is fetched again with its window split in two — nothing is ever sampled away. (Windows are one
     step shorter than ``max_results`` so that the usual run, one value per step, never comes back "full".)
     Of the server's endpoints this one costs the server the least per point: ``metrics/get-history``
     builds its answer more slowly, and the UI's ``get-history-bulk`` truncates at 25,000 rows and, on an
     SQLite backend, scans every row of the key in the whole store for each request.
   - **an SQLite store** (``sqlite:///…/mlflow.db``): MLflow's tables (experiments, runs, params, tags,
     latest_metrics, metrics) are read with SQL directly, read-only — several times faster than through
     MLflow's own store, and without importing MLflow. Nothing is sampled; the same runs, points, NaNs and
     duplicate steps come back as through a server.
   - **any other store URI** (``file:``, ``postgresql://``, ``databricks``…): MLflow's tracking store
     in-process, with the same windows as a server.

3. Runs are handed to the store in search order as soon as all their points are in, while the requests of
   the next runs are already under way.

Only keys with a known role (entropy, performance, train reward, response length, KL, clip fraction) are
fetched, plus any listed in the ``keys`` option (``all_keys: true`` fetches every key); the rest are still
recorded as seen, so ``runs`` can list them.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import requests

from db.masking import mask_secrets
from db.records import RunData, RunInfo, Series
from ingest.base import Source, Watermarks
from ingest.credentials import split_credentials
from ingest.errors import IngestError, SourceUnavailable
from ingest.keys import resolve_role
from ingest.registry import Option, SourceKind, boolean, names, register

MAX_RUNS_PER_CALL = 100  # the server's limit of run ids per bulk request
MAX_POINTS_PER_RUN = 2500  # get-history-bulk-interval's max_results: more rows than this in a window are sampled
WINDOW_STEPS = MAX_POINTS_PER_RUN - 1  # one value per step can never fill a window
POINTS_PER_CALL = 2_500  # small requests keep a server's workers busy and runs streaming to the store
CHUNK_POINTS = 50_000  # runs are handed to the store in groups of about this many new points
DEFAULT_CONCURRENCY = 4  # requests at once (MLflow's server runs 4 workers unless told otherwise)
SEARCH_PAGE = 1000
BULK_INTERVAL = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
HTTP_TIMEOUT = (10, 120)  # connect, read (s); the sync engine retries with its own backoff

#: (steps int64, values float64 with NaN/inf, wall times float64 seconds) of one run's key
Points = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Run:
    info: RunInfo
    latest: dict[str, int]  # key -> latest step, from the run search


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
        if self.is_server:
            self._reader: _Reader = _RestReader(self.uri, connect_uri)
        elif uri.startswith("sqlite:"):
            self._reader = _SqliteReader(self.uri, connect_uri)
        else:
            self._reader = _MlflowStoreReader(self.uri, connect_uri)
        self.concurrency = max(1, int(self.options.get("concurrency", self._reader.concurrency)))
        self._exps: dict[str, str] | None = None
        self._runs: list[_Run] | None = None

    # ------------------------------------------------------------------ runs
    def _experiment_ids(self) -> dict[str, str]:
        if self._exps is None:
            self._exps = self._reader.experiments(self.experiments)
        return self._exps

    def _search(self) -> list[_Run]:
        if self._runs is None:
            exps = self._experiment_ids()
            self._runs = self._reader.runs(exps) if exps else []
        return self._runs

    def check(self) -> None:
        self._reader.check()
        self._experiment_ids()

    def count_runs(self) -> int | None:
        return len(self._search())

    def wanted(self, key: str) -> bool:
        return self.all_keys or key in self.extra_keys or resolve_role(key) != "other"

    # ------------------------------------------------------------------ points
    def iter_runs(self, watermarks: Watermarks) -> Iterator[RunData]:
        chunks, calls = self._plan(self._search(), watermarks)
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
                yield from self._run_data(chunk, got.pop(index, {}))
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _plan(self, runs: Sequence[_Run], watermarks: Watermarks) -> tuple[list[list[_Run]], list[_Call]]:
        """Group runs (in search order) into chunks of about ``CHUNK_POINTS`` new points and cut each
        chunk's new steps into requests: [(runs)], [_Call]."""
        chunks: list[list[_Run]] = [[]]
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

    def _run_data(self, runs: Sequence[_Run], got: Mapping[tuple[str, str], list[Points]]) -> Iterator[RunData]:
        for run in runs:
            ext = run.info.external_id
            series = []
            for key in sorted(run.latest):
                parts = got.get((ext, key))
                if parts:
                    steps, values, walls = (np.concatenate(c) for c in zip(*parts, strict=True))
                    series.append(Series.build(key, steps, values, walls, where=f"MLflow run {run.info.name!r} ({ext})"))
            yield RunData(run=run.info, series=tuple(series), keys_seen=tuple(sorted(run.latest)))


# ---------------------------------------------------------------------------------------------- readers
class _NotFound(IngestError):
    """The server answered RESOURCE_DOES_NOT_EXIST."""


class _Reader:
    """How one kind of MLflow URI is read: experiments, runs with their latest steps, points."""

    samples = True  # answers windows of more than MAX_POINTS_PER_RUN values with a sample
    window_steps: int | None = WINDOW_STEPS
    points_per_call = POINTS_PER_CALL
    concurrency = 1

    def __init__(self, uri: str, connect_uri: str) -> None:
        self.uri = uri  # shown in messages: its password masked
        self.connect_uri = connect_uri

    def check(self) -> None:
        return None

    def experiments(self, names: Sequence[str]) -> dict[str, str]:
        raise NotImplementedError

    def runs(self, exps: Mapping[str, str]) -> list[_Run]:
        raise NotImplementedError

    def points(self, run_ids: Sequence[str], key: str, start: int, end: int) -> dict[str, Points]:
        raise NotImplementedError


class _RestReader(_Reader):
    """A tracking server, through its REST API (``requests``; one keep-alive session per thread)."""

    concurrency = DEFAULT_CONCURRENCY

    def __init__(self, uri: str, connect_uri: str) -> None:
        super().__init__(uri, connect_uri)
        self.base = connect_uri.rstrip("/")
        self._local = threading.local()

    def _session(self) -> requests.Session:
        """One HTTP session per fetching thread (sessions are not safe to share across threads), with the
        credentials, TLS settings and workspace MLflow's own client takes from the environment."""
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = requests.Session()
            env = os.environ.get
            token, user, pw = env("MLFLOW_TRACKING_TOKEN"), env("MLFLOW_TRACKING_USERNAME"), env("MLFLOW_TRACKING_PASSWORD")
            if token:
                http.headers["Authorization"] = f"Bearer {token}"
            elif user and pw:
                http.auth = (user, pw)
            if (env("MLFLOW_TRACKING_INSECURE_TLS") or "").lower() == "true":
                http.verify = False
            elif env("MLFLOW_TRACKING_SERVER_CERT_PATH"):
                http.verify = env("MLFLOW_TRACKING_SERVER_CERT_PATH")
            if env("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
                http.cert = env("MLFLOW_TRACKING_CLIENT_CERT_PATH")
            if (env("MLFLOW_WORKSPACE") or "").strip():
                http.headers["X-MLFLOW-WORKSPACE"] = env("MLFLOW_WORKSPACE").strip()
        return http

    def _call(self, what: str, path: str, *, params: Any = None, body: Any = None) -> dict:
        try:
            if body is None:
                resp = self._session().get(self.base + path, params=params, timeout=HTTP_TIMEOUT)
            else:
                resp = self._session().post(self.base + path, json=body, timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: {_short(exc)}") from exc
        if resp.status_code == 200:
            try:
                return json.loads(resp.content)
            except ValueError as exc:
                raise IngestError(f"MLflow {self.uri}: {what} answered with something that is not JSON: is "
                                  f"{self.uri} an MLflow tracking server?") from exc
        detail = _error_message(resp)
        if resp.status_code in (502, 503, 504):  # a proxy in front of a restarting server: retried
            raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: HTTP {resp.status_code} "
                                    f"{resp.reason}")
        if resp.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" in detail:
            raise _NotFound(f"MLflow {self.uri}: {what} failed (HTTP 404): {detail}")
        if resp.status_code in (401, 403):
            raise IngestError(f"MLflow {self.uri} refused {what} (HTTP {resp.status_code}): set "
                              "MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
        raise IngestError(f"MLflow {self.uri}: {what} failed (HTTP {resp.status_code}): {detail}")

    def check(self) -> None:
        try:
            resp = self._session().get(self.base + "/health", timeout=10)
        except requests.RequestException as exc:
            raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: {_short(exc)}") from exc
        if resp.status_code >= 400:
            raise IngestError(f"MLflow tracking server {self.uri} answered /health with HTTP {resp.status_code}")

    def experiments(self, names: Sequence[str]) -> dict[str, str]:
        if names:
            out = {}
            for name in names:
                try:
                    exp = self._call("get-by-name", "/api/2.0/mlflow/experiments/get-by-name",
                                     params={"experiment_name": name})["experiment"]
                except _NotFound:
                    raise IngestError(f"experiment {name!r} not found at MLflow {self.uri}") from None
                out[str(exp["experiment_id"])] = exp["name"]
            return out
        out, token = {}, None
        while True:
            body: dict[str, Any] = {"max_results": SEARCH_PAGE, "view_type": "ACTIVE_ONLY"}
            if token:
                body["page_token"] = token
            page = self._call("experiments/search", "/api/2.0/mlflow/experiments/search", body=body)
            out.update({str(e["experiment_id"]): e["name"] for e in page.get("experiments", [])})
            token = page.get("next_page_token")
            if not token:
                return out

    def runs(self, exps: Mapping[str, str]) -> list[_Run]:
        runs, token = [], None
        while True:
            body: dict[str, Any] = {"experiment_ids": list(exps), "max_results": SEARCH_PAGE,
                                    "order_by": ["attributes.start_time ASC"], "run_view_type": "ACTIVE_ONLY"}
            if token:
                body["page_token"] = token
            page = self._call("runs/search", "/api/2.0/mlflow/runs/search", body=body)
            for r in page.get("runs", []):
                info, data = r["info"], r.get("data", {})
                runs.append(_to_run(
                    run_id=info.get("run_id") or info["run_uuid"], run_name=info.get("run_name"),
                    experiment=exps.get(str(info.get("experiment_id")), str(info.get("experiment_id"))),
                    status=info.get("status"), start_ms=info.get("start_time"), end_ms=info.get("end_time"),
                    params={p["key"]: p.get("value", "") for p in data.get("params", [])},
                    tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
                    latest={m["key"]: int(m.get("step", 0)) for m in data.get("metrics", [])}))
            token = page.get("next_page_token")
            if not token:
                return runs

    def points(self, run_ids: Sequence[str], key: str, start: int, end: int) -> dict[str, Points]:
        params = {"run_ids": list(run_ids), "metric_key": key, "start_step": start, "end_step": end,
                  "max_results": MAX_POINTS_PER_RUN}
        metrics = self._call(f"get-history-bulk-interval for {key!r}", BULK_INTERVAL, params=params).get("metrics", [])
        n = len(metrics)
        if not n:
            return {}
        steps = np.fromiter((m.get("step", 0) for m in metrics), np.int64, n)
        values = np.array([m.get("value", np.nan) for m in metrics], dtype=np.float64)  # "NaN", "Infinity" too
        walls = np.fromiter((m.get("timestamp", 0) for m in metrics), np.float64, n) / 1000.0
        if len(run_ids) == 1:
            return {run_ids[0]: (steps, values, walls)}
        rids = np.array([m["run_id"] for m in metrics])
        return {str(r): (steps[m], values[m], walls[m]) for r in np.unique(rids) for m in [rids == r]}


class _SqliteReader(_Reader):
    """An MLflow SQLite store read with SQL directly, read-only (``mode=ro``): no sampling, no windows."""

    samples = False
    window_steps = None
    points_per_call = 1_000_000
    concurrency = 2  # reads (the sqlite3 module lets go of the GIL) overlap the writes to our store
    TABLES = {"experiments": ("experiment_id", "name", "lifecycle_stage"),
              "runs": ("run_uuid", "name", "experiment_id", "status", "start_time", "end_time", "lifecycle_stage"),
              "params": ("key", "value", "run_uuid"), "tags": ("key", "value", "run_uuid"),
              "latest_metrics": ("key", "step", "run_uuid"),
              "metrics": ("key", "value", "timestamp", "run_uuid", "step", "is_nan")}

    def __init__(self, uri: str, connect_uri: str) -> None:
        super().__init__(uri, connect_uri)
        from sqlalchemy.engine import make_url

        database = make_url(connect_uri).database
        if not database or database == ":memory:":
            raise IngestError(f"MLflow store {uri!r} names no database file: use sqlite:///path/to/mlflow.db")
        self.path = Path(database).expanduser()
        self._local = threading.local()
        self._workspace_column: bool | None = None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.path.is_file():
                raise IngestError(f"no MLflow store at {self.uri}: {self.path} does not exist")
            try:
                conn = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True, timeout=60,
                                       check_same_thread=False)
            except sqlite3.Error as exc:
                raise IngestError(f"cannot open the MLflow store {self.uri}: {exc}") from exc
            self._local.conn = conn
        return conn

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise IngestError(f"cannot read the MLflow store {self.uri}: {exc}") from exc

    def check(self) -> None:
        found = {}
        for table in self.TABLES:
            found[table] = {row[1] for row in self._query(f"PRAGMA table_info({table})")}
        missing = [f"{t}.{c}" for t, cols in self.TABLES.items() for c in cols if c not in found[t]]
        if missing:
            raise IngestError(f"{self.uri} is not an MLflow tracking store this version reads (missing "
                              f"{', '.join(missing[:4])}): give the URL of a tracking server serving it instead")
        self._workspace_column = "workspace" in found["experiments"]

    def _workspace_filter(self) -> tuple[str, list[Any]]:
        if self._workspace_column is None:
            self.check()
        if not self._workspace_column:
            return "", []
        workspace = (os.environ.get("MLFLOW_WORKSPACE") or "").strip() or "default"
        if workspace == "default":
            return " AND (workspace IS NULL OR workspace = 'default')", []
        return " AND workspace = ?", [workspace]

    def experiments(self, names: Sequence[str]) -> dict[str, str]:
        where, args = self._workspace_filter()
        if not names:
            rows = self._query(f"SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'{where} "
                               "ORDER BY experiment_id", args)
            return {str(i): n for i, n in rows}
        out = {}
        for name in names:
            rows = self._query(f"SELECT experiment_id, name FROM experiments WHERE name = ?{where}", [name, *args])
            if not rows:
                raise IngestError(f"experiment {name!r} not found at MLflow {self.uri}")
            out[str(rows[0][0])] = rows[0][1]
        return out

    def runs(self, exps: Mapping[str, str]) -> list[_Run]:
        marks = ", ".join("?" * len(exps))
        rows = self._query(f"SELECT run_uuid, name, experiment_id, status, start_time, end_time FROM runs "
                           f"WHERE experiment_id IN ({marks}) AND lifecycle_stage = 'active' "
                           "ORDER BY start_time, run_uuid", [int(e) if str(e).isdigit() else e for e in exps])
        params: dict[str, dict[str, str]] = {}
        tags: dict[str, dict[str, str]] = {}
        latest: dict[str, dict[str, int]] = {}
        ids = [r[0] for r in rows]
        for lo in range(0, len(ids), 500):
            part = ids[lo : lo + 500]
            marks = ", ".join("?" * len(part))
            for rid, k, v in self._query(f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})", part):
                params.setdefault(rid, {})[k] = v
            for rid, k, v in self._query(f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks})", part):
                tags.setdefault(rid, {})[k] = v
            for rid, k, s in self._query(f"SELECT run_uuid, key, step FROM latest_metrics WHERE run_uuid IN ({marks})",
                                         part):
                latest.setdefault(rid, {})[k] = int(s)
        return [_to_run(run_id=rid, run_name=name, experiment=exps.get(str(exp), str(exp)), status=status,
                        start_ms=start, end_ms=end, params=params.get(rid, {}), tags=tags.get(rid, {}),
                        latest=latest.get(rid, {}))
                for rid, name, exp, status, start, end in rows]

    def points(self, run_ids: Sequence[str], key: str, start: int, end: int) -> dict[str, Points]:
        out = {}
        for rid in run_ids:  # one run a query: MLflow's (run_uuid, key, step) index answers it
            rows = self._query("SELECT step, value, timestamp, is_nan FROM metrics WHERE run_uuid = ? AND key = ? "
                               "AND step >= ? AND step <= ?", [rid, key, start, end])
            if rows:
                arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
                values = np.where(arr[:, 3] != 0, np.nan, arr[:, 1])
                out[rid] = (np.array([r[0] for r in rows], dtype=np.int64), values, arr[:, 2] / 1000.0)
        return out


class _MlflowStoreReader(_Reader):
    """Any other store URI: MLflow's own tracking store, in-process (imports MLflow)."""

    def __init__(self, uri: str, connect_uri: str) -> None:
        super().__init__(uri, connect_uri)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.connect_uri)
        return self._client

    def _guard(self, what: str, fn: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return fn()
        except MlflowException as exc:
            raise IngestError(f"MLflow {self.uri}: {what}{_short(exc)}") from exc

    def experiments(self, names: Sequence[str]) -> dict[str, str]:
        if not names:
            out, token = {}, None
            while True:
                page = self._guard("", lambda t=token: self.client.search_experiments(max_results=SEARCH_PAGE,
                                                                                        page_token=t))
                out.update({e.experiment_id: e.name for e in page})
                token = page.token
                if not token:
                    return out
        out = {}
        for name in names:
            exp = self._guard("", lambda n=name: self.client.get_experiment_by_name(n))
            if exp is None:
                raise IngestError(f"experiment {name!r} not found at MLflow {self.uri}")
            out[exp.experiment_id] = exp.name
        return out

    def runs(self, exps: Mapping[str, str]) -> list[_Run]:
        runs, token = [], None
        while True:
            page = self._guard("search_runs failed: ", lambda t=token: self.client.search_runs(
                list(exps), max_results=SEARCH_PAGE, page_token=t, order_by=["attributes.start_time ASC"]))
            for r in page:
                runs.append(_to_run(
                    run_id=r.info.run_id, run_name=r.info.run_name,
                    experiment=exps.get(r.info.experiment_id, r.info.experiment_id), status=r.info.status,
                    start_ms=r.info.start_time, end_ms=r.info.end_time, params=dict(r.data.params),
                    tags=dict(r.data.tags),
                    # RunData keeps the latest Metric objects (with their step) behind its value-only dict
                    latest={m.key: int(m.step) for m in r.data._metric_objs}))
            token = page.token
            if not token:
                return runs

    def points(self, run_ids: Sequence[str], key: str, start: int, end: int) -> dict[str, Points]:
        from mlflow.tracking._tracking_service.utils import _get_store

        got = self._guard("", lambda: _get_store(self.connect_uri).get_metric_history_bulk_interval(
            run_ids=list(run_ids), metric_key=key, max_results=MAX_POINTS_PER_RUN, start_step=start, end_step=end))
        per_run: dict[str, list[tuple[int, float, float]]] = {}
        for m in got:
            per_run.setdefault(m.run_id, []).append((int(m.step), float(m.value), int(m.timestamp) / 1000.0))
        return {rid: (np.array([p[0] for p in pts], dtype=np.int64), np.array([p[1] for p in pts]),
                      np.array([p[2] for p in pts])) for rid, pts in per_run.items()}


# ---------------------------------------------------------------------------------------------- helpers
def _to_run(*, run_id: str, run_name: str | None, experiment: str, status: str | None, start_ms: Any,
            end_ms: Any, params: Mapping[str, str], tags: Mapping[str, str], latest: dict[str, int]) -> _Run:
    kept = {k: v for k, v in tags.items() if not k.startswith("mlflow.") or k == "mlflow.runName"}
    info = RunInfo(
        external_id=run_id,
        name=run_name or tags.get("mlflow.runName") or run_id,
        project=experiment,
        status=status,
        params=dict(params),
        tags=kept,
        model=_first(params, tags, ("model", "model_name", "model_size", "actor_rollout_ref/model/path",
                                    "actor_rollout_ref.model.path", "model_name_or_path")),
        algorithm=_first(params, tags, ("algorithm", "algorithm/adv_estimator", "algorithm.adv_estimator", "algo")),
        started_at=_ms(start_ms),
        updated_at=_ms(end_ms),
    )
    return _Run(info, latest)


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


def _error_message(resp: requests.Response) -> str:
    try:
        body = json.loads(resp.content)
        if isinstance(body, dict) and body.get("message"):
            return f"{body.get('error_code', '')}: {body['message']}".lstrip(": ")[:300]
    except ValueError:
        pass
    return resp.text[:200]


def _ms(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, UTC) if ms else None


def _first(params: Mapping[str, str], tags: Mapping[str, str], names: Sequence[str]) -> str | None:
    for n in names:
        v = tags.get(n) or params.get(n)
        if v:
            return str(v)
    return None


def _short(exc: BaseException) -> str:
    """The useful part of a connection or MLflow error, on one line (any URL's password masked)."""
    text = mask_secrets(str(exc))
    m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if m:
        return m.group(1).strip().lower()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


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
