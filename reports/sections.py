"""Which runs get a section of their own (sentences, numbers, health, figures) in the HTML report and PNGs.

A report of ``limit`` runs or fewer has a section for every run. Above that, drawing every run would make the
report's cost grow with the store (each run's series read, two figures built and drawn by Chromium), and a
thousand sections are not read anyway: the sections go to the runs at both ends of the sweep, the
``(limit + 1) // 2`` highest fitted ceilings and the ``limit // 2`` lowest (ranked by ceiling, then run id),
or every run with a fitted ceiling when no more than ``limit`` have one; ``limit`` 0 turns sections off. The
summary table, ``report.md`` and ``report.json`` list every run whatever the limit; ``Sections.sentence``
says in the HTML how many runs have a section and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SECTION_LIMIT = 12  # per-run sections (and their figures) of a report with more runs than this


@dataclass(frozen=True)
class Sections:
    """The runs with a section (``run_ids``: in report order when every run has one, else highest ceiling
    first), out of ``n_runs``, and the rule that chose them."""

    run_ids: tuple[int, ...]
    n_runs: int
    limit: int
    n_highest: int = 0  # when limited to both ends: how many of run_ids are the highest ceilings
    n_lowest: int = 0  # … and how many the lowest

    @property
    def limited(self) -> bool:
        return len(self.run_ids) < self.n_runs

    def sentence(self) -> str | None:
        """What the HTML says about the sections it shows (None: every run has one)."""
        if not self.limited:
            return None
        n, k = self.n_runs, len(self.run_ids)
        runs = f"{n:,} run{'s' if n != 1 else ''}"
        if self.limit == 0:
            return f"Per-run sections are turned off (--sections 0): the summary table lists the {runs}."
        if k == 0:
            which = f"no run has a section: none of the {runs} has a fitted ceiling"
        elif self.n_highest or self.n_lowest:
            which = f"sections below for {k} of the {runs}: {_ends(self.n_highest, self.n_lowest)}"
        else:
            which = f"sections below for the {k} of the {runs} with a fitted ceiling"
        limit = f"{self.limit:,} run{'s' if self.limit != 1 else ''}"
        return (f"This report covers more than {limit}, so {which}. The summary table lists all {runs}; a report "
                f"of {limit} or fewer (select them with --run or --experiment) has a section for each.")


def _ends(n_high: int, n_low: int) -> str:
    def end(n: int, word: str) -> str:
        return f"the {word}" if n == 1 else f"the {n} {word}"

    parts = [end(n, w) for n, w in ((n_high, "highest"), (n_low, "lowest")) if n]
    return " and ".join(parts) + (" fitted ceilings" if n_high + n_low > 1 else " fitted ceiling")


def sections_of(fit_doc: Sequence[Mapping[str, Any]], limit: int = SECTION_LIMIT) -> Sections:
    """The runs of ``fit_doc`` (``fit --json``) given a section under the rule of this module."""
    if limit < 0:
        raise ValueError(f"the section limit must be 0 or more, got {limit}")
    ids = [int(f["run_id"]) for f in fit_doc]
    if len(ids) <= limit:
        return Sections(run_ids=tuple(ids), n_runs=len(ids), limit=limit)
    ranked = sorted(((float(f["ceiling"]), int(f["run_id"])) for f in fit_doc
                     if f.get("status") == "ok" and f.get("ceiling") is not None),
                    key=lambda c: (-c[0], c[1]))
    if len(ranked) <= limit:
        return Sections(run_ids=tuple(i for _, i in ranked), n_runs=len(ids), limit=limit)
    n_high = (limit + 1) // 2
    n_low = limit - n_high
    chosen = ranked[:n_high] + ranked[len(ranked) - n_low:]
    return Sections(run_ids=tuple(i for _, i in chosen), n_runs=len(ids), limit=limit, n_highest=n_high,
                    n_lowest=n_low)
