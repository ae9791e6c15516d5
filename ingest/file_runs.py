"""What the runs of a file are called, and which launch of them a read is (``ingest file``).

* A blank run name ('', spaces) is replaced by the file's name, with a note.
* Files of one folder whose runs would get the same name (``a/run.csv`` and ``b/run.csv``; two output folders
  named alike) are named by their path in the folder (``a/run``, ``b/run``), with a note; a run named by the
  file's content (a run column, a trial name) keeps its name.
* A file rewritten from the start whose first points (the first 3 of each key) mostly differ from the last
  read's was restarted (``>`` again): the next launch, a run of its own (``NAME (launch N)``, external id
  ``…#launch-N``), with a note; the earlier launch keeps its points. The launch number and the first points
  are kept in the file's state.
* ``--strict``: a (run, key, step) given twice in one file refuses the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from db.limits import shown
from db.records import FileState, RunData
from ingest.errors import IngestError
from ingest.trl_state import run_folder
from ingest.values import REPEAT_RULE, repeat_note


def named(run: RunData, path: Path) -> RunData:
    """A blank run name ('', spaces) is replaced by the file's name, with a note."""
    if run.run.name.strip():
        return run
    name = path.stem.strip() or path.name
    note = f"{path}: run name {shown(run.run.name)} is blank: stored as {shown(name)} (the file's name)"
    return replace(run, run=replace(run.run, name=name), notes=(*run.notes, note))


def _base_name(path: Path, fmt: str) -> str:
    """The name a file's run gets when the file does not name it: the output folder's (trainer_state.json)
    or the file's name."""
    return run_folder(path).name if fmt == "trainer_state" else path.stem


def shared_names(found: Iterable[tuple[Path, str]], root: Path) -> dict[Path, tuple[str, str]]:
    """Files (path, format) of a folder whose runs would get the same name: {path: (that name, the path
    relative to the root that tells them apart)}."""
    groups: dict[str, list[tuple[Path, str]]] = {}
    for path, fmt in found:
        groups.setdefault(_base_name(path, fmt), []).append((path, fmt))
    out = {}
    for name, files in groups.items():
        if len(files) < 2:
            continue
        for path, fmt in files:
            where = run_folder(path) if fmt == "trainer_state" else path.with_suffix("")
            try:
                rel = where.relative_to(root.resolve()).as_posix()
            except ValueError:
                rel = str(where)
            out[path] = (name, rel)
    return out


def first_points(runs: list[RunData]) -> dict[str, list[str]] | None:
    """The first 3 points ("step:value") of every key of a file's runs: what tells a rewrite from the start."""
    out = {f"{r.run.external_id}#{s.key}": [f"{int(st)}:{float(v)!r}" for st, v in zip(s.steps[:3], s.values[:3],
                                                                                     strict=True)]
           for r in runs for s in r.series if len(s)}
    return out or None


def _differ(a: dict[str, list[str]], b: dict[str, list[str]]) -> bool:
    """Whether more than half of the first points both reads hold differ: a restart from the start changes
    nearly all of them (an edit of a value or two does not)."""
    shared = differing = 0
    for key in a.keys() & b.keys():
        for x, y in zip(a[key], b[key], strict=False):
            shared += 1
            differing += x != y
    return shared > 0 and 2 * differing > shared


def launch_of(known: FileState | None, runs: list[RunData], *, rewritten: bool,
            full: bool) -> tuple[int, dict[str, list[str]] | None, bool]:
    """Which launch of the file's run(s) this read is, the fingerprint of its first points, and whether it is a
    new launch: a file rewritten from the start whose first points mostly differ from what was read before
    (``_differ``)."""
    ps = known.parser_state if known is not None else {}
    launch, before = int(ps.get("launch", 1)), ps.get("first_points")
    if not full:
        return launch, before, False
    first = first_points(runs)
    if rewritten and before and first is not None and _differ(first, before):
        return launch + 1, first, True
    return launch, first if first is not None else before, False


def as_launch(run: RunData, launch: int, why: str | None) -> RunData:
    """``run`` as launch ``launch`` of itself: its own external id and name, and (when just detected) a note."""
    name = f"{run.run.name} (launch {launch})"
    info = replace(run.run, external_id=f"{run.run.external_id}#launch-{launch}", name=name)
    notes = run.notes
    if why:
        earlier = run.run.name if launch == 2 else f"{run.run.name} (launch {launch - 1})"
        notes = (*notes, f"{run.origin or run.run.external_id}: rewritten from the start ({why}) with other values "
                         f"at its first steps: a new launch, stored as run {shown(name, 80)}; the earlier launch "
                         f"stays as run {shown(earlier, 80)}")
    return replace(run, run=info, notes=notes)


def refuse_repeats(runs: list[RunData]) -> None:
    """``--strict``: a (run, key, step) given twice in the file is an error naming it."""
    for run in runs:
        for s in run.series:
            if s.repeats is not None:
                note = repeat_note(run, s)
                raise IngestError(f"{note.rsplit(': ', 1)[0]}: refused (--strict; without it {REPEAT_RULE})")


def told_apart(run: RunData, name: str, rel: str) -> RunData:
    """A run named like another file's run of the same folder: named by its path in the folder, with a note."""
    if run.run.name != name and not run.run.name.startswith(f"{name} (launch "):
        return run  # named by its content (a run column, a trial name): kept
    new = rel + run.run.name[len(name):]
    note = (f"{run.origin or run.run.external_id}: run name {shown(name)} is also another file's in this folder: "
            f"stored as {shown(new)}")
    return replace(run, run=replace(run.run, name=new), notes=(*run.notes, note))
