"""Forecast a run's performance from its first part: entropy trajectory → law → R, plus honest baselines.

Method ("law"). From the points up to ``cutoff_step``:

1. Pair evaluations with entropy (``models.align``: R at step s ↔ entropy of the rollout at step ≥ s + 1) and
   fit the law R = −a·e^H + b on those pairs (ordinary least squares, or a robust soft-L1/Huber fit with
   ``loss=``).
2. Fit the entropy trajectory H(step) on the per-step entropy up to the cutoff (``models.decay.fit_decay``,
   the power decay by default — see below; ``decay_kinds=`` widens or restricts the choice).
   Leading evaluations that are off the law because of a format-learning warm-up are dropped first
   (``warmup_pairs``; ``warmup=False`` keeps them), and the entropy trajectory is then fitted from there.
3. The forecast at a later step s is R̂(s) = b′ − a·exp(Ĥ(s + 1)) (the +1 is the same pairing rule as in 1),
   where b′ is the law's level re-estimated on the latest pairs (``anchor=True``, the default): the slope a
   comes from all the pre-cutoff pairs, the level b′ = mean(R + a·e^H) from the last half of them (at least
   3; the median of R + a·e^H with a robust loss). ``anchor=False`` uses the OLS intercept b.

Why anchor. The early pairs span high entropy (H ≈ 1 → 0.2) and lever the intercept; a small curvature of R
against e^H (present in the GRPO simulator: residuals of +4, −4, then a steady +1.5 pt on the low-entropy
pairs) becomes a 2-pt bias when the line is extrapolated to H ≈ 0.05. Measured with the *true* future entropy
(oracle) the unanchored law missed the final score by −1.96 pt on the demo sweep, the anchored one by
−0.81 pt (21 other seeds: −1.68 → −0.88); on the real verl logs the two are within 0.1 pt of each other
(1.26 vs 1.18 pt MAE; ``bench/backtest.py``). The
ceiling moves with the level (b′ − a, its interval from var(a)·(x̄ − 1)² + the anchor mean's noise).

Why power decay by default (``decay_kinds=FORECAST_KINDS``). The forecast extrapolates the entropy curve
2–3× beyond the fitted window. Chosen by held-out (or rolling-origin) residual, which only sees the next few
steps, the exponential wins often and then levels off at about the entropy already reached (its floor is
biased toward the end level of a window that stops before the decay does); measured through the law that is
a +1 pt bias on both the simulated and the real runs, while the power curve f + c·(t + t0)^(−α) keeps
decaying at a slowing rate, as RL entropy does (log–log slope falling from ≈ 0.9 at 30% to ≈ 0.4 after it
on the real Qwen logs). ``models.decay.KINDS`` restores the held-out choice.

Uncertainty (a prediction interval, not just a confidence band): ``n_boot`` joint draws, all vectorised —

* law parameters (a, b) from a bivariate Student-t with the fit's covariance and n − 2 degrees of freedom;
* the entropy trajectory from a moving-block residual bootstrap of the decay fit (blocks of ≈ n^(1/3) steps,
  because per-step entropy residuals are autocorrelated), each replicate refitted with the chosen decay kind
  on a local grid of its shape parameter(s) around the fitted one, level parameters in closed form for every
  (replicate, grid point) at once from sufficient statistics;
* evaluation noise: the law's residual standard deviation times a Student-t draw.

Natural bounds. The law itself is left untransformed (it is linear in e^H, which is what makes it a law);
every prediction, every bootstrap path and the ceiling with its interval are *clipped* to ``bounds``
(default (0, 1) for an accuracy; ``None`` for an unbounded reward). So a ceiling b − a = 1.07 is reported as
1.0, and an interval never leaves the metric's range.

Baselines, fitted on the same pre-cutoff evaluations:

* ``saturating``: R(t) = c − d·e^(−t/τ) in the step, ``scipy.optimize.curve_fit`` with c bounded to the
  metric's range and τ between 1% and 20× the observed step span; interval from the parameter covariance
  (Gaussian draws) plus its residual noise.
* ``last_value``: the last evaluation at or before the cutoff, flat; interval ± the evaluation noise.
* ``combined``: a weighted average of the three, weights ∝ 1 / MSE from a *rolling-origin* split of the
  pre-cutoff evaluations (origins from the middle of the pre-cutoff evaluations to the second-to-last; each
  method is refitted on the points up to the origin and scored on every later pre-cutoff evaluation, each
  squared error weighted by how many steps ahead it was predicted — the final score is far ahead). Its
  interval is that of the mixture (a method is drawn with its weight per bootstrap path), so disagreement
  between the methods widens it. Nothing after the cutoff is used.

``steps_to_within(pt)``: the first step at which the law's forecast comes within ``pt`` of the (bounded)
ceiling, solved exactly on the entropy curve: b − a·e^H ≥ ceiling − pt ⇔ H ≤ ln((b − ceiling + pt) / a);
None when the forecast entropy levels off above that level (the run would plateau short of it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from models.align import align
from models.decay import KINDS, DecayFit, fit_decay  # noqa: F401  (KINDS: the held-out choice, re-exported)
from models.errors import FitError
from models.law import LawFit, fit_law, fit_law_robust

METHODS = ("law", "saturating", "last_value", "combined")
LOSSES = ("linear", "soft_l1", "huber")
MIN_PAIRS = 4
MIN_ENTROPY_POINTS = 4
N_BOOT = 400
CONFIDENCE = 0.95
WARMUP_Z = 4.0
#: share of the (post-warm-up) pre-cutoff pairs that set the law's level when ``anchor=True``
ANCHOR_FRACTION = 0.5
#: decay models the forecast extrapolates with (see the module docstring: why power by default)
FORECAST_KINDS = ("power",)
MIN_ANCHOR_PAIRS = 3
Bounds = tuple[float, float] | None


@dataclass(frozen=True, eq=False)
class MethodForecast:
    """One method's forecast at the horizon steps: point, prediction interval and bootstrap paths."""

    name: str
    steps: np.ndarray
    mean: np.ndarray  # point forecast at `steps` (bounded)
    lo: np.ndarray  # prediction interval (parameter uncertainty + evaluation noise), bounded
    hi: np.ndarray
    noise_sd: float  # evaluation noise used for the prediction interval
    paths: np.ndarray  # (n_boot, len(steps)) noise-free bootstrap paths, bounded
    params: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def final(self) -> float:
        """Point forecast at the last horizon step."""
        return float(self.mean[-1])

    @property
    def final_interval(self) -> tuple[float, float]:
        return (float(self.lo[-1]), float(self.hi[-1]))

    def window(self, steps: Sequence[int] | np.ndarray, *, confidence: float = CONFIDENCE,
               bounds: Bounds = (0.0, 1.0), seed: int = 0) -> tuple[float, tuple[float, float]]:
        """Forecast of the *mean* of evaluations at ``steps`` (a subset of the horizon) and its interval.

        The interval averages the bootstrap paths over the steps and adds evaluation noise of the mean
        (noise_sd / √k), so it is the interval for the quantity a backtest observes.
        """
        idx = np.searchsorted(self.steps, np.asarray(steps))
        if np.any(idx >= len(self.steps)) or np.any(self.steps[np.minimum(idx, len(self.steps) - 1)] != steps):
            raise FitError("window steps must be horizon steps of the forecast", "bad_option")
        point = float(self.mean[idx].mean())
        rng = np.random.default_rng(seed)
        draws = self.paths[:, idx].mean(axis=1) + rng.standard_normal(len(self.paths)) * self.noise_sd / np.sqrt(
            len(idx))
        lo, hi = np.quantile(_clip(draws, bounds), [(1 - confidence) / 2, (1 + confidence) / 2])
        return point, (float(lo), float(hi))

    def to_dict(self) -> dict:
        return {"name": self.name, "steps": self.steps.tolist(), "mean": self.mean.tolist(),
                "lo": self.lo.tolist(), "hi": self.hi.tolist(), "final": self.final,
                "final_interval": list(self.final_interval), "noise_sd": self.noise_sd,
                "params": dict(self.params), "note": self.note}


@dataclass(frozen=True, eq=False)
class Forecast:
    """Forecast of a run from its points up to ``cutoff_step``, by every method, with its evidence."""

    cutoff_step: int
    steps: np.ndarray  # horizon steps
    methods: dict[str, MethodForecast]
    law: LawFit
    decay: DecayFit
    entropy_forecast: np.ndarray  # Ĥ(s + 1) at the horizon steps
    ceiling: float  # bounded b − a
    ceiling_interval: tuple[float, float]
    weights: dict[str, float]  # combination weights (rolling origin)
    rolling_mse: dict[str, float]  # pre-cutoff rolling-origin MSE per method (inf where it failed)
    n_pairs: int  # law pairs used
    n_entropy: int  # entropy points used for the decay fit
    bounds: Bounds
    loss: str
    warmup_end_step: float | None = None  # first entropy step used when a warm-up was dropped
    confidence: float = CONFIDENCE
    level_shift: float = 0.0  # anchored level b′ − b of the law (0 when not anchored)
    anchor_pairs: int = 0  # latest pre-cutoff pairs that set the anchored level (0: not anchored)

    @property
    def best_before_cutoff(self) -> str:
        """The method with the smallest rolling-origin error before the cutoff (evidence, not a verdict)."""
        return min(self.rolling_mse, key=self.rolling_mse.__getitem__)

    def predict(self, method: str = "law") -> np.ndarray:
        return self._method(method).mean

    def interval(self, method: str = "law") -> tuple[np.ndarray, np.ndarray]:
        m = self._method(method)
        return m.lo, m.hi

    def final(self, method: str = "law") -> float:
        return self._method(method).final

    def steps_to_within(self, pt: float = 0.01) -> float | None:
        """First step at which the law forecast is within ``pt`` of the bounded ceiling (module docstring)."""
        a, b = self.law.a, self.law.b + self.level_shift
        if a <= 0:
            return None
        arg = (b - self.ceiling + pt) / a
        if arg <= 0:
            return None
        level = float(np.log(arg))
        s = self.decay.step_at(level)
        return None if s is None else max(float(s) - 1.0, float(self.decay.step_min) - 1.0)

    def _method(self, name: str) -> MethodForecast:
        if name not in self.methods:
            raise FitError(f"unknown forecast method {name!r}: choose among {list(self.methods)}", "bad_option")
        return self.methods[name]

    def to_dict(self) -> dict:
        return {
            "cutoff_step": self.cutoff_step, "steps": self.steps.tolist(),
            "methods": {k: v.to_dict() for k, v in self.methods.items()},
            "law": self.law.to_dict(), "decay": self.decay.to_dict(),
            "entropy_forecast": self.entropy_forecast.tolist(), "ceiling": self.ceiling,
            "ceiling_interval": list(self.ceiling_interval), "weights": dict(self.weights),
            "rolling_mse": dict(self.rolling_mse), "best_before_cutoff": self.best_before_cutoff,
            "steps_to_within_1pt": self.steps_to_within(0.01), "n_pairs": self.n_pairs,
            "n_entropy": self.n_entropy, "bounds": list(self.bounds) if self.bounds else None,
            "loss": self.loss, "warmup_end_step": self.warmup_end_step, "confidence": self.confidence,
            "level_shift": self.level_shift, "anchor_pairs": self.anchor_pairs,
        }


# --- entry point ------------------------------------------------------------------------------------


def forecast(
    entropy_steps: Sequence[float] | np.ndarray,
    entropy: Sequence[float] | np.ndarray,
    perf_steps: Sequence[float] | np.ndarray,
    perf: Sequence[float] | np.ndarray,
    *,
    cutoff_step: float,
    horizon_steps: Sequence[float] | np.ndarray,
    bounds: Bounds = (0.0, 1.0),
    loss: str = "linear",
    warmup: bool = True,
    decay_kinds: Sequence[str] = FORECAST_KINDS,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    anchor: bool = True,
) -> Forecast:
    """Forecast R at ``horizon_steps`` from the points at or before ``cutoff_step`` (method in the module).

    Raises ``FitError`` (cause ``too_few_points_before_cutoff``, ``non_finite``, ``no_entropy_spread``…)
    when the pre-cutoff data cannot support the law or the decay fit.
    """
    if loss not in LOSSES:
        raise FitError(f"unknown loss {loss!r}: use one of {list(LOSSES)}", "bad_option")
    hs, hv, ps, pv = _pre_cutoff(entropy_steps, entropy, perf_steps, perf, cutoff_step)
    steps = np.sort(np.asarray(horizon_steps, dtype=float).ravel())
    if steps.size == 0:
        raise FitError("no horizon steps to forecast", "bad_option")
    rng = np.random.default_rng(seed)

    law, n_pairs, warm_end, (h_pairs, r_pairs) = _fit_law_pre(hs, hv, ps, pv, loss, warmup, with_pairs=True)
    level = _anchor_level(law, h_pairs, r_pairs) if anchor else None
    if warm_end is not None:  # the entropy trajectory is fitted after the warm-up too
        keep = hs >= warm_end
        hs, hv = hs[keep], hv[keep]
    decay = fit_decay(hs, hv, kinds=decay_kinds)
    h_paths = _decay_bootstrap(decay, hs, hv, steps + 1, n_boot, rng)
    methods = {
        "law": _law_method(law, decay, steps, h_paths, bounds, confidence, rng, level),
        "saturating": _saturating_method(ps, pv, steps, bounds, n_boot, confidence, rng),
        "last_value": _last_value_method(ps, pv, steps, bounds, n_boot, confidence, rng, law.sigma),
    }
    mse = _rolling_origin_mse(hs, hv, ps, pv, loss, bounds, warmup, decay_kinds, anchor)
    weights = _weights(mse)
    methods["combined"] = _combine(methods, weights, steps, bounds, confidence, rng)
    ceiling, (lo, hi) = _ceiling(law, level, confidence)
    lo, hi = _clip(np.array([lo, hi]), bounds)
    return Forecast(
        cutoff_step=int(cutoff_step), steps=steps, methods=methods, law=law, decay=decay,
        entropy_forecast=decay.predict(steps + 1), ceiling=float(_clip(ceiling, bounds)),
        ceiling_interval=(float(lo), float(hi)), weights=weights, rolling_mse=mse, n_pairs=n_pairs,
        n_entropy=len(hs), bounds=bounds, loss=loss, warmup_end_step=warm_end, confidence=confidence,
        level_shift=0.0 if level is None else level.b - law.b, anchor_pairs=0 if level is None else level.m,
    )


# --- data -------------------------------------------------------------------------------------------


def _pre_cutoff(entropy_steps, entropy, perf_steps, perf, cutoff_step):
    """Finite points at or before the cutoff, sorted by step."""
    out = []
    for s, v, role in ((entropy_steps, entropy, "entropy"), (perf_steps, perf, "performance")):
        s = np.asarray(s, dtype=float).ravel()
        v = np.asarray(v, dtype=float).ravel()
        if s.shape != v.shape:
            raise FitError(f"{role} steps and values differ in length: {s.size} vs {v.size}", "shape")
        keep = np.isfinite(s) & np.isfinite(v) & (s <= cutoff_step)
        order = np.argsort(s[keep], kind="stable")
        out += [s[keep][order], v[keep][order]]
    hs, hv, ps, pv = out
    if len(hs) < MIN_ENTROPY_POINTS:
        raise FitError(f"need at least {MIN_ENTROPY_POINTS} entropy points at or before step {cutoff_step:g} "
                       f"to forecast the entropy trajectory, got {len(hs)}", "too_few_points_before_cutoff")
    if len(pv) < MIN_PAIRS:
        raise FitError(f"need at least {MIN_PAIRS} evaluations at or before step {cutoff_step:g} to fit the "
                       f"law and the baselines, got {len(pv)}; use a later cutoff", "too_few_points_before_cutoff")
    return hs, hv, ps, pv


def _pairs(hs, hv, ps, pv) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Aligned (entropy, performance) pairs with their performance and entropy steps."""
    a = align(pd.Series(hv, index=hs.astype(np.int64)), pd.Series(pv, index=ps.astype(np.int64)))
    return a.entropy, a.performance, a.steps.astype(float), a.entropy_steps.astype(float)


def warmup_pairs(h: np.ndarray, r: np.ndarray, *, z: float = WARMUP_Z) -> int:
    """Number of leading pairs to drop as a warm-up (format learning) that is not on the law.

    Early in many runs accuracy jumps while entropy has not moved yet (the model learns the answer
    format): those evaluations sit far *below* the law of the later points and, having the highest
    entropy, lever the fit. Working backwards from a clean tail (the law fitted on pairs[k:], starting at
    k = min(n // 3, n − 6)), pair k − 1 joins while it is not more than ``z`` prediction standard errors
    below that fit (one-sided: only the "not there yet" direction); the first pair that is marks the end
    of the warm-up, and it and everything before it are dropped. Runs whose first pairs follow the law
    lose nothing.
    """
    n = len(h)
    k = min(n // 3, n - 6)
    while k > 0:
        try:
            law = fit_law(h[k:], r[k:])
        except FitError:
            return 0
        lo, _ = law.interval(h[k - 1], prediction=True)
        se = (law.predict(h[k - 1]) - lo) / t_quantile(law.confidence, law.dof)
        if r[k - 1] < law.predict(h[k - 1]) - z * max(float(se), 1e-12):
            return k
        k -= 1
    return 0


def _fit_law_pre(hs, hv, ps, pv, loss: str, warmup: bool, *, with_pairs: bool = False):
    """Law on the pre-cutoff pairs (after the warm-up, if any); returns it, the pairs used and the first
    entropy step after the warm-up (None when nothing was trimmed), and with ``with_pairs`` the (h, r) pairs."""
    h, r, _, es = _pairs(hs, hv, ps, pv)
    k = warmup_pairs(h, r) if warmup else 0
    h, r = h[k:], r[k:]
    if len(h) < MIN_PAIRS:
        raise FitError(f"only {len(h)} (entropy, performance) pairs before the cutoff; the law needs at least "
                       f"{MIN_PAIRS} for a forecast", "too_few_points_before_cutoff")
    law = fit_law(h, r) if loss == "linear" else fit_law_robust(h, r, loss=loss)
    out = law, len(h), (float(es[k]) if k else None)
    return (*out, (h, r)) if with_pairs else out


@dataclass(frozen=True)
class _Level:
    """The law's level re-estimated on the latest pairs: b′ = mean(r + a·e^h) over the last ``m`` pairs."""

    b: float
    m: int
    r_mean: float  # mean R of the anchor pairs
    x_mean: float  # mean e^H of the anchor pairs (b′ = r_mean + a·x_mean)
    sd: float  # standard error of r_mean from the law's residual noise


def _anchor_level(law: LawFit, h: np.ndarray, r: np.ndarray) -> _Level:
    """Level of the law from the latest ``ANCHOR_FRACTION`` of the pairs, slope a from the whole fit.

    The early pairs span high entropy and lever the OLS intercept; the law's curvature in a real or simulated
    run is small but its extrapolation from H ≈ 1 to H ≈ 0.1 turns it into points of bias. The slope is what
    the early pairs measure well; the level is best measured where the run is now.
    """
    m = min(len(h), max(MIN_ANCHOR_PAIRS, int(np.ceil(ANCHOR_FRACTION * len(h)))))
    x = np.exp(h[-m:])
    # a robust law fit gets a robust level: the median of r + a·e^h (an outlier evaluation cannot move it)
    level = np.median if law.loss != "linear" else np.mean
    b = float(level(r[-m:] + law.a * x))
    x_mean = float(np.mean(x))
    r_mean = b - law.a * x_mean
    sigma = law.sigma if np.isfinite(law.sigma) else 0.0
    return _Level(b=r_mean + law.a * x_mean, m=m, r_mean=r_mean, x_mean=x_mean, sd=sigma / np.sqrt(m))


def _ceiling(law: LawFit, level: _Level | None, confidence: float) -> tuple[float, tuple[float, float]]:
    """b − a with its t-interval; anchored: b′ − a = r̄ + a·(x̄ − 1), var = (x̄ − 1)²·var(a) + sd(r̄)²."""
    if level is None:
        return law.ceiling, (law.ceiling_lo, law.ceiling_hi)
    c = level.b - law.a
    se = float(np.sqrt((level.x_mean - 1) ** 2 * law.a_se**2 + level.sd**2))
    q = t_quantile(confidence, law.dof) * se
    return c, (c - q, c + q)


def t_quantile(confidence: float, dof: int) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, max(dof, 1)))


def _clip(x, bounds: Bounds):
    return x if bounds is None else np.clip(x, bounds[0], bounds[1])


def _quantiles(draws: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return lo, hi


# --- law method -------------------------------------------------------------------------------------


def _law_method(law: LawFit, decay: DecayFit, steps, h_paths, bounds, confidence, rng,
                level: _Level | None = None) -> MethodForecast:
    """R̂ = b − a·exp(Ĥ(s+1)); paths from (a, b) Student-t draws × decay bootstrap paths. Anchored, b is
    b′ = r̄ + a·x̄ for every drawn a, plus the anchor mean's own noise."""
    n_boot = len(h_paths)
    dof = max(law.dof, 1)
    ab = _mvt_draws(np.array([law.a, law.b]), law.param_cov(), dof, n_boot, rng)
    b_draw, b_point = ab[:, 1:2], law.b
    params = {"a": law.a, "b": law.b}
    if level is not None:
        b_draw = level.r_mean + ab[:, 0:1] * level.x_mean + level.sd * rng.standard_t(dof, size=(n_boot, 1))
        b_point = level.b
        params |= {"b_anchored": level.b, "anchor_pairs": float(level.m)}
    paths = _clip(b_draw - ab[:, 0:1] * np.exp(h_paths), bounds)
    noise = law.sigma * rng.standard_t(dof, size=paths.shape)
    lo, hi = _quantiles(_clip(paths + noise, bounds), confidence)
    mean = _clip(b_point - law.a * np.exp(decay.predict(steps + 1)), bounds)
    note = f"entropy decay: {decay.kind}" + (f"; level from the last {level.m} pairs" if level else "")
    return MethodForecast("law", steps, mean, lo, hi, law.sigma, paths, params=params, note=note)


def _mvt_draws(mean: np.ndarray, cov: np.ndarray, dof: int, n: int, rng) -> np.ndarray:
    """Multivariate Student-t draws (normal draws scaled by √(dof/χ²))."""
    cov = np.where(np.isfinite(cov), cov, 0.0)
    z = rng.multivariate_normal(np.zeros(len(mean)), cov, size=n, method="eigh")
    return mean + z * np.sqrt(dof / rng.chisquare(dof, size=n))[:, None]


def _decay_bootstrap(decay: DecayFit, hs, hv, at, n_boot: int, rng) -> np.ndarray:
    """Moving-block residual bootstrap of the decay fit, each replicate refitted (vectorised); Ĥ at ``at``."""
    t = hs - decay.step_min
    fitted = decay.predict(hs)
    resid = hv - fitted
    n = len(hv)
    block = max(2, int(round(n ** (1 / 3))))
    n_blocks = -(-n // block)
    starts = rng.integers(0, max(n - block, 0) + 1, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n_boot, -1)[:, :n]
    y = fitted[None, :] + resid[idx]
    grid, basis = _local_grid(decay)
    b_obs = basis(grid, t)  # G × n
    b_at = basis(grid, np.asarray(at, dtype=float) - decay.step_min)  # G × m
    f, c, g = _best_levels(y, b_obs, floor=decay.kind != "linear")
    return f[:, None] + c[:, None] * b_at[g]


def _local_grid(decay: DecayFit) -> tuple[np.ndarray, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Shape-parameter grid around the fitted shape and the basis B(grid, t) with H = f + c·B."""
    p = decay.params
    mult = np.exp(np.linspace(-1.2, 1.2, 25))
    if decay.kind == "exponential":
        grid = (p["tau"] * mult)[:, None]

        def basis(g, t):
            return np.exp(-t[None, :] / g[:, 0:1])
    elif decay.kind == "power":
        m = np.exp(np.linspace(-1.0, 1.0, 9))
        grid = np.stack(np.meshgrid(p["t0"] * m, p["alpha"] * m, indexing="ij"), axis=-1).reshape(-1, 2)

        def basis(g, t):
            return np.power(np.maximum(t[None, :] + g[:, 0:1], 1e-12), -g[:, 1:2])
    else:
        grid = np.zeros((1, 1))

        def basis(g, t):
            return np.broadcast_to(-t[None, :], (len(g), len(t)))
    return grid, basis


def _best_levels(y: np.ndarray, b: np.ndarray, *, floor: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every replicate row of y (R × n) and grid row of b (G × n): least squares y ≈ f + c·b, with f ≥ 0
    when ``floor``; returns f, c and the grid index of the smallest residual sum of squares per replicate.

    Uses sufficient statistics only (R × G matrices), so the cost is one (R × n)·(n × G) product.
    """
    n = y.shape[1]
    sy, syy = y.sum(axis=1)[:, None], (y * y).sum(axis=1)[:, None]
    sb, sbb = b.sum(axis=1)[None, :], (b * b).sum(axis=1)[None, :]
    sby = y @ b.T
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (sby - sb * sy / n) / (sbb - sb * sb / n)
        f = (sy - c * sb) / n
        if floor:
            c0 = sby / sbb
            neg = f < 0
            f, c = np.where(neg, 0.0, f), np.where(neg, c0, c)
        rss = syy - 2 * f * sy - 2 * c * sby + n * f * f + 2 * f * c * sb + c * c * sbb
    rss = np.where(np.isfinite(rss), rss, np.inf)
    g = np.argmin(rss, axis=1)
    rows = np.arange(len(y))
    return f[rows, g], c[rows, g], g


# --- baselines --------------------------------------------------------------------------------------


def _saturating_fit(ps, pv, bounds: Bounds) -> tuple[np.ndarray, np.ndarray, float]:
    """R(t) = c − d·e^(−(t − t₀)/τ) by bounded curve_fit (t₀ the first step); returns params, cov, noise sd."""
    t = ps - ps[0]
    span = max(float(t[-1]), 1.0)
    lo_v, hi_v = (bounds if bounds is not None else
                  (float(pv.min() - 10 * np.ptp(pv) - 1), float(pv.max() + 10 * np.ptp(pv) + 1)))
    width = hi_v - lo_v
    c0 = float(np.clip(pv[-1] + 0.1 * np.ptp(pv), lo_v, hi_v))
    p0 = [c0, float(np.clip(c0 - pv[0], -width, width)), span / 3]
    lower, upper = [lo_v, -width, 0.01 * span], [hi_v, width, 20 * span]
    p0 = list(np.clip(p0, np.array(lower) + 1e-9, np.array(upper) - 1e-9))
    try:
        popt, pcov = optimize.curve_fit(_sat, t, pv, p0=p0, bounds=(lower, upper), maxfev=5000)
    except (RuntimeError, ValueError) as exc:
        raise FitError(f"saturating curve could not be fitted: {exc}", "saturating_failed") from exc
    resid = pv - _sat(t, *popt)
    sd = float(np.sqrt((resid**2).sum() / max(len(pv) - 3, 1)))
    return popt, pcov, sd


def _sat(t, c, d, tau):
    return c - d * np.exp(-t / tau)


def _saturating_method(ps, pv, steps, bounds, n_boot, confidence, rng) -> MethodForecast:
    t = steps - ps[0]
    try:
        popt, pcov, sd = _saturating_fit(ps, pv, bounds)
    except FitError as exc:  # fall back to flat, and say so
        m = _last_value_method(ps, pv, steps, bounds, n_boot, confidence, rng, float(np.std(pv)))
        return MethodForecast("saturating", steps, m.mean, m.lo, m.hi, m.noise_sd, m.paths, note=str(exc))
    cov = np.where(np.isfinite(pcov), pcov, 0.0)
    draws = rng.multivariate_normal(popt, cov, size=n_boot, method="eigh")
    draws[:, 2] = np.maximum(draws[:, 2], 1e-9)
    paths = _clip(_sat(t[None, :], draws[:, 0:1], draws[:, 1:2], draws[:, 2:3]), bounds)
    lo, hi = _quantiles(_clip(paths + sd * rng.standard_normal(paths.shape), bounds), confidence)
    mean = _clip(_sat(t, *popt), bounds)
    return MethodForecast("saturating", steps, mean, lo, hi, sd, paths,
                          params={"c": float(popt[0]), "d": float(popt[1]), "tau": float(popt[2])})


def _last_value_method(ps, pv, steps, bounds, n_boot, confidence, rng, noise_sd: float) -> MethodForecast:
    """Flat at the last pre-cutoff evaluation; interval ± evaluation noise (drift ignored: a naive baseline)."""
    last = float(pv[-1])
    mean = _clip(np.full(len(steps), last), bounds)
    paths = np.broadcast_to(mean, (n_boot, len(steps))).copy()
    lo, hi = _quantiles(_clip(paths + noise_sd * rng.standard_normal(paths.shape), bounds), confidence)
    return MethodForecast("last_value", steps, mean, lo, hi, noise_sd, paths, params={"last": last})


# --- combination ------------------------------------------------------------------------------------


def _point_forecasts(hs, hv, ps, pv, at, loss: str, bounds: Bounds, warmup: bool,
                     kinds: Sequence[str] = FORECAST_KINDS, anchor: bool = True) -> dict[str, np.ndarray]:
    """Point forecasts of every base method at steps ``at`` from the given points (NaN where one fails)."""
    out: dict[str, np.ndarray] = {}
    try:
        law, _, warm_end, (h, r) = _fit_law_pre(hs, hv, ps, pv, loss, warmup, with_pairs=True)
        b = _anchor_level(law, h, r).b if anchor else law.b
        keep = hs >= (warm_end if warm_end is not None else -np.inf)
        h_fc = fit_decay(hs[keep], hv[keep], kinds=kinds).predict(at + 1)
        out["law"] = _clip(b - law.a * np.exp(h_fc), bounds)
    except FitError:
        out["law"] = np.full(len(at), np.nan)
    try:
        popt, _, _ = _saturating_fit(ps, pv, bounds)
        out["saturating"] = _clip(_sat(at - ps[0], *popt), bounds)
    except FitError:
        out["saturating"] = np.full(len(at), np.nan)
    out["last_value"] = np.full(len(at), float(pv[-1]))
    return out


def _rolling_origin_mse(hs, hv, ps, pv, loss: str, bounds: Bounds, warmup: bool,
                        kinds: Sequence[str] = FORECAST_KINDS, anchor: bool = True) -> dict[str, float]:
    """Horizon-weighted mean squared error of each method refitted at origins inside the pre-cutoff evaluations."""
    n = len(ps)
    first = max(MIN_PAIRS - 1, n // 2 - 1)
    errs: dict[str, list[float]] = {"law": [], "saturating": [], "last_value": []}
    wts: list[float] = []
    for i in range(first, n - 1):
        origin = ps[i]
        keep_h = hs <= origin
        if keep_h.sum() < MIN_ENTROPY_POINTS:
            continue
        pred = _point_forecasts(hs[keep_h], hv[keep_h], ps[: i + 1], pv[: i + 1], ps[i + 1:], loss, bounds,
                                warmup, kinds, anchor)
        for k, v in pred.items():
            errs[k].extend(((np.asarray(v) - pv[i + 1:]) ** 2).tolist())
        wts.extend(_horizon_weight(ps[i + 1:] - origin).tolist())
    w = np.asarray(wts)
    return {k: (float(np.average(v, weights=w)) if v and np.all(np.isfinite(v)) else float("inf"))
            for k, v in errs.items()}


def _horizon_weight(ahead: np.ndarray) -> np.ndarray:
    """Weight of a rolling-origin error ∝ how far ahead it was predicted: the forecast that matters (the
    final score) is far ahead, and at one or two evaluations ahead a flat last value always looks good."""
    return np.maximum(np.asarray(ahead, dtype=float), 1e-9)


def _weights(mse: dict[str, float]) -> dict[str, float]:
    """Inverse-MSE weights over the methods that could be scored (equal if none or all errors are zero)."""
    finite = {k: v for k, v in mse.items() if np.isfinite(v)}
    if not finite:
        return {k: 1.0 / len(mse) for k in mse}
    inv = {k: 1.0 / max(v, 1e-12) for k, v in finite.items()}
    total = sum(inv.values())
    return {k: inv.get(k, 0.0) / total for k in mse}


def _combine(methods: dict[str, MethodForecast], weights: dict[str, float], steps, bounds, confidence,
             rng) -> MethodForecast:
    """Weighted point forecast; interval of the mixture (each path drawn from one method by its weight)."""
    names = list(weights)
    w = np.array([weights[k] for k in names])
    mean = _clip(sum(weights[k] * methods[k].mean for k in names), bounds)
    n_boot = len(methods[names[0]].paths)
    pick = rng.choice(len(names), size=n_boot, p=w / w.sum())
    paths = np.stack([methods[k].paths for k in names])[pick, np.arange(n_boot)]
    sd = np.array([methods[k].noise_sd for k in names])[pick]
    lo, hi = _quantiles(_clip(paths + sd[:, None] * rng.standard_normal(paths.shape), bounds), confidence)
    noise = float(np.sqrt(np.sum(w * np.array([methods[k].noise_sd for k in names]) ** 2)))
    return MethodForecast("combined", steps, mean, lo, hi, noise, paths,
                          params={f"w_{k}": weights[k] for k in names})
