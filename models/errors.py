"""Errors raised by the math in ``models`` (this layer imports nothing else of the project)."""

from __future__ import annotations


class ModelError(Exception):
    """Base of the errors ``models`` raises on purpose."""


class FitError(ModelError):
    """A fit could not be made; ``cause`` is a short machine-readable reason (``too_few_points`` …)."""

    def __init__(self, message: str, cause: str = "error") -> None:
        super().__init__(message)
        self.cause = cause


__all__ = ["FitError", "ModelError"]
