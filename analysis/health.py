"""Run health: the detectors of ``models.health`` run over a run's stored curves at write time (with the rest of
its analysis), and read back with what only the store knows — the live forecast and the user's other runs.

Writing (``run_health``, called by ``analysis.pipeline`` for every run analysed): the keys each detector reads
(``analysis.keys.health_keys``), the curves loaded with their wall times, warm-up evaluations left out of the
benchmarks, every detector run; the result holds ``health`` (the findings as dicts) and ``health_profile``
(the share of entropy spent at fixed steps and the hours per step, for comparing runs).

Reading (``health_payload``, for ``doctor``, ``fit --json``, reports and the Health page): the stored findings,
each threshold-based one told where the run stands among the store's finished runs, and the plateau and
collapse findings of a run in progress told what its live forecast says the remaining steps buy
(``_forecast_quote``: the one place that reads the forecast).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from analysis.keys import benchmark_name, health_keys
from analysis.results import RunAnalysis
from models.health import (
    RANK,
    Finding,
    advantage_collapse,
    clipping,
    divergence,
    entropy_blowup,
    entropy_collapse,
    gradients,
    kl_drift,
    length,
    plateau,
    worst,
)
from models.health.series import Curve

_GROUP_SIZE = re.compile(r"(^|[/.])(rollout[/.]n|num_generations|n_samples_per_prompt|group_size)$")


# --- writing -------------------------------------------------------------------------------------------------


class PointReader(Protocol):
    """Where the curves come from: ``db.Store`` itself, or points read for many runs at once."""

    def points(self, run_id: int, key: str) -> np.ndarray: ...


def keys_read(roles: Mapping[str, str | None]) -> set[str]:
    """The keys ``run_health`` reads besides the run's entropy and benchmark keys (``roles``: its keys with
    points), so that their points can be read ahead with other runs'."""
    keys = list(roles)
    hk = health_keys(keys, roles)
    one = [_train_reward(keys, roles), *(_first(hk[r]) for r in ("zero_std_frac", "reward_std", "clip_ratio",
                                                                  "response_length", "grad_norm"))]
    return {k for k in one if k is not None} | set(hk["pg_clipfrac"]) | set(hk["kl"])


def run_health(store: PointReader, run: Mapping[str, Any], roles: Mapping[str, str | None],
               result: Mapping[str, Any]) -> dict[str, Any]:
    """The findings of every detector on one run, and its profile (module docstring)."""
    run_id = int(run["id"])
    keys = list(roles)
    cache: dict[str, Curve] = {}

    def curve(key: str | None, drop: Iterable[int] = ()) -> Curve | None:
        if key is None or key not in roles:
            return None
        if key not in cache:
            pts = store.points(run_id, key)
            cache[key] = Curve.of(key, pts[:, 0], pts[:, 1], pts[:, 2] if pts.shape[1] > 2 else None)
        c = cache[key]
        if len(c) == 0:
            return None
        drop = list(drop)
        if drop:
            keep = ~np.isin(c.steps, np.asarray(drop, dtype=np.int64))
            c = Curve(c.key, c.steps[keep], c.values[keep], None if c.wall is None else c.wall[keep])
        return c

    hk = health_keys(keys, roles)
    entropy = curve(result.get("entropy_key"))
    reward = curve(_train_reward(keys, roles))
    head_key = result.get("performance_key")
    head_kind = result.get("performance_kind")
    head = curve(head_key, result.get("excluded_steps") or []) if head_kind != "train_reward" else None
    benches = list(result.get("benchmarks") or []) if head_kind != "train_reward" else []
    findings = [entropy_collapse.detect(entropy, head if head is not None else reward,
                                        scale=_scale((result.get("range") or {}) if head is not None else {}))]
    findings.append(entropy_blowup.detect(entropy, reward))
    findings.append(advantage_collapse.detect(curve(_first(hk["zero_std_frac"])), reward,
                                              group_size=group_size(run.get("params")),
                                              score_range=_score_range(reward),
                                              reward_std=curve(_first(hk["reward_std"]))))
    per_bench = [(curve(b["key"], b.get("excluded_steps") or []), b.get("benchmark") or benchmark_name(b["key"]),
                  _scale(b.get("range") or {})) for b in benches] or [(None, "a held-out benchmark", None)]
    findings += [divergence.detect(reward, c, name=n, scale=sc) for c, n, sc in per_bench]
    findings.append(length.detect(curve(_first(hk["clip_ratio"])), curve(_first(hk["response_length"]))))
    findings.append(clipping.detect([c for k in hk["pg_clipfrac"] if (c := curve(k)) is not None]))
    findings.append(kl_drift.detect([c for k in hk["kl"] if (c := curve(k)) is not None]))
    findings.append(gradients.detect(curve(_first(hk["grad_norm"]))))
    findings += [plateau.detect(c, name=n, scale=sc) for c, n, sc in per_bench]
    profile = {"entropy_spent": {str(k): v for k, v in entropy_collapse.spent_profile(entropy).items()},
               "hours_per_step": _hours_per_step(entropy if entropy is not None else reward)}
    return {"health": [f.to_dict() for f in findings], "health_profile": profile}


def group_size(params: Mapping[str, Any] | None) -> int | None:
    """Rollouts per prompt as the run's config gives it (verl ``actor_rollout_ref.rollout.n``, TRL
    ``num_generations``, OpenRLHF ``n_samples_per_prompt``)."""
    for k, v in (params or {}).items():
        if _GROUP_SIZE.search(str(k).lower()):
            try:
                n = int(float(v))
            except (TypeError, ValueError):
                continue
            if n >= 2:
                return n
    return None


def _train_reward(keys: Sequence[str], roles: Mapping[str, str | None]) -> str | None:
    cand = [k for k in keys if roles.get(k) == "train_reward"]
    return min(cand, key=lambda k: (k != "critic/score/mean", k != "reward", len(k), k), default=None)


def _score_range(reward: Curve | None) -> tuple[float, float] | None:
    """[0, 1] or [−1, 1] when every training score lies inside it (a 0/1 or ±1 verifier), else None."""
    if reward is None or not np.isfinite(reward.values).any():
        return None
    lo, hi = float(np.nanmin(reward.values)), float(np.nanmax(reward.values))
    return next(((a, b) for a, b in ((0.0, 1.0), (-1.0, 1.0)) if lo >= a and hi <= b), None)


def _first(keys: Sequence[str]) -> str | None:
    return min(keys, key=lambda k: (len(k), k)) if keys else None


def _scale(rng: Mapping[str, Any]) -> float | None:
    lo, hi = rng.get("lo"), rng.get("hi")
    return float(hi - lo) if lo is not None and hi is not None and hi > lo else None


def _hours_per_step(c: Curve | None) -> float | None:
    if c is None or c.wall is None or len(c) < 3:
        return None
    ok = np.isfinite(c.wall)
    s, w = c.steps[ok], c.wall[ok]
    if s.size < 3 or s[-1] <= s[0]:
        return None
    per = np.diff(w) / np.maximum(np.diff(s), 1)
    per = per[per > 0]
    return float(np.median(per) / 3600) if per.size else None


# --- reading -------------------------------------------------------------------------------------------------


def findings_of(result: RunAnalysis) -> list[Finding]:
    return [Finding.from_dict(d) for d in result.health or ()]


def health_payload(results: Sequence[RunAnalysis], chosen: Sequence[RunAnalysis] | None = None,
                   live: Mapping[int, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per run (of ``chosen``, default all): its findings with their context, worst severity first; ``live`` maps
    run id → live forecast document, as stored across runs (``CrossRun.live``)."""
    live = live or {}
    cohort = Cohort([r for r in results if r.finished and r.health])
    out = []
    for res in chosen if chosen is not None else results:
        found = [_in_context(f, res, cohort, live.get(int(res.run_id))) for f in findings_of(res)]
        found.sort(key=lambda f: -f.rank)
        out.append({"run": res.run, "run_id": res.run_id, "project": res.project,
                    "progress": res.progress, "worst": worst(found),
                    "findings": [f.to_dict() for f in found]})
    return out


def _in_context(f: Finding, res: RunAnalysis, cohort: Cohort, live: Mapping[str, Any] | None) -> Finding:
    if f.severity == "skipped":
        return f
    f = _cohort(f, res, cohort)
    if live is not None and f.detector in (entropy_collapse.NAME, plateau.NAME):
        on_headline = f.benchmark is None or res.performance_key in f.keys
        if on_headline:
            quote = _forecast_quote(live, f, res)
            if quote:
                f = f.with_context(quote[0], **quote[1])
    return f


def _forecast_quote(live: Mapping[str, Any], f: Finding, res: RunAnalysis) -> tuple[str, dict] | None:
    """What the live forecast (``analysis.forecasting.live_forecasts``' document) says the remaining planned steps
    buy, from the finding's recent level: the only place health reads the forecast."""
    pred, interval = live.get("predicted_final"), live.get("interval")
    end, now = live.get("horizon_step"), live.get("from_step")
    recent = f.evidence.get("performance_recent", f.evidence.get("benchmark_recent"))
    if pred is None or interval is None or end is None or now is None or recent is None:
        return None
    left = int(end) - int(now)
    share = 1 - float(live.get("fraction_done") or 0)
    per = (res.health_profile or {}).get("hours_per_step")
    bounded = (res.range or {}).get("hi") is not None
    unit, k = (" pt", 100.0) if bounded else ("", 1.0)
    gain, lo, hi = (k * (pred - recent), k * (interval[0] - recent), k * (interval[1] - recent))
    mae = live.get("backtest_mae")
    track = (f"; its backtest error on {live.get('backtest_n')} finished runs is {k * mae:.1f}{unit}"
             if mae is not None else "; no finished run backtests it yet")
    hours = f", about {left * per:.1f} h" if per else ""
    sentence = (f"The live forecast for step {end}: the remaining {share:.0%} of the planned steps buy "
                f"{gain:+.1f}{unit} [{lo:+.1f}, {hi:+.1f}] ({live.get('method')}{track}); stopping at step {now} "
                f"saves {left} steps{hours}.")
    return sentence, {"forecast_final": float(pred), "forecast_lo": float(interval[0]),
                      "forecast_hi": float(interval[1]), "forecast_gain": gain, "steps_left": left,
                      "hours_left": left * per if per else None}


class _Values:
    """Numbers of the finished runs, sorted once: how many lie below and above a number is two bisections."""

    def __init__(self, values: Iterable[float]) -> None:
        vals = list(values)
        self.sorted = sorted(v for v in vals if v == v)  # NaN compares false both ways: counted in n only
        self.n = len(vals)

    def standing(self, v: float, own: Sequence[float]) -> tuple[int, int, int]:
        """(n, below, above) over these numbers without ``own`` (the run's own numbers among them)."""
        n = self.n - len(own)
        if v != v:
            return n, 0, 0
        below = bisect_left(self.sorted, v) - sum(o < v for o in own)
        above = len(self.sorted) - bisect_right(self.sorted, v) - sum(o > v for o in own)
        return n, below, above


class Cohort:
    """The store's finished runs as ``_cohort`` ranks a run among them: per step their entropy spent, per
    (detector, benchmark) their findings' ``cohort_value`` — indexed once per payload, so ranking every run of
    a store costs about n log n, not n² (the same counts as a pass over every other run)."""

    def __init__(self, finished: Sequence[RunAnalysis]) -> None:
        spent: dict[str, list[float]] = {}
        values: dict[tuple[str, str | None], list[float]] = {}
        self._own: dict[int, tuple[dict[str, list[float]], dict[tuple[str, str | None], list[float]]]] = {}
        for o in finished:
            own_spent, own_values = self._own.setdefault(int(o.run_id), ({}, {}))
            for step, v in (((o.health_profile or {}).get("entropy_spent") or {}).items()):
                if v is not None:
                    spent.setdefault(step, []).append(v)
                    own_spent.setdefault(step, []).append(v)
            for d in o.health or ():
                ov = (d.get("evidence") or {}).get("cohort_value")
                if isinstance(ov, int | float):
                    key = (d["detector"], d.get("benchmark"))
                    values.setdefault(key, []).append(ov)
                    own_values.setdefault(key, []).append(ov)
        self._spent = {k: _Values(v) for k, v in spent.items()}
        self._values = {k: _Values(v) for k, v in values.items()}

    def spent(self, run_id: int, step: str, v: float) -> tuple[int, int, int]:
        """(n, below, above) of the other finished runs' entropy spent by ``step``."""
        vals = self._spent.get(step)
        return (0, 0, 0) if vals is None else vals.standing(v, self._own.get(run_id, ({}, {}))[0].get(step, []))

    def value(self, run_id: int, detector: str, benchmark: str | None, v: float) -> tuple[int, int, int]:
        """(n, below, above) of the other finished runs' ``cohort_value`` of this detector and benchmark."""
        vals = self._values.get((detector, benchmark))
        own = self._own.get(run_id, ({}, {}))[1].get((detector, benchmark), [])
        return (0, 0, 0) if vals is None else vals.standing(v, own)


def _cohort(f: Finding, res: RunAnalysis, cohort: Cohort) -> Finding:
    """Where this run stands among the store's other finished runs on the finding's own number."""
    run_id = int(res.run_id)
    if f.detector == entropy_collapse.NAME:
        mine = (res.health_profile or {}).get("entropy_spent") or {}
        for step in sorted(mine, key=int, reverse=True):
            n, below, above = cohort.spent(run_id, step, mine[step])
            if n >= 2:
                standing = _standing(n, below, above).replace("higher", "faster").replace("lower", "slower")
                return f.with_context(f"Entropy spent by step {step} ({mine[step]:.0%}): {standing}.",
                                      cohort_step=int(step), cohort_rank=below, cohort_n=n)
        return f
    v = f.evidence.get("cohort_value")
    if not isinstance(v, int | float):
        return f
    n, below, above = cohort.value(run_id, f.detector, f.benchmark, v)
    if n < 2:
        return f
    what = str(f.evidence.get("cohort_metric") or "this number")
    return f.with_context(f"{what[0].upper()}{what[1:]} {_fmt(v)}: {_standing(n, below, above)}.",
                          cohort_rank=below, cohort_n=n)


def _standing(n: int, below: int, above: int) -> str:
    if below == n:
        return f"higher than all {n} of your finished runs"
    if above == n:
        return f"lower than all {n} of your finished runs"
    if below == 0:
        return f"not above any of your {n} finished runs"
    return f"higher than {below} of your {n} finished runs"


def _fmt(v: float) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def at_least(payload: Sequence[Mapping[str, Any]], level: str) -> list[dict[str, Any]]:
    """The findings of a payload at or above ``level`` (info | warn | critical), with their run."""
    return [{"run": r["run"], "run_id": r["run_id"], **f} for r in payload for f in r["findings"]
            if RANK[f["severity"]] >= RANK[level]]
