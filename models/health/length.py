"""Length pathology: responses cut off at the length limit (truncated answers get no reward, or a wrong one),
and mean lengths that run away or collapse.

* clip ratio: the share of responses that hit the limit (verl ``response_length/clip_ratio``, TRL
  ``completions/clipped_ratio``), mean over the last quarter: ``critical`` ≥ 30%, ``warn`` ≥ 10%, ``info`` ≥ 3%;
* mean length (``response_length/mean``, ``completions/mean_length``): the last quarter's median over the first
  tenth's: growth ≥ 2× with the clip ratio rising is ``warn``; growth ≥ 3× or shrinking below 40% is ``info``.
"""

from __future__ import annotations

import numpy as np

from models.health.finding import RANK, Finding, skipped
from models.health.series import Curve, recent, trend_of

NAME = "length_pathology"
CLIP_CRITICAL, CLIP_WARN, CLIP_INFO = 0.3, 0.1, 0.03
ADVICE = (
    "Raise the response length limit (data.max_response_length, max_completion_length) or penalise overlong "
    "responses softly (DAPO's overlong reward shaping) instead of truncating them.",
    "If lengths run away without accuracy gains, the reward may favour length: check it on short correct answers.",
    "Mask truncated responses out of the loss (DAPO's overlong filtering) so they do not teach a wrong signal.",
)
REFERENCES = ("Yu et al., DAPO: An Open-Source LLM Reinforcement Learning System at Scale (arXiv:2503.14476)",)


def detect(clip_ratio: Curve | None, mean_length: Curve | None) -> Finding:
    c = clip_ratio.finite() if clip_ratio is not None else None
    m = mean_length.finite() if mean_length is not None else None
    if (c is None or len(c) < 3) and (m is None or len(m) < 8):
        return skipped(NAME, "response_length/clip_ratio or completions/clipped_ratio (or a mean response length)",
                       "no truncation share and no mean length logged")
    severity, parts, evidence, keys, spans = "ok", [], {}, [], []
    clip_rising = False
    if c is not None and len(c) >= 3:
        cr = recent(c, 0.25, 5)
        frac = float(np.mean(cr.values))
        tr = trend_of(cr) if len(cr) >= 4 else None
        clip_rising = bool(tr and tr.tau > 0 and tr.p < 0.05)
        sev = "critical" if frac >= CLIP_CRITICAL else "warn" if frac >= CLIP_WARN else "info" if frac >= CLIP_INFO else "ok"
        severity = _max(severity, sev)
        parts.append(f"{frac:.1%} of responses hit the length limit over steps {cr.span[0]}–{cr.span[1]}"
                     + (" and rising" if clip_rising else ""))
        evidence |= {"clip_ratio_recent": frac, "clip_ratio_max": float(np.max(c.values)),
                     "cohort_metric": "share of truncated responses", "cohort_value": frac}
        keys.append(c.key)
        spans.append(cr.span)
    if m is not None and len(m) >= 8:
        first = float(np.median(m.values[: max(3, len(m) // 10)]))
        last = float(np.median(recent(m, 0.25, 5).values))
        ratio = last / first if first > 0 else float("nan")
        sev = "ok"
        if ratio >= 2 and clip_rising:
            sev = "warn"
        elif ratio >= 3 or ratio <= 0.4:
            sev = "info"
        severity = _max(severity, sev)
        parts.append(f"mean length {first:.0f} → {last:.0f} tokens ({ratio:.2f}×)")
        evidence |= {"length_first": first, "length_recent": last, "length_ratio": ratio}
        keys.append(m.key)
        spans.append(m.span)
    lead = {"ok": "no length pathology", "info": "length to watch", "warn": "length pathology",
            "critical": "severe truncation"}[severity]
    steps = (min(s[0] for s in spans), max(s[1] for s in spans))
    return Finding(NAME, severity, f"{lead}: {'; '.join(parts)}.", evidence, tuple(keys), steps,
                   ADVICE if severity != "ok" else (), REFERENCES)


def _max(a: str, b: str) -> str:
    return a if RANK[a] >= RANK[b] else b
