"""W&B offline run folders: read ``run-<id>.wandb`` record logs directly, without a W&B server.

``wandb.init(mode="offline")`` writes ``wandb/offline-run-<time>-<id>/run-<id>.wandb``; its record log
(blocks, fragments, checksums) is framed by ``ingest.wandb_record_log``; this module turns the records
(``wandb.proto.wandb_internal_pb2.Record``) into one ``RunData`` per run.

What is taken from the records:

* ``run``: run id (the external id), entity, project, display name (the run's name; the id when unset),
  tags, group, job type, start time and the initial config; ``config`` records update/remove config keys;
  ``exit`` gives the status (``finished`` for exit code 0, ``failed`` otherwise; no exit record: ``running``).
* ``history``: one row per step. The step is the row's ``_step`` (W&B's own step counter; custom x-axes
  set with ``define_metric`` are not used), the wall time its ``_timestamp``; ``_runtime`` and
  ``_wandb.*`` are skipped. Nested keys (``log({"a": {"b": 1}})``) are joined with ``.`` (``a.b``), as W&B
  shows them. NaN/inf are kept. Non-numeric values (strings, booleans, null, media such as images,
  histograms and tables, recognised by their ``_type`` entry) are skipped and counted in the run's notes.
* ``summary``, ``stats`` (system metrics), ``telemetry`` and the rest are ignored.

Params are the config flattened with ``.`` (``{"model": {"size": 7}}`` → ``model.size``); W&B's internal
``_wandb`` entry is left out. Tags become ``{tag: True}``, plus ``wandb.entity``/``wandb.group``/``wandb.job_type`` when
set; the run's project is the W&B project name.

A run still being written ends in a torn record (a short block tail, a fragment without its LAST, a bad
checksum): every complete record before it is read and the run's notes say where reading stopped. A file
that does not start with the W&B header raises ``IngestError`` naming the file. Several files with the
same run id (a resumed run) are read in path order into one run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from db.records import RunData, RunInfo, Series
from ingest.base import Source, Watermarks
from ingest.errors import IngestError
from ingest.registry import SourceKind, register
from ingest.steps import StepError, step_from_json
from ingest.wandb_config import flatten_config
from ingest.wandb_record_log import BLOCK_LEN, RecordLog

if TYPE_CHECKING:  # imported when a file is read: ``import wandb`` takes most of a second
    from wandb.proto import wandb_internal_pb2 as pb

SPECIAL_KEYS = frozenset({"_step", "_timestamp", "_runtime"})
WANDB_FILE_GLOB = "run-*.wandb"

#: the source and its readers; ``BLOCK_LEN`` and ``RecordLog`` (of ``ingest.wandb_record_log``) for the tests
__all__ = ["BLOCK_LEN", "RecordLog", "WandbOfflineSource", "find_wandb_files", "read_wandb_files",
           "run_id_from_file"]


# ---------------------------------------------------------------------------------------- run assembly
@dataclass
class _KeyPoints:
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    walls: list[float | None] = field(default_factory=list)


@dataclass
class _Skipped:
    count: int = 0
    example: Any = None


@dataclass
class _RunState:
    """Everything gathered from one run's records (mutable while reading, turned into ``RunData``)."""

    run_id: str
    files: list[Path] = field(default_factory=list)
    name: str | None = None
    entity: str | None = None
    project: str | None = None
    group: str | None = None
    job_type: str | None = None
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    last_time: float | None = None
    exit_code: int | None = None
    seen_run_record: bool = False
    rows: int = 0
    points: dict[str, _KeyPoints] = field(default_factory=dict)
    skipped: dict[str, _Skipped] = field(default_factory=dict)
    undecodable: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # ---- records
    def add_run(self, rec: pb.RunRecord) -> None:
        self.seen_run_record = True
        self.run_id = rec.run_id or self.run_id
        self.name = rec.display_name or self.name
        self.entity = rec.entity or self.entity
        self.project = rec.project or self.project
        self.group = rec.run_group or self.group
        self.job_type = rec.job_type or self.job_type
        self.tags = tuple(rec.tags) or self.tags
        if rec.HasField("start_time") and self.started_at is None:
            self.started_at = rec.start_time.ToDatetime(tzinfo=UTC)
        self.apply_config(rec.config.update, ())

    def apply_config(self, updates: Sequence[pb.ConfigItem], removes: Sequence[pb.ConfigItem]) -> None:
        for item in updates:
            path = _item_path(item)
            try:
                value = json.loads(item.value_json)
            except ValueError:
                value = item.value_json
            _set_path(self.config, path, value)
        for item in removes:
            _pop_path(self.config, _item_path(item))

    def add_history(self, rec: pb.HistoryRecord) -> None:
        step: int | None = None
        wall: float | None = None
        row: list[tuple[str, Any]] = []
        media: set[str] = set()
        for item in rec.item:
            path = _item_path(item)
            key = ".".join(path)
            if key in SPECIAL_KEYS:
                if key == "_step":
                    step = _step(item)
                elif key == "_timestamp":
                    wall = float(item.value_json) if item.value_json else float(_typed_value(item))
                continue
            if path[0] == "_wandb":
                continue
            if len(path) > 1 and path[-1] == "_type":
                media.add(".".join(path[:-1]))
            row.append((key, item))
        if step is None:
            step = rec.step.num if rec.HasField("step") else self.rows
        self.rows += 1
        if wall is not None:
            self.last_time = wall
        for key, item in row:
            self._add_point(key, item, step, wall, media)

    def _add_point(self, key: str, item: pb.HistoryItem, step: int, wall: float | None, media: set[str]) -> None:
        if media:
            owner = next((m for m in media if key == m or key.startswith(m + ".")), None)
            if owner is not None:
                if key == owner + "._type":
                    self._skip(owner, f"<{_typed_value(item)}>")
                return
        value = _number(item)
        if value is None:
            self._skip(key, _typed_value(item))
            return
        pts = self.points.get(key)
        if pts is None:
            pts = self.points[key] = _KeyPoints()
        pts.steps.append(step)
        pts.values.append(value)
        pts.walls.append(wall)

    def _skip(self, key: str, example: Any) -> None:
        s = self.skipped.get(key)
        if s is None:
            s = self.skipped[key] = _Skipped(example=example)
        s.count += 1

    # ---- result
    def to_run_data(self, watermarks: Mapping[str, int]) -> RunData:
        where = f"W&B run {self.run_id} ({', '.join(map(str, self.files))})"
        series = []
        for key, pts in self.points.items():
            s = Series.build(key, pts.steps, pts.values, pts.walls, where=where).after(watermarks.get(key))
            if len(s):
                series.append(s)
        return RunData(run=self._info(), series=tuple(series), notes=tuple(self._notes()))

    def _info(self) -> RunInfo:
        tags: dict[str, Any] = {t: True for t in self.tags}
        if self.group:
            tags["wandb.group"] = self.group
        if self.job_type:
            tags["wandb.job_type"] = self.job_type
        if self.entity:
            tags["wandb.entity"] = self.entity
        status = "running" if self.exit_code is None else ("finished" if self.exit_code == 0 else "failed")
        updated = datetime.fromtimestamp(self.last_time, UTC) if self.last_time is not None else None
        return RunInfo(
            external_id=self.run_id,
            name=self.name or self.run_id,
            project=self.project,
            status=status,
            params=flatten_config(self.config),
            tags=tags,
            started_at=self.started_at,
            updated_at=updated,
        )

    def _notes(self) -> list[str]:
        notes = list(self.notes)
        if not self.seen_run_record:
            notes.append(f"no run record found; the run id {self.run_id!r} comes from the file name")
        if self.undecodable:
            notes.append(
                f"{len(self.undecodable)} records could not be decoded as wandb Records and were skipped "
                f"(first at byte {self.undecodable[0]})"
            )
        if self.rows == 0:
            notes.append("no history rows: the run logged no metrics (yet)")
        for key, s in sorted(self.skipped.items()):
            if key in self.points:
                notes.append(f"key {key!r}: {s.count} non-numeric values skipped (e.g. {_short(s.example)})")
            else:
                notes.append(
                    f"key {key!r} skipped: all {s.count} values are non-numeric (e.g. {_short(s.example)})"
                )
        return notes


def _item_path(item: pb.HistoryItem | pb.ConfigItem) -> tuple[str, ...]:
    return tuple(item.nested_key) if len(item.nested_key) else (item.key,)


def _step(item: pb.HistoryItem) -> int:
    """``_step`` of a history record as the integer W&B wrote (``ingest.steps``: never through a float)."""
    try:
        return step_from_json(_typed_value(item))
    except StepError as exc:
        raise IngestError(f"W&B history record: _step: {exc}") from None


def _typed_value(item: pb.HistoryItem) -> Any:
    kind = item.WhichOneof("value")
    if kind is None:
        try:
            return json.loads(item.value_json) if item.value_json else None
        except ValueError:
            return item.value_json
    if kind == "json":
        return json.loads(item.json)
    if kind == "none":
        return None
    return getattr(item, kind)


def _number(item: pb.HistoryItem) -> float | None:
    """The item's value as a float (NaN/inf included), or None when it is not a number."""
    vj = item.value_json
    if vj:
        if vj[0] in '"{[tfn':  # string, object, array, true, false, null
            return None
        try:
            return float(vj)  # JSON numbers and W&B's NaN / Infinity / -Infinity
        except ValueError:
            return None
    kind = item.WhichOneof("value")
    if kind in ("number", "integer"):
        return float(getattr(item, kind))
    if kind == "json":
        v = json.loads(item.json)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
    return None


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _set_path(tree: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[path[-1]] = value


def _pop_path(tree: dict[str, Any], path: Sequence[str]) -> None:
    node: Any = tree
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


# ---------------------------------------------------------------------------------------- reading files
def read_wandb_files(paths: Sequence[Path], run_id: str) -> _RunState:
    """Read one run's ``.wandb`` files (in the given order) into a run state."""
    from google.protobuf.message import DecodeError  # protobuf and wandb: only when files are read
    from wandb.proto import wandb_internal_pb2 as pb

    state = _RunState(run_id=run_id)
    for path in paths:
        state.files.append(path)
        log = RecordLog(path)
        for offset, payload in log.payloads():
            rec = pb.Record()
            try:
                rec.ParseFromString(payload)
            except DecodeError:
                state.undecodable.append(offset)
                continue
            try:
                _apply_record(state, rec)
            except IngestError as exc:
                raise IngestError(f"{path}, record at byte {offset}: {exc}") from None
        if log.stop is not None:
            state.notes.append(log.stop.note(path))
    return state


def _apply_record(state: _RunState, rec: pb.Record) -> None:
    kind = rec.WhichOneof("record_type")
    if kind == "history":
        state.add_history(rec.history)
    elif kind == "run":
        state.add_run(rec.run)
    elif kind == "config":
        state.apply_config(rec.config.update, rec.config.remove)
    elif kind == "exit":
        state.exit_code = rec.exit.exit_code


def run_id_from_file(path: Path) -> str:
    """``run-<id>.wandb`` → ``<id>``."""
    stem = path.name[: -len(".wandb")]
    return stem[len("run-") :] if stem.startswith("run-") else stem


def find_wandb_files(root: Path) -> dict[str, list[Path]]:
    """``run-*.wandb`` files under ``root`` (a file, a run folder, a ``wandb/`` folder, any folder),
    grouped by run id, each group in path order (offline-run-<time>-<id> folders sort by time)."""
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.rglob(WANDB_FILE_GLOB))
    else:
        raise IngestError(f"W&B offline folder {root} does not exist")
    if not files:
        raise IngestError(
            f"no W&B run files (run-*.wandb) under {root}; point --offline at a wandb/ folder or an "
            "offline-run-* folder"
        )
    groups: dict[str, list[Path]] = {}
    seen: set[Path] = set()
    for path in files:
        real = path.resolve()
        if real not in seen:  # e.g. wandb/latest-run is a symlink to one of the run folders
            seen.add(real)
            groups.setdefault(run_id_from_file(path), []).append(path)
    return groups


class WandbOfflineSource(Source):
    """Runs from W&B offline run folders; ``uri`` is a folder (or one ``.wandb`` file)."""

    kind: ClassVar[str] = "wandb-offline"

    def iter_runs(self, watermarks: Watermarks) -> Iterator[RunData]:
        for run_id, paths in find_wandb_files(Path(self.uri).expanduser()).items():
            state = read_wandb_files(paths, run_id)
            yield state.to_run_data(watermarks.get(state.run_id, {}))

    def check(self) -> None:
        """A folder without any ``run-*.wandb`` file is an error before the store is opened (none is created)."""
        find_wandb_files(Path(self.uri).expanduser())

    def count_runs(self) -> int | None:
        try:
            return len(find_wandb_files(Path(self.uri).expanduser()))
        except IngestError:
            return None


register(SourceKind(
    kind="wandb-offline", build=WandbOfflineSource, help="W&B offline run folders (wandb/offline-run-*)",
    uri_help="a wandb/ folder, one offline-run-* folder or one run-*.wandb file", uri_metavar="DIR",
    uri_is_path=True))
