"""verl console logs → one ``RunData``.

verl's console logger prints one line per training step, ``step:N - key:value - key:value …`` (values
rounded to 3 decimals), inside Ray's output: ANSI colour codes, a ``(main_task pid=…)`` prefix, other
workers' lines and whole sample dumps interleaved. The trainer also pretty-prints its config (a Python dict
literal spread over many prefixed lines, possibly interleaved with other workers' lines) and, as quoted
strings, ``Initial validation metrics: {…}`` before training and ``Final validation metrics: {…}`` after it,
with full precision and keys without the ``val/`` prefix of the step lines (``test_score/openai/gsm8k`` ↔
``val/test_score/openai/gsm8k``).

Step convention (stored steps follow current verl):

* Current verl counts training steps from 1; the validation before any update is logged at step 0, and a
  validation at step s scores the policy after s updates.
* Old verl (late 2024, the logs in ``../shared/data/verl-console``) counts from 0 and validates right after
  update s, logging the score on the line of step s: that score belongs to the policy after s + 1 updates.

So when the first training line is ``step:0`` every step is shifted by +1 (``params["step_offset"] = 1``):
training step s → s + 1, the in-loop validation of line s → s + 1 (the policy after s + 1 updates). The
initial validation goes to step 0 (the policy after 0 updates) and the final validation to the last
(shifted) training step, i.e. old last step + 1: it scores the policy after the last update. When the first
training line is ``step:1`` or later the log already follows the current convention (offset 0). A log resumed
from a checkpoint in the old convention cannot be told from a new one: pass ``step_offset`` explicitly.
Where an in-loop validation and the initial/final one share a step, the full-precision value wins.

A step line before the first training line that holds only validation keys (old verl echoes the initial
validation as ``step:0 - test_score/…:0.521``) is that initial validation again, rounded; it is stored at
step 0 under the ``val/`` name unless the full-precision ``Initial validation metrics`` line gave it.

An unterminated last line with fewer keys than the training line before it was cut by a killed writer; it is
dropped with a note. A ``step:`` line whose fields are not ``key:number`` is an error naming the line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.records import RunData, RunInfo, Series
from ingest.errors import IngestError

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_PREFIX = re.compile(r"^\((?P<tag>[^()]*\bpid=\d+[^()]*)\)\s?")
_EMBEDDED = re.compile(r"\((?P<tag>[^()]*?\bpid=\d+[^()]*)\)\s?")
_STEP = re.compile(r"^step:(?P<step>-?\d+) - (?P<rest>.*)$")
_REPEATED = re.compile(r"\s*\[repeated \d+x across cluster\]\s*$")
_VALIDATION = re.compile(r"(?P<which>Initial|Final) validation metrics: (?P<dict>\{.*\})")
_CHECKPOINT = re.compile(r"^(global_step_\d+|checkpoint-\d+|step_\d+|actor|huggingface|hf_model)$")
_MAX_CONFIG_LINES = 5000
_CONFIG_KEY = re.compile(r"'(?P<key>[^'\n]*)': ")
_ALGORITHMS = {"gae": "ppo", "grpo": "grpo", "rloo": "rloo", "remax": "remax",
               "reinforce_plus_plus": "reinforce++"}

# head-of-file check used by format detection: a step line after an optional Ray prefix
STEP_LINE = re.compile(r"^(?:\x1b\[[0-9;]*m)*(?:\([^()]*pid=\d+[^()]*\)(?:\x1b\[[0-9;]*m)*\s?)?step:\d+ - \S+:",
                       re.MULTILINE)


@dataclass(frozen=True)
class LogLine:
    """One physical line: its number (1-based), Ray process tag (or ''), text without colours and prefix."""

    number: int
    tag: str
    text: str
    terminated: bool


@dataclass(frozen=True)
class StepLine:
    number: int
    step: int
    metrics: dict[str, float]
    terminated: bool


@dataclass
class _Parsed:
    steps: list[StepLine] = field(default_factory=list)
    initial: dict[str, float] | None = None
    final: dict[str, float] | None = None
    config: dict[str, Any] | None = None  # flattened
    notes: list[str] = field(default_factory=list)


def looks_like_verl_log(head: str) -> bool:
    """True when ``head`` (the start of a text file) holds a verl ``step:N - key:value`` line."""
    return STEP_LINE.search(head) is not None


def iter_lines(path: Path) -> Iterator[LogLine]:
    """The file's lines with ANSI codes, ``\\r`` and the Ray ``(name pid=…)`` prefix removed.

    Ray sometimes glues another process's output onto a line that has no newline yet
    (``…'gemma2b',(pid=934604) libgomp: …``): the text after such an embedded prefix is yielded as a
    separate line of that process, with the same line number.
    """
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        for number, raw in enumerate(fh, start=1):
            terminated = raw.endswith("\n")
            text = _ANSI.sub("", raw.rstrip("\r\n"))
            if "\r" in text:  # progress bars redraw with \r: keep what was finally shown
                text = text.rsplit("\r", 1)[-1]
            tag = ""
            m = _PREFIX.match(text)
            if m:
                tag, text = m["tag"], text[m.end():]
            while (e := _EMBEDDED.search(text)) is not None:
                yield LogLine(number, tag, text[:e.start()], terminated)
                tag, text = e["tag"], text[e.end():]
            yield LogLine(number, tag, text, terminated)


def parse_step_line(text: str, where: str) -> tuple[int, dict[str, float]] | None:
    """``step:N - k:v - …`` → (N, {k: v}); None when ``text`` is not a step line; error on bad fields."""
    m = _STEP.match(_REPEATED.sub("", text))
    if not m:
        return None
    step = int(m["step"])
    if step < 0:
        raise IngestError(f"{where}: negative step {step}; steps must be >= 0")
    metrics: dict[str, float] = {}
    rest = m["rest"].rstrip()
    if rest.endswith(" -"):  # some verl versions end the line with the separator
        rest = rest[:-2]
    for part in rest.split(" - "):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.rpartition(":")
        if not sep or not key.strip():
            raise IngestError(f"{where}: field {part!r} is not key:value (expected 'step:N - key:value - …')")
        try:
            metrics[key.strip()] = float(value)
        except ValueError:
            raise IngestError(f"{where}: key {key.strip()!r} has value {value!r}, not a number") from None
    return step, metrics


def _parse_validation(text: str, where: str) -> tuple[str, dict[str, float]] | None:
    m = _VALIDATION.search(text)
    if not m:
        return None
    try:
        raw = ast.literal_eval(m["dict"])
    except (ValueError, SyntaxError) as exc:
        raise IngestError(f"{where}: {m['which']} validation metrics are not a dict literal ({exc})") from None
    if not isinstance(raw, dict):
        raise IngestError(f"{where}: {m['which']} validation metrics are not a dict")
    out: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise IngestError(f"{where}: validation key {key!r} has value {value!r}, not a number")
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


class _ConfigCollector:
    """Gathers the pretty-printed config dict: lines of one Ray process from a line starting with ``{'``."""

    def __init__(self) -> None:
        self.tag: str | None = None
        self.start = 0
        self.buf: list[str] = []
        self.done = False
        self.result: dict[str, Any] | None = None
        self.recovered = False

    def feed(self, line: LogLine) -> bool:
        """Take the line if it belongs to the dump; True when consumed."""
        if self.done:
            return False
        if self.tag is None:
            if line.text.startswith("{'"):
                self.tag, self.start, self.buf = line.tag, line.number, [line.text]
                self._try()
                return True
            return False
        if line.tag != self.tag or _VALIDATION.search(line.text):
            return False
        if line.text and not line.text[0].isspace():  # pprint indents every continuation line
            self.done = True
            return False
        self.buf.append(line.text)
        self._try()
        if not self.done and len(self.buf) > _MAX_CONFIG_LINES:
            self.done = True
        return True

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
    while text:
        if not text.endswith(","):
            try:
                return True, ast.literal_eval(text)
            except (ValueError, SyntaxError):
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


def _read(path: Path) -> _Parsed:
    parsed = _Parsed()
    config = _ConfigCollector()
    for line in iter_lines(path):
        where = f"{path}, line {line.number}"
        step = parse_step_line(line.text, where)
        if step is not None:
            config.done = True  # the dump comes before training
            parsed.steps.append(StepLine(line.number, step[0], step[1], line.terminated))
            continue
        if config.feed(line):
            continue
        val = _parse_validation(line.text, where)
        if val is not None:
            if val[0] == "Initial":
                parsed.initial = val[1]
            else:
                parsed.final = val[1]
    parsed.config = config.finish()
    if config.recovered:
        parsed.notes.append(f"config dump at line {config.start} is damaged: {len(parsed.config or {})} "
                            "params recovered line by line")
    elif config.tag is not None and parsed.config is None:
        parsed.notes.append(f"config dump at line {config.start} could not be parsed; params left without it")
    return parsed


def _is_validation_only(metrics: Mapping[str, float], initial: Mapping[str, float] | None) -> bool:
    return bool(metrics) and all(
        k.startswith(("val/", "val-")) or (initial is not None and val_key(k) in initial) for k in metrics
    )


def _drop_torn_tail(steps: list[StepLine], notes: list[str]) -> list[StepLine]:
    if len(steps) < 2 or steps[-1].terminated:
        return steps
    last, prev = steps[-1], steps[-2]
    if len(last.metrics) < len(set(prev.metrics) - {k for k in prev.metrics if k.startswith("val")}):
        notes.append(f"line {last.number} (step:{last.step}) is cut off (the log ends mid-line): dropped")
        return steps[:-1]
    return steps


@dataclass
class _Points:
    by_key: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)

    def add(self, key: str, step: int, value: float) -> None:
        steps, values = self.by_key.setdefault(key, ([], []))
        steps.append(step)
        values.append(value)

    def series(self, where: str) -> tuple[Series, ...]:
        return tuple(Series.build(k, s, v, where=where) for k, (s, v) in self.by_key.items())


def _assemble(parsed: _Parsed, step_offset: int | None, notes: list[str]) -> tuple[_Points, int]:
    steps = _drop_torn_tail(parsed.steps, notes)
    echo = [s for s in steps if _is_validation_only(s.metrics, parsed.initial)]
    first_train = next((s for s in steps if not _is_validation_only(s.metrics, parsed.initial)), None)
    training = steps if first_train is None else [s for s in steps if s.number >= first_train.number]
    echo = [s for s in echo if first_train is None or s.number < first_train.number]
    if step_offset is None:
        step_offset = 1 if first_train is not None and first_train.step == 0 else 0
    pts = _Points()
    for s in echo:  # the initial validation as the logger rounded it
        for k, v in s.metrics.items():
            if parsed.initial is None or val_key(k) not in parsed.initial:
                pts.add(val_key(k), 0, v)
    if echo and parsed.initial:
        notes.append(f"line {echo[0].number}: step:{echo[0].step} repeats the initial validation, rounded; "
                     "kept the full-precision values of the 'Initial validation metrics' line")
    seen: set[int] = set()
    for s in training:
        if s.step in seen:
            notes.append(f"line {s.number}: step:{s.step} logged again (restarted run?); the later line wins")
        seen.add(s.step)
        for k, v in s.metrics.items():
            pts.add(k, s.step + step_offset, v)
    if parsed.initial:
        for k, v in parsed.initial.items():
            pts.add(k, 0, v)
    last = max((s.step for s in training), default=None)
    if parsed.final:
        at = (last + step_offset) if last is not None else 0
        for k, v in parsed.final.items():
            pts.add(k, at, v)
    elif training:
        notes.append("no 'Final validation metrics' line: the run stopped early or the log is cut")
    return pts, step_offset


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _model_name(path: Any) -> str | None:
    if not isinstance(path, str) or not path.strip():
        return None
    parts = [p for p in path.rstrip("/").split("/") if p]
    if not parts:
        return None
    if _CHECKPOINT.match(parts[-1]) and len(parts) > 1:
        return "/".join(parts[-2:])
    return parts[-1]


def parse_verl_log(path: str | Path, *, step_offset: int | None = None) -> RunData:
    """Read one verl console log. ``step_offset`` overrides the detected step shift (see module doc)."""
    path = Path(path)
    where = str(path)
    try:
        parsed = _read(path)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not parsed.steps:
        raise IngestError(f"{path}: no verl 'step:N - key:value' lines found")
    notes = list(parsed.notes)
    points, offset = _assemble(parsed, step_offset, notes)
    params: dict[str, Any] = dict(parsed.config or {})
    params["step_offset"] = offset
    params["log_format"] = "verl_console"
    algo = params.get("algorithm.adv_estimator")
    info = RunInfo(
        external_id=str(path.resolve()),
        name=path.stem,
        project=_str_or_none(params.get("trainer.project_name")),
        status="finished" if parsed.final is not None else None,
        params=params,
        model=_model_name(params.get("actor_rollout_ref.model.path")),
        algorithm=_ALGORITHMS.get(algo, algo) if isinstance(algo, str) else None,
    )
    return RunData(run=info, series=points.series(where), notes=tuple(f"{path.name}: {n}" for n in notes))
