"""Downsampled levels of a stored series (table ``metric_lod``): what pages read instead of every point.

Level ``L`` cuts the step axis into fixed buckets of ``width(L) = 32·4^(L−1)`` steps (32, 128, 512, …,
aligned at step 0) and keeps, of the finite points in each bucket, the first, the minimum, the maximum and
the last (M4 aggregation: a line through them is drawn the same as one through every point at that
resolution; ties go to the earliest step). The first and last finite points of the series are therefore in
every level. A reader picks the coarsest level with at least the points it will draw and runs MinMaxLTTB on
it (``plots.downsample``).

Because buckets are fixed in step, a level is updated incrementally: points written at steps ``lo…hi``
change only the buckets that hold them, so an append rewrites the last bucket of each level and a rewrite
of old points rewrites their buckets; a fresh reduction of the stored points gives the same rows.

Which levels a series has depends only on the steps its stored points span (``levels_for``: a level is
kept when the span covers at least ``MIN_BUCKETS`` of its buckets), so the writer never counts points. A
series logged every step gets about 16% more rows (a quarter at 32 steps, then a sixteenth, …); a series
spanning fewer than about 1,000 steps (32 buckets of 32) has no level and readers read its points.

Pure numpy: no database here (``db.store.Store`` reads and writes the rows).
"""

from __future__ import annotations

import numpy as np

BASE_WIDTH = 32
FACTOR = 4
MAX_LEVEL = 12  # widths up to 32·4^11 ≈ 134 M steps
MIN_BUCKETS = 32


def width(level: int) -> int:
    """Bucket width of ``level`` in steps."""
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be in 1…{MAX_LEVEL}, got {level}")
    return BASE_WIDTH * FACTOR ** (level - 1)


def levels_for(first_step: int, last_step: int) -> list[int]:
    """The levels kept for a series whose stored points span the steps ``first_step…last_step``: those with
    at least ``MIN_BUCKETS`` buckets in that span."""
    out = []
    for level in range(1, MAX_LEVEL + 1):
        w = width(level)
        if last_step // w - first_step // w + 1 < MIN_BUCKETS:
            break
        out.append(level)
    return out


def m4_index(steps: np.ndarray, values: np.ndarray, bucket_width: int) -> np.ndarray:
    """Sorted indices of the first, minimum, maximum and last point of every ``bucket_width``-step bucket.

    ``steps`` must be increasing integers and ``values`` finite; ties go to the earliest point.
    """
    steps = np.asarray(steps, dtype=np.int64)
    values = np.asarray(values, dtype=float)
    n = steps.size
    if n == 0:
        return np.empty(0, dtype=np.int64)
    bucket = np.floor_divide(steps, bucket_width)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], n] - 1
    seg = np.repeat(np.arange(starts.size), ends - starts + 1)  # bucket number of every point
    picks = [starts, ends]
    for extreme in (np.minimum, np.maximum):
        hits = np.flatnonzero(values == extreme.reduceat(values, starts)[seg])  # in step order
        picks.append(hits[np.r_[True, seg[hits][1:] != seg[hits][:-1]]])  # the earliest hit of each bucket
    return np.unique(np.concatenate(picks))


def finite_sorted(points: np.ndarray) -> np.ndarray:
    """Rows (step, value, wall_time) with a finite value, sorted by step."""
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    pts = pts[np.isfinite(pts[:, 1])]
    return pts[np.argsort(pts[:, 0], kind="stable")]


def reduce_level(points: np.ndarray, level: int) -> np.ndarray:
    """Rows of ``points`` (finite, sorted by step: ``finite_sorted``) kept at ``level``."""
    return points[m4_index(points[:, 0].astype(np.int64), points[:, 1], width(level))]


def reduce_series(points: np.ndarray) -> dict[int, np.ndarray]:
    """Every level of a series, each reduced from all its stored points (step, value, wall_time; non-finite
    values included): {level: rows}. The reference the stored levels are tested against."""
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    if pts.shape[0] == 0:
        return {}
    finite = finite_sorted(pts)
    levels = levels_for(int(pts[:, 0].min()), int(pts[:, 0].max()))
    return {level: reduce_level(finite, level) for level in levels}


def reduce_cascade(finite: np.ndarray, levels: list[int]) -> dict[int, np.ndarray]:
    """The same levels, each reduced from the one below it (``finite``: ``finite_sorted`` points; ``levels``
    increasing). Equal to ``reduce_series``: buckets nest (each is 4 buckets of the level below), and the
    first, last and earliest extreme of a bucket are among the rows its children kept. Faster: a level is
    a quarter of the one below."""
    out: dict[int, np.ndarray] = {}
    below = finite
    for level in levels:
        below = out[level] = reduce_level(below, level)
    return out


def bucket_range(lo: int, hi: int, level: int) -> tuple[int, int]:
    """First and last step of the buckets of ``level`` that hold the steps ``lo…hi``."""
    w = width(level)
    return (lo // w) * w, (hi // w) * w + w - 1
