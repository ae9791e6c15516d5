"""Length limits of what the store keeps and what messages quote, the same on SQLite and PostgreSQL.

SQLite accepts text of any length and NUL bytes; PostgreSQL rejects NUL bytes in text and text longer than
a ``varchar(n)`` column. So every rule is applied here, before a row is written, and both backends store
exactly the same thing:

* metric keys and run names: at most ``MAX_KEY_CHARS`` / ``MAX_NAME_CHARS`` characters, no NUL byte —
  otherwise a ``RecordError`` naming the run (keys are identities: never shortened);
* external ids longer than ``MAX_EXTERNAL_ID_CHARS`` (deep file paths): the first 200 characters, ``~`` and
  a SHA-1 of the whole id (stable, so a re-ingest finds the same run);
* project, model, algorithm, status, planned_from: cut to their column's length (ending in ``…``);
* string values and keys inside params and tags: NUL bytes become U+FFFD, strings over
  ``MAX_PARAM_CHARS`` are cut (``… (N characters)``);
* run notes: at most ``MAX_NOTES`` per run (the newest kept), each at most ``MAX_NOTE_CHARS``;
* ``sync_log.error``: one line of at most ``MAX_ERROR_CHARS``;
* steps: integers in [0, ``MAX_STEP``] = [0, 2^53], read exactly by every source (``ingest.steps``), never
  through floating point. The BIGINT ``step`` column of SQLite and PostgreSQL holds up to 2^63 − 1, but charts,
  downsampled copies and fits compute in float64, where integers above 2^53 are no longer all distinct: a
  larger step is refused rather than merged with its neighbour downstream.

``shown`` and ``clip`` keep user content quoted in messages short: a 50 MB field is never copied whole into
an error or the sync log; ``inert`` escapes the control characters of stored text printed on a terminal.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from db.errors import RecordError

MAX_KEY_CHARS = 512  # metric_keys.name is varchar(512)
MAX_NAME_CHARS = 512
MAX_EXTERNAL_ID_CHARS = 255  # runs.external_id is varchar(255)
MAX_PARAM_CHARS = 2000
MAX_NOTE_CHARS = 500
MAX_NOTES = 50
MAX_ERROR_CHARS = 2000
MAX_STEP = 2**53  # exact in float64 (charts, fits); metric_points.step (BIGINT) holds more
#: varchar columns of ``runs`` cut to their length (see db.schema)
RUN_COLUMN_CHARS = {"project": 255, "model": 255, "algorithm": 64, "status": 32, "planned_from": 255}
_REPLACEMENT = "\ufffd"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was when cut."""
    if len(text) <= limit:
        return text
    note = f"… ({len(text)} characters)"
    return text[: max(limit - len(note), 1)] + note


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a message, at most about ``limit`` characters (never the whole of a huge field)."""
    if isinstance(value, str | bytes) and len(value) > limit:
        head = repr(value[:limit])
        return f"{head[:-1]}…{head[-1]} ({len(value)} characters)"
    text = repr(value)
    return clip(text, limit + 20)


#: characters a terminal would act on rather than show: C0/C1 controls, DEL, bidirectional overrides
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def inert(text: str) -> str:
    """``text`` with every control character written as its escape (``ESC`` → ``\\x1b``), as ``shown`` (a
    ``repr``) writes it in messages: a run named ``ESC]0;…BEL`` cannot retitle or clear a terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


def inert_lines(text: str) -> str:
    """``inert`` line by line: the newlines of a table stay, every other control character is escaped."""
    return "\n".join(inert(line) for line in str(text).split("\n"))


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """A message as one line of at most ``limit`` characters (newlines become ' / ')."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return clip(" / ".join(lines), limit)


def check_name(text: str, what: str, where: str, limit: int) -> None:
    """A key or run name: at most ``limit`` characters, no NUL byte; ``RecordError`` naming it otherwise."""
    if len(text) > limit:
        raise RecordError(f"{where}: {what} {shown(text)} is longer than the {limit}-character limit")
    if "\0" in text:
        raise RecordError(f"{where}: {what} {shown(text)} contains a NUL byte")


def external_id(ext: str) -> str:
    """``ext`` itself, or for ids over the column's length a stable shortened form."""
    if len(ext) <= MAX_EXTERNAL_ID_CHARS:
        return ext
    return f"{ext[:200]}~{hashlib.sha1(ext.encode('utf-8', 'surrogatepass')).hexdigest()}"


def text_column(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = value.replace("\0", _REPLACEMENT)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def clean_json(obj: Any) -> Any:
    """Strings inside params/tags (keys and values): NUL replaced, at most ``MAX_PARAM_CHARS``."""
    if isinstance(obj, str):
        return clip(obj.replace("\0", _REPLACEMENT), MAX_PARAM_CHARS)
    if isinstance(obj, Mapping):
        return {clean_json(str(k)): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v) for v in obj]
    return obj


def notes(items: Iterable[str]) -> list[str]:
    """Notes of a run: each one line, cut to ``MAX_NOTE_CHARS``; duplicates dropped; the newest ``MAX_NOTES``."""
    out = list(dict.fromkeys(one_line(n, MAX_NOTE_CHARS).replace("\0", _REPLACEMENT) for n in items))
    return out[-MAX_NOTES:]


def check_run(data: Any) -> None:
    """A ``RunData``'s run name and metric keys within the limits (``RecordError`` naming the run)."""
    where = f"run {shown(data.run.name, 80)}"
    if data.origin:
        where = f"{data.origin}, {where}"
    check_name(data.run.name, "run name", where, MAX_NAME_CHARS)
    for s in data.series:
        check_name(s.key, "metric key", where, MAX_KEY_CHARS)
