"""Errors raised by the math in ``models`` (part of the project's one exception family)."""

from entropy_dash.errors import FitError

__all__ = ["FitError"]
