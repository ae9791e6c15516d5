"""Errors of the ingestion layer."""

from __future__ import annotations


class IngestError(Exception):
    """A source could not be read: unreachable server, unknown experiment, malformed file."""


class SourceUnavailable(IngestError):
    """A server could not be reached or dropped the connection; the sync engine retries these."""


class PartialIngest(IngestError):
    """Some parts of a source (files of a folder, run folders) could not be read and were skipped; the others
    are in the store. ``result`` is the sync's ``SyncResult`` (its ``failures`` name every skipped part)."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result
