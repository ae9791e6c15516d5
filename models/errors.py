"""Errors raised by the math in ``models`` (this layer imports nothing else of the project)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ModelError(Exception):
    """Base of the errors ``models`` raises on purpose."""


class FitError(ModelError):
    """A fit could not be made; ``cause`` is a short machine-readable reason (``too_few_points`` …)."""

    def __init__(self, message: str, cause: str = "error") -> None:
        super().__init__(message)
        self.cause = cause


def contained(make: Callable[[], T]) -> T | FitError:
    """What ``make`` makes, or the ``FitError`` that says why not (a numerical error becomes one with cause
    ``numerical``): a batch keeps one item's failure from becoming the others'."""
    try:
        return make()
    except FitError as exc:
        return exc
    except (ValueError, ArithmeticError) as exc:  # numpy's LinAlgError is a ValueError
        return FitError(f"{type(exc).__name__}: {exc}", "numerical")


__all__ = ["FitError", "ModelError", "contained"]
