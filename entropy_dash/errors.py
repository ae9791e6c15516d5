"""Errors of the command line, and the one place that knows every layer's errors.

Each layer raises its own exceptions (``models.errors``, ``db.errors``, ``ingest.errors``,
``analysis.errors``, ``reports.errors``); their messages say what was wrong and, where it helps, what to
do. The CLI prints the message of any of ``USER_ERRORS`` on one line and exits with 2, without a traceback
unless ``--debug``.
"""

from __future__ import annotations

from analysis.errors import AnalysisError
from db.errors import StoreError
from ingest.errors import IngestError
from models.errors import ModelError
from reports.errors import ReportError

EXIT_USER_ERROR = 2


class ConfigError(Exception):
    """A bad command-line value or config file (``sources.toml``)."""


USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, StoreError, IngestError, ModelError, AnalysisError,
                                            ReportError)
