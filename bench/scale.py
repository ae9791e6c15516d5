"""Benchmark: the store at sweep scale, each row a whole command as the user runs it.

Run: ``python bench/scale.py`` (part of ``make bench``; ``--sizes 100,1000``; ``--large`` adds 10,000 runs on
the PostgreSQL URL in ``--pg-url``). Per size it writes (once, cached in ``/tmp/entropy-dash-bench-scale``)
a folder of wide CSVs, one per run: 2,000 steps of the nine keys verl logs every step (entropy, score,
reward, response length and its clip ratio, KL, grad norm, clip fraction) and a validation score every 20
steps, generated with numpy. Then it times, each as a fresh process into a fresh store:

1. ``entropy-dash ingest file FOLDER`` (sync and analyses), beside the naive way: pandas ``read_csv`` +
   ``melt`` + ``to_sql`` of the same files into a fresh SQLite file;
2. the same ingest again with nothing changed;
3. ``runs --json``, ``fit --json``, ``backtest --json``, ``report --out DIR``;
4. every page of the dashboard (Runs, Ceiling, Collapse, Groups, Backtest, Health, Sources, Compare) as a user
   first meets it: a fresh headless Chromium context per page, timed from navigation until the page has drawn
   its last chart (``tests.service_checks.wait_drawn``: the script run has ended, no spinner is left, every
   chart holds plotly's drawing), with its default selection — once as the first page of a fresh ``streamlit
   run`` (its imports included), once on a running server (a fresh one that has drawn another page first: this
   page's data caches are cold);

with each process's peak resident memory, the store's size, and the growth factor between sizes. Then the
goals of the scale issue as measured, each PASS or MISS: ``fit --json`` and ``backtest --json`` within 2× of
``runs --json``, ``report`` within 5× (at the largest size), every page within 1.5× between the smallest and
the largest size and at most 3 s. ``--keep DIR`` keeps the stores in DIR and reuses one found there (its
ingest rows are then not timed: "–"); ``--no-pages`` leaves Chromium out. Prints one table; exits 0;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENTROPY_DASH = str(Path(sys.executable).with_name("entropy-dash"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CACHE = Path(tempfile.gettempdir()) / "entropy-dash-bench-scale"
STEPS = 2_000
VAL_EVERY = 20
KEYS = ("actor/entropy", "critic/score/mean", "critic/rewards/mean", "response_length/mean",
        "response_length/clip_ratio", "actor/ppo_kl", "actor/grad_norm", "actor/pg_clipfrac")
VAL = "val-core/openai/gsm8k/acc/mean@1"
PAGES = ("runs", "ceiling", "collapse", "groups", "backtest", "health", "sources", "compare")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def write_runs(folder: Path, n_runs: int) -> int:
    """``n_runs`` wide CSVs (written once; reused when the folder is complete). Returns the points."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n_runs)
    step = np.arange(1, STEPS + 1)
    for i in range(n_runs):
        path = folder / f"run-{i:05d}.csv"
        if path.exists():
            continue
        tau = rng.uniform(200, 900)
        h = 0.05 + 1.2 * np.exp(-step / tau) * (1 + 0.03 * rng.standard_normal(STEPS))
        cols = [h, 0.9 - 0.6 * np.exp(-step / tau) + 0.02 * rng.standard_normal(STEPS)]
        cols += [rng.normal(0.5, 0.1, STEPS) for _ in KEYS[2:]]
        val = np.full(STEPS, np.nan)
        at = step % VAL_EVERY == 0
        val[at] = 0.85 - 0.55 * np.exp(-step[at] / tau) + 0.01 * rng.standard_normal(at.sum())
        table = np.column_stack([step, *cols, val])
        header = ",".join(["step", *KEYS, VAL])
        tmp = path.with_suffix(".tmp")
        np.savetxt(tmp, table, delimiter=",", header=header, comments="", fmt="%.6g")
        text = tmp.read_text().replace(",nan", ",")
        tmp.write_text(text)
        tmp.rename(path)
    return n_runs * (STEPS * len(KEYS) + STEPS // VAL_EVERY)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MB of a command run as a child process (its own rusage)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 1):
            err.seek(0)
            print(f"  {' '.join(cmd[1:3])} exited {proc.returncode}: {err.read()[-300:]!r}", file=sys.stderr)
    return dt, usage.ru_maxrss / 1024


NAIVE = """
import sys, glob, pandas as pd, sqlalchemy as sa
eng = sa.create_engine("sqlite:///" + sys.argv[2])
for i, path in enumerate(sorted(glob.glob(sys.argv[1] + "/*.csv"))):
    long = pd.read_csv(path).melt(id_vars="step", var_name="key").dropna()
    long.insert(0, "run", i)
    long.to_sql("points", eng, if_exists="append", index=False)
"""


def bench_size(n_runs: int, db_url: str | None, tmp: Path, pages: bool = True) -> dict[str, tuple[float, float]]:
    folder = CACHE / f"runs-{n_runs}"
    points = write_runs(folder, n_runs)
    db_path = tmp / f"store-{n_runs}.db"
    db = db_url or f"sqlite:///{db_path}"
    out: dict[str, tuple[float, float]] = {}
    if db_url is not None or not db_path.exists():  # a kept SQLite store is reused (--keep)
        out["ingest file FOLDER"] = timed([ENTROPY_DASH, "ingest", "file", str(folder), "--db", db])
        out["re-ingest, nothing changed"] = timed([ENTROPY_DASH, "ingest", "file", str(folder), "--db", db])
    for name in ("runs", "fit", "backtest"):
        out[f"{name} --json"] = timed([ENTROPY_DASH, name, "--json", "--db", db])
    out["report"] = timed([ENTROPY_DASH, "report", "--out", str(tmp / f"report-{n_runs}"), "--db", db])
    if "ingest file FOLDER" in out:
        out["naive read_csv+melt+to_sql"] = timed([sys.executable, "-c", NAIVE, str(folder),
                                                   str(tmp / f"naive-{n_runs}.db")])
    if pages:
        out.update(time_pages(db, tmp))
    size = db_path.stat().st_size if db_url is None else float("nan")
    out["_store"] = (size / 1e6, points / 1e6)
    return out


def time_pages(db: str, tmp: Path) -> dict[str, tuple[float, float]]:
    """Each page cold, twice: as the first page a fresh ``streamlit run`` serves (its Python imports included),
    and on a running server (a fresh server that has drawn one other page first, in another browser context:
    its imports done, this page's data caches still cold). A fresh browser context each time, from ``goto``
    until drawn (seconds, and the server's peak resident MB after it)."""
    from playwright.sync_api import sync_playwright

    from bench.streamlit_server import Server
    from tests.service_checks import TITLES, wait_drawn

    out: dict[str, tuple[float, float]] = {}

    def draw(browser, server: Server, name: str) -> float:  # noqa: ANN001 - a playwright Browser
        ctx = browser.new_context(viewport={"width": 1500, "height": 1300})
        page = ctx.new_page()
        t0 = time.perf_counter()
        page.goto(f"{server.base}/{'' if name == 'runs' else name}", wait_until="commit")
        wait_drawn(page, TITLES[name], timeout=600_000)
        dt = time.perf_counter() - t0
        if page.locator('[data-testid="stException"]').count():
            print(f"  {name} page raised: {page.inner_text('[data-testid=stException]')[:300]}", file=sys.stderr)
        ctx.close()
        return dt

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                     args=CHROMIUM_ARGS, headless=True)
        try:
            for name in PAGES:
                for running in (False, True):
                    server = Server(db, tmp / f"streamlit-{name}.log")
                    try:
                        if running:
                            draw(browser, server, "runs" if name == "sources" else "sources")
                        dt = draw(browser, server, name)
                        where = " on a running server" if running else ""
                        out[f"{TITLES[name]} page{where} (Chromium, until drawn)"] = (dt, server.peak_mb())
                    finally:
                        server.stop()
        finally:
            browser.close()
    return out


def goals(results: dict[int, dict[str, tuple[float, float]]]) -> list[str]:
    """The scale issue's goals as measured: one line each, PASS or MISS."""
    ns = sorted(results)
    big, small = results[ns[-1]], results[ns[0]]
    lines = []

    def line(ok: bool, text: str) -> None:
        lines.append(f"{'PASS' if ok else 'MISS'}  {text}")

    runs = big["runs --json"][0]
    for name, limit in (("fit --json", 2), ("backtest --json", 2), ("report", 5)):
        ratio = big[name][0] / runs
        line(ratio <= limit, f"{ns[-1]:,} runs: {name} {big[name][0]:.1f} s = ×{ratio:.2f} runs --json "
                             f"({runs:.1f} s); goal ≤ ×{limit}")
    for name in [r for r in big if r.endswith("until drawn)")]:
        t = big[name][0]
        if len(ns) > 1 and name in small:
            g = t / small[name][0]
            line(g <= 1.5 and t <= 3, f"{name}: {t:.1f} s at {ns[-1]:,} runs = ×{g:.2f} the {ns[0]:,}-run "
                                      f"store ({small[name][0]:.1f} s); goal ≤ ×1.5 and ≤ 3 s")
        else:
            line(t <= 3, f"{name}: {t:.1f} s at {ns[-1]:,} runs; goal ≤ 3 s")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--large", action="store_true", help="also 10,000 runs on --pg-url")
    ap.add_argument("--pg-url", default=os.environ.get("ENTROPY_DASH_BENCH_PG"))
    ap.add_argument("--keep", type=Path, help="keep the stores in this folder, and reuse one found there")
    ap.add_argument("--no-pages", action="store_true", help="leave the pages in Chromium out")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="entropy-dash-scale-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            print(f"{n} runs …", file=sys.stderr)
            results[n] = bench_size(n, None, work, pages=not args.no_pages)
        if args.large:
            if not args.pg_url:
                print("--large needs --pg-url (or ENTROPY_DASH_BENCH_PG): skipped", file=sys.stderr)
            else:
                results[10_000] = bench_size(10_000, args.pg_url, work, pages=not args.no_pages)
    ns = sorted(results)
    rows = list(dict.fromkeys(r for n in ns for r in results[n] if not r.startswith("_")))
    head = " | ".join(f"{n:,} runs (s, peak MB)" for n in ns)
    print(f"| what the user does | {head} | growth |")
    print("|---|" + "---|" * len(ns) + "---|")
    for r in rows:
        cells = " | ".join(f"{results[n][r][0]:.1f} s, {results[n][r][1]:.0f} MB" if r in results[n] else "–"
                           for n in ns)
        both = len(ns) > 1 and r in results[ns[0]] and r in results[ns[-1]]
        growth = f"×{results[ns[-1]][r][0] / results[ns[0]][r][0]:.1f}" if both else "–"
        print(f"| {r} | {cells} | {growth} |")
    print("| store size (points) | " + " | ".join(
        f"{results[n]['_store'][0]:.0f} MB ({results[n]['_store'][1]:.1f} M points)" for n in ns) + " | |")
    for n in ns:
        if "ingest file FOLDER" in results[n]:
            ours, naive = results[n]["ingest file FOLDER"][0], results[n]["naive read_csv+melt+to_sql"][0]
            print(f"{n:,} runs: ingest (with analyses) {ours:.1f} s vs naive {naive:.1f} s: ×{ours / naive:.2f}")
    print("\n".join(goals(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
