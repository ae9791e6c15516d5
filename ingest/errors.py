"""Errors of the ingestion layer."""

from __future__ import annotations


class IngestError(Exception):
    """A source could not be read: unreachable server, unknown experiment, malformed file."""


class SourceUnavailable(IngestError):
    """A server could not be reached or dropped the connection; the sync engine retries these."""
