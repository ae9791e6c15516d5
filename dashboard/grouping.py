"""Runs in groups, as W&B groups them: by project/experiment, model, algorithm, intervention, or any tag or
parameter — and what the Groups page computes per group. Pure: no Streamlit, no store.

**Median and interquartile band against step.** The step axis is cut into buckets of ``width`` steps: bucket
``k`` holds the steps ``(k−1)·width … k·width`` (its right end included) and is drawn at step ``k·width``. A
run's value in a bucket is its latest finite value at or before step ``k·width``, within the run's own
buckets (none before the bucket of its first point or after the bucket of its last). Per group and bucket:
the median and the 25th/75th percentiles of those values over the group's runs that have one
(``numpy.nanpercentile``, linear interpolation), and how many runs that is.

**Buckets follow the data** (``bucket_width``): the width is the series' own spacing — 1 for a metric logged
every step, the evaluation interval for a validation score — unless that gives more than ``MAX_BUCKETS``
buckets (more than a chart has pixels to show), then the smallest width that does not. A group of 105-step
runs is drawn per step (entropy) and per evaluation (score). Only a width at least that of a stored level
(``db.lod``: 32, 128, 512, … steps) reads the level, rounded up to a multiple of it: each level keeps the
first and last point of each of its buckets, which include the latest point at or before every multiple of
its width, so the result equals this computation on every stored point.

**Runs as points.** One point per run: the entropy it has spent, ``(H_first − H_last) / H_first`` (its first
and last finite stored entropy), against the ceiling of its fitted law (``result.law.ceiling`` with
``ceiling_lo``/``ceiling_hi``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.results import RunAnalysis
from db.lod import BASE_WIDTH, FACTOR, MAX_LEVEL
from db.values import finite_number

BUILTIN = ("project / experiment", "model", "algorithm", "intervention")
HIDDEN_PREFIXES = ("mlflow.",)
MAX_BUCKETS = 400


def group_choices(runs: pd.DataFrame) -> list[str]:
    """What runs can be grouped by: the built-in attributes, then ``tag: KEY`` and ``param: KEY`` for every
    tag and parameter some run has (MLflow's own ``mlflow.*`` tags left out)."""
    tags: set[str] = set()
    params: set[str] = set()
    for col, out in (("tags", tags), ("params", params)):
        if col in runs:
            for d in runs[col]:
                if isinstance(d, Mapping):
                    out.update(str(k) for k in d if not str(k).startswith(HIDDEN_PREFIXES))
    return list(BUILTIN) + [f"tag: {k}" for k in sorted(tags)] + [f"param: {k}" for k in sorted(params)]


def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def group_of(info: Mapping[str, Any], choice: str) -> str:
    """The group a run (a row of ``Store.runs_frame`` as a dict) belongs to under ``choice``."""
    tags = info.get("tags") if isinstance(info.get("tags"), Mapping) else {}
    params = info.get("params") if isinstance(info.get("params"), Mapping) else {}
    if choice == "project / experiment":
        return _text(info.get("project")) or "(no project)"
    if choice in ("model", "algorithm"):
        return _text(info.get(choice)) or f"(no {choice})"
    if choice == "intervention":
        return _text(tags.get("intervention")) or _text(params.get("intervention")) or "(no intervention)"
    if choice.startswith("tag: "):
        key = choice[5:]
        return _text(tags.get(key)) or f"(no tag {key})"
    if choice.startswith("param: "):
        key = choice[7:]
        return _text(params.get(key)) or f"(no param {key})"
    raise ValueError(f"unknown grouping {choice!r}: one of {', '.join(BUILTIN)}, 'tag: KEY' or 'param: KEY'")


def bucket_width(first_step: float, last_step: float, spacing: float = 1) -> int:
    """Steps per bucket for series spanning ``first_step … last_step`` logged every ``spacing`` steps: the
    spacing when that gives at most ``MAX_BUCKETS`` buckets, else the smallest width that does; a width at
    least a stored level's is rounded up to a multiple of the widest such level (``level_of_width``)."""
    span = max(float(last_step) - float(first_step), 0.0)
    w = max(1, int(round(spacing)) if math.isfinite(spacing) else 1, math.ceil(span / MAX_BUCKETS))
    level = _widest_level_below(w)
    if level is not None:
        lw = BASE_WIDTH * FACTOR ** (level - 1)
        w = -(-w // lw) * lw
    return w


def _widest_level_below(w: int) -> int | None:
    found = None
    for level in range(1, MAX_LEVEL + 1):
        if BASE_WIDTH * FACTOR ** (level - 1) <= w:
            found = level
    return found


def level_of_width(w: int) -> int | None:
    """The stored level (``db.lod``) buckets of ``w`` steps are read from exactly: the widest level whose
    width divides ``w``; None (read every point) below the narrowest level's width."""
    level = _widest_level_below(w)
    while level is not None and w % (BASE_WIDTH * FACTOR ** (level - 1)):
        level = level - 1 if level > 1 else None
    return level


def data_spacing(series: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> float:
    """The typical step between a series' finite points, over ``series`` (run_id → (steps, values)): the
    median of each series' median gap (1 when no series has two points)."""
    gaps = []
    for s, v in series.values():
        s = np.asarray(s, dtype=float)
        s = np.unique(s[np.isfinite(s) & np.isfinite(np.asarray(v, dtype=float))])
        if s.size > 1:
            gaps.append(float(np.median(np.diff(s))))
    return float(np.median(gaps)) if gaps else 1.0


def _bucket(steps: np.ndarray, width: int) -> np.ndarray:
    """Bucket number of each step: ``ceil(step / width)`` (bucket k ends at step k·width, included)."""
    return -np.floor_divide(-np.asarray(steps, dtype=float), width)


def values_at_buckets(steps: np.ndarray, values: np.ndarray, width: int, first_bucket: int,
                      n_buckets: int) -> np.ndarray:
    """A run's latest finite value at or before the end (``k·width``) of each bucket ``k = first_bucket …
    first_bucket + n_buckets − 1`` (NaN outside the run's own buckets)."""
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    out = np.full(n_buckets, np.nan)
    if s.size == 0:
        return out
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    buckets = np.arange(first_bucket, first_bucket + n_buckets)
    idx = np.searchsorted(s, buckets * width, side="right") - 1
    inside = (buckets >= _bucket(s[0], width)) & (buckets <= _bucket(s[-1], width)) & (idx >= 0)
    out[inside] = v[idx[inside]]
    return out


@dataclass(frozen=True)
class GroupBand:
    """Median and interquartile band of one group's runs against step."""

    group: str
    step: np.ndarray  # the end of each bucket (clipped to the last step stored)
    median: np.ndarray
    q25: np.ndarray
    q75: np.ndarray
    n_runs: np.ndarray  # runs with a value in each bucket
    run_ids: tuple[int, ...]


def group_bands(series: Mapping[int, tuple[np.ndarray, np.ndarray]], groups: Mapping[int, str],
                width: int) -> list[GroupBand]:
    """Per group, median/IQR over its runs of ``values_at_buckets`` (``series``: run_id → (steps, values))."""
    have = {i: (np.asarray(s, dtype=float), np.asarray(v, dtype=float)) for i, (s, v) in series.items()
            if i in groups and np.isfinite(np.asarray(v, dtype=float)).any()}
    if not have:
        return []
    first = int(min(_bucket(np.nanmin(s[np.isfinite(v)]), width) for s, v in have.values()))
    last_step = max(float(np.nanmax(s[np.isfinite(v)])) for s, v in have.values())
    n = int(_bucket(last_step, width)) - first + 1
    steps = np.minimum(np.arange(first, first + n) * width, last_step)
    out = []
    for group in sorted({groups[i] for i in have}):
        ids = tuple(sorted(i for i in have if groups[i] == group))
        m = np.vstack([values_at_buckets(*have[i], width, first, n) for i in ids])
        count = np.isfinite(m).sum(axis=0)
        med, q25, q75 = (np.full(n, np.nan) for _ in range(3))
        cols = count > 0
        if cols.any():
            q25[cols], med[cols], q75[cols] = np.nanpercentile(m[:, cols], [25, 50, 75], axis=0)
        out.append(GroupBand(group, steps, med, q25, q75, count, ids))
    return out


def bucket_points(steps: np.ndarray, values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The points of a series the grouped view needs (finite, by step): its first point and the last point of
    every ``width``-step bucket (``(k−1)·width … k·width``). ``values_at_buckets`` and ``first_last`` give the
    same on these as on all, at ``width`` and at every multiple of it."""
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    if s.size == 0:
        return s, v
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    b = _bucket(s, width)
    keep = np.r_[b[1:] != b[:-1], True]
    keep[0] = True
    return s[keep], v[keep]


def limit_groups(groups: Mapping[int, str], max_groups: int) -> dict[int, str]:
    """The ``max_groups − 1`` largest groups kept, the rest merged into one "(N other groups)" group (ties by
    name), when there are more than ``max_groups``."""
    sizes = pd.Series(list(groups.values())).value_counts()
    if len(sizes) <= max_groups:
        return dict(groups)
    order = sorted(sizes.index, key=lambda g: (-sizes[g], g))
    kept = set(order[: max_groups - 1])
    other = f"({len(order) - len(kept)} other groups)"
    return {i: g if g in kept else other for i, g in groups.items()}


def entropy_spent(h_first: float | None, h_last: float | None) -> float | None:
    """``(H_first − H_last) / H_first``: the share of its starting entropy a run has spent."""
    if h_first is None or h_last is None or not (math.isfinite(h_first) and math.isfinite(h_last)) or h_first == 0:
        return None
    return (h_first - h_last) / h_first


def first_last(steps: np.ndarray, values: np.ndarray) -> tuple[float | None, float | None]:
    """The first and last finite values of a series (by step)."""
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v) & np.isfinite(s)
    if not ok.any():
        return None, None
    s, v = s[ok], v[ok]
    return float(v[np.argmin(s)]), float(v[np.argmax(s)])


def run_points(results: Sequence[RunAnalysis], groups: Mapping[int, str],
               entropy: Mapping[int, tuple[float | None, float | None]]) -> pd.DataFrame:
    """One row per run: id, run, group, status, H first/last, entropy spent, ceiling with its interval
    (NaN where the run has no fitted law). ``entropy``: run_id → (H_first, H_last)."""
    rows = []
    for r in results:
        i = int(r.run_id)
        if i not in groups:
            continue
        law = r.law
        h0, h1 = entropy.get(i, (None, None))
        rows.append({"id": i, "run": str(r.run), "group": groups[i], "status": str(r.status or "ok"),
                     "reason": r.reason or "", "H first": h0, "H last": h1, "entropy spent": entropy_spent(h0, h1),
                     "ceiling": None if law is None else finite_number(law.ceiling),
                     "ceiling lo": None if law is None else finite_number(law.ceiling_lo),
                     "ceiling hi": None if law is None else finite_number(law.ceiling_hi)})
    cols = ["id", "run", "group", "status", "reason", "H first", "H last", "entropy spent", "ceiling",
            "ceiling lo", "ceiling hi"]
    df = pd.DataFrame(rows, columns=cols)
    return df.astype({c: float for c in cols[5:]})


def group_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per group: runs, runs with a ceiling, median entropy spent, median ceiling and its interquartile range."""
    rows = []
    for group, part in points.groupby("group", sort=True):
        c = part["ceiling"].dropna()
        rows.append({"group": group, "runs": len(part), "with a ceiling": len(c),
                     "median entropy spent": part["entropy spent"].median(),
                     "median ceiling": c.median() if len(c) else np.nan,
                     "ceiling q25": c.quantile(0.25) if len(c) else np.nan,
                     "ceiling q75": c.quantile(0.75) if len(c) else np.nan})
    return pd.DataFrame(rows, columns=["group", "runs", "with a ceiling", "median entropy spent", "median ceiling",
                                       "ceiling q25", "ceiling q75"])
