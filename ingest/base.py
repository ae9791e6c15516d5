"""The one interface every source implements (MLflow, W&B, TensorBoard, files).

A source reads runs and yields them as ``RunData``. It may use ``watermarks`` (last stored step per
key of each run, {external_id: {key: step}}) to fetch only new points; the store writes only points that
are new or changed either way, so a source that always returns everything is still correct, just slower.

Sources of many independent parts (files of a folder, run folders of TensorBoard) contain a failure to its
part: the part is skipped and named in ``failures`` (unless ``fail_fast``), the others are read, and the sync
engine raises once the good parts are in. Sources that tail files (``tails_files``) get what was read of each
file before in ``known_files`` and attach the new read positions to the runs they yield (``RunData.
file_states``), or leave them in ``leftover_states`` when a file gave no points.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from db.records import FileState, RunData

Watermarks = Mapping[str, Mapping[str, int]]


class Source(ABC):
    kind: ClassVar[str]
    #: reads files and can resume them from saved read positions (``known_files``)
    tails_files: ClassVar[bool] = False
    #: what one independently read part of the source is called in messages ("2 files skipped")
    part: ClassVar[str] = "run"

    def __init__(self, uri: str, options: Mapping[str, Any] | None = None) -> None:
        self.uri = uri
        self.options = dict(options or {})
        self.fail_fast = False  # raise at the first bad part instead of skipping it
        self.failures: list[str] = []  # "part: why" of every part skipped
        self.notices: list[str] = []  # said to the user about this read, not stored
        self.known_files: Mapping[str, FileState] = {}
        self.leftover_states: list[FileState] = []

    @abstractmethod
    def iter_runs(self, watermarks: Watermarks) -> Iterator[RunData]:
        """Yield every run of the source with its (new) points; raise ``IngestError`` naming what failed."""

    def check(self) -> None:
        """Fail fast, before anything is written, when the source cannot be read at all (unreachable
        server, unknown experiment, missing folder): raise ``IngestError`` naming it. Default: no check."""
        return None

    def count_runs(self) -> int | None:
        """How many runs ``iter_runs`` will yield, when cheap to know (for progress bars)."""
        return None

    def describe(self) -> str:
        return f"{self.kind} {self.uri}"
