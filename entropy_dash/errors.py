"""The one exception family of the project.

Every error a user can cause (bad input, unreachable server, a fit that cannot be made) is an
``EntropyDashError``; its message says what was wrong and, where it helps, what to do. The CLI prints
the message and exits with ``exit_code`` (2 for user errors), without a traceback unless ``--debug``.
"""

from __future__ import annotations


class EntropyDashError(Exception):
    """Base of all errors this project raises on purpose."""

    exit_code = 2


class ConfigError(EntropyDashError):
    """A bad command-line value, config file or database URL."""


class StoreError(EntropyDashError):
    """The database could not be opened, migrated or written."""


class IngestError(EntropyDashError):
    """A source could not be read: unreachable server, unknown experiment, malformed file."""


class SourceUnavailable(IngestError):
    """A server could not be reached or dropped the connection; the sync engine retries these."""


class FitError(EntropyDashError):
    """A fit could not be made; ``cause`` is a short machine-readable reason."""

    def __init__(self, message: str, cause: str = "error") -> None:
        super().__init__(message)
        self.cause = cause
