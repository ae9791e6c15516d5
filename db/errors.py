"""Errors of the storage layer (this layer imports nothing else of the project)."""

from __future__ import annotations


class StoreError(Exception):
    """The database could not be opened, migrated, read or written."""


class StoreConfigError(StoreError):
    """A database URL that cannot be used (bad syntax, unsupported driver)."""


class RecordError(StoreError):
    """A record a source produced is not valid (a step that is not a whole number, a value that is text…);
    the message names the file, run and key it came from."""


class StoreBusy(StoreError):
    """Another connection held a lock on the store for longer than the wait (``--busy-timeout``)."""


class StoreReadOnly(StoreError):
    """A write to a store this process may only read (file permissions, ``?mode=ro``, a SELECT-only role)."""


class StoreTooNew(StoreError):
    """The store's schema was written by a newer entropy-dash than this one."""
