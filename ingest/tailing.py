"""Tailing growing files: what was read of a file (``db.records.FileState``) and what to do with it now.

Per file the store keeps its size, modification time, inode, a SHA-256 of its first bytes (up to
``HEAD_BYTES``), the byte offset parsed up to (the end of the last complete line or record) and the
parser's state (CSV header and layout, verl step offset and run info, TensorBoard plugins per tag…). On the
next sync a file is

* **unchanged** — same size, modification time and inode: not opened at all (unless a last line without
  a line end was left after the offset and the file has now been quiet for ``SETTLE_SECONDS``: then that
  line is read again, and taken if complete);
* **appended to** — larger, same inode, same first bytes and the same 4 KiB just before the offset: only
  the bytes after the offset are parsed, starting from the saved parser state;
* **rewritten** — anything else (smaller, replaced by another file, same size but modified, different
  first bytes or different bytes before the offset): read afresh from the start.

A fresh read upserts like any ingest: points the new content has are written, points of the earlier
content that it lacks are kept — unless the file was rewritten from the start with other values at its first
steps (a run restarted into the same file with ``>``): that is a new launch, stored as a run of its own
(``ingest.files``), so the two launches never mix.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db.records import FileState
from ingest.textfile import SETTLE_SECONDS

HEAD_BYTES = 4096
_BEFORE = 4096  # bytes before the offset whose hash must match for a tail read


@dataclass(frozen=True)
class Plan:
    mode: str  # unchanged | tail | fresh
    why: str = ""
    offset: int = 0
    state: dict[str, Any] | None = None  # the parser's state at ``offset`` (tail reads)


def _sha(fh: Any, start: int, length: int) -> str:
    fh.seek(start)
    return hashlib.sha256(fh.read(length)).hexdigest()


def plan(path: Path, st: os.stat_result, old: FileState | None) -> Plan:
    """What to read of ``path`` given what was read before (``old``)."""
    if old is None:
        return Plan("fresh")
    same_inode = old.inode is None or old.inode == st.st_ino
    if st.st_size == old.size and st.st_mtime == old.mtime and same_inode:
        settled = time.time() - st.st_mtime >= SETTLE_SECONDS
        if old.offset < old.size and settled and old.parser_state.get("settled") is False:
            return Plan("tail", offset=old.offset, state=dict(old.parser_state).get("parser"))
        return Plan("unchanged")
    if not same_inode:
        return Plan("fresh", "replaced by another file")
    if st.st_size < old.size:
        return Plan("fresh", f"shorter than before ({st.st_size} < {old.size} bytes): truncated or rewritten")
    if st.st_size == old.size:
        return Plan("fresh", "modified without growing: rewritten")
    ps = dict(old.parser_state)
    head_len, before = int(ps.get("head_len", 0)), ps.get("before_sha")
    with path.open("rb") as fh:
        if _sha(fh, 0, head_len) != old.head_sha:
            return Plan("fresh", "its first bytes changed: rewritten")
        lo = max(old.offset - _BEFORE, 0)
        if before is not None and _sha(fh, lo, old.offset - lo) != before:
            return Plan("fresh", "the bytes before the last read position changed: rewritten")
    return Plan("tail", offset=old.offset, state=ps.get("parser"))


def new_state(path: Path, st: os.stat_result, offset: int, parser: dict[str, Any] | None, fmt: str,
              settled: bool = True, extra: dict[str, Any] | None = None) -> FileState:
    """The ``FileState`` after reading ``path`` (as ``st`` described it) up to ``offset``; ``settled``: the
    file had been quiet when read (else a last line left after the offset is looked at again later)."""
    head_len = min(st.st_size, HEAD_BYTES)
    lo = max(offset - _BEFORE, 0)
    with path.open("rb") as fh:
        head = _sha(fh, 0, head_len)
        before = _sha(fh, lo, offset - lo)
    return FileState(path=str(path), size=int(st.st_size), mtime=float(st.st_mtime), inode=int(st.st_ino),
                     head_sha=head, offset=int(offset),
                     parser_state={"format": fmt, "head_len": head_len, "before_sha": before,
                                   "settled": settled, "parser": parser or {}, **(extra or {})})
