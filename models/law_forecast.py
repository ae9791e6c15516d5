"""The ``law`` method of ``models.forecast``: the entropy trajectory extrapolated and mapped through the law.

At a cut, the law R = b − a·e^H is fitted on the (H, R) pairs before it; the entropy trajectory H(step) is
fitted as a power decay to a floor (``models.curves`` family ``decay``) and extrapolated to the target steps;
the forecast is R̂ = b′ − a·e^Ĥ(s+1), with the slope a from all pairs and the level b′ = mean(R + a·e^H) from
the latest half of them (the early, high-entropy pairs lever the intercept; the level is best measured where
the run is now). The same is done at the rolling origins, for the method's within-run track record.

Every stage is one batch over the cuts of a run (``law_inputs``): the law on each cut's pairs, the decay where
the law holds, the law on the pairs before each rolling origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.align import align_arrays
from models.curves import N_PARAMS, PrefixData, PrefixFits, fit_prefixes_many
from models.errors import FitError, contained
from models.law import LawFit, fit_law_many
from models.metric_range import MetricRange
from models.resample import bin_means

if TYPE_CHECKING:
    from models.forecast import Cut

#: as many pairs as any forecast needs evaluations (``models.forecast.MIN_EVALUATIONS``)
MIN_PAIRS = 4
MIN_ENTROPY_POINTS = 6  # the power decay has 4 parameters
ANCHOR_FRACTION = 0.5
#: the entropy trajectory keeps more points than the curves: its decay is extrapolated 2–3× beyond the window,
#: and the bend matters
MAX_ENTROPY_POINTS = 150


@dataclass(frozen=True)
class LawInput:
    """The law method's fits at one cut (``law_path``)."""

    h: np.ndarray  # the (entropy, performance) pairs
    r: np.ndarray
    pair_steps: np.ndarray
    law: LawFit
    usable: list[int]  # the performance origins with enough entropy points before them
    decay: PrefixFits  # the entropy trajectory, at those origins and at the cut
    rolling: dict[int, tuple[int, LawFit]]  # usable origin → (pairs before it, the law on them)


def pairs(hs, hv, ps, pv):  # noqa: ANN001, ANN201 - arrays
    """The (entropy, performance) pairs of the points (``models.align``) and their steps."""
    a = align_arrays(hs.astype(np.int64), hv, ps.astype(np.int64), pv)
    return a.entropy, a.performance, a.steps.astype(float)


def law_pairs(hs, hv, ps, pv, known: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (entropy, performance) pairs before a cut and their steps (``known``: ``pairs`` of these points,
    already made); raises ``FitError`` when too few."""
    if len(hs) < MIN_ENTROPY_POINTS:
        raise FitError(f"only {len(hs)} entropy points before the cutoff", "too_few_points_before_cutoff")
    h, r, pair_steps = known if known is not None else pairs(hs, hv, ps, pv)
    if len(h) < MIN_PAIRS:
        raise FitError(f"only {len(h)} (entropy, performance) pairs before the cutoff", "too_few_points_before_cutoff")
    return h, r, pair_steps


def law_inputs(cuts: Sequence[Cut]) -> list[LawInput | FitError]:
    """The law method's fits at every cut, each stage one batch over the cuts: the law on the pairs before the
    cut, the entropy decay where the law holds, the law on the pairs before each rolling origin."""
    out: dict[int, LawInput | FitError] = {i: c.pairs for i, c in enumerate(cuts) if isinstance(c.pairs, FitError)}
    paired = [i for i in range(len(cuts)) if i not in out]
    holding = []
    for i, law in zip(paired, _fit_laws([cuts[i].pairs[:2] for i in paired]), strict=True):
        if isinstance(law, FitError):
            out[i] = law
        elif not law.holds:
            out[i] = FitError(f"the law does not hold before the cutoff (a = {law.a:.3g} ≤ 0)", "law_does_not_hold")
        else:
            holding.append((i, law, *_entropy_decay(cuts[i])))
    decays = fit_prefixes_many("decay", [data for *_, data in holding], refine_last_only=True)
    rolled = []
    for (i, law, usable, _), decay in zip(holding, decays, strict=True):
        if isinstance(decay, FitError):
            out[i] = decay
            continue
        c = cuts[i]  # the pairs before each usable origin (enough of them to fit the law)
        ends = {j: m for j, k in enumerate(usable)
                if (m := int(np.searchsorted(c.pairs[2], c.bs[c.origins[k]], side="right"))) >= MIN_PAIRS}
        rolled.append((i, law, usable, decay, ends))
    fits = iter(_fit_laws([(cuts[i].pairs[0][:m], cuts[i].pairs[1][:m]) for i, *_, ends in rolled
                           for m in ends.values()]))
    for i, law, usable, decay, ends in rolled:
        rolling = {}
        for j, m in ends.items():
            if not isinstance(fit := next(fits), FitError):
                rolling[j] = (m, fit)
        out[i] = LawInput(*cuts[i].pairs, law, usable, decay, rolling)
    return [out[i] for i in range(len(cuts))]


def _fit_laws(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[LawFit | FitError]:
    """``fit_law`` on every (H, R) of ``pairs`` in one batch (rows padded with NaN, which ``fit_law_many``
    leaves out)."""
    if not pairs:
        return []
    h = np.full((len(pairs), max(len(p[0]) for p in pairs)), np.nan)
    r = h.copy()
    for row, (hp, rp) in enumerate(pairs):
        h[row, :len(hp)], r[row, :len(rp)] = hp, rp
    batch = fit_law_many(h, r)
    return [contained(lambda i=i: batch.fit(i)) for i in range(len(pairs))]


def _entropy_decay(c: Cut) -> tuple[list[int], PrefixData]:
    """The rolling origins with enough entropy points before them, and the entropy trajectory to fit at those
    origins and at the cut (its floor in [0, the level it ends at])."""
    ehs, ehv = bin_means(c.hs, c.hv, MAX_ENTROPY_POINTS)
    ehs = ehs.astype(float)
    # entropy origins at the same steps as the performance origins
    h_origins = [int(np.searchsorted(ehs, c.bs[k], side="right") - 1) for k in c.origins]
    usable = [i for i, k in enumerate(h_origins) if k + 1 >= N_PARAMS["decay"] + 2]
    floors = [max(_end_level(ehv[:k + 1]), 0.0) for k in [h_origins[i] for i in usable]] + [max(_end_level(ehv), 0.0)]
    return usable, PrefixData(ehs, ehv, [h_origins[i] for i in usable] + [len(ehs) - 1], 0.0, np.asarray(floors))


@dataclass(frozen=True)
class LawPath:
    """The law method's forecast at one cut: the path at the target steps, its forecasts of the later pre-cut
    evaluations from each rolling origin (for the track record), its parameters."""

    path: np.ndarray
    origins: list[int]  # the rolling origins it was refitted at (indices into the cut's evaluations)
    rolling: list[np.ndarray]
    params: dict[str, float]
    note: str
    entropy_at_target: float


def law_path(c: Cut, li: LawInput, rng: MetricRange) -> LawPath:
    """The law method (module docstring) at the cut and at the rolling origins."""
    h, r, law = li.h, li.r, li.law
    final = li.decay.fit(len(li.usable))
    h_target = final.predict(c.target + 1)
    b_level = _anchored_level(law.a, h, r)
    roll, used = [], []
    for j, (m, law_k) in li.rolling.items():
        b_k = _anchored_level(law_k.a, h[:m], r[:m])
        h_fc = li.decay.fit(j).predict(c.bs + 1)
        roll.append(rng.clip(b_k - law_k.a * np.exp(h_fc)))
        used.append(c.origins[li.usable[j]])
    params = {"a": law.a, "b": law.b, "b_anchored": b_level, "r2": law.r2, "ceiling_lo": law.ceiling_lo,
              "ceiling_hi": law.ceiling_hi, "entropy_floor": final.asymptote,
              "entropy_at_target": float(np.mean(h_target))}
    note = f"entropy: power decay to {final.asymptote:.3f}; level from the last {_anchor_m(len(h))} pairs"
    return LawPath(np.atleast_1d(rng.clip(b_level - law.a * np.exp(h_target))), used, roll, params, note,
                   float(np.mean(h_target)))


def _anchor_m(n: int) -> int:
    return min(n, max(3, int(np.ceil(ANCHOR_FRACTION * n))))


def _anchored_level(a: float, h: np.ndarray, r: np.ndarray) -> float:
    m = _anchor_m(len(h))
    return float(np.mean(r[-m:] + a * np.exp(h[-m:])))


def _end_level(h: np.ndarray) -> float:
    k = min(len(h), max(5, int(np.ceil(0.1 * len(h)))))
    return float(np.median(h[-k:]))
