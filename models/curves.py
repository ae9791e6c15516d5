"""Curves of performance (or entropy) in the training step, fitted fast enough to refit at many origins.

Families (t = step − the first step used, span = the last t; every family is linear in two coefficients once
its shape parameters are fixed):

* ``saturating``  R = A − d·e^(−t/τ)                      asymptote A; shape τ
* ``sigmoid``     R = R0 + (A − R0) / (1 + (C_mid/t′)^B)   asymptote A; shapes C_mid, B (ScaleRL's curve in
                  compute, here in steps: t′ = t + 1 so that the first evaluation is finite)
* ``power``       R = A − c·(t + t0)^(−α)                  asymptote A; shapes t0, α
* ``decay``       H = f + c·(t + t0)^(−α), f ≥ 0            the entropy trajectory (a power decay to a floor)

Fitting. The shape parameters are searched on a fixed log-spaced grid relative to the span; for every grid
point the two coefficients are solved in closed form from sufficient statistics (one matrix product, no
optimiser, no starting guess), with the asymptote kept inside ``[lo, hi]`` (the metric's range; for the
decay, the floor in [0, the curve's end level]): a grid point whose free asymptote leaves the range is
re-solved with the asymptote at the bound. ScaleRL's authors fit their sigmoid the same way (a grid over the
shape with the rest by least squares).

Rolling origins. The sufficient statistics are cumulative sums along the points, so the fits on the first
k points, for any set of k, cost one more gather: ``fit_prefixes`` returns the fit at each origin, which is
what the rolling-origin error estimates of ``models.forecast`` use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.errors import FitError

FAMILIES = ("saturating", "sigmoid", "power")
#: refinement: REFINE_PASSES passes of REFINE steps per shape parameter, the first spanning one coarse grid step
#: either side of the best, each next one a third of the one before
REFINE = 7
REFINE_PASSES = 2
_GRID_RATIO = {"saturating": 10 ** (3.3 / 29), "sigmoid": 10 ** (3.0 / 11), "power": 10 ** (2.8 / 7), "decay": 10 ** (2.8 / 7)}
#: a curve is fitted on at least two more points than it has parameters (a 4-parameter curve through 4 points
#: extrapolates anywhere)
N_PARAMS = {"saturating": 3, "sigmoid": 4, "power": 4, "decay": 4}
MIN_POINTS = 4


@dataclass(frozen=True, eq=False)
class CurveFit:
    """One fitted curve: its family, parameters, asymptote and in-sample RMSE."""

    family: str
    params: dict[str, float]
    asymptote: float
    rmse: float
    n: int
    step0: float  # the first step used (t = step − step0)

    def predict(self, steps: np.ndarray | float) -> np.ndarray:
        t = np.asarray(steps, dtype=float) - self.step0
        u, v = _basis_at(self.family, self.params, t)
        return self.params["p"] * u + self.params["q"] * v

    def to_dict(self) -> dict:
        return {"family": self.family, "params": dict(self.params), "asymptote": self.asymptote,
                "rmse": self.rmse, "n": self.n, "step0": self.step0}


def _grid(family: str, span: float) -> tuple[np.ndarray, list[str]]:
    """Shape-parameter grid (rows) and their names."""
    if family == "saturating":
        return (span * np.logspace(-2.0, 1.3, 30))[:, None], ["tau"]
    if family == "sigmoid":
        c = span * np.logspace(-2.0, 1.0, 12)
        b = np.logspace(np.log10(0.4), np.log10(4.0), 8)
        return np.stack(np.meshgrid(c, b, indexing="ij"), axis=-1).reshape(-1, 2), ["c_mid", "b"]
    if family in ("power", "decay"):
        t0 = span * np.logspace(-2.5, 0.3, 8)
        alpha = np.logspace(-1.3, np.log10(3.0), 10)
        return np.stack(np.meshgrid(t0, alpha, indexing="ij"), axis=-1).reshape(-1, 2), ["t0", "alpha"]
    raise FitError(f"unknown curve family {family!r}: choose among {list(FAMILIES) + ['decay']}", "bad_option")


def _basis(family: str, grid: np.ndarray, t: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, int]:
    """U, V (grid × points) with y ≈ p·U + q·V, and which coefficient is the asymptote (0: p, 1: q); U is
    None where it is the constant 1 (every family but the sigmoid: the sums then need no products with it);
    values that overflow are zeroed (that grid point then fits badly and is not chosen)."""
    u, v, asym = _raw_basis(family, grid, t)
    if u is None:
        return None, np.where(np.isfinite(v), v, 0.0), asym
    ok = np.isfinite(u) & np.isfinite(v)
    return np.where(ok, u, 0.0), np.where(ok, v, 0.0), asym


def _raw_basis(family: str, grid: np.ndarray, t: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, int]:
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        if family == "saturating":
            return None, np.exp(-t[..., None, :] / grid[..., 0:1]), 0
        if family == "sigmoid":
            v = 1.0 / (1.0 + np.power(grid[..., 0:1] / (t[..., None, :] + 1.0), grid[..., 1:2]))
            return 1.0 - v, v, 1
        return None, np.power(t[..., None, :] + grid[..., 0:1], -grid[..., 1:2]), 0


def _basis_at(family: str, params: dict[str, float], t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names = {"saturating": ["tau"], "sigmoid": ["c_mid", "b"]}.get(family, ["t0", "alpha"])
    g = np.array([[params[k] for k in names]])
    u, v, _ = _basis(family, g, np.atleast_1d(t))
    v = v[0].reshape(np.shape(t))
    return (np.ones_like(v) if u is None else u[0].reshape(np.shape(t))), v


@dataclass(frozen=True, eq=False)
class PrefixFits:
    """Fits of one family on the first k + 1 points for each origin index k (``origins``)."""

    family: str
    origins: np.ndarray  # point indices (the fit uses points 0..k)
    grid_index: np.ndarray  # best grid row per origin
    p: np.ndarray
    q: np.ndarray
    rss: np.ndarray
    U: np.ndarray | None  # basis at the points (grid × n), to predict at later points; None: the constant 1
    V: np.ndarray
    grid: np.ndarray
    names: list[str]
    step0: float

    def fit(self, i: int) -> CurveFit:
        """The ``CurveFit`` at origin ``i`` (an index into ``origins``)."""
        g = int(self.grid_index[i])
        params = {k: float(self.grid[g, j]) for j, k in enumerate(self.names)}
        params.update(p=float(self.p[i]), q=float(self.q[i]))
        asym = params["q"] if self.family == "sigmoid" else params["p"]
        n = int(self.origins[i]) + 1
        return CurveFit(self.family, params, asym, float(np.sqrt(max(self.rss[i], 0.0) / n)), n, self.step0)

    def predict_points(self, i: int) -> np.ndarray:
        """Predictions of the fit at origin ``i`` at every point (the later ones are forecasts)."""
        g = int(self.grid_index[i])
        return self.p[i] * (1.0 if self.U is None else self.U[g]) + self.q[i] * self.V[g]


@dataclass(frozen=True)
class PrefixData:
    """One curve to fit at several origins: its points, the origin indices, the asymptote's bounds (scalars, or
    one value per origin)."""

    steps: np.ndarray
    values: np.ndarray
    origins: Sequence[int] | np.ndarray
    lo: float | np.ndarray = -np.inf
    hi: float | np.ndarray = np.inf


def fit_prefixes(family: str, steps: np.ndarray, values: np.ndarray, origins: Sequence[int] | np.ndarray, *,
                 lo: float | np.ndarray = -np.inf, hi: float | np.ndarray = np.inf,
                 refine_last_only: bool = False) -> PrefixFits:
    """Fit ``family`` on points 0..k for every k in ``origins`` at once (module docstring).

    ``lo``/``hi`` bound the asymptote (scalars, or one value per origin). ``refine_last_only``: the finer grids
    only for the last origin (the others stay on the coarse grid: enough for rolling-origin error estimates,
    at a fraction of the cost). Raises ``FitError`` when an origin has fewer points than the family has
    parameters plus two, or the steps do not span anything.
    """
    (out,) = fit_prefixes_many(family, [PrefixData(steps, values, origins, lo, hi)], refine_last_only=refine_last_only)
    if isinstance(out, FitError):
        raise out
    return out


def fit_prefixes_many(family: str, curves: Sequence[PrefixData], *,
                      refine_last_only: bool = False) -> list[PrefixFits | FitError]:
    """``fit_prefixes`` of many curves at once (the replay's cutoffs of one run): one array computation over
    all of them, each curve on its own grid (relative to its own span). A curve that cannot be fitted gets
    its ``FitError`` in its place; the others are fitted as if alone."""
    out: list[PrefixFits | FitError | None] = [None] * len(curves)
    ready = []
    for i, c in enumerate(curves):
        try:
            ready.append((i, *_checked(family, c)))
        except FitError as exc:
            out[i] = exc
    if not ready:
        return out  # type: ignore[return-value]
    n_curves, n_max = len(ready), max(len(r[1]) for r in ready)
    k_max = max(len(r[3]) for r in ready)
    # padded to the longest curve and the most origins: a shorter origin list repeats its last origin (its
    # column k_max − 1 is then its last origin), padded points lie beyond every origin and are never summed
    t, y = np.zeros((n_curves, n_max)), np.zeros((n_curves, n_max))
    k = np.empty((n_curves, k_max), dtype=int)
    lo, hi = np.empty((n_curves, k_max)), np.empty((n_curves, k_max))
    for row, (_, s, v, ko, lo_k, hi_k) in enumerate(ready):
        t[row, :len(s)], y[row, :len(s)] = s - s[0], v
        for padded, a in ((k, ko), (lo, lo_k), (hi, hi_k)):
            padded[row, :len(a)], padded[row, len(a):] = a, a[-1]
    rows = np.arange(n_curves)
    spans = t[rows, k.max(axis=1)]
    base, names = _grid(family, 1.0)
    grid = np.repeat(base[None], n_curves, axis=0)
    grid[:, :, 0] *= spans[:, None]  # the first shape parameter is relative to the span (``_grid``)
    U, V, asym = _basis(family, grid, t)
    p, q, rss = _solve(U, V, y, k, asym, lo, hi)
    best = np.argmin(rss, axis=1)
    p, q, rss = (np.take_along_axis(a, best[:, None, :], axis=1)[:, 0, :] for a in (p, q, rss))
    # finer grids around each origin's best shape (multiplicative steps, each pass a third of the last)
    Us, Vs = [U], [V]
    ratio = _GRID_RATIO[family]
    todo = [k_max - 1] if refine_last_only else range(k_max)
    for _ in range(REFINE_PASSES):
        step = np.exp(np.linspace(-1.0, 1.0, REFINE) * np.log(ratio))
        for c in todo:
            fine = _local(grid[rows, best[:, c]], step)
            fU, fV, _ = _basis(family, fine, t)
            fp, fq, frss = (a[:, :, 0] for a in _solve(fU, fV, y, k[:, c:c + 1], asym, lo[:, c:c + 1], hi[:, c:c + 1]))
            j = np.argmin(frss, axis=1)
            better = frss[rows, j] < rss[:, c]
            p[:, c] = np.where(better, fp[rows, j], p[:, c])
            q[:, c] = np.where(better, fq[rows, j], q[:, c])
            rss[:, c] = np.where(better, frss[rows, j], rss[:, c])
            best[:, c] = np.where(better, grid.shape[1] + j, best[:, c])
            grid = np.concatenate([grid, fine], axis=1)
            Us.append(fU)
            Vs.append(fV)
        ratio = ratio ** (1 / 3)
    V = np.concatenate(Vs, axis=1)
    U = None if U is None else np.concatenate(Us, axis=1)
    for row, (i, s, _, ko, _, _) in enumerate(ready):
        cols = [*range(len(ko) - 1), k_max - 1]
        if not np.all(np.isfinite(rss[row, cols])):
            out[i] = FitError(f"the {family} curve could not be fitted (degenerate points)", "curve_failed")
            continue
        out[i] = PrefixFits(family, ko, best[row, cols], p[row, cols], q[row, cols], rss[row, cols],
                            None if U is None else U[row, :, :len(s)], V[row, :, :len(s)], grid[row], names,
                            float(s[0]))
    return out  # type: ignore[return-value]


def _checked(family: str, c: PrefixData):
    """One curve's arrays, or the ``FitError`` that says why it cannot be fitted."""
    s = np.asarray(c.steps, dtype=float)
    y = np.asarray(c.values, dtype=float)
    k = np.asarray(c.origins, dtype=int)
    if s.shape != y.shape or s.ndim != 1:
        raise FitError("steps and values must be 1-D and equal in length", "shape")
    need = N_PARAMS.get(family, 2) + 2
    if k.size == 0 or k.min() + 1 < need:
        raise FitError(f"the {family} curve has {N_PARAMS.get(family)} parameters: it needs at least {need} points, "
                       f"got {int(k.min()) + 1 if k.size else 0}", "too_few_points")
    if k.max() >= len(s):
        raise FitError(f"origin {int(k.max())} lies beyond the {len(s)} points", "shape")
    if float(s[k.max()] - s[0]) <= 0:
        raise FitError("the points do not span more than one step", "no_spread")
    lo, hi = (np.broadcast_to(np.asarray(b, dtype=float), k.shape) for b in (c.lo, c.hi))
    return s, y, k, lo, hi


def _local(g: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Product grids around shapes ``g`` (curves × parameters): every parameter times every ``step``."""
    axes = [g[:, j, None] * step for j in range(g.shape[1])]
    if len(axes) == 1:
        return axes[0][:, :, None]
    a, b = axes
    return np.stack([np.repeat(a, len(step), axis=1), np.tile(b, (1, len(step)))], axis=-1)


def _solve(U: np.ndarray, V: np.ndarray, y: np.ndarray, k: np.ndarray, asym: int, lo: np.ndarray, hi: np.ndarray):
    """p, q and the residual sum of squares (curves × grid × origins) of y ≈ p·U + q·V on points 0..k, the
    asymptote kept in [lo, hi] (curves × origins)."""
    # sums over points 0..k for every origin k at once: one product with a 0/1 prefix mask
    mask = (np.arange(y.shape[1])[None, :, None] <= k[:, None, :]).astype(float)
    # the products are written into one buffer (temporaries of this size cost more than the sums)
    g, yb = V.shape[1], y[:, None]
    pairs = [(V, None), (V, V), (V, yb)] if U is None else [(U, U), (U, V), (V, V), (U, yb), (V, yb)]
    products = np.empty((len(y), len(pairs) * g, y.shape[1]))
    for i, (x, w) in enumerate(pairs):
        block = products[:, i * g:(i + 1) * g]
        if w is None:
            block[...] = x
        else:
            np.multiply(x, w, out=block)
    sums = np.split(products @ mask, len(pairs), axis=1)
    if U is None:  # U = 1: Σu² is the count, Σuv = Σv, Σuy = Σy
        (uv, vv, vy), uu, uy = sums, mask.sum(axis=1)[:, None], yb @ mask
    else:
        uu, uv, vv, uy, vy = sums
    syy = (y * y)[:, None] @ mask
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        det = uu * vv - uv ** 2
        p = (vv * uy - uv * vy) / det
        q = (uu * vy - uv * uy) / det
        a = q if asym else p
        lo_b, hi_b = lo[:, None, :], hi[:, None, :]
        bound = np.where(a > hi_b, hi_b, np.where(a < lo_b, lo_b, np.nan))
        fixed = np.isfinite(bound)
        if asym:  # q fixed at the bound: p = Σu(y − q·v) / Σu²
            p = np.where(fixed, (uy - bound * uv) / uu, p)
            q = np.where(fixed, bound, q)
        else:
            q = np.where(fixed, (vy - bound * uv) / vv, q)
            p = np.where(fixed, bound, p)
        rss = syy - 2 * (p * uy + q * vy) + p * p * uu + 2 * p * q * uv + q * q * vv
    rss = np.where(np.isfinite(rss) & np.isfinite(p) & np.isfinite(q) & (np.abs(det) > 1e-300), rss, np.inf)
    return p, q, rss


def fit_curve(family: str, steps: np.ndarray, values: np.ndarray, *, lo: float = -np.inf,
              hi: float = np.inf) -> CurveFit:
    """One fit of ``family`` on all points (asymptote in [lo, hi])."""
    n = len(np.asarray(steps))
    return fit_prefixes(family, steps, values, [n - 1], lo=lo, hi=hi).fit(0)
