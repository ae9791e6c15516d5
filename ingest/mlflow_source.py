"""MLflow: all runs of one or more experiments, from a tracking server URL or a direct store URI.

How points are fetched, incrementally:

1. ``search_runs`` (paginated, 1,000 runs a page) reports every metric's *latest* step per run. A key whose
   latest step is not beyond the stored watermark is skipped without a request.
2. New steps come from ``get-history-bulk-interval``: up to 100 runs and one key a call, steps
   ``[watermark + 1, latest]`` in windows of at most 2,499 steps. That endpoint *samples* a window holding
   more than ``max_results`` (2,500) rows, so a run that comes back with exactly 2,500 rows is fetched
   again with its window split in two — nothing is ever sampled away. (Windows are one step shorter than
   ``max_results`` so that the usual run, one value per step, never comes back "full" and is fetched once.) The UI's ``get-history-bulk`` is
   never used: it silently truncates at 25,000 points.
3. Against a server the call is plain HTTP (one JSON response per window); against a store URI
   (``sqlite:///…/mlflow.db``) the same method of MLflow's own tracking store is called in-process.

Only keys with a known role (entropy, performance, train reward, response length, KL, clip fraction) are
fetched, plus any listed in the ``keys`` option (``all_keys: true`` fetches every key); the rest are still
recorded as seen, so ``runs`` can list them.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import requests

from db.masking import mask_secrets
from db.records import RunData, RunInfo, Series
from ingest.base import Source, Watermarks
from ingest.credentials import split_credentials
from ingest.errors import IngestError, SourceUnavailable
from ingest.keys import resolve_role

MAX_RUNS_PER_CALL = 100
MAX_POINTS_PER_RUN = 2500
WINDOW_STEPS = MAX_POINTS_PER_RUN - 1  # one value per step can never fill a window
BULK_INTERVAL = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
DEFAULT_CONCURRENCY = 4
POINTS_PER_CALL = 25_000  # MLflow's server runs 4 workers unless told otherwise

# fail fast on an unreachable server: the sync engine retries with its own backoff
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


@dataclass(frozen=True)
class _Run:
    info: RunInfo
    latest: dict[str, int]  # key -> latest step, from search_runs


class MlflowSource(Source):
    kind = "mlflow"

    def __init__(self, uri: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(uri, options)
        # self.uri is shown and stored (password masked); connect_uri carries the real one
        self.uri, self.connect_uri = split_credentials(uri, self.options)
        self.experiments: list[str] = list(self.options.get("experiments") or [])
        self.extra_keys: set[str] = set(self.options.get("keys") or [])
        self.all_keys = bool(self.options.get("all_keys", False))
        self.is_server = uri.startswith(("http://", "https://"))
        # concurrent window requests (a store URI is read in-process, one window at a time)
        self.concurrency = int(self.options.get("concurrency", DEFAULT_CONCURRENCY)) if self.is_server else 1
        self._local = threading.local()
        self._client: Any = None
        self._runs: list[_Run] | None = None

    # ------------------------------------------------------------------ connection
    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            if self.is_server:
                self._check_reachable()
            self._client = MlflowClient(tracking_uri=self.connect_uri)
        return self._client

    def _check_reachable(self) -> None:
        try:
            resp = requests.get(self.connect_uri.rstrip("/") + "/health", timeout=10)
        except requests.RequestException as exc:
            raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: {_short(exc)}") from exc
        if resp.status_code >= 400:
            raise IngestError(f"MLflow tracking server {self.uri} answered /health with HTTP {resp.status_code}")

    # ------------------------------------------------------------------ runs
    def _experiment_ids(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            if not self.experiments:
                exps = self.client.search_experiments()
                return {e.experiment_id: e.name for e in exps}
            out = {}
            for name in self.experiments:
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise IngestError(f"experiment {name!r} not found at MLflow {self.uri}")
                out[exp.experiment_id] = exp.name
            return out
        except MlflowException as exc:
            raise IngestError(f"MLflow {self.uri}: {_short(exc)}") from exc
        except requests.RequestException as exc:
            raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: {_short(exc)}") from exc

    def _search(self) -> list[_Run]:
        if self._runs is not None:
            return self._runs
        from mlflow.exceptions import MlflowException

        exps = self._experiment_ids()
        runs: list[_Run] = []
        token = None
        try:
            while True:
                page = self.client.search_runs(list(exps), max_results=1000, page_token=token,
                                               order_by=["attributes.start_time ASC"])
                runs.extend(self._to_run(r, exps) for r in page)
                token = page.token
                if not token:
                    break
        except MlflowException as exc:
            raise IngestError(f"MLflow {self.uri}: search_runs failed: {_short(exc)}") from exc
        except requests.RequestException as exc:
            raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: {_short(exc)}") from exc
        self._runs = runs
        return runs

    def _to_run(self, r: Any, exps: Mapping[str, str]) -> _Run:
        tags = {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.") or k == "mlflow.runName"}
        params = dict(r.data.params)
        name = r.info.run_name or r.data.tags.get("mlflow.runName") or r.info.run_id
        info = RunInfo(
            external_id=r.info.run_id,
            name=name,
            project=exps.get(r.info.experiment_id, r.info.experiment_id),
            status=r.info.status,
            params=params,
            tags=tags,
            model=_first(params, tags, ("model", "model_name", "model_size", "actor_rollout_ref/model/path",
                                        "actor_rollout_ref.model.path", "model_name_or_path")),
            algorithm=_first(params, tags, ("algorithm", "algorithm/adv_estimator", "algorithm.adv_estimator", "algo")),
            started_at=_ms(r.info.start_time),
            updated_at=_ms(r.info.end_time),
        )
        # RunData keeps the latest Metric objects (with their step) behind its value-only `metrics` dict
        latest = {m.key: int(m.step) for m in r.data._metric_objs}
        return _Run(info, latest)

    def check(self) -> None:
        self._experiment_ids()

    def count_runs(self) -> int | None:
        return len(self._search())

    def wanted(self, key: str) -> bool:
        return self.all_keys or key in self.extra_keys or resolve_role(key) != "other"

    # ------------------------------------------------------------------ points
    def iter_runs(self, watermarks: Watermarks) -> Iterator[RunData]:
        runs = self._search()
        for lo in range(0, len(runs), MAX_RUNS_PER_CALL):
            chunk = runs[lo : lo + MAX_RUNS_PER_CALL]
            fetched = self._fetch_chunk(chunk, watermarks)
            for run in chunk:
                ext = run.info.external_id
                series = tuple(
                    Series.build(key, *fetched[(ext, key)], where=f"MLflow run {run.info.name!r} ({ext})")
                    for key in sorted(run.latest)
                    if (ext, key) in fetched
                )
                yield RunData(run=run.info, series=series, keys_seen=tuple(sorted(run.latest)))

    def _fetch_chunk(self, chunk: Sequence[_Run], watermarks: Watermarks) -> dict[tuple[str, str], tuple]:
        """New points of every wanted key of up to 100 runs: {(run_id, key): (steps, values, wall_times)}."""
        # group runs by key and by the step window they need
        todo: dict[str, list[tuple[str, int, int]]] = {}
        for run in chunk:
            marks = watermarks.get(run.info.external_id, {})
            for key, latest in run.latest.items():
                if not self.wanted(key):
                    continue
                start = marks.get(key, -1) + 1
                if latest < start:
                    continue  # nothing new for this key
                todo.setdefault(key, []).append((run.info.external_id, start, latest))
        windows = [(run_ids, key, start, end) for key, items in todo.items()
                   for run_ids, start, end in _windows(items)]
        raw: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
        if self.concurrency > 1 and len(windows) > 1:
            # windows are independent: a multi-worker tracking server answers several at once
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="mlflow-fetch") as pool:
                parts = list(pool.map(lambda w: self._fetch_window(*w, {}), windows))
        else:
            parts = [self._fetch_window(*w, {}) for w in windows]
        for part in parts:
            for k, pts in part.items():
                raw.setdefault(k, []).extend(pts)
        out = {}
        for (rid, key), pts in raw.items():
            arr = np.array(pts, dtype=float).reshape(-1, 3)
            out[(rid, key)] = (arr[:, 0], arr[:, 1], arr[:, 2])
        return out

    def _fetch_window(self, run_ids: list[str], key: str, start: int, end: int,
                      raw: dict[tuple[str, str], list[tuple[int, float, float]]]) -> dict:
        """Fetch one window into ``raw`` (and return it), splitting it where the server might sample."""
        rows = self._bulk_interval(run_ids, key, start, end)
        per_run: dict[str, list[tuple[int, float, float]]] = {r: [] for r in run_ids}
        for rid, step, value, ts in rows:
            per_run.setdefault(rid, []).append((step, value, ts))
        full = [r for r, pts in per_run.items() if len(pts) >= MAX_POINTS_PER_RUN]
        for rid, pts in per_run.items():
            if rid not in full:
                raw.setdefault((rid, key), []).extend(pts)
        if full:
            if end <= start:
                raise IngestError(f"MLflow {self.uri}: more than {MAX_POINTS_PER_RUN} values of {key!r} at step "
                                  f"{start} in run {full[0]}: cannot be fetched without sampling")
            mid = (start + end) // 2
            self._fetch_window(full, key, start, mid, raw)
            self._fetch_window(full, key, mid + 1, end, raw)
        return raw

    def _bulk_interval(self, run_ids: list[str], key: str, start: int, end: int) -> list[tuple[str, int, float, float]]:
        if self.is_server:
            params = {"run_ids": run_ids, "metric_key": key, "start_step": start, "end_step": end,
                      "max_results": MAX_POINTS_PER_RUN}
            try:
                resp = self._session().get(self.connect_uri.rstrip("/") + BULK_INTERVAL, params=params, timeout=120)
            except requests.RequestException as exc:
                raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: {_short(exc)}") from exc
            if resp.status_code != 200:
                raise IngestError(f"MLflow {self.uri}: get-history-bulk-interval for {key!r} failed "
                                  f"(HTTP {resp.status_code}): {resp.text[:200]}")
            metrics = resp.json().get("metrics", [])
            return [(m["run_id"], int(m.get("step", 0)), _value(m.get("value")), int(m.get("timestamp", 0)) / 1000.0)
                    for m in metrics]
        store = self._store()
        got = store.get_metric_history_bulk_interval(run_ids=run_ids, metric_key=key,
                                                     max_results=MAX_POINTS_PER_RUN, start_step=start, end_step=end)
        return [(m.run_id, int(m.step), float(m.value), int(m.timestamp) / 1000.0) for m in got]

    def _session(self) -> requests.Session:
        """One HTTP session per fetching thread (sessions are not safe to share across threads)."""
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = requests.Session()
            token = os.environ.get("MLFLOW_TRACKING_TOKEN")
            user, pw = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
            if token:
                http.headers["Authorization"] = f"Bearer {token}"
            elif user and pw:
                http.auth = (user, pw)
        return http

    def _store(self) -> Any:
        from mlflow.tracking._tracking_service.utils import _get_store

        return _get_store(self.connect_uri)


def _windows(items: list[tuple[str, int, int]]) -> Iterator[tuple[list[str], int, int]]:
    """Group (run, start, end) by start and cut each group into windows of ≤ ``WINDOW_STEPS`` steps."""
    by_range: dict[tuple[int, int], list[str]] = {}
    for rid, start, end in items:
        by_range.setdefault((start, end), []).append(rid)
    # runs with the same start share calls; the window end is the largest end of the group
    by_start: dict[int, list[tuple[str, int]]] = {}
    for (start, end), rids in by_range.items():
        by_start.setdefault(start, []).extend((r, end) for r in rids)
    for start, members in by_start.items():
        end = max(e for _, e in members)
        lo = start
        while lo <= end:
            hi = min(lo + WINDOW_STEPS - 1, end)
            rids = [r for r, e in members if e >= lo]
            # a few huge answers would leave server workers idle: ≈ POINTS_PER_CALL points per request
            per_call = max(1, min(MAX_RUNS_PER_CALL, POINTS_PER_CALL // (hi - lo + 1)))
            for i in range(0, len(rids), per_call):
                yield rids[i : i + per_call], lo, hi
            lo = hi + 1


def _value(v: Any) -> float:
    if isinstance(v, str):  # MLflow's JSON writes NaN/Infinity as strings
        return float(v.replace("Infinity", "inf"))
    return float(v) if v is not None else float("nan")


def _ms(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


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
