"""The W&B record log: the framing of a ``run-<id>.wandb`` file, read without W&B.

wandb 0.31 no longer ships a reader for its offline files, so this module reads the format itself:

* a 7-byte file header: ident ``:W&B``, magic ``0xBEE1`` (uint16 LE), version ``0`` (uint8);
* then the LevelDB log format: 32 KiB blocks (the file header sits at the start of block 0); each block
  holds records ``crc32 (uint32 LE) | length (uint16 LE) | type (uint8) | data``; a block tail shorter than
  a record header (7 bytes) is zero padding; type is FULL=1, FIRST=2, MIDDLE=3, LAST=4 (a payload larger
  than what is left of a block is split into FIRST, MIDDLE…, LAST fragments);
* the checksum is zlib's crc32 of ``data`` seeded with the crc32 of the single type byte;
* each reassembled payload is one ``wandb.proto.wandb_internal_pb2.Record`` (decoded by
  ``ingest.wandb_offline``).

A torn or corrupt record (a short block tail, a fragment without its LAST, a bad checksum) ends the
iteration and ``RecordLog.stop`` says where and why; a file that does not start with the W&B header is an
``IngestError`` naming the file.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.errors import IngestError

FILE_HEADER = struct.Struct("<4sHB")
FILE_IDENT = b":W&B"
FILE_MAGIC = 0xBEE1
FILE_VERSION = 0
RECORD_HEADER = struct.Struct("<IHB")
HEADER_LEN = 7
BLOCK_LEN = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_SEEDS = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}


@dataclass(frozen=True)
class StopPoint:
    """Where and why reading a record log stopped before its end."""

    offset: int  # byte offset of the first record that could not be read
    reason: str
    complete: int  # records read completely before it
    file_size: int
    torn: bool  # cut off by the end of the file (a run being written), not damaged in the middle

    def note(self, path: Path) -> str:
        what = "torn record" if self.torn else "corrupt record"
        tail = " (the run is probably still being written)" if self.torn else ""
        return (
            f"{what} at byte {self.offset} of {path}: {self.reason}; read {self.complete} complete records "
            f"before it, {self.file_size - self.offset} bytes after it were not read{tail}"
        )


class RecordLog:
    """Iterates the payloads of a ``.wandb`` file; ``stop`` says where a torn or corrupt tail began."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stop: StopPoint | None = None
        self.complete = 0

    def payloads(self) -> Iterator[tuple[int, bytes]]:
        """Yield ``(byte offset, payload)`` of every complete record, in file order."""
        try:
            with self.path.open("rb") as f:
                size = self.path.stat().st_size
                if not self._header_ok(f.read(HEADER_LEN), size):
                    return
                f.seek(0)
                yield from self._scan(f, size)
        except OSError as exc:
            raise IngestError(f"cannot read W&B file {self.path}: {exc.strerror or exc}") from exc

    def _header_ok(self, head: bytes, size: int) -> bool:
        expected = FILE_HEADER.pack(FILE_IDENT, FILE_MAGIC, FILE_VERSION)
        if len(head) < HEADER_LEN and expected.startswith(head):
            self.stop = StopPoint(0, f"file header is {len(head)} of {HEADER_LEN} bytes", 0, size, True)
            return False
        ident, magic, version = FILE_HEADER.unpack(head[:HEADER_LEN].ljust(HEADER_LEN, b"\0"))
        if ident != FILE_IDENT or magic != FILE_MAGIC:
            raise IngestError(
                f"{self.path} is not a W&B run file: it does not start with the ':W&B' header "
                f"(found {head[:HEADER_LEN]!r})"
            )
        if version != FILE_VERSION:
            raise IngestError(f"{self.path}: unsupported W&B file format version {version} (expected 0)")
        return True

    def _scan(self, f: Any, size: int) -> Iterator[tuple[int, bytes]]:
        block_off = 0
        parts: list[bytes] = []
        first_off = -1
        while True:
            block = f.read(BLOCK_LEN)
            n = len(block)
            pos = HEADER_LEN if block_off == 0 else 0
            while pos < n:
                at = block_off + pos
                if n - pos < HEADER_LEN:
                    if n == BLOCK_LEN and not block[pos:].strip(b"\0"):
                        break  # zero padding at the end of a full block
                    self._stop(first_off if parts else at, "incomplete record header", size, True)
                    return
                crc, length, rtype = RECORD_HEADER.unpack_from(block, pos)
                end = pos + HEADER_LEN + length
                problem = self._check(block, pos, end, crc, rtype, bool(parts))
                if problem:
                    # damage in the file's last block is a write in progress too
                    torn = problem.endswith("the file") or size - at <= BLOCK_LEN
                    self._stop(first_off if parts else at, problem, size, torn)
                    return
                data = block[pos + HEADER_LEN : end]
                pos = end
                if rtype == FULL:
                    self.complete += 1
                    yield at, data
                elif rtype == FIRST:
                    parts, first_off = [data], at
                elif rtype == MIDDLE:
                    parts.append(data)
                else:
                    parts.append(data)
                    self.complete += 1
                    yield first_off, b"".join(parts)
                    parts = []
            block_off += n
            if n < BLOCK_LEN:
                break
        if parts:
            self._stop(first_off, "record split over blocks ends before its LAST fragment", size, True)

    @staticmethod
    def _check(block: bytes, pos: int, end: int, crc: int, rtype: int, in_record: bool) -> str | None:
        if rtype not in _TYPE_SEEDS:
            return f"unknown fragment type {rtype}"
        if end > len(block):
            past = "its block" if len(block) == BLOCK_LEN else "the file"
            return f"record of {end - pos - HEADER_LEN} bytes runs past the end of {past}"
        if zlib.crc32(memoryview(block)[pos + HEADER_LEN : end], _TYPE_SEEDS[rtype]) != crc:
            return "checksum mismatch"
        if in_record and rtype in (FULL, FIRST):
            return "fragment sequence broken (FIRST without LAST)"
        if not in_record and rtype in (MIDDLE, LAST):
            return "fragment sequence broken (MIDDLE/LAST without FIRST)"
        return None

    def _stop(self, offset: int, reason: str, size: int, torn: bool) -> None:
        self.stop = StopPoint(offset, reason, self.complete, size, torn)
