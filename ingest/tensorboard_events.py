"""Reading TensorBoard event files: records, scalars and restarts (the source is ``ingest.tensorboard``).

Records are read with TFRecord framing (uint64 length, masked CRC-32C of the length, the ``Event`` protobuf,
masked CRC-32C of the data), with tensorboard's own protobufs and CRC:

* scalars come from ``simple_value`` summaries (PyTorch / tensorboardX / TF1 writers) and from 0-d
  numeric tensors of tags whose plugin is ``scalars`` (TF2 and ``tensorboard.summary.Writer``; the plugin
  metadata is written with a tag's first value only, so it is remembered per tag);
* a step written twice keeps the value with the later wall time, and overlapping launches are noted
  (``restart_note``);
* a file that ends inside a record (a writer still running, or killed) gives its complete records and a
  note; a complete record whose CRC does not match, or that does not decode, is an ``IngestError``
  naming the file and the byte offset.

This module is imported when event files are read, not when the source kind is listed: protobuf and
tensorboard take about 0.1 s to import, and every command line lists the kind.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.util import tensor_util

from db.records import Series
from ingest.errors import IngestError

SCALARS_PLUGIN = "scalars"
_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class RecordScan:
    """What reading one event file found: complete records, and where a torn tail began (if any)."""

    records: tuple[bytes, ...]
    truncated_at: int | None = None
    end: int = 0  # byte offset after the last complete record


def read_records(path: Path, start: int = 0, end: int | None = None) -> RecordScan:
    """The complete TFRecord payloads of ``path`` from byte ``start`` (up to ``end``); a torn tail is
    reported, a bad CRC raised."""
    records: list[bytes] = []
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    size = os.fstat(fh.fileno()).st_size if end is None else end
    with fh:
        fh.seek(start)
        while True:
            offset = fh.tell()
            header = fh.read(min(_HEADER.size, max(size - offset, 0)))
            if not header:
                return RecordScan(tuple(records), None, offset)
            if len(header) < _HEADER.size:
                return RecordScan(tuple(records), offset, offset)
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                raise IngestError(f"{path}: corrupt event file: record at byte {offset} fails its length "
                                  "checksum (not a TensorBoard event file, or damaged)")
            if offset + _HEADER.size + length + _CRC.size > size:
                return RecordScan(tuple(records), offset, offset)
            data = fh.read(length)
            footer = fh.read(_CRC.size)
            if len(data) < length or len(footer) < _CRC.size:
                return RecordScan(tuple(records), offset, offset)
            if masked_crc32c(data) != _CRC.unpack(footer)[0]:
                raise IngestError(f"{path}: corrupt event file: record at byte {offset} fails its data checksum")
            records.append(data)


@dataclass
class _RunPoints:
    """Points of one run folder, gathered over its event files."""

    by_tag: dict[str, tuple[list[int], list[float], list[float]]] = field(default_factory=dict)
    plugins: dict[str, str] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    span: list[float] = field(default_factory=list)  # [first step, last step, first wall time] of the file read

    def add(self, tag: str, step: int, value: float, wall_time: float) -> None:
        if self.span:
            self.span[:2] = [min(self.span[0], step), max(self.span[1], step)]
        else:
            self.span[:] = [step, step, wall_time]
        steps, values, walls = self.by_tag.setdefault(tag, ([], [], []))
        steps.append(step)
        values.append(value)
        walls.append(wall_time)

    def add_event(self, event: event_pb2.Event) -> None:
        for v in event.summary.value:
            plugin = v.metadata.plugin_data.plugin_name  # written with a tag's first value only
            if plugin:
                self.plugins.setdefault(v.tag, plugin)
            kind = v.WhichOneof("value")
            if kind == "simple_value":
                self.add(v.tag, event.step, float(v.simple_value), event.wall_time)
            elif kind == "tensor" and self.plugins.get(v.tag, SCALARS_PLUGIN) == SCALARS_PLUGIN:
                value = _scalar(v.tensor)
                if value is None:
                    self.skipped.add(v.tag)
                else:
                    self.add(v.tag, event.step, value, event.wall_time)
            else:
                self.skipped.add(v.tag)


def _scalar(tensor: object) -> float | None:
    """The value of a 0-d (or one-element) numeric tensor proto; None for anything else."""
    try:
        arr = tensor_util.make_ndarray(tensor)
    except (ValueError, TypeError):
        return None
    if arr.size != 1 or arr.dtype.kind not in "fiub":
        return None
    return float(arr.reshape(()))


@dataclass(frozen=True)
class FolderRead:
    series: tuple[Series, ...]
    notes: tuple[str, ...]
    notices: tuple[str, ...]
    #: per file read: (its stat, offset after its last complete record, its parser state)
    files: tuple[tuple[Path, os.stat_result, int, dict[str, Any]], ...]


def read_event_files(files: list[Path], where: str) -> tuple[tuple[Series, ...], tuple[str, ...]]:
    """Scalars of the event files of one run folder, and notes on torn files and skipped tags."""
    read = read_folder([(p, p.stat(), 0, None) for p in files], where)
    return read.series, read.notes + read.notices


def read_folder(files: list[tuple[Path, os.stat_result, int, Mapping[str, Any] | None]], where: str) -> FolderRead:
    """Scalars of event files of one run folder, each from its offset with its saved state (plugins per tag,
    tags skipped), up to the size it had when looked at; notes on skipped tags, notices on torn files."""
    points = _RunPoints()
    notes: list[str] = []
    notices: list[str] = []
    out = []
    skipped_before: set[str] = set()
    for path, st, start, state in files:
        points.plugins.update((state or {}).get("plugins", {}))
        skipped_before |= set((state or {}).get("skipped", []))
        before = set(points.skipped)
        points.span = list((state or {}).get("span") or [])
        scan = read_records(path, start, st.st_size)
        for i, data in enumerate(scan.records):
            try:
                event = event_pb2.Event.FromString(data)
            except DecodeError:
                raise IngestError(f"{path}: corrupt event file: record {i} after byte {start} is not an Event "
                                  "protobuf") from None
            if event.HasField("summary"):
                points.add_event(event)
        if scan.truncated_at is not None:
            notices.append(f"{path}: truncated record at byte {scan.truncated_at} (a writer still running "
                           f"or killed): read the {len(scan.records)} complete records before it; the rest is "
                           "left for the next sync")
        file_skipped = sorted(set((state or {}).get("skipped", [])) | (points.skipped - before))
        out.append((path, st, scan.end, {"plugins": dict(points.plugins), "skipped": file_skipped[:100],
                                         "span": list(points.span)}))
    skipped = sorted(points.skipped - set(points.by_tag) - skipped_before)
    if skipped:
        notes.append(f"{len(skipped)} non-scalar tags skipped: {', '.join(skipped[:5])}"
                     + ("…" if len(skipped) > 5 else ""))
    series = tuple(Series.build(tag, s, np.asarray(v), w, where=where)
                   for tag, (s, v, w) in points.by_tag.items())
    return FolderRead(series, tuple(notes), tuple(notices), tuple(out))


def restart_note(spans: list[tuple[Path, list[float]]]) -> str | None:
    """A note when launches of the trainer (event files of one folder) log overlapping steps, naming the steps
    and the files; for those steps each keeps the value with the later wall time, i.e. the later launch's."""
    launches = sorted((sp[2], path, sp[0], sp[1]) for path, sp in spans if sp and len(sp) == 3)
    overlaps = []
    for (_, first, lo1, hi1), (_, later, lo2, hi2) in zip(launches, launches[1:], strict=False):
        lo, hi = max(lo1, lo2), min(hi1, hi2)
        if lo <= hi:
            steps = f"step {lo:.0f}" if lo == hi else f"steps {lo:.0f}–{hi:.0f}"
            overlaps.append(f"{steps} ({first.name} then {later.name})")
    if not overlaps:
        return None
    return (f"restarts: {len(launches)} launches of the trainer in this folder log the same steps — "
            + "; ".join(overlaps) + ": for those steps the later launch's values are kept")
