"""verl console logs → one ``RunData``.

verl's console logger prints one line per training step, ``step:N - key:value - key:value …`` (values
rounded to 3 decimals), inside Ray's output: ANSI colour codes, a ``(main_task pid=…)`` prefix, other
workers' lines and whole sample dumps interleaved. The trainer also pretty-prints its config (a Python dict
literal spread over many prefixed lines, possibly interleaved with other workers' lines) and, as quoted
strings, ``Initial validation metrics: {…}`` before training and ``Final validation metrics: {…}`` after it,
with full precision and keys without the ``val/`` prefix of the step lines (``test_score/openai/gsm8k`` ↔
``val/test_score/openai/gsm8k``). Each line is framed and parsed by ``ingest.verl_lines``; this module
puts the lines of one log together into its run (step convention, one run per log, tailing).

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

One log, one run: step lines of two Ray processes interleaved, a new process that starts again from the
first step the previous one logged, or a second config dump naming another ``experiment_name`` are refused,
naming the lines (give each run its own log). A new process that goes on from a later step is the same run
resumed from a checkpoint, noted on the run; steps it logs again keep the later line (and are counted).

An unterminated last line with fewer keys than the training line before it was cut by a killed writer (or
one still writing): it is left for the next sync with a notice, as is an unterminated validation line that
does not parse. A ``step:`` line whose fields are not ``key:number`` is an error naming the line. A line over
1 MiB (``ingest.textfile``) is passed over with a note, unless it is a step line (then it is an error).

Tailing: once training has started, a read returns the byte offset after its last whole line and the state
needed to go on from there (step offset, initial validation, params and run info, the last step and its
number of keys); ``read_verl_log(path, resume=…)`` then parses only the appended lines. Before the first
training line the log is read from its start every time (the config dump and the initial validation come
first). Everything is linear in the size of the log: the regular expressions never backtrack over a line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.limits import shown
from db.records import RunData, RunInfo, Series
from ingest.errors import IngestError
from ingest.textfile import SETTLE_SECONDS, LineReader
from ingest.verl_lines import (
    ConfigCollector,
    LogLine,
    is_step_head,
    iter_lines,
    lenient_config,
    looks_like_verl_log,
    parse_step_line,
    parse_validation,
    physical_lines,
    split_line,
    val_key,
)

#: the reader, and the line-level helpers of ``ingest.verl_lines`` that ``ingest.files`` and the tests import from here
__all__ = ["VerlRead", "is_step_head", "iter_lines", "lenient_config", "looks_like_verl_log", "parse_verl_log",
           "read_verl_log"]

_CHECKPOINT = re.compile(r"^(global_step_\d+|checkpoint-\d+|step_\d+|actor|huggingface|hf_model)$")
_ALGORITHMS = {"gae": "ppo", "grpo": "grpo", "rloo": "rloo", "remax": "remax",
               "reinforce_plus_plus": "reinforce++"}
_EXPERIMENT = "'experiment_name': '"  # how the config dump names the run (trainer.experiment_name)


@dataclass(frozen=True)
class StepLine:
    number: int
    step: int
    metrics: dict[str, float]
    terminated: bool
    tag: str = ""  # the Ray process that printed it ("main_task pid=7"), "" without a prefix


@dataclass
class _Parsed:
    steps: list[StepLine] = field(default_factory=list)
    initial: dict[str, float] | None = None
    final: dict[str, float] | None = None
    final_line: int | None = None
    config: dict[str, Any] | None = None  # flattened
    #: (line, name) of every ``'experiment_name': '…'`` line of a config dump, in order
    experiments: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


#: what ``_parse_or_leave`` returns for a torn last line it left for the next sync
_LEFT = object()


def _parse_or_leave(parse: Callable[[str, str], Any], line: LogLine, where: str, notices: list[str],
                    what: str) -> Any:
    """``parse(line.text, where)``; a last line without its line end that does not parse is left for the next
    sync (a notice says so) instead of failing the file."""
    try:
        return parse(line.text, where)
    except IngestError:
        if line.terminated:
            raise
        notices.append(f"{where}: the last line has no line end and {what}: left for the next sync")
        return _LEFT


def _read(lines: Iterator[LogLine], *, training: bool, path: Path) -> _Parsed:
    """Step lines, validation dicts and the config dump of ``lines``; ``training``: already past the dump."""
    parsed = _Parsed()
    config = ConfigCollector()
    config.done = training
    for line in lines:
        where = f"{path}, line {line.number}"
        step = _parse_or_leave(parse_step_line, line, where, parsed.notices, "does not parse")
        if step is _LEFT:
            continue
        if step is not None:
            config.done = True  # the dump comes before training
            parsed.steps.append(StepLine(line.number, step[0], step[1], line.terminated, line.tag))
            continue
        if (at := line.text.find(_EXPERIMENT)) >= 0:
            name = line.text[at + len(_EXPERIMENT):]
            parsed.experiments.append((line.number, name[:name.find("'")] if "'" in name else name))
        if config.feed(line):
            continue
        val = _parse_or_leave(parse_validation, line, where, parsed.notices, "its validation metrics do not parse")
        if val is _LEFT:
            continue
        if val is not None:  # a whole dict literal is complete even without its line end
            if val[0] == "Initial":
                parsed.initial = val[1]
            else:
                parsed.final, parsed.final_line = val[1], line.number
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


def _train_keys(metrics: Mapping[str, float]) -> int:
    return len([k for k in metrics if not k.startswith("val")])


def _drop_torn_tail(steps: list[StepLine], prev_keys: int | None, notices: list[str], where: str,
                    settled: bool) -> list[StepLine]:
    """An unterminated last step line with fewer keys than the training line before it is left out; so is one
    with all keys while the log is still changing (its last value may be cut short)."""
    if not steps or steps[-1].terminated:
        return steps
    last = steps[-1]
    before = _train_keys(steps[-2].metrics) if len(steps) >= 2 else prev_keys
    if before is not None and len(last.metrics) < before:
        notices.append(f"{where}, line {last.number} (step:{last.step}) is cut off (the log ends mid-line): left "
                       "for the next sync")
        return steps[:-1]
    if not settled:
        notices.append(f"{where}, line {last.number} (step:{last.step}) has no line end yet and the log changed "
                       f"less than {SETTLE_SECONDS:g} s ago: left for the next sync")
        return steps[:-1]
    return steps


@dataclass
class _Points:
    by_key: dict[str, tuple[list[int], list[float], list[int]]] = field(default_factory=dict)
    #: full-precision initial/final validation values: they replace the rounded step-line value of their step
    exact: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)

    def add(self, key: str, step: int, value: float, line: int) -> None:
        steps, values, lines = self.by_key.setdefault(key, ([], [], []))
        steps.append(step)
        values.append(value)
        lines.append(line)

    def add_exact(self, key: str, step: int, value: float, line: int) -> None:
        self.exact[(key, step)] = (value, line)

    def series(self, where: str) -> tuple[Series, ...]:
        """One series per key; a step given twice by step lines is a repeat (``Series.repeats``), a validation
        value the initial/final line gives in full precision is not."""
        by_key = {k: ([], [], []) for k in self.by_key} | {k: ([], [], []) for k, _ in self.exact}
        for k, (steps, values, lines) in self.by_key.items():
            out = by_key[k]
            for st, v, ln in zip(steps, values, lines, strict=True):
                if (k, st) not in self.exact:
                    out[0].append(st), out[1].append(v), out[2].append(ln)
        for (k, st), (v, ln) in self.exact.items():
            by_key[k][0].append(st), by_key[k][1].append(v), by_key[k][2].append(ln)
        return tuple(Series.build(k, s, v, where=where, lines=ln) for k, (s, v, ln) in by_key.items())


def _assemble(parsed: _Parsed, step_offset: int | None, notes: list[str], resume: Mapping[str, Any] | None,
              where: str, settled: bool = True, tracked: dict[str, Any] | None = None) -> tuple[_Points, int]:
    """Points of the parsed lines and the step offset used (``tracked`` gets the writer state to resume with)."""
    tracked = {} if tracked is None else tracked
    steps = _drop_torn_tail(parsed.steps, None if resume is None else resume.get("last_keys"), parsed.notices,
                            where, settled)
    initial = parsed.initial if resume is None else resume.get("initial")
    if resume is None:
        echo = [s for s in steps if _is_validation_only(s.metrics, initial)]
        first_train = next((s for s in steps if not _is_validation_only(s.metrics, initial)), None)
        training = [] if first_train is None else [s for s in steps if s.number >= first_train.number]
        echo = [s for s in echo if first_train is None or s.number < first_train.number]
        if step_offset is None:
            step_offset = 1 if first_train is not None and first_train.step == 0 else 0
    else:
        echo, training = [], steps
        step_offset = int(resume["step_offset"]) if step_offset is None else step_offset
    pts = _Points()
    for s in echo:  # the initial validation as the logger rounded it
        for k, v in s.metrics.items():
            if initial is None or val_key(k) not in initial:
                pts.add(val_key(k), 0, v, s.number)
    if echo and initial:
        notes.append(f"line {echo[0].number}: step:{echo[0].step} repeats the initial validation, rounded; "
                     "kept the full-precision values of the 'Initial validation metrics' line")
    tracked.update(_check_one_run(training, parsed.experiments, resume, where, notes))
    seen: set[int] = set()
    before = None if resume is None else resume.get("last_step")
    again = False
    for s in training:
        if not again and (s.step in seen or (before is not None and s.step <= before)):
            notes.append(f"line {s.number}: step:{s.step} logged again (restarted run?); the later line wins")
            again = True
        seen.add(s.step)
        for k, v in s.metrics.items():
            pts.add(k, s.step + step_offset, v, s.number)
    if resume is None and parsed.initial:
        for k, v in parsed.initial.items():
            pts.add_exact(k, 0, v, 0)
    last = max((s.step for s in training), default=None)
    last = before if last is None else last if before is None else max(last, before)
    if parsed.final:
        at = (last + step_offset) if last is not None else 0
        for k, v in parsed.final.items():
            pts.add_exact(k, at, v, parsed.final_line or 0)
    return pts, step_offset


def _check_one_run(training: list[StepLine], experiments: list[tuple[int, str]], resume: Mapping[str, Any] | None,
                   where: str, notes: list[str]) -> dict[str, Any]:
    """One log, one run (returns what a tail read needs to go on checking). Refused, naming the lines: step lines of two processes interleaved (two trainers
    writing one log); a new process starting again from the first step the previous one logged (a second
    run appended to the log); a second config dump naming another ``experiment_name``. A new process that
    goes on from a later step is the same run resumed: a note says where."""
    first_exp = (resume or {}).get("experiment") or (experiments[0] if experiments else None)
    for line, name in experiments:
        if first_exp is not None and name != first_exp[1]:
            raise IngestError(f"{where.split(', line')[0]}, line {line}: a second run (experiment_name {shown(name)}) "
                              f"starts in a log of experiment_name {shown(first_exp[1])} (line {first_exp[0]}): "
                              "two runs in one log are refused; give each run its own log (or split the file "
                              f"before line {line})")
    writer = (resume or {}).get("writer")
    first = (resume or {}).get("first_step")
    done = set((resume or {}).get("done_writers", []))
    last_line = (resume or {}).get("writer_line")
    for s in training:
        if writer is None:
            writer, first, last_line = s.tag, s.step, s.number
            continue
        if s.tag == writer:
            last_line = s.number
            continue
        if s.tag in done:
            raise IngestError(f"{where.split(', line')[0]}, line {s.number}: step lines of two processes are "
                              f"interleaved ({shown(writer)} at line {last_line}, {shown(s.tag)} again at line "
                              f"{s.number}): two trainers writing one log are refused; give each its own log")
        if s.step <= first:
            raise IngestError(f"{where.split(', line')[0]}, line {s.number}: a second run starts ({shown(s.tag)} "
                              f"logs step:{s.step} again after {shown(writer)} started at step:{first}, line "
                              f"{last_line} its last): two runs in one log are refused; give each run its own "
                              f"log (or split the file before line {s.number})")
        notes.append(f"line {s.number}: the trainer was launched again ({s.tag} after {writer}), going on from "
                     f"step:{s.step}: read as the same run resumed")
        done.add(writer)
        writer, first, last_line = s.tag, s.step, s.number
    return {"writer": writer, "first_step": first, "done_writers": sorted(done), "writer_line": last_line,
            "experiment": first_exp}


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


@dataclass(frozen=True)
class VerlRead:
    """One read of a verl log: the run (None when the appended part held no points), the offset to go on
    from and the state to go on with (empty: read the whole log again next time)."""

    run: RunData | None
    offset: int
    state: dict[str, Any]
    notices: tuple[str, ...]


def read_verl_log(path: str | Path, *, step_offset: int | None = None, resume: tuple[int, Mapping[str, Any]] | None
                  = None, end: int | None = None, settled: bool = True) -> VerlRead:
    """Read a verl console log, or (``resume`` = (offset, state) of an earlier read) what was appended.
    ``settled``: the log has not changed for a while (a complete-looking unterminated last line is taken)."""
    path = Path(path)
    where = str(path)
    state = dict(resume[1]) if resume and resume[1] else None
    start, first_line = (resume[0], int(state["line"])) if state else (0, 1)
    skipped: list[str] = []
    readers: list[LineReader] = []
    try:
        lines = (ln for n, raw, term in physical_lines(path, start, first_line, end, skipped, readers)
                 for ln in split_line(n, raw, term))
        parsed = _read(lines, training=state is not None, path=path)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    reader = readers[0]
    notes = list(parsed.notes) + skipped
    if state is None and not parsed.steps:
        raise IngestError(f"{path}: no verl 'step:N - key:value' lines found")
    tracked: dict[str, Any] = {}
    points, offset = _assemble(parsed, step_offset, notes, state, where, settled, tracked)
    if state is None:
        params: dict[str, Any] = dict(parsed.config or {})
        params["step_offset"] = offset
        params["log_format"] = "verl_console"
        algo = params.get("algorithm.adv_estimator")
        info = {"project": _str_or_none(params.get("trainer.project_name")),
                "model": _model_name(params.get("actor_rollout_ref.model.path")),
                "algorithm": _ALGORITHMS.get(algo, algo) if isinstance(algo, str) else None,
                "params": params, "initial": parsed.initial}
    else:
        info = {k: state.get(k) for k in ("project", "model", "algorithm", "params", "initial")}
    finished = parsed.final is not None or bool(state and state.get("finished"))
    if not finished and state is None:
        parsed.notices.append(f"{where}: no 'Final validation metrics' line yet: the run is still going, stopped "
                              "early, or the log is cut")
    run_info = RunInfo(external_id=str(path.resolve()), name=path.stem, project=info["project"],
                       status="finished" if finished else None, params=info["params"] or {}, model=info["model"],
                       algorithm=info["algorithm"])
    # the state at the end of the last whole line: a kept unterminated line is read again next time
    whole = [s for s in parsed.steps if s.terminated]
    # tailing starts once a whole training line fixed the step offset (a validation echo does not)
    training_started = state is not None or any(not _is_validation_only(s.metrics, parsed.initial) for s in whole)
    new_state: dict[str, Any] = {}
    if training_started:
        prev_last = None if state is None else state.get("last_step")
        last_whole = max([s.step for s in whole] + ([] if prev_last is None else [prev_last]), default=None)
        new_state = {**info, "step_offset": offset, "line": reader.tail.line,
                     "last_step": last_whole,
                     "last_keys": _train_keys(whole[-1].metrics) if whole else (state or {}).get("last_keys"),
                     "finished": parsed.final is not None and (parsed.final_line or 0) < reader.tail.line
                     or bool(state and state.get("finished")), **tracked}
    series = points.series(where)
    run = None
    if series or state is None:
        run = RunData(run=run_info, series=series, notes=tuple(f"{path.name}: {n}" for n in notes), origin=where,
                      partial=state is not None, notices=tuple(parsed.notices))
    if not getattr(reader, "tailable", True):  # UTF-16: offsets are not the file's, read whole every time
        return VerlRead(run, 0, {}, tuple(parsed.notices))
    return VerlRead(run, reader.end_offset if training_started else 0, new_state, tuple(parsed.notices))


def parse_verl_log(path: str | Path, *, step_offset: int | None = None) -> RunData:
    """Read one whole verl console log. ``step_offset`` overrides the detected step shift (see module doc)."""
    read = read_verl_log(path, step_offset=step_offset)
    assert read.run is not None
    return read.run
