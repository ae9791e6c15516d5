"""An MLflow tracking server read through its REST API with ``requests`` (MLflow itself is not imported).

Points come from the route MLflow's own UI uses, ``/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval``:
up to 100 runs and a window of steps a request, several times faster than the public ``metrics/get-history``
(one run, every step of a key). The route is not part of MLflow's promised REST API, so the reader first
asks it once for a run that does not exist: a server that answers with JSON has it (MLflow 3.0 to 3.17 do);
otherwise points are read through ``/api/2.0/mlflow/metrics/get-history``, page by page, and the runs' notes
say so.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import requests

from ingest.errors import IngestError, SourceUnavailable
from ingest.mlflow_common import (
    DEFAULT_CONCURRENCY,
    HTTP_TIMEOUT,
    MAX_POINTS_PER_RUN,
    SEARCH_PAGE,
    ListedRun,
    NotFound,
    Points,
    Reader,
    listed_run,
    short_error,
)

BULK_INTERVAL = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
GET_HISTORY = "/api/2.0/mlflow/metrics/get-history"
REFUSED_HINT = "set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
HISTORY_PAGE = 25_000  # rows a page of the public get-history
NO_BULK_ROUTE = (f"read through MLflow's public REST API (metrics/get-history): the server does not answer "
                 f"{BULK_INTERVAL} (slower, same points)")


class RestReader(Reader):
    """A tracking server, through its REST API (``requests``; one keep-alive session per thread)."""

    concurrency = DEFAULT_CONCURRENCY

    def __init__(self, uri: str, connect_uri: str) -> None:
        super().__init__(uri, connect_uri)
        self.base = connect_uri.rstrip("/")
        self._local = threading.local()
        self._bulk: bool | None = None
        self._probe_lock = threading.Lock()

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
            raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: {short_error(exc)}") from exc
        if resp.status_code == 200:
            try:
                return json.loads(resp.content)
            except ValueError as exc:
                raise IngestError(f"MLflow {self.uri}: {what} answered with something that is not JSON: is "
                                  f"{self.uri} an MLflow tracking server?") from exc
        detail = error_message(resp)
        if resp.status_code in (502, 503, 504):  # a proxy in front of a restarting server: retried
            raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: HTTP {resp.status_code} "
                                    f"{resp.reason}")
        if resp.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" in detail:
            raise NotFound(f"MLflow {self.uri}: {what} failed (HTTP 404): {detail}")
        if resp.status_code in (401, 403):
            raise IngestError(f"MLflow {self.uri} refused {what} (HTTP {resp.status_code}): {REFUSED_HINT}")
        raise IngestError(f"MLflow {self.uri}: {what} failed (HTTP {resp.status_code}): {detail}")

    def check(self) -> None:
        try:
            resp = self._session().get(self.base + "/health", timeout=10)
        except requests.RequestException as exc:
            raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: {short_error(exc)}") from exc
        if resp.status_code >= 400:
            raise IngestError(f"MLflow tracking server {self.uri} answered /health with HTTP {resp.status_code}")

    def experiments(self, names: Sequence[str]) -> dict[str, str]:
        if names:
            out = {}
            for name in names:
                try:
                    exp = self._call("get-by-name", "/api/2.0/mlflow/experiments/get-by-name",
                                     params={"experiment_name": name})["experiment"]
                except NotFound:
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

    def runs(self, exps: Mapping[str, str]) -> list[ListedRun]:
        runs, token = [], None
        while True:
            body: dict[str, Any] = {"experiment_ids": list(exps), "max_results": SEARCH_PAGE,
                                    "order_by": ["attributes.start_time ASC"], "run_view_type": "ACTIVE_ONLY"}
            if token:
                body["page_token"] = token
            page = self._call("runs/search", "/api/2.0/mlflow/runs/search", body=body)
            for r in page.get("runs", []):
                info, data = r["info"], r.get("data", {})
                runs.append(listed_run(
                    run_id=info.get("run_id") or info["run_uuid"], run_name=info.get("run_name"),
                    experiment=exps.get(str(info.get("experiment_id")), str(info.get("experiment_id"))),
                    status=info.get("status"), start_ms=info.get("start_time"), end_ms=info.get("end_time"),
                    params={p["key"]: p.get("value", "") for p in data.get("params", [])},
                    tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
                    latest={m["key"]: int(m.get("step", 0)) for m in data.get("metrics", [])}))
            token = page.get("next_page_token")
            if not token:
                return runs

    def bulk_route(self) -> bool:
        """The UI's bulk-interval route answers (asked once, for a run that does not exist)."""
        with self._probe_lock:
            if self._bulk is None:
                try:
                    resp = self._session().get(self.base + BULK_INTERVAL, timeout=HTTP_TIMEOUT, params={
                        "run_ids": ["0" * 32], "metric_key": "entropy-dash-probe", "max_results": 1})
                except requests.RequestException as exc:
                    raise SourceUnavailable(f"cannot reach MLflow tracking server {self.uri}: "
                                            f"{short_error(exc)}") from exc
                if resp.status_code in (401, 403):
                    raise IngestError(f"MLflow {self.uri} refused get-history-bulk-interval (HTTP "
                                      f"{resp.status_code}): {REFUSED_HINT}")
                try:
                    self._bulk = resp.status_code == 200 and isinstance(json.loads(resp.content), dict)
                except ValueError:
                    self._bulk = False
                if not self._bulk:
                    self.note(NO_BULK_ROUTE)
                    # the public route returns every point of a run: one window a run, nothing sampled
                    self.samples, self.window_steps, self.points_per_call = False, None, 1_000_000
            return self._bulk

    def prepare(self) -> None:
        self.bulk_route()

    def points(self, run_ids: Sequence[str], key: str, start: int, end: int) -> dict[str, Points]:
        if not self.bulk_route():
            return self._history(run_ids, key, start, end)
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


    def _history(self, run_ids: Sequence[str], key: str, start: int, end: int) -> dict[str, Points]:
        """The public path: every value of ``key`` of each run (``metrics/get-history``), kept in [start, end]."""
        out = {}
        for rid in run_ids:
            rows, token = [], None
            while True:
                params: dict[str, Any] = {"run_id": rid, "metric_key": key, "max_results": HISTORY_PAGE}
                if token:
                    params["page_token"] = token
                page = self._call(f"get-history for {key!r}", GET_HISTORY, params=params)
                rows += [m for m in page.get("metrics", []) if start <= int(m.get("step", 0)) <= end]
                token = page.get("next_page_token")
                if not token:
                    break
            if rows:
                rows.sort(key=lambda m: (int(m.get("step", 0)), int(m.get("timestamp", 0))))
                out[rid] = (np.array([m.get("step", 0) for m in rows], dtype=np.int64),
                            np.array([m.get("value", np.nan) for m in rows], dtype=np.float64),
                            np.array([m.get("timestamp", 0) for m in rows], dtype=np.float64) / 1000.0)
        return out


def error_message(resp: requests.Response) -> str:
    try:
        body = json.loads(resp.content)
        if isinstance(body, dict) and body.get("message"):
            return f"{body.get('error_code', '')}: {body['message']}".lstrip(": ")[:300]
    except ValueError:
        pass
    return resp.text[:200]


