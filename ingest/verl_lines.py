"""verl console log lines: Ray's framing and the three kinds of line ``ingest.verl_log`` reads.

Framing: ANSI colour codes, ``\\r`` progress redraws and the ``(main_task pid=…)`` prefix are removed, and a
line onto which Ray glued another process's output is split in two (``split_line``); lines over 1 MiB are
passed over with a note unless they are step lines (``physical_lines``). The lines: ``step:N - key:value - …``
(``parse_step_line``), ``Initial/Final validation metrics: {…}`` (``parse_validation``) and the pretty-printed
config dump (``ConfigCollector``, with ``lenient_config`` for a damaged one). No regular expression here
backtracks over a line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db.limits import MAX_KEY_CHARS, MAX_STEP, shown
from ingest.errors import IngestError
from ingest.steps import RULE
from ingest.textfile import LineReader, open_text

_ANSI = re.compile(r"\x1b\[[0-9;?]*+[ -/]*+[@-~]")
_PAREN = re.compile(r"\((?P<tag>[^()]*+)\)\s?")
_PID = re.compile(r"\bpid=\d")
_STEP = re.compile(r"^step:(?P<step>-?\d+) - (?P<rest>.*)$", re.DOTALL)
_REPEATED_END = re.compile(r"\[repeated \d+x across cluster\]")
_VALIDATION = re.compile(r"(?P<which>Initial|Final) validation metrics: (?P<dict>\{.*\})")
_MAX_CONFIG_LINES = 5000
_CONFIG_KEY = re.compile(r"'(?P<key>[^'\n]*+)': ")
_HEAD = 512  # format detection looks at this many characters of a line
_STEP_HEAD = re.compile(r"step:\d+ - [^\s:]++:")


@dataclass(frozen=True)
class LogLine:
    """One physical line: its number (1-based), Ray process tag (or ''), text without colours and prefix."""

    number: int
    tag: str
    text: str
    terminated: bool



def _strip_prefix(text: str) -> tuple[str, str]:
    """(Ray tag, text) of a line whose colours are removed: ``(main_task pid=5) step:…`` → tag, rest."""
    if text.startswith("("):
        m = _PAREN.match(text)
        if m and _PID.search(m["tag"]):
            return m["tag"], text[m.end():]
    return "", text


def is_step_head(line: str) -> bool:
    """True when a line (its first characters are enough) is a verl ``step:N - key:value`` line."""
    head = _ANSI.sub("", line[:_HEAD])
    _, text = _strip_prefix(head)
    return text.startswith("step:") and _STEP_HEAD.match(text) is not None


def looks_like_verl_log(head: str) -> bool:
    """True when ``head`` (text of a file) holds a verl ``step:N - key:value`` line."""
    return any(is_step_head(line) for line in head.splitlines())


def _clean(raw: str) -> str:
    text = _ANSI.sub("", raw.rstrip("\r\n"))
    if "\r" in text:  # progress bars redraw with \r: keep what was finally shown
        text = text.rsplit("\r", 1)[-1]
    return text


def split_line(number: int, raw: str, terminated: bool) -> Iterator[LogLine]:
    """One physical line as log lines: Ray sometimes glues another process's output onto a line that has no
    newline yet (``…'gemma2b',(pid=934604) libgomp: …``); the text after such an embedded prefix is a
    separate line of that process, with the same line number."""
    text = _clean(raw)
    tag, text = _strip_prefix(text)
    pos = 0
    while "pid=" in text:
        found = None
        for m in _PAREN.finditer(text, pos):
            if _PID.search(m["tag"]):
                found = m
                break
        if found is None:
            break
        yield LogLine(number, tag, text[:found.start()], terminated)
        tag, text, pos = found["tag"], text[found.end():], 0
    yield LogLine(number, tag, text, terminated)


def _long_line(where: str, skipped: list[str]):  # noqa: ANN202 - the LineReader callback
    def check(number: int, head: bytes) -> None:
        if is_step_head(head.decode("utf-8", "replace")):
            raise IngestError(f"{where}, line {number}: a step line longer than the 1 MiB line limit; lines over "
                              "1 MiB are rejected")
        skipped.append(f"line {number} is longer than 1 MiB (program output, not a step line): passed over")
    return check


def physical_lines(path: Path, start: int, first_line: int, end: int | None, skipped: list[str],
                    reader_out: list[LineReader]) -> Iterator[tuple[int, str, bool]]:
    with open_text(path, str(path), cr=False) as tf:
        reader = LineReader(tf.fh, str(path), start=start, first_line=first_line, end=end if tf.tailable else None,
                            long_line=_long_line(str(path), skipped))
        reader.tailable = tf.tailable  # type: ignore[attr-defined]
        reader_out.append(reader)
        for block in reader:
            text = block.data.decode("utf-8", errors="replace")
            for i, raw in enumerate(text.split("\n")[:-1]):
                yield block.first_line + i, raw, True
        if reader.tail.data:
            yield reader.tail.line, reader.tail.data.decode("utf-8", errors="replace"), False


def iter_lines(path: Path) -> Iterator[LogLine]:
    """The file's lines with ANSI codes, ``\\r`` and the Ray ``(name pid=…)`` prefix removed."""
    for number, raw, terminated in physical_lines(Path(path), 0, 1, None, [], []):
        yield from split_line(number, raw, terminated)


def _without_repeat_marker(text: str) -> str:
    """``… [repeated 3x across cluster]`` (Ray's de-duplication) removed from the end of a line."""
    t = text.rstrip()
    if not t.endswith("across cluster]"):
        return text
    i = t.rfind("[repeated ")
    return t[:i].rstrip() if i >= 0 and _REPEATED_END.fullmatch(t, i) else text


def parse_step_line(text: str, where: str) -> tuple[int, dict[str, float]] | None:
    """``step:N - k:v - …`` → (N, {k: v}); None when ``text`` is not a step line; error on bad fields."""
    if not text.startswith("step:"):
        return None
    m = _STEP.match(_without_repeat_marker(text))
    if not m:
        return None
    step = int(m["step"]) if len(m["step"]) < 30 else MAX_STEP + 1
    if step < 0:
        raise IngestError(f"{where}: negative step {step}; steps must be >= 0")
    if step > MAX_STEP:
        raise IngestError(f"{where}: step {shown(m['step'])} is too large; {RULE}")
    metrics: dict[str, float] = {}
    rest = m["rest"].rstrip()
    if rest.endswith(" -"):  # some verl versions end the line with the separator
        rest = rest[:-2]
    for part in rest.split(" - "):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.rpartition(":")
        key = key.strip()
        if not sep or not key:
            raise IngestError(f"{where}: field {shown(part)} is not key:value (expected 'step:N - key:value - …')")
        if len(key) > MAX_KEY_CHARS or "\0" in key:
            raise IngestError(f"{where}: key {shown(key)} is longer than the {MAX_KEY_CHARS}-character limit "
                              "or holds a NUL byte")
        try:
            metrics[key] = float(value)
        except ValueError:
            raise IngestError(f"{where}: key {shown(key)} has value {shown(value)}, not a number") from None
    return step, metrics


def parse_validation(text: str, where: str) -> tuple[str, dict[str, float]] | None:
    if "validation metrics: {" not in text:
        return None
    m = _VALIDATION.search(text)
    if not m:
        return None
    try:
        raw = ast.literal_eval(m["dict"])
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise IngestError(f"{where}: {m['which']} validation metrics are not a dict literal "
                          f"({shown(str(exc), 80)})") from None
    if not isinstance(raw, dict):
        raise IngestError(f"{where}: {m['which']} validation metrics are not a dict")
    out: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise IngestError(f"{where}: validation key {shown(key)} has value {shown(value)}, not a number")
        out[val_key(str(key))] = float(value)
    return m["which"], out


def val_key(key: str) -> str:
    """The step-line name of a validation key: ``val/`` prepended unless it already names validation."""
    return key if key.startswith(("val/", "val-")) else f"val/{key}"


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → one level with dotted keys (``actor_rollout_ref.model.path``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


class ConfigCollector:
    """Gathers the pretty-printed config dict: lines of one Ray process from a line starting with ``{'``."""

    def __init__(self) -> None:
        self.tag: str | None = None
        self.start = 0
        self.buf: list[str] = []
        self.depth = 0  # open braces so far (approximate: braces inside strings count too)
        self.done = False
        self.result: dict[str, Any] | None = None
        self.recovered = False

    def feed(self, line: LogLine) -> bool:
        """Take the line if it belongs to the dump; True when consumed."""
        if self.done:
            return False
        if self.tag is None:
            if line.text.startswith("{'"):
                self.tag, self.start, self.buf = line.tag, line.number, []
                self._add(line.text)
                return True
            return False
        if line.tag != self.tag or "validation metrics: {" in line.text:
            return False
        if line.text and not line.text[0].isspace():  # pprint indents every continuation line
            self.done = True
            return False
        self._add(line.text)
        if not self.done and len(self.buf) > _MAX_CONFIG_LINES:
            self.done = True
        return True

    def _add(self, text: str) -> None:
        self.buf.append(text)
        self.depth += text.count("{") - text.count("}")
        if self.depth <= 0:  # the braces closed: try the whole dump (linear: once per closing)
            self._try()

    def finish(self) -> dict[str, Any] | None:
        """The flattened config: the dict literal, or what a line-by-line read recovers from a damaged one."""
        if self.result is not None:
            return flatten(self.result)
        if not self.buf:
            return None
        flat = lenient_config(self.buf)
        self.recovered = bool(flat)
        return flat or None

    def _try(self) -> None:
        if not self.buf[-1].rstrip().endswith("}"):
            return
        try:
            value = ast.literal_eval("\n".join(self.buf))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return
        self.done = True
        if isinstance(value, dict):
            self.result = value


def _literal_prefix(text: str) -> tuple[bool, Any]:
    """literal_eval of ``text`` minus trailing ``,``/``}`` (closing the enclosing dicts), longest first."""
    text = text.rstrip()
    for _ in range(64):  # a config line closes a few dicts at most: bounded work on a damaged line
        if not text:
            break
        if not text.endswith(","):
            try:
                return True, ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass
        if text[-1] not in ",}":
            return False, None
        text = text[:-1].rstrip()
    return False, None


def lenient_config(lines: list[str]) -> dict[str, Any]:
    """Flattened config from pprint lines, even when some lines are missing or damaged.

    pprint puts every key of a dict at the same column, so the column of a key tells its parent. Keys
    whose value cannot be read on their own line (wrapped lists, damaged text) are left out.
    """
    flat: dict[str, Any] = {}
    stack: list[tuple[int, str]] = []  # (column of the keys of a dict, that dict's dotted path)
    for text in lines:
        pos = len(text) - len(text.lstrip())
        if text.startswith("{'", pos):
            stack, pos = [(pos + 1, "")], pos + 1
        while (m := _CONFIG_KEY.match(text, pos)) is not None:
            while stack and stack[-1][0] > pos:
                stack.pop()
            if not stack or stack[-1][0] != pos:
                break  # a key at a column no open dict has: damaged line
            path = f"{stack[-1][1]}.{m['key']}" if stack[-1][1] else m["key"]
            ok, value = _literal_prefix(text[m.end():])
            if ok:
                flat.update(flatten({path: value}))
            elif text.startswith("{'", m.end()):  # a dict that goes on over the next lines
                stack.append((m.end() + 1, path))
                pos = m.end() + 1
                continue
            break
    return flat
