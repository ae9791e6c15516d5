"""Reading text files by whole lines, in blocks, from a byte offset: the one line reader of CSV, JSONL and
verl console logs.

* Lines are cut at ``\\n`` only; a block holds whole lines, so parsers never see half a line. ``open_text``
  reads two other shapes of text the same way: CR-only line ends (read as ``\\n``, same offsets) and UTF-16
  with a byte-order mark (transcoded to UTF-8 in memory; such a file is read whole at every sync).
* A line longer than ``MAX_LINE_BYTES`` (1 MiB) is rejected as soon as its first MiB has been read, never
  read whole: an ``IngestError`` naming the file and line, or (verl console logs, whose other lines are
  program output) a callback that may pass it over.
* The last line without a line end (a file still being written, or cut off) is not in any block: it is
  ``LineReader.tail``, and each format decides whether it is complete (and then takes it without moving
  the offset past it, so the next sync reads it again) or torn (left for the next sync). A line that only
  *looks* complete (all CSV fields, all verl keys: a number may still be cut short) is taken only when the
  file has not changed for ``SETTLE_SECONDS`` — a writer that is still writing has then moved on.
* Reading stops at ``end`` (the size the file had when it was looked at): what is appended meanwhile is
  left for the next sync.

Everything here is linear in the size of the file.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from db.limits import shown
from ingest.errors import IngestError

MAX_LINE_BYTES = 1 << 20
BLOCK_BYTES = 8 << 20
SETTLE_SECONDS = 5.0
_NL = 10


@dataclass(frozen=True)
class Block:
    data: bytes  # whole lines, each ending in b"\n"
    offset: int  # byte offset of data[0] in the file
    first_line: int  # number (1-based) of the first line


@dataclass(frozen=True)
class Tail:
    """The last line when it has no line end yet (``data`` empty when the file ends with one)."""

    data: bytes
    offset: int
    line: int


#: called with (line number, first bytes of the line) for a line over the limit; raises, or returns to skip it
LongLine = Callable[[int, bytes], None]


class LineReader:
    """``for block in LineReader(fh, …)``; afterwards ``tail`` and ``end_offset`` (after the last whole line)."""

    def __init__(self, fh: BinaryIO, where: str, *, start: int = 0, first_line: int = 1, end: int | None = None,
                 long_line: LongLine | None = None, block_bytes: int = BLOCK_BYTES,
                 max_line: int = MAX_LINE_BYTES) -> None:
        self.fh, self.where = fh, where
        self.start, self.first_line, self.end = start, first_line, end
        self.long_line = long_line or self._reject
        self.block_bytes, self.max_line = block_bytes, max_line
        self.tail = Tail(b"", start, first_line)
        self.end_offset = start
        self.skipped: list[int] = []  # lines passed over by ``long_line``

    def _reject(self, line: int, head: bytes) -> None:
        raise IngestError(f"{self.where}, line {line}: longer than the {self.max_line >> 20} MiB line limit "
                          f"(starts {shown(head.decode('utf-8', 'replace'), 40)}); lines over "
                          f"{self.max_line >> 20} MiB are rejected")

    def __iter__(self) -> Iterator[Block]:
        fh = self.fh
        fh.seek(self.start)
        pos, line = self.start, self.first_line  # file offset and number of the first byte of ``pending``
        pending = b""
        skipping = False  # inside an over-long line being passed over
        left = None if self.end is None else max(self.end - self.start, 0)
        while True:
            want = self.block_bytes if left is None else min(self.block_bytes, left)
            raw = fh.read(want) if want else b""
            if left is not None:
                left -= len(raw)
            if not raw:
                break
            if skipping:
                nl = raw.find(b"\n")
                if nl < 0:
                    pos += len(raw)
                    continue
                skipping = False
                pos += nl + 1
                line += 1
                raw = raw[nl + 1:]
            buf = pending + raw if pending else raw
            last = buf.rfind(b"\n")
            if last < 0:
                pending = buf
            else:
                whole, pending = buf[: last + 1], buf[last + 1:]
                whole = self._check_lengths(whole, line)
                yield Block(whole, pos, line)
                pos += last + 1
                line += whole.count(b"\n")
            if len(pending) > self.max_line:
                self.long_line(line, pending[:512])
                self.skipped.append(line)
                pos += len(pending)
                pending = b""
                skipping = True
        if skipping:  # the file ends inside the over-long line: the next sync starts after it
            self.end_offset = pos
            self.tail = Tail(b"", pos, line)
            return
        self.end_offset = pos
        self.tail = Tail(pending, pos, line)

    def _check_lengths(self, whole: bytes, first_line: int) -> bytes:
        """Lines within the limit pass; a longer one raises, or is blanked when ``long_line`` passes it over."""
        if len(whole) <= self.max_line:
            return whole
        ends = np.flatnonzero(np.frombuffer(whole, dtype=np.uint8) == _NL)
        lengths = np.diff(ends, prepend=-1)  # including the "\n"
        too_long = np.flatnonzero(lengths > self.max_line + 1)
        if not len(too_long):
            return whole
        parts, prev = [], 0
        for i in too_long.tolist():
            begin = int(ends[i - 1]) + 1 if i else 0
            self.long_line(first_line + i, whole[begin: begin + 512])
            self.skipped.append(first_line + i)
            parts += [whole[prev:begin], b"\n"]  # the line's number is kept: an empty line in its place
            prev = int(ends[i]) + 1
        parts.append(whole[prev:])
        return b"".join(parts)


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFF = 1 << 16


class _CRAsLF:
    """A binary file whose lines end in CR alone (old Mac files), read as if they ended in LF: the same bytes
    at the same offsets, so tailing and line numbers work as for any file."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def read(self, n: int = -1) -> bytes:
        return self.fh.read(n).replace(b"\r", b"\n")

    def readline(self, limit: int = -1) -> bytes:
        start = self.fh.tell()
        data = self.read(limit if limit > 0 else MAX_LINE_BYTES + 1)
        nl = data.find(b"\n")
        line = data if nl < 0 else data[: nl + 1]
        self.fh.seek(start + len(line))
        return line

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.fh.seek(pos, whence)

    def tell(self) -> int:
        return self.fh.tell()


@dataclass
class TextFile:
    """An open text file as its reader should see it: ``fh`` gives UTF-8 bytes with LF line ends. ``kind``:
    ``utf-8`` (as is), ``cr`` (CR-only line ends read as LF, offsets unchanged), ``utf-16`` (a UTF-16 file with
    a BOM, transcoded to UTF-8 in memory: offsets are not the file's, so it is read whole every time)."""

    fh: Any
    kind: str
    raw: BinaryIO

    def __enter__(self) -> TextFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()

    @property
    def tailable(self) -> bool:
        return self.kind != "utf-16"


def open_text(path: Any, where: str, *, cr: bool = True) -> TextFile:
    """Open ``path`` for line reading: UTF-8 (the rule), UTF-16 with a BOM, CR-only line ends (unless ``cr`` is
    False: verl console logs redraw progress bars with CR inside their lines)."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by TextFile
    head = raw.read(_SNIFF)
    raw.seek(0)
    if head.startswith(UTF16_BOMS):
        try:
            data = raw.read().decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as exc:
            raw.close()
            raise IngestError(f"{where}: starts with a UTF-16 byte-order mark but is not UTF-16 ({exc.reason} at "
                              f"byte {exc.start})") from None
        return TextFile(io.BytesIO(data.replace(b"\r\n", b"\n")), "utf-16", raw)
    if cr and b"\r" in head and b"\n" not in head:
        return TextFile(_CRAsLF(raw), "cr", raw)
    return TextFile(raw, "utf-8", raw)


def decode_utf8(data: bytes, first_line: int, where: str) -> str:
    """``data`` as UTF-8; bytes that are not UTF-8 are an ``IngestError`` naming their line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        bad = data[exc.start: max(exc.end, exc.start + 1)]
        raise IngestError(f"{where}, line {line}: bytes {bad!r} are not UTF-8 (latin-1 or another encoding?); "
                          "save the file as UTF-8") from None
