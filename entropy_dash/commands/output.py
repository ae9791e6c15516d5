"""What every command shares: opening the store, printing (one JSON document or text), progress bars."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from analysis.version import versioned
from db.values import json_safe


def open_store(args: argparse.Namespace, *, create: bool = True):  # noqa: ANN202 - db.Store, imported lazily
    from db import Store

    return Store.open(args.db, create=create)


def emit(args: argparse.Namespace, payload: Any, text: Callable[[], str]) -> None:
    """``payload`` as one JSON document with its ``schema_version`` (``analysis.version.versioned``; JSON escapes
    control characters itself), or ``text()`` with the control characters of stored text (run names, keys,
    notes) escaped: a terminal shows them, never runs them."""
    from db.limits import inert_lines

    if getattr(args, "json", False):
        json.dump(json_safe(versioned(payload)), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(inert_lines(text()) + "\n")


@contextmanager
def progress(args: argparse.Namespace, label: str):  # noqa: ANN202 - yields a progress callback
    """A rich progress bar on stderr; none with --quiet or when stderr is not a terminal (a bar drawn into a
    pipe or a log file would leave a blank line before the summary or the error)."""
    if args.quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[run]}"), TimeElapsedColumn(), console=console,
                  transient=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None, run="")

        def update(done: int, total: int | None, run: str) -> None:
            bar.update(task, completed=done, total=total, run=run[:40])

        yield update


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)
