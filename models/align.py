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
    h = entropy if entropy.index.is_monotonic_increasing else entropy.sort_index()
    r = performance if performance.index.is_monotonic_increasing else performance.sort_index()
    return align_arrays(h.index.to_numpy(dtype=np.int64), h.to_numpy(dtype=float), r.index.to_numpy(dtype=np.int64),
                        r.to_numpy(dtype=float), max_gap=max_gap)


def align_arrays(h_steps: np.ndarray, h_vals: np.ndarray, r_steps: np.ndarray, r_vals: np.ndarray, *,
                 max_gap: int | None = None) -> Aligned:
    """``align`` on arrays sorted by step (int64 steps, float values)."""
    if max_gap is None:
        max_gap = int(max(1, np.median(np.diff(h_steps)))) if len(h_steps) > 1 else 1

    if len(h_steps) == 0:
        return Aligned(np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0, np.int64), (),
                       tuple(int(s) for s in r_steps), 0, max_gap)
    # every evaluation at once: the first entropy step >= s + 1, else (the last evaluation) the latest <= s
    j = np.searchsorted(h_steps, r_steps + 1, side="left")
    nxt, prv = np.minimum(j, len(h_steps) - 1), np.maximum(j - 1, 0)
    fwd = (j < len(h_steps)) & ((h_steps[nxt] - (r_steps + 1)) < max_gap)
    back = ~fwd & (j > 0) & ((r_steps - h_steps[prv]) < max_gap)
    k = np.where(fwd, nxt, prv)
    paired = fwd | back
    finite = np.isfinite(r_vals) & np.isfinite(h_vals[k])
    use = paired & finite
    steps, es, hv, rv = r_steps[use], h_steps[k[use]], h_vals[k[use]], r_vals[use]
    fallback = [int(s) for s in r_steps[use & back]]
    unpaired = [int(s) for s in r_steps[~paired]]
    nonfinite = int((paired & ~finite).sum())
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
