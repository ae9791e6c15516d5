"""``figures/run-<id>-<fit|forecast>.png``: the report's figures drawn by kaleido with Chromium (Debian's
when kaleido has none of its own). Optional: without kaleido the report is written anyway, and the log says
why."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"


def kaleido_available() -> bool:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return True


def write_pngs(figures: Mapping[int, Mapping[str, Any]], folder: Path) -> Path | None:
    """``run-<id>-<fit|forecast>.png`` through kaleido (and Debian Chromium when kaleido finds no browser of
    its own). Returns the folder, or None (logged) when PNGs cannot be made here. A figure kaleido could not
    draw (it gives up on one after 90 s, which a loaded machine can reach) is tried once more, then named in
    the log; a half-drawn set is never left behind silently."""
    if not kaleido_available():
        log.warning("PNG figures skipped: kaleido is not installed (pip install kaleido); the HTML report has "
                    "the interactive figures")
        return None
    if Path(CHROMIUM).exists():
        os.environ.setdefault("BROWSER_PATH", CHROMIUM)
    items = [(fig, folder / f"run-{run_id}-{name}.png") for run_id, figs in figures.items()
             for name, fig in figs.items()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        missing = _draw(items)
        if missing:
            missing = _draw(missing)
    except Exception as exc:  # noqa: BLE001 - kaleido/Chromium failures of any kind must not fail the report
        log.warning("PNG figures skipped: %s", exc)
        return None
    if missing:
        log.warning("PNG figures: %d of %d could not be drawn: %s", len(missing), len(items),
                    ", ".join(path.name for _, path in missing))
        if len(missing) == len(items):
            return None
    return folder


def _draw(items: list[tuple[Any, Path]]) -> list[tuple[Any, Path]]:
    """Draw every figure in one Chromium (a browser per figure costs seconds each); the ones not drawn."""
    import plotly.io as pio  # plotly takes half a second to import: only when PNGs are made

    pio.write_images([fig for fig, _ in items], [path for _, path in items], width=1100, scale=1)
    return [(fig, path) for fig, path in items if not (path.exists() and path.stat().st_size)]
