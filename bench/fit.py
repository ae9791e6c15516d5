"""Benchmark: the law fit + ceiling interval for 10,000 runs at once vs a loop of scipy.optimize.curve_fit.

Run: ``python bench/fit.py``. Both sides fit the same simulated data (≈50 evaluation pairs per run) in the
same process. The vectorised side is ``models.law.fit_law_many`` (closed-form OLS on x = e^H for all runs at
once, with the ceiling's t-interval). The naive side fits R = −a·e^H + b with ``curve_fit`` one run at a
time and derives the same ceiling interval from its covariance (the vectorised side is the median of
5 calls, the loop is timed once); if the loop would take too long it is timed
on a subset and extrapolated (the output says so). Stage-boundary and collapse analysis throughput are
reported when ``models/stages.py`` / ``models/collapse.py`` exist. Exits 0.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy import optimize, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.law import fit_law_many  # noqa: E402

N_RUNS = 10_000
N_PAIRS = 50
VEC_REPEATS = 5
LOOP_BUDGET_S = 20.0  # time the curve_fit loop on a subset when the whole loop would exceed this


def simulate(n_runs: int, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Entropy decaying exponentially with noise; R = −a·e^H + b + evaluation noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_pairs)[None, :]
    h0 = rng.uniform(0.6, 1.4, (n_runs, 1))
    floor = rng.uniform(0.02, 0.2, (n_runs, 1))
    tau = rng.uniform(8, 30, (n_runs, 1))
    h = floor + (h0 - floor) * np.exp(-t / tau) * (1 + 0.03 * rng.standard_normal((n_runs, n_pairs)))
    a = rng.uniform(0.15, 0.5, (n_runs, 1))
    b = rng.uniform(0.7, 1.1, (n_runs, 1))
    r = b - a * np.exp(h) + 0.01 * rng.standard_normal((n_runs, n_pairs))
    return h, r


def _law(x, a, b):
    return b - a * np.exp(x)


def curve_fit_one(h: np.ndarray, r: np.ndarray) -> tuple[float, float, float]:
    """The naive way: curve_fit, then the ceiling b − a and its 95% t-interval from pcov."""
    popt, pcov = optimize.curve_fit(_law, h, r, p0=(0.3, 1.0))
    a, b = popt
    g = np.array([-1.0, 1.0])
    se = float(np.sqrt(g @ pcov @ g))
    half = stats.t.ppf(0.975, len(h) - 2) * se
    return b - a, b - a - half, b - a + half


def bench_law(h: np.ndarray, r: np.ndarray) -> dict:
    times = []
    for _ in range(VEC_REPEATS):  # one 30 ms call swings 2x with the machine; report the median
        t0 = time.perf_counter()
        batch = fit_law_many(h, r)
        times.append(time.perf_counter() - t0)
    t_vec = float(np.median(times))

    n_loop = len(h)
    t0 = time.perf_counter()
    _ = curve_fit_one(h[0], r[0])
    first = time.perf_counter() - t0
    if first * len(h) > LOOP_BUDGET_S:
        n_loop = max(200, int(LOOP_BUDGET_S / max(first, 1e-6)))
    t0 = time.perf_counter()
    ceil_loop = np.array([curve_fit_one(h[i], r[i]) for i in range(n_loop)])
    t_loop = (time.perf_counter() - t0) * len(h) / n_loop
    diff = float(np.max(np.abs(ceil_loop[:, 0] - batch.ceiling[:n_loop])))
    lo_diff = float(np.max(np.abs(ceil_loop[:, 1] - batch.ceiling_lo[:n_loop])))
    return {"t_vec": t_vec, "t_loop": t_loop, "n_loop": n_loop, "extrapolated": n_loop < len(h),
            "max_ceiling_diff": diff, "max_ci_diff": lo_diff, "failed": sum(e is not None for e in batch.error)}


def bench_optional(name: str, fn, n: int) -> tuple[str, float, int] | None:
    """Runs per second of ``fn(i)`` over ``n`` runs, or None when the module is missing."""
    try:
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        return name, n / (time.perf_counter() - t0), n
    except ImportError:
        return None


def stage_collapse_rows() -> list[tuple[str, float, int]]:
    """Throughput of the stage and collapse analyses on simulated per-step runs (250 steps, eval every 5)."""
    rng = np.random.default_rng(1)
    steps = np.arange(1, 251)
    ps = np.arange(0, 251, 5)
    runs = []
    for _ in range(200):
        tau = rng.uniform(30, 90)
        h = 0.05 + 0.9 * np.exp(-steps / tau) * (1 + 0.03 * rng.standard_normal(len(steps)))
        hp = 0.05 + 0.9 * np.exp(-ps / tau)
        r = 1.0 - 0.3 * np.exp(hp) + 0.01 * rng.standard_normal(len(ps))
        runs.append((steps, h, ps, r))
    rows = []
    try:
        from models.stages import find_stage_boundary

        rows.append(bench_optional("stage boundary (find_stage_boundary)",
                                   lambda i: find_stage_boundary(*runs[i % len(runs)]), 200))
    except ImportError:
        pass
    try:
        from models.collapse import detect_collapse

        rows.append(bench_optional("collapse (detect_collapse)",
                                   lambda i: detect_collapse(*runs[i % len(runs)]), 200))
    except ImportError:
        pass
    return [r for r in rows if r is not None]


def main() -> int:
    h, r = simulate(N_RUNS, N_PAIRS)
    res = bench_law(h, r)
    ratio = res["t_loop"] / res["t_vec"]
    loop_note = (f"timed on {res['n_loop']} runs, extrapolated to {N_RUNS}" if res["extrapolated"]
                 else f"all {N_RUNS} runs")
    print(f"Law fit + ceiling 95% interval, {N_RUNS:,} runs x {N_PAIRS} pairs")
    print(f"{'method':<44}{'time (s)':>12}{'runs/s':>14}")
    print(f"{'fit_law_many (vectorised, closed form)':<44}{res['t_vec']:>12.4f}{N_RUNS / res['t_vec']:>14,.0f}")
    print(f"{'curve_fit loop (' + loop_note + ')':<44}{res['t_loop']:>12.3f}{N_RUNS / res['t_loop']:>14,.0f}")
    print(f"ratio: {ratio:,.0f}x faster  (goal: < 1 s total and >= 50x: "
          f"{'met' if res['t_vec'] < 1 and ratio >= 50 else 'NOT met'})")
    print(f"agreement: max |ceiling diff| = {res['max_ceiling_diff']:.2e}, max |CI low diff| = "
          f"{res['max_ci_diff']:.2e}; runs that failed to fit: {res['failed']}")
    rows = stage_collapse_rows()
    if rows:
        print("\nPer-run analyses (Python loop over 200 simulated runs of 250 steps, eval every 5)")
        print(f"{'analysis':<44}{'runs/s':>12}{'ms/run':>10}")
        for name, rate, _ in rows:
            print(f"{name:<44}{rate:>12,.0f}{1000 / rate:>10.2f}")
    else:
        print("\nstage/collapse analyses: models/stages.py, models/collapse.py not present — not measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
