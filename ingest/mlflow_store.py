"""Any other MLflow store URI (``postgresql://``, ``mysql://``, ``file:``, ``databricks``…): MLflow's own
client, in-process (imports MLflow).

Two things MLflow's client does not promise are used where they are there, because they are faster: the
tracking store's ``get_metric_history_bulk_interval`` (through ``_get_store``: 100 runs and a window of steps
a call) and ``RunData._metric_objs`` (the latest step of each key, without a call). Without them the public
``MlflowClient.get_metric_history`` and ``Run.to_proto()`` give the same points, and the runs' notes say so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ingest.errors import IngestError
from ingest.mlflow_common import (
    MAX_POINTS_PER_RUN,
    SEARCH_PAGE,
    ListedRun,
    Points,
    Reader,
    listed_run,
    short_error,
)

NO_METRIC_OBJS = "latest steps read from Run.to_proto(): this MLflow's RunData has no _metric_objs"
NO_BULK_STORE = ("read through MlflowClient.get_metric_history: this MLflow's tracking store has no "
                 "get_metric_history_bulk_interval (slower, same points)")


class TrackingStoreReader(Reader):
    """Any other store URI: MLflow's own tracking store, in-process (imports MLflow)."""

    def __init__(self, uri: str, connect_uri: str) -> None:
        super().__init__(uri, connect_uri)
        self._client: Any = None
        self._bulk: Any = None  # the store's bulk-interval method; False when it has none

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import (
                MlflowClient,  # seconds to import: servers and SQLite stores never need it
            )

            self._client = MlflowClient(tracking_uri=self.connect_uri)
        return self._client

    def _guard(self, what: str, fn: Any) -> Any:
        from mlflow.exceptions import MlflowException  # as above: only this reader imports MLflow

        try:
            return fn()
        except MlflowException as exc:
            raise IngestError(f"MLflow {self.uri}: {what}{short_error(exc)}") from exc

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

    def runs(self, exps: Mapping[str, str]) -> list[ListedRun]:
        runs, token = [], None
        while True:
            page = self._guard("search_runs failed: ", lambda t=token: self.client.search_runs(
                list(exps), max_results=SEARCH_PAGE, page_token=t, order_by=["attributes.start_time ASC"]))
            for r in page:
                runs.append(listed_run(
                    run_id=r.info.run_id, run_name=r.info.run_name,
                    experiment=exps.get(r.info.experiment_id, r.info.experiment_id), status=r.info.status,
                    start_ms=r.info.start_time, end_ms=r.info.end_time, params=dict(r.data.params),
                    tags=dict(r.data.tags),
                    latest=self._latest_steps(r)))
            token = page.token
            if not token:
                return runs

    def _bulk_interval(self) -> Callable[..., Any] | None:
        """The tracking store's bulk-interval reader, when this MLflow has one (a private path)."""
        if self._bulk is None:
            try:
                from mlflow.tracking._tracking_service.utils import _get_store

                self._bulk = getattr(_get_store(self.connect_uri), "get_metric_history_bulk_interval", False)
            except ImportError:
                self._bulk = False
            if not self._bulk:
                self.note(NO_BULK_STORE)
                self.samples, self.window_steps, self.points_per_call = False, None, 1_000_000
        return self._bulk or None

    def prepare(self) -> None:
        self._bulk_interval()

    def _latest_steps(self, run: Any) -> dict[str, int]:
        """The latest step of each key of a searched run: from the Metric objects ``RunData`` keeps behind
        its value-only dict where it has them (MLflow 3.0 to 3.17), else from the run's public protobuf."""
        objs = getattr(run.data, "_metric_objs", None)
        if objs is None:
            self.note(NO_METRIC_OBJS)
            objs = run.to_proto().data.metrics
        return {m.key: int(m.step) for m in objs}

    def points(self, run_ids: Sequence[str], key: str, start: int, end: int) -> dict[str, Points]:
        bulk = self._bulk_interval()
        if bulk is None:
            got = [m for rid in run_ids for m in self._guard("", lambda r=rid: self.client.get_metric_history(r, key))
                   if start <= m.step <= end]
        else:
            got = self._guard("", lambda: bulk(run_ids=list(run_ids), metric_key=key, max_results=MAX_POINTS_PER_RUN,
                                               start_step=start, end_step=end))
        per_run: dict[str, list[tuple[int, float, float]]] = {}
        for m in got:
            per_run.setdefault(m.run_id, []).append((int(m.step), float(m.value), int(m.timestamp) / 1000.0))
        return {rid: (np.array([p[0] for p in pts], dtype=np.int64), np.array([p[1] for p in pts]),
                      np.array([p[2] for p in pts])) for rid, pts in per_run.items()}
