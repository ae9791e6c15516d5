"""Pairing entropy (logged every training step) with performance (evaluated every N steps).

The rule, as verl, TRL and OpenRLHF log:

* At training step t the trainer samples rollouts from the current policy, logs their mean token entropy
  H(t), then updates the policy. An evaluation logged at step s is of the policy *after* update s (and the
  evaluation logged at step 0, before any update, is of the initial policy).
* So R(s) is paired with the entropy of the same policy, which is the entropy logged at the *next* step:
  the first entropy step ≥ s + 1, if it is within ``max_gap`` steps.
* The last evaluation of a run has no later rollout; it is paired with the latest entropy at or before s,
  again only within ``max_gap`` (one update off — the pair says so in ``fallback_steps``).
* ``max_gap`` defaults to the median spacing of the entropy steps (1 when logged every step).
* Pairs with a non-finite value on either side are dropped and counted; nothing is padded or interpolated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True, eq=False)
class Aligned:
    """Paired points: ``steps`` are the performance steps, ``entropy_steps`` the entropy steps used."""

    steps: np.ndarray
    entropy: np.ndarray
    performance: np.ndarray
    entropy_steps: np.ndarray
    fallback_steps: tuple[int, ...]  # evaluations paired with an earlier rollout (usually just the last)
    unpaired_steps: tuple[int, ...]  # evaluations with no entropy within max_gap
    n_nonfinite: int  # pairs dropped because a value was NaN/inf
    max_gap: int

    def __len__(self) -> int:
        return len(self.steps)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"step": self.steps, "entropy_step": self.entropy_steps, "entropy": self.entropy,
             "performance": self.performance}
        )


def align(
    entropy: pd.Series,
    performance: pd.Series,
    *,
    max_gap: int | None = None,
) -> Aligned:
    """Pair each performance point with the entropy of the same policy (rule in the module docstring).

    Both series are indexed by step. Returns only complete, finite pairs.
    """
    h = entropy.sort_index()
    r = performance.sort_index()
    h_steps = h.index.to_numpy(dtype=np.int64)
    h_vals = h.to_numpy(dtype=float)
    r_steps = r.index.to_numpy(dtype=np.int64)
    r_vals = r.to_numpy(dtype=float)
    if max_gap is None:
        max_gap = int(max(1, np.median(np.diff(h_steps)))) if len(h_steps) > 1 else 1

    steps, es, hv, rv, fallback, unpaired = [], [], [], [], [], []
    nonfinite = 0
    for s, val in zip(r_steps, r_vals, strict=True):
        j = np.searchsorted(h_steps, s + 1, side="left")  # first entropy step >= s + 1
        if j < len(h_steps) and h_steps[j] - (s + 1) < max_gap:
            k, fell_back = j, False
        elif j > 0 and s - h_steps[j - 1] < max_gap:  # latest entropy step <= s
            k, fell_back = j - 1, True
        else:
            unpaired.append(int(s))
            continue
        if not (np.isfinite(h_vals[k]) and np.isfinite(val)):
            nonfinite += 1
            continue
        if fell_back:
            fallback.append(int(s))
        steps.append(int(s))
        es.append(int(h_steps[k]))
        hv.append(float(h_vals[k]))
        rv.append(float(val))
    return Aligned(
        steps=np.asarray(steps, dtype=np.int64),
        entropy=np.asarray(hv, dtype=float),
        performance=np.asarray(rv, dtype=float),
        entropy_steps=np.asarray(es, dtype=np.int64),
        fallback_steps=tuple(fallback),
        unpaired_steps=tuple(unpaired),
        n_nonfinite=nonfinite,
        max_gap=max_gap,
    )
