"""Errors of the storage layer (this layer imports nothing else of the project)."""

from __future__ import annotations


class StoreError(Exception):
    """The database could not be opened, migrated, read or written."""


class StoreConfigError(StoreError):
    """A database URL that cannot be used (bad syntax, unsupported driver)."""


class RecordError(StoreError):
    """A record a source produced is not valid (a step that is not a whole number, a value that is text…);
    the message names the file, run and key it came from."""
