"""TRL / Hugging Face ``trainer_state.json`` → one ``RunData``.

The Trainer writes the file into its output folder at the end (``save_state``) and into every
``checkpoint-N/`` folder; ``log_history`` holds one dict per logging event, each with ``step`` and
``epoch`` and the metrics of that event (GRPOTrainer: ``loss``, ``reward``, ``entropy``, ``kl``,
``completions/mean_length``…; evaluation: ``eval_*``; the summary at the end: ``train_runtime``…).
Every numeric entry becomes a point of its key at that step (``epoch`` included); ``null`` is skipped;
a string or other non-number is an ``IngestError`` naming the file, the entry and the key.

The run is the output folder: its name is the folder's name (the parent of ``checkpoint-N`` for a
checkpoint's copy), unless the file carries a ``trial_name``; its external id is
``<output folder>/trainer_state.json`` whichever copy was read, so the final file and the checkpoints'
copies update the same run. Its planned length is ``max_steps`` (when > 0); it is finished when
``global_step`` has reached ``max_steps``, else its state is unknown. ``latest_states`` picks, per output
folder, the copy with the most steps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from db.limits import shown
from db.records import RunData, RunInfo, Series
from ingest.errors import IngestError
from ingest.steps import StepError, step_from_json

FILE_NAME = "trainer_state.json"
#: JSON nested deeper than Python's JSON reader can follow (about 1,000 levels; a trainer writes 3)
TOO_DEEP = "JSON nested too deeply (more than about 1,000 levels of arrays/objects): refused"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_SKIP = {"step"}


def run_folder(path: Path) -> Path:
    """The training output folder a ``trainer_state.json`` belongs to."""
    parent = path.resolve().parent
    return parent.parent if _CHECKPOINT.match(parent.name) else parent


def load_state(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            state = json.load(fh)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
    except RecursionError:
        raise IngestError(f"{path}: {TOO_DEEP}") from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise IngestError(f"{path}: not a trainer_state.json (no 'log_history' list)")
    return state


def _points(history: list[Any], path: Path) -> dict[str, tuple[list[int], list[float]]]:
    by_key: dict[str, tuple[list[int], list[float]]] = {}
    for i, entry in enumerate(history):
        at = f"{path}, log_history[{i}]"
        if not isinstance(entry, dict):
            raise IngestError(f"{at}: expected an object, got {type(entry).__name__}")
        try:
            step = step_from_json(entry.get("step"))
        except StepError as exc:
            raise IngestError(f"{at}: {exc}") from None
        for key, value in entry.items():
            if key in _SKIP or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise IngestError(f"{at}: key {shown(key)} has value {shown(value)}, not a number")
            steps, values = by_key.setdefault(key, ([], []))
            steps.append(step)
            values.append(float(value))
    return by_key


def _params(state: Mapping[str, Any]) -> dict[str, Any]:
    """The file's scalar settings (global_step, max_steps, logging_steps, train_batch_size…)."""
    return {k: v for k, v in state.items()
            if k != "log_history" and (v is None or isinstance(v, str | int | float | bool))}


def parse_trainer_state(path: str | Path) -> RunData:
    """Read one ``trainer_state.json``."""
    path = Path(path)
    state = load_state(path)
    folder = run_folder(path)
    trial = state.get("trial_name")
    name = trial if isinstance(trial, str) and trial else folder.name
    where = f"{path}, run {shown(name, 80)}"
    by_key = _points(state["log_history"], path)
    series = tuple(Series.build(k, s, v, where=where) for k, (s, v) in by_key.items())
    params = _params(state)
    params["log_format"] = "trainer_state"
    params["read_from"] = str(path.resolve())
    notes = () if series else (f"{path}: log_history is empty",)
    info = RunInfo(external_id=str(folder / FILE_NAME), name=name, params=params, status=_status(state))
    return RunData(run=info, series=series, notes=notes)


def _status(state: Mapping[str, Any]) -> str | None:
    """"finished" when the trainer reached its planned length (``global_step == max_steps``); otherwise the
    file does not say (a checkpoint of a run in progress, or of one that stopped): None, state unknown."""
    step, planned = state.get("global_step"), state.get("max_steps")
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (step, planned))
    return "finished" if ok and planned > 0 and step >= planned else None


def _global_step(path: Path) -> int:
    try:
        step = load_state(path).get("global_step")
    except IngestError:
        return -1
    return step if isinstance(step, int) else -1


def latest_states(paths: Iterable[Path]) -> list[Path]:
    """Per output folder, the copy of ``trainer_state.json`` with the highest ``global_step``.

    The output folder's own copy wins a tie (it is written last); unreadable copies sort last, so the
    error surfaces only when no good copy exists.
    """
    best: dict[Path, tuple[tuple[int, int], Path]] = {}
    for p in paths:
        rank = (_global_step(p), int(not _CHECKPOINT.match(p.resolve().parent.name)))
        folder = run_folder(p)
        if folder not in best or rank > best[folder][0]:
            best[folder] = (rank, p)
    return [p for _, p in best.values()]
