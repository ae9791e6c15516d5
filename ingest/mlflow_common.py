"""What the three ways of reading MLflow share (``ingest.mlflow_source`` picks one by the URI): limits of a
request, a listed run with its latest step per key, the reader interface, and error texts.

A reader may fall back from a faster path that MLflow does not promise (a UI route, a private function, its
SQLite tables read directly) to its public API when the faster one is not there; it says so in ``notes``,
which the source puts in every run's notes and the sync's messages.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from db.masking import mask_secrets
from db.records import RunInfo
from ingest.errors import IngestError

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
class ListedRun:
    info: RunInfo
    latest: dict[str, int]  # key -> latest step, from the run search


class NotFound(IngestError):
    """The server answered RESOURCE_DOES_NOT_EXIST."""


class Reader:
    """How one kind of MLflow URI is read: experiments, runs with their latest steps, points."""

    samples = True  # answers windows of more than MAX_POINTS_PER_RUN values with a sample
    window_steps: int | None = WINDOW_STEPS
    points_per_call = POINTS_PER_CALL
    concurrency = 1

    def __init__(self, uri: str, connect_uri: str) -> None:
        self.uri = uri  # shown in messages: its password masked
        self.connect_uri = connect_uri
        self.notes: list[str] = []  # fallbacks taken (a faster path MLflow does not promise was not there)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def check(self) -> None:
        return None

    def unsupported(self) -> str | None:
        """Why this reader cannot read its URI and MLflow's own client must (None: it can)."""
        return None

    def prepare(self) -> None:
        """Choose the path to the points (a faster one MLflow does not promise, or the public one)."""
        return None

    def experiments(self, names: Sequence[str]) -> dict[str, str]:
        raise NotImplementedError

    def runs(self, exps: Mapping[str, str]) -> list[ListedRun]:
        raise NotImplementedError

    def points(self, run_ids: Sequence[str], key: str, start: int, end: int) -> dict[str, Points]:
        raise NotImplementedError


def listed_run(*, run_id: str, run_name: str | None, experiment: str, status: str | None, start_ms: Any,
            end_ms: Any, params: Mapping[str, str], tags: Mapping[str, str], latest: dict[str, int]) -> ListedRun:
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
    return ListedRun(info, latest)


def _ms(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, UTC) if ms else None


def _first(params: Mapping[str, str], tags: Mapping[str, str], names: Sequence[str]) -> str | None:
    for n in names:
        v = tags.get(n) or params.get(n)
        if v:
            return str(v)
    return None


def short_error(exc: BaseException) -> str:
    """The useful part of a connection or MLflow error, on one line (any URL's password masked)."""
    text = mask_secrets(str(exc))
    m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if m:
        return m.group(1).strip().lower()
    requests = sys.modules.get("requests")  # an error raised by requests means it is imported already
    if requests is not None and isinstance(exc, requests.Timeout):
        return "timed out"
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
