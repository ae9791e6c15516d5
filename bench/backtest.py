"""Backtest evidence: forecast the final score from the first 30% of each run, law vs baselines.

Run: ``python bench/backtest.py [--cutoff 0.3] [--seeds 3] [--steps 240] [--n-boot 200]``. Prints, per run and
as MAE per method (in accuracy points), the ``models.backtest`` protocol on

1. the demo sweep (``entropy_dash.simulator.demo_sweep()``, 7 GRPO runs),
2. the same sweep with ``--seeds`` other seeds each (7 × seeds runs),
3. the real verl console logs in ``../shared/data/verl-console`` (skipped when absent),

each for the current defaults (anchored law, power entropy decay) and for the old configuration
(``anchor=False``, decay chosen among exponential/power/linear by held-out residual), plus the
*oracle-entropy* experiment: the law fitted on the pre-cutoff pairs evaluated at the true future entropy
(the run's own entropy around the final evaluations, ±2 steps), anchored and not — which separates the error
of the law fit from that of the entropy forecast. Exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.backtest import backtest_many, cutoff_step_of  # noqa: E402
from models.decay import KINDS  # noqa: E402
from models.forecast import _anchor_level, _fit_law_pre, _pre_cutoff  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "verl-console"
CONFIGS = {"current": {}, "old (no anchor, held-out decay choice)": {"anchor": False, "decay_kinds": KINDS}}


def simulated(seeds: int, steps: int) -> tuple[dict, dict]:
    from entropy_dash import simulator as sim

    demo, extra = {}, {}
    for cfg in sim.demo_sweep(steps):
        run = sim.simulate(cfg)
        demo[cfg.name] = (*run.entropy, *run.validation)
    for k in range(seeds):
        for i, cfg in enumerate(sim.demo_sweep(steps)):
            c = replace(cfg, seed=100 + 10 * k + i)
            run = sim.simulate(c)
            extra[f"{cfg.name}-s{c.seed}"] = (*run.entropy, *run.validation)
    return demo, extra


def real() -> dict:
    from ingest.verl_log import parse_verl_log

    out = {}
    for p in sorted(REAL.glob("*.log")):
        s = {x.key: x for x in parse_verl_log(p).series}
        e, v = s["actor/entropy_loss"], s["val/test_score/openai/gsm8k"]
        out[p.name.removesuffix(".log")] = (e.steps, e.values, v.steps, v.values)
    return out


def oracle(runs: dict, cutoff: float) -> dict[str, list[float]]:
    """Errors (pt) of the pre-cutoff law at the true future entropy, with and without the anchored level."""
    errs: dict[str, list[float]] = {"oracle law (OLS b)": [], "oracle law (anchored b)": []}
    for hs, hv, ps, pv in runs.values():
        hs, hv, ps, pv = (np.asarray(x, dtype=float) for x in (hs, hv, ps, pv))
        cstep = cutoff_step_of(hs, ps, cutoff)
        final = ps[ps > cstep][-3:]
        observed = pv[ps > cstep][-3:].mean()
        h_true = np.array([hv[np.abs(hs - (s + 1)) <= 2].mean() for s in final])
        law, _, _, (h, r) = _fit_law_pre(*_pre_cutoff(hs, hv, ps, pv, cstep), "linear", True, with_pairs=True)
        b_anchor = _anchor_level(law, h, r).b
        for name, b in (("oracle law (OLS b)", law.b), ("oracle law (anchored b)", b_anchor)):
            errs[name].append(100 * (np.clip(b - law.a * np.exp(h_true), 0, 1).mean() - observed))
    return errs


def report(title: str, runs: dict, cutoff: float, n_boot: int) -> None:
    print(f"\n## {title} ({len(runs)} runs, cutoff {cutoff:g})")
    for label, options in CONFIGS.items():
        t0 = time.perf_counter()
        batch = backtest_many(runs, cutoff=cutoff, n_boot=n_boot, **options)
        dt = time.perf_counter() - t0
        print(f"\n### {label}  [{dt:.1f} s]")
        if label == "current":
            names = list(batch.results[0].baselines) if batch.results else []
            print(f"{'run':52s} {'observed':>8s} " + " ".join(f"{n:>11s}" for n in names) + "   (error, pt)")
            for b in batch.results:
                print(f"{(b.run or '')[:52]:52s} {b.observed_final:8.4f} "
                      + " ".join(f"{100 * b.baselines[n]['error']:+11.2f}" for n in names))
        for name, why in batch.skipped.items():
            print(f"skipped {name}: {why[1]}")
        s = batch.summary
        if s is None:
            continue
        print("MAE (pt): " + "  ".join(f"{k} {100 * v.mae:.2f}" for k, v in s.scores.items())
              + " | coverage: " + "  ".join(f"{k} {v.coverage:.0%}" for k, v in s.scores.items()))
        print(s.sentence)
    errs = oracle(runs, cutoff)
    print("\n### oracle entropy (law fitted before the cutoff, evaluated at the true final entropy)")
    for k, v in errs.items():
        print(f"{k}: MAE {np.mean(np.abs(v)):.2f} pt, bias {np.mean(v):+.2f} pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutoff", type=float, default=0.3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--n-boot", type=int, default=200)
    args = ap.parse_args()
    demo, extra = simulated(args.seeds, args.steps)
    report("demo sweep (simulated GRPO)", demo, args.cutoff, args.n_boot)
    if extra:
        report(f"demo sweep × {args.seeds} other seeds", extra, args.cutoff, args.n_boot)
    if REAL.is_dir():
        report("real verl console logs", real(), args.cutoff, args.n_boot)
    else:
        print(f"\n(no real logs at {REAL}: skipped)")


if __name__ == "__main__":
    main()
