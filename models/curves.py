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


def _basis(family: str, grid: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """U, V (grid × points) with y ≈ p·U + q·V, and which coefficient is the asymptote (0: p, 1: q); values
    that overflow are zeroed (that grid point then fits badly and is not chosen)."""
    u, v, asym = _raw_basis(family, grid, t)
    ok = np.isfinite(u) & np.isfinite(v)
    return np.where(ok, u, 0.0), np.where(ok, v, 0.0), asym


def _raw_basis(family: str, grid: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        if family == "saturating":
            v = np.exp(-t[None, :] / grid[:, 0:1])
            return np.ones_like(v), v, 0
        if family == "sigmoid":
            v = 1.0 / (1.0 + np.power(grid[:, 0:1] / (t[None, :] + 1.0), grid[:, 1:2]))
            return 1.0 - v, v, 1
        v = np.power(t[None, :] + grid[:, 0:1], -grid[:, 1:2])
        return np.ones_like(v), v, 0


def _basis_at(family: str, params: dict[str, float], t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names = {"saturating": ["tau"], "sigmoid": ["c_mid", "b"]}.get(family, ["t0", "alpha"])
    g = np.array([[params[k] for k in names]])
    u, v, _ = _basis(family, g, np.atleast_1d(t))
    return u[0].reshape(np.shape(t)), v[0].reshape(np.shape(t))


@dataclass(frozen=True, eq=False)
class PrefixFits:
    """Fits of one family on the first k + 1 points for each origin index k (``origins``)."""

    family: str
    origins: np.ndarray  # point indices (the fit uses points 0..k)
    grid_index: np.ndarray  # best grid row per origin
    p: np.ndarray
    q: np.ndarray
    rss: np.ndarray
    U: np.ndarray  # basis at the points (grid × n), to predict at later points
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
        return self.p[i] * self.U[g] + self.q[i] * self.V[g]


def fit_prefixes(family: str, steps: np.ndarray, values: np.ndarray, origins: Sequence[int] | np.ndarray, *,
                 lo: float | np.ndarray = -np.inf, hi: float | np.ndarray = np.inf,
                 refine_last_only: bool = False) -> PrefixFits:
    """Fit ``family`` on points 0..k for every k in ``origins`` at once (module docstring).

    ``lo``/``hi`` bound the asymptote (scalars, or one value per origin). ``refine_last_only``: the finer grids
    only for the last origin (the others stay on the coarse grid: enough for rolling-origin error estimates,
    at a fraction of the cost). Raises ``FitError`` when an origin has fewer points than the family has
    parameters plus two, or the steps do not span anything.
    """
    s = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    k = np.asarray(origins, dtype=int)
    if s.shape != y.shape or s.ndim != 1:
        raise FitError("steps and values must be 1-D and equal in length", "shape")
    need = N_PARAMS.get(family, 2) + 2
    if k.size == 0 or k.min() + 1 < need:
        raise FitError(f"the {family} curve has {N_PARAMS.get(family)} parameters: it needs at least {need} points, "
                       f"got {int(k.min()) + 1 if k.size else 0}", "too_few_points")
    step0 = float(s[0])
    t = s - step0
    span = float(t[k.max()])
    if span <= 0:
        raise FitError("the points do not span more than one step", "no_spread")
    grid, names = _grid(family, span)
    U, V, asym = _basis(family, grid, t)
    p, q, rss = _solve(U, V, y, k, asym, lo, hi)
    best = np.argmin(rss, axis=0)
    cols = np.arange(k.size)
    if not np.all(np.isfinite(rss[best, cols])):
        raise FitError(f"the {family} curve could not be fitted (degenerate points)", "curve_failed")
    # finer grids around each origin's best shape (multiplicative steps, each pass a third of the last)
    p, q, rss = p[best, cols], q[best, cols], rss[best, cols]
    rows = [U, V]
    ratio = _GRID_RATIO[family]
    todo = cols[-1:] if refine_last_only else cols
    for _ in range(REFINE_PASSES):
        step = np.exp(np.linspace(-1.0, 1.0, REFINE) * np.log(ratio))
        fine = np.concatenate([_local(grid[best[c]], step) for c in todo])
        fU, fV, _ = _basis(family, fine, t)
        fp, fq, frss = _solve(fU, fV, y, k[todo], asym, np.broadcast_to(lo, k.shape)[todo],
                              np.broadcast_to(hi, k.shape)[todo])
        per = len(fine) // len(todo)
        local = np.arange(len(todo))
        own = frss.reshape(len(todo), per, len(todo))[local, :, local]  # each origin on its own local grid
        j = np.argmin(own, axis=1)
        better = own[local, j] < rss[todo]
        pick = local * per + j
        p[todo] = np.where(better, fp[pick, local], p[todo])
        q[todo] = np.where(better, fq[pick, local], q[todo])
        rss[todo] = np.where(better, own[local, j], rss[todo])
        best[todo] = np.where(better, len(grid) + pick, best[todo])
        grid = np.concatenate([grid, fine])
        rows = [np.concatenate([rows[0], fU]), np.concatenate([rows[1], fV])]
        ratio = ratio ** (1 / 3)
    return PrefixFits(family, k, best, p, q, rss, rows[0], rows[1], grid, names, step0)


def _local(g: np.ndarray, step: np.ndarray) -> np.ndarray:
    """A product grid around shape ``g``: every parameter times every ``step``."""
    axes = [g[j] * step for j in range(len(g))]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(g))


def _solve(U: np.ndarray, V: np.ndarray, y: np.ndarray, k: np.ndarray, asym: int, lo, hi):
    """p, q and the residual sum of squares (grid × origins) of y ≈ p·U + q·V on points 0..k, the asymptote
    kept in [lo, hi]."""
    # sums over points 0..k for every origin k at once: one product with a 0/1 prefix mask
    mask = (np.arange(len(y))[:, None] <= k[None, :]).astype(float)
    g = len(U)
    stacked = np.concatenate([U * U, U * V, V * V, U * y, V * y]) @ mask
    cs = {name: stacked[i * g:(i + 1) * g] for i, name in enumerate(("uu", "uv", "vv", "uy", "vy"))}
    syy = ((y * y) @ mask)[None, :]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        det = cs["uu"] * cs["vv"] - cs["uv"] ** 2
        p = (cs["vv"] * cs["uy"] - cs["uv"] * cs["vy"]) / det
        q = (cs["uu"] * cs["vy"] - cs["uv"] * cs["uy"]) / det
        a = q if asym else p
        lo_b = np.broadcast_to(np.asarray(lo, dtype=float), k.shape)[None, :]
        hi_b = np.broadcast_to(np.asarray(hi, dtype=float), k.shape)[None, :]
        bound = np.where(a > hi_b, hi_b, np.where(a < lo_b, lo_b, np.nan))
        fixed = np.isfinite(bound)
        if asym:  # q fixed at the bound: p = Σu(y − q·v) / Σu²
            p = np.where(fixed, (cs["uy"] - bound * cs["uv"]) / cs["uu"], p)
            q = np.where(fixed, bound, q)
        else:
            q = np.where(fixed, (cs["vy"] - bound * cs["uv"]) / cs["vv"], q)
            p = np.where(fixed, bound, p)
        rss = syy - 2 * (p * cs["uy"] + q * cs["vy"]) + p * p * cs["uu"] + 2 * p * q * cs["uv"] + q * q * cs["vv"]
    rss = np.where(np.isfinite(rss) & np.isfinite(p) & np.isfinite(q) & (np.abs(det) > 1e-300), rss, np.inf)
    return p, q, rss


def fit_curve(family: str, steps: np.ndarray, values: np.ndarray, *, lo: float = -np.inf,
              hi: float = np.inf) -> CurveFit:
    """One fit of ``family`` on all points (asymptote in [lo, hi])."""
    n = len(np.asarray(steps))
    return fit_prefixes(family, steps, values, [n - 1], lo=lo, hi=hi).fit(0)
