"""The entropy–performance law R = −a·e^H + b, fitted by least squares on x = e^H.

R is linear in x, so ordinary least squares gives a, b, their covariance, R² and RMSE in closed form, and the
ceiling R(H=0) = b − a is simply the fitted line at x = 1, with a Student-t interval on n − 2 degrees of
freedom. ``fit_law_many`` does the same for many runs at once with array arithmetic (no Python loop per
run); ``fit_law`` is that computation for one run and ``fit_law_robust`` a soft-L1/Huber variant for runs
with outlier evaluations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from models.errors import FitError
from models.intervals import DEFAULT_CONFIDENCE, t_quantile

#: the ceiling is "far extrapolated" when H = 0 lies further below the lowest observed entropy than the
#: whole observed entropy range is wide
EXTRAPOLATION_LIMIT = 1.0

#: larger |H| is no mean token entropy (ln of a 256k vocabulary is 12.5) and e^H overflows near 710
MAX_ENTROPY = 50.0
MAX_PERFORMANCE = 1e100

FLAG_LAW_FAILS = "law does not hold here (a <= 0: performance does not rise as entropy falls)"
FLAG_EXTRAPOLATED = "ceiling extrapolated far beyond the observed entropy range"


@dataclass(frozen=True)
class LawFit:
    """One fit of R = −a·e^H + b: values, standard errors, covariance, goodness of fit and the ceiling."""

    a: float
    b: float
    a_se: float
    b_se: float
    cov_ab: float  # covariance of (a, b); var(a) = a_se², var(b) = b_se²
    r2: float
    rmse: float
    n: int
    h_min: float
    h_max: float
    x_mean: float  # mean of e^H, needed for intervals at other H
    sxx: float  # Σ (e^H − mean)², idem
    sigma: float  # residual standard deviation (n − 2 dof)
    ceiling: float
    ceiling_se: float
    ceiling_lo: float
    ceiling_hi: float
    confidence: float = DEFAULT_CONFIDENCE
    loss: str = "linear"
    n_excluded: int = 0  # outlier evaluations set aside by a robust fit

    @property
    def dof(self) -> int:
        return self.n - 2

    @property
    def ceiling_ci(self) -> tuple[float, float]:
        return (self.ceiling_lo, self.ceiling_hi)

    @property
    def holds(self) -> bool:
        return self.a > 0

    @property
    def extrapolation(self) -> float:
        """Distance from the lowest observed H to H = 0, in units of the observed H range."""
        span = self.h_max - self.h_min
        return float(self.h_min / span) if span > 0 else float("inf")

    @property
    def flags(self) -> tuple[str, ...]:
        out = []
        if not self.holds:
            out.append(FLAG_LAW_FAILS)
        if self.extrapolation > EXTRAPOLATION_LIMIT:
            out.append(FLAG_EXTRAPOLATED)
        return tuple(out)

    def predict(self, h: np.ndarray | float) -> np.ndarray:
        return self.b - self.a * np.exp(np.asarray(h, dtype=float))

    def interval(self, h: np.ndarray | float, *, prediction: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Confidence band of the fitted mean at H (or of a new observation when ``prediction``)."""
        x = np.exp(np.asarray(h, dtype=float))
        var = self.sigma**2 * (1.0 / self.n + (x - self.x_mean) ** 2 / self.sxx)
        if prediction:
            var = var + self.sigma**2
        half = t_quantile(self.dof, self.confidence) * np.sqrt(var)
        mid = self.predict(h)
        return mid - half, mid + half

    def param_cov(self) -> np.ndarray:
        """2×2 covariance matrix of (a, b)."""
        return np.array([[self.a_se**2, self.cov_ab], [self.cov_ab, self.b_se**2]])

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(ceiling_ci=[self.ceiling_lo, self.ceiling_hi], holds=self.holds, flags=list(self.flags),
                 extrapolation=self.extrapolation)
        return d

    def report(self) -> str:
        """A short human-readable account of the fit, in the spirit of lmfit's fit_report."""
        pct = round(self.confidence * 100)
        lines = [
            "[[Law]]  R = -a * exp(H) + b",
            f"    fit: {self.loss} least squares, n = {self.n}, dof = {self.dof}"
            + (f", {self.n_excluded} outlier evaluations excluded" if self.n_excluded else ""),
            f"    H range used: {self.h_min:.4g} .. {self.h_max:.4g}",
            f"    a = {self.a:.5g} +/- {self.a_se:.2g}",
            f"    b = {self.b:.5g} +/- {self.b_se:.2g}",
            f"    corr(a, b) = {self._corr():.3f}",
            f"    R^2 = {self.r2:.4f}, RMSE = {self.rmse:.4g}",
            f"    ceiling R(H=0) = b - a = {self.ceiling:.4g}  ({pct}% CI {self.ceiling_lo:.4g} .. {self.ceiling_hi:.4g})",
        ]
        lines += [f"    warning: {f}" for f in self.flags]
        return "\n".join(lines)

    def _corr(self) -> float:
        den = self.a_se * self.b_se
        return float(self.cov_ab / den) if den > 0 else float("nan")


@dataclass(frozen=True)
class LawFitBatch:
    """Fits of many runs at once: each field is an array with one entry per run (NaN where it failed)."""

    a: np.ndarray
    b: np.ndarray
    a_se: np.ndarray
    b_se: np.ndarray
    cov_ab: np.ndarray
    r2: np.ndarray
    rmse: np.ndarray
    n: np.ndarray
    h_min: np.ndarray
    h_max: np.ndarray
    x_mean: np.ndarray
    sxx: np.ndarray
    sigma: np.ndarray
    ceiling: np.ndarray
    ceiling_se: np.ndarray
    ceiling_lo: np.ndarray
    ceiling_hi: np.ndarray
    error: tuple[str | None, ...]  # cause of failure per run, None where the fit was made
    confidence: float = DEFAULT_CONFIDENCE

    def __len__(self) -> int:
        return len(self.a)

    def fit(self, i: int) -> LawFit:
        """The ``LawFit`` of run ``i``; raises the run's ``FitError`` when it could not be fitted."""
        if self.error[i] is not None:
            raise FitError(_MESSAGES[self.error[i]].format(n=int(self.n[i])), cause=self.error[i])
        names = [f for f in LawFit.__dataclass_fields__ if f not in ("confidence", "loss", "n_excluded")]
        vals = {f: getattr(self, f)[i] for f in names}
        vals["n"] = int(vals["n"])
        return LawFit(**{k: (v if k == "n" else float(v)) for k, v in vals.items()}, confidence=self.confidence)


_MESSAGES = {
    "too_few_points": "need at least 3 paired (entropy, performance) points to fit the law, got {n}",
    "non_finite": "entropy or performance contains NaN or infinite values; drop them before fitting",
    "out_of_range": f"entropy beyond ±{MAX_ENTROPY:g} nats or performance beyond ±{MAX_PERFORMANCE:g}: not a mean "
                    "token entropy or a score (e^H would overflow); check the metric keys",
    "no_entropy_spread": "entropy does not vary across the {n} paired points, so the law cannot be fitted",
}


def fit_law_many(h: np.ndarray, r: np.ndarray, *, confidence: float = DEFAULT_CONFIDENCE) -> LawFitBatch:
    """Fit every row of ``h`` / ``r`` (shape runs × points). NaN in both marks padding (unused slots).

    Rows with fewer than 3 points, a NaN/inf in only one of the two arrays, or no spread in H get NaN
    results and their cause in ``error``.
    """
    h = np.atleast_2d(np.asarray(h, dtype=float))
    r = np.atleast_2d(np.asarray(r, dtype=float))
    if h.shape != r.shape:
        raise FitError(f"entropy and performance arrays differ in shape: {h.shape} vs {r.shape}", "shape")
    pad = np.isnan(h) & np.isnan(r)
    bad = ~pad & ~(np.isfinite(h) & np.isfinite(r))
    with np.errstate(invalid="ignore"):
        # finite but beyond what e^H and R² can hold: refused, never overflowed
        out_of_range = ~pad & ~bad & ((np.abs(h) > MAX_ENTROPY) | (np.abs(r) > MAX_PERFORMANCE))
    bad = bad | out_of_range
    used = ~pad & ~bad
    n = used.sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        x = np.where(used, np.exp(np.where(used, h, 0.0)), 0.0)
        y = np.where(used, r, 0.0)
        x_mean = x.sum(axis=1) / n
        y_mean = y.sum(axis=1) / n
        dx = np.where(used, x - x_mean[:, None], 0.0)
        dy = np.where(used, y - y_mean[:, None], 0.0)
        sxx = (dx * dx).sum(axis=1)
        sxy = (dx * dy).sum(axis=1)
        syy = (dy * dy).sum(axis=1)
        slope = sxy / sxx  # = −a
        b = y_mean - slope * x_mean
        resid = np.where(used, y - (b[:, None] + slope[:, None] * x), 0.0)
        ssr = (resid * resid).sum(axis=1)
        dof = n - 2
        sigma2 = ssr / dof
        a_var = sigma2 / sxx
        b_var = sigma2 * (1.0 / n + x_mean**2 / sxx)
        cov_ab = x_mean * sigma2 / sxx  # cov(−slope, b) = −cov(slope, b) = x̄σ²/Sxx
        ceiling = b + slope
        ceiling_se = np.sqrt(sigma2 * (1.0 / n + (1.0 - x_mean) ** 2 / sxx))
        tq = _t_quantiles(confidence, np.maximum(dof, 1))
        r2 = np.where(syy > 0, 1.0 - ssr / syy, np.nan)  # no variance in R: R² is undefined, never 1
        rmse = np.sqrt(ssr / n)
        h_min = np.where(used, h, np.inf).min(axis=1, initial=np.inf)  # initial: rows without points
        h_max = np.where(used, h, -np.inf).max(axis=1, initial=-np.inf)

    spread = sxx > 1e-12 * np.maximum(x_mean**2, 1e-300)
    error: list[str | None] = []
    for ni, bi, oi, si in zip(n, bad.any(axis=1), out_of_range.any(axis=1), spread, strict=True):
        if oi:
            error.append("out_of_range")
        elif bi:
            error.append("non_finite")
        elif ni < 3:
            error.append("too_few_points")
        elif not si:
            error.append("no_entropy_spread")
        else:
            error.append(None)
    ok = np.array([e is None for e in error])

    def keep(v: np.ndarray) -> np.ndarray:
        return np.where(ok, v, np.nan)

    half = tq * ceiling_se
    return LawFitBatch(
        a=keep(-slope), b=keep(b), a_se=keep(np.sqrt(a_var)), b_se=keep(np.sqrt(b_var)), cov_ab=keep(cov_ab),
        r2=keep(r2), rmse=keep(rmse), n=n.astype(int), h_min=keep(h_min), h_max=keep(h_max),
        x_mean=keep(x_mean), sxx=keep(sxx), sigma=keep(np.sqrt(sigma2)), ceiling=keep(ceiling),
        ceiling_se=keep(ceiling_se), ceiling_lo=keep(ceiling - half), ceiling_hi=keep(ceiling + half),
        error=tuple(error), confidence=confidence,
    )


def fit_law(h: Sequence[float] | np.ndarray, r: Sequence[float] | np.ndarray, *,
            confidence: float = DEFAULT_CONFIDENCE) -> LawFit:
    """Fit one run's paired points; raises ``FitError`` naming the cause when it cannot."""
    h = np.asarray(h, dtype=float)
    r = np.asarray(r, dtype=float)
    if h.shape != r.shape or h.ndim != 1:
        raise FitError(f"entropy and performance must be 1-D and equal in length, got {h.shape} and {r.shape}",
                       "shape")
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(r))):
        raise FitError(_MESSAGES["non_finite"], "non_finite")
    if h.size and (np.abs(h).max() > MAX_ENTROPY or np.abs(r).max() > MAX_PERFORMANCE):
        raise FitError(_MESSAGES["out_of_range"], "out_of_range")
    return fit_law_many(h[None, :], r[None, :], confidence=confidence).fit(0)


def fit_law_robust(h: Sequence[float] | np.ndarray, r: Sequence[float] | np.ndarray, *,
                   loss: str = "soft_l1", f_scale: float | None = None, cutoff: float = 3.0,
                   confidence: float = DEFAULT_CONFIDENCE) -> LawFit:
    """Robust fit for runs with outlier evaluations (``soft_l1`` or ``huber`` loss).

    The robust loss finds the line without letting a broken evaluation drag it; points whose residual
    exceeds ``cutoff`` robust standard deviations (1.4826 × MAD) are then excluded, and the result is the
    exact least-squares fit of the rest — so values, covariance and the ceiling interval keep their
    closed-form meaning. ``n_excluded`` says how many evaluations were set aside.
    """
    if loss not in ("soft_l1", "huber"):
        raise FitError(f"unknown robust loss {loss!r}: use 'soft_l1' or 'huber'", "bad_option")
    from scipy import optimize
    ols = fit_law(h, r, confidence=confidence)
    h = np.asarray(h, dtype=float)
    r = np.asarray(r, dtype=float)
    x = np.exp(h)
    scale = f_scale or max(_mad(r - ols.predict(h)), 1e-9)
    sol = optimize.least_squares(lambda p: (p[1] - p[0] * x) - r, x0=[ols.a, ols.b], loss=loss, f_scale=scale)
    res = r - (sol.x[1] - sol.x[0] * x)
    keep = np.abs(res - np.median(res)) <= cutoff * max(_mad(res), 1e-12)
    fit = fit_law(h[keep], r[keep], confidence=confidence)
    return replace(fit, loss=loss, n_excluded=int((~keep).sum()))


def _mad(v: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def _t_quantiles(confidence: float, dof: np.ndarray) -> np.ndarray:
    """``t_quantile`` for an array of degrees of freedom (one scipy call per distinct value)."""
    dof = np.asarray(dof, dtype=float)
    ok = np.isfinite(dof)
    out = np.full(dof.shape, np.nan)
    uniq, inv = np.unique(dof[ok], return_inverse=True)
    out[ok] = np.array([t_quantile(int(d), confidence) for d in uniq])[inv]
    return out
