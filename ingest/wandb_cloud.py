"""W&B cloud projects through the public API (``wandb.Api``), incrementally and at full fidelity.

``uri`` is ``ENTITY/PROJECT``. For each run of ``Api().runs(uri)``:

* ``run.lastHistoryStep`` is compared with the stored watermarks of the run: a run whose last step is not
  beyond the highest stored step is skipped without fetching anything (history rows are written whole, so
  no key can have new points then). A run with no history yet is yielded with no series and a note.
* Keys of interest: ``options["keys"]`` when given; otherwise every key of the run's ``historyKeys`` whose
  type counts include ``number`` (keys starting with ``_`` are W&B's own and left out; keys with only
  non-numeric values are named in the run's notes); when the server gives no ``historyKeys``, the numeric
  entries of the run's summary.
* Each key is read with its own ``run.scan_history(keys=[key, "_step", "_timestamp"], min_step=watermark+1,
  max_step=last+1)`` — the full-fidelity paged scan. One scan per key because a scan only returns rows that
  hold *all* requested keys, and verl logs validation every N steps but entropy every step. The sampled
  ``run.history()`` (500 points) is never used.
* The step is ``_step``, the wall time ``_timestamp``; NaN/inf are kept, non-numeric values skipped and
  counted in the notes.

Run info: external id = the run id, name = display name, project = the W&B project name, status =
``run.state``, params = the config flattened with ``.`` (as in ``ingest.wandb_offline``), tags ``{tag: True}``
plus ``wandb.entity``/``wandb.group``/``wandb.job_type``.

The API key is read by this module from ``WANDB_API_KEY`` only (``~/.netrc`` and wandb's settings files are
not consulted) and handed to ``wandb.Api``; it is never stored, logged or put into a message — error texts
are scrubbed of it. Network, authentication and API errors raise ``IngestError`` naming the project.

``check`` runs before anything is written: a server that does not answer (the one ``wandb.Api`` would use:
``WANDB_BASE_URL`` or wandb's default) is ``SourceUnavailable`` naming it within ``CONNECT_TIMEOUT``
seconds — wandb's own client retries for about 40 s first — then the key is verified and the project listed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from db.records import RunData, RunInfo, Series
from ingest.base import Source, Watermarks
from ingest.errors import IngestError, SourceUnavailable
from ingest.registry import Option, SourceKind, names, register
from ingest.wandb_config import flatten_config

API_KEY_ENV = "WANDB_API_KEY"
CONNECT_TIMEOUT = 10.0
DEFAULT_PAGE_SIZE = 1000
T = TypeVar("T")
# non-finite numbers as some W&B responses spell them (JSON has no NaN/Infinity literals)
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class WandbCloudSource(Source):
    """Runs of one W&B cloud project. ``api`` (an object shaped like ``wandb.Api()``) may be injected.

    Options: ``keys`` (list of metric names to fetch instead of every numeric history key),
    ``page_size`` (rows per scan page, default 1000), ``filters`` (MongoDB-style run filters passed to
    ``Api.runs``).
    """

    kind: ClassVar[str] = "wandb"

    def __init__(self, uri: str, options: Mapping[str, Any] | None = None, *, api: Any = None) -> None:
        super().__init__(uri.strip().strip("/"), options)
        parts = self.uri.split("/")
        if len(parts) != 2 or not all(parts):
            raise IngestError(f"W&B project must be given as ENTITY/PROJECT, got {uri!r}")
        self.entity, self.project = parts
        self._api = api
        keys = self.options.get("keys")
        self.keys: tuple[str, ...] | None = tuple(keys) if keys else None
        self.page_size = int(self.options.get("page_size", DEFAULT_PAGE_SIZE))
        self.filters: Mapping[str, Any] | None = self.options.get("filters")

    # ------------------------------------------------------------------ api access
    def _client(self) -> Any:
        if self._api is None:
            key = os.environ.get(API_KEY_ENV, "").strip()
            if not key:
                raise IngestError(
                    f"W&B project {self.uri}: {API_KEY_ENV} is not set. Set it in the environment "
                    f"(export {API_KEY_ENV}=...; find the key at https://wandb.ai/authorize); it is read "
                    "from there only and never stored."
                )

            def connect() -> Any:
                import wandb  # most of a second: only when a cloud project is read

                return wandb.Api(api_key=key)

            self._api = self._guard("connecting to W&B", connect)
        return self._api

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call; turn any failure into an ``IngestError`` naming the project (key scrubbed)."""
        try:
            return fn()
        except IngestError:
            raise
        except Exception as exc:
            raise IngestError(
                f"W&B project {self.uri}: {what} failed: {type(exc).__name__}: {scrub(str(exc))}"
            ) from None

    def _guarded_iter(self, what: str, make: Callable[[], Iterable[T]]) -> Iterator[T]:
        """Iterate a lazily paged API result, guarding every page fetch."""
        it = iter(self._guard(what, make))
        end = object()
        while True:
            item = self._guard(what, lambda: next(it, end))
            if item is end:
                return
            yield item  # type: ignore[misc]

    def _runs(self) -> Iterable[Any]:
        api = self._client()
        if self.filters:
            return api.runs(self.uri, filters=dict(self.filters))
        return api.runs(self.uri)

    # ------------------------------------------------------------------ Source
    def check(self) -> None:
        """The server answers, the key works and the project can be listed; else an error naming it."""
        if self._api is None:  # an injected client (tests) has no server to reach
            reachable(base_url(), f"W&B project {self.uri}")
        self._guard("listing runs", lambda: next(iter(self._runs()), None))

    def count_runs(self) -> int | None:
        try:
            return len(self._guard("counting runs", self._runs))  # type: ignore[arg-type]
        except (IngestError, TypeError):
            return None

    def iter_runs(self, watermarks: Watermarks) -> Iterator[RunData]:
        for run in self._guarded_iter("listing runs", self._runs):
            data = self._read_run(run, watermarks.get(str(run.id), {}))
            if data is not None:
                yield data

    # ------------------------------------------------------------------ one run
    def _read_run(self, run: Any, marks: Mapping[str, int]) -> RunData | None:
        """The run's new points, or None when nothing was logged beyond the stored watermarks."""
        rid = str(run.id)
        last = self._last_step(run)
        if marks and last <= max(marks.values()):
            return None
        info = self._guard(f"reading run {rid}", lambda: run_info(run, self.project, self.entity))
        if last < 0:
            return RunData(info, (), ("no history rows yet",))
        keys, notes = self._keys_of_interest(run)
        series = []
        for key in keys:
            start = marks.get(key, -1) + 1
            if start > last:
                continue
            s, note = self._scan_key(run, key, start, last)
            if len(s):
                series.append(s)
            if note:
                notes.append(note)
        return RunData(info, tuple(series), tuple(notes))

    def _last_step(self, run: Any) -> int:
        rid = str(run.id)
        last = self._guard(f"reading the last step of run {rid}", lambda: run.lastHistoryStep)
        if last is None:
            summary = self._guard(f"reading the summary of run {rid}", lambda: run.summary_metrics)
            last = summary.get("_step", -1) if isinstance(summary, Mapping) else -1
        return int(last)

    def _keys_of_interest(self, run: Any) -> tuple[list[str], list[str]]:
        if self.keys:
            return list(self.keys), []
        rid = str(run.id)
        hk = self._guard(f"reading the history keys of run {rid}", lambda: getattr(run, "history_keys", None))
        if isinstance(hk, Mapping) and isinstance(hk.get("keys"), Mapping):
            return numeric_history_keys(hk["keys"])
        summary = self._guard(f"reading the summary of run {rid}", lambda: run.summary_metrics)
        keys = [
            k for k, v in (summary or {}).items()
            if not str(k).startswith("_") and _is_number(v)
        ]
        return sorted(keys), []

    def _scan_key(self, run: Any, key: str, start: int, last: int) -> tuple[Series, str | None]:
        rid = str(run.id)
        steps: list[int] = []
        values: list[float] = []
        walls: list[float | None] = []
        skipped = 0
        example: Any = None

        def scan() -> Iterable[Mapping[str, Any]]:
            return run.scan_history(
                keys=[key, "_step", "_timestamp"], min_step=start, max_step=last + 1, page_size=self.page_size
            )

        for row in self._guarded_iter(f"scanning key {key!r} of run {rid}", scan):
            v = row.get(key)
            step = row.get("_step")
            if step is None:
                continue
            v = _NON_FINITE.get(v, v) if isinstance(v, str) else v
            if not _is_number(v):
                skipped += 1
                example = v if example is None else example
                continue
            steps.append(int(step))
            values.append(float(v))
            ts = row.get("_timestamp")
            walls.append(float(ts) if _is_number(ts) else None)
        where = f"W&B run {self.uri}/{rid}"
        series = Series.build(key, steps, values, walls, where=where)
        note = None
        if skipped:
            note = f"key {key!r}: {skipped} non-numeric values skipped (e.g. {_short(example)})"
        return series, note


# ---------------------------------------------------------------------- helpers
def base_url() -> str:
    """The server ``wandb.Api`` talks to: ``WANDB_BASE_URL``, else wandb's default."""
    url = os.environ.get("WANDB_BASE_URL", "").strip()
    if url:
        return url
    try:
        from wandb.sdk.wandb_settings import Settings  # wandb: only when a cloud project is read

        return str(Settings().base_url)
    except Exception:  # noqa: BLE001 - any wandb internals change: fall back to the public cloud
        return "https://api.wandb.ai"


def reachable(url: str, what: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """``SourceUnavailable`` naming ``url`` when no HTTP server answers there (any HTTP status is an answer)."""
    import requests  # only when a cloud project is read: every command line lists this kind

    try:
        requests.head(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        text = str(exc)
        if "refused" in text.lower():
            reason = "connection refused"
        elif any(w in text for w in ("Name or service not known", "NameResolution", "getaddrinfo",
                                      "Temporary failure in name resolution")):
            reason = "host name not found"
        elif isinstance(exc, requests.Timeout):
            reason = f"no answer within {timeout:g} s"
        else:
            reason = type(exc).__name__
        raise SourceUnavailable(f"{what}: cannot reach the W&B server {url}: {reason}") from None


def run_info(run: Any, project: str, entity: str) -> RunInfo:
    """``RunInfo`` from a ``wandb.apis.public.Run`` (or anything with its attribute names)."""
    tags: dict[str, Any] = {str(t): True for t in (getattr(run, "tags", None) or ())}
    tags["wandb.entity"] = entity
    for attr, name in (("group", "wandb.group"), ("job_type", "wandb.job_type")):
        value = getattr(run, attr, None)
        if value:
            tags[name] = value
    config = getattr(run, "config", None) or {}
    return RunInfo(
        external_id=str(run.id),
        name=str(getattr(run, "name", None) or run.id),
        project=project,
        status=getattr(run, "state", None),
        params=flatten_config(_unwrap_config(config)),
        tags=tags,
        started_at=_parse_time(getattr(run, "created_at", None)),
        updated_at=_parse_time(getattr(run, "heartbeat_at", None)),
    )


def numeric_history_keys(keys: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """From ``historyKeys["keys"]`` ({key: {"typeCounts": [{"type": "number", "count": n}, …]}}): the keys
    with numeric values, and notes naming user keys that have none."""
    numeric, other = [], []
    for key, meta in keys.items():
        if str(key).startswith("_"):
            continue
        counts = meta.get("typeCounts", []) if isinstance(meta, Mapping) else []
        types = {c.get("type") for c in counts if isinstance(c, Mapping)}
        (numeric if "number" in types else other).append(str(key))
    notes = [f"keys with no numeric values, not fetched: {', '.join(sorted(other))}"] if other else []
    return sorted(numeric), notes


def _unwrap_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Older API responses wrap each config entry as {"value": v, "desc": …}; newer ones give v."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, Mapping) and "value" in v and set(v) <= {"value", "desc"}:
            v = v["value"]
        out[k] = v
    return out


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _is_number(v: Any) -> bool:
    """A JSON number (NaN/inf included); not a bool, string, null or media dict."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def scrub(text: str) -> str:
    """``text`` with the value of ``WANDB_API_KEY`` (if set) replaced by ``***``."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    return text.replace(key, "***") if key else text


def _check_project(uri: str) -> None:
    if len(uri.strip().strip("/").split("/")) != 2:
        raise ValueError(f"W&B cloud projects are ENTITY/PROJECT, got {uri!r}")


register(SourceKind(
    kind="wandb", build=WandbCloudSource, help="a W&B project (cloud API) or offline run folders",
    uri_help="the W&B cloud project", uri_metavar="ENTITY/PROJECT", check_uri=_check_project,
    options=(Option("keys", names, "metric keys to fetch instead of every numeric history key"),),
    alternative=("--offline", "wandb-offline")))
