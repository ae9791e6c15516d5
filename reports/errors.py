"""Errors of the report writer."""

from __future__ import annotations


class ReportError(Exception):
    """A report cannot be written (bad format list, unknown run or experiment, unwritable folder)."""
