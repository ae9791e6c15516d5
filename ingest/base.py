"""The one interface every source implements (MLflow, W&B, TensorBoard, files).

A source reads runs and yields them as ``RunData``. It may use ``watermarks`` (last stored step per
key of each run, {external_id: {key: step}}) to fetch only new points; the store writes only points that
are new or changed either way, so a source that always returns everything is still correct, just slower.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from db.records import RunData

Watermarks = Mapping[str, Mapping[str, int]]


class Source(ABC):
    kind: ClassVar[str]

    def __init__(self, uri: str, options: Mapping[str, Any] | None = None) -> None:
        self.uri = uri
        self.options = dict(options or {})

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
