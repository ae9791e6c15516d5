"""Benchmark: the Collapse figure at 100 runs × 20,000 steps — downsampled at render vs every point.

Run: ``python bench/dashboard.py [--dir DIR] [--keep]``. Builds a SQLite store with 100 runs, each with
policy entropy and validation accuracy logged at every one of 20,000 steps (4 M points; written with
``Store.write_run``), analyses them (law, stage, collapse, backtest — on every 100th point, to keep the
build short; the figure only needs their markers), then times, in this same process:

* **dashboard**: read each series with one DB-API query (``Store.points``), smooth (debiased
  EMA, weight 0.6) and downsample with MinMaxLTTB to ≤ 2,000 points per trace (``dashboard.curves``), build
  the Collapse figure (``dashboard.collapse_figure``) and serialise it to the JSON Streamlit ships;
* **naive**: read the same series with ``Store.series`` and build the same figure with every point.

for 1, 10 and 100 selected runs; then starts ``streamlit run`` on the store, opens the Collapse page with
all 100 runs in headless Chromium, waits for the chart, and reads the server's resident memory (VmRSS).
Prints a table. Exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.pipeline import KIND, _columns, analyse_run, choose_run_keys, load_results  # noqa: E402
from dashboard.collapse_figure import RunCurves, collapse_figure, naive_points  # noqa: E402
from dashboard.curves import prepare_curve  # noqa: E402
from db import Store  # noqa: E402
from db.records import RunData, RunInfo, Series  # noqa: E402
from ingest.keys import resolve_roles  # noqa: E402

N_RUNS = 100
N_STEPS = 20_000
ENTROPY, VAL = "actor/entropy", "val-core/bench/acc/mean@1"
SMOOTHING = 0.6
MODELS = ("Qwen2.5-0.5B", "Qwen2.5-1.5B", "Qwen2.5-7B", "Qwen2.5-32B")


def build(url: str) -> float:
    """Write 100 runs × 20k steps × 2 metrics, then analyse them; returns the write time."""
    store = Store.open(url)
    sid = store.source_id("file", "/bench/dashboard")
    rng = np.random.default_rng(0)
    steps = np.arange(1, N_STEPS + 1)
    t0 = time.perf_counter()
    for i in range(N_RUNS):
        floor, tau = rng.uniform(0.02, 0.2), rng.uniform(1500, 6000)
        h = floor + (1.2 - floor) * np.exp(-steps / tau) * (1 + 0.05 * rng.standard_normal(N_STEPS))
        a, b = rng.uniform(0.2, 0.4), rng.uniform(0.9, 1.1)
        r = np.clip(b - a * np.exp(h) + 0.01 * rng.standard_normal(N_STEPS), 0, 1)
        wall = 1.7e9 + steps * 30.0 + i * 1e6
        data = RunData(RunInfo(f"bench-{i}", f"bench-run-{i:03d}", project="bench", model=MODELS[i % 4],
                               algorithm=("grpo", "ppo")[i % 2]),
                       (Series.build(ENTROPY, steps, h, wall), Series.build(VAL, steps, r, wall)))
        store.write_run(sid, data, resolve_roles(data.all_keys()))
    write_s = time.perf_counter() - t0
    runs = store.runs_frame().set_index("id", drop=False)
    keys = store.run_keys()
    for run_id in runs.index:
        run = runs.loc[run_id]
        rk = keys[keys["run_id"] == run_id]
        choice = choose_run_keys(run, rk, {})
        s = store.series([run_id], [choice.entropy, choice.performance])
        s = s[s["step"] % 100 == 0]
        res = analyse_run(run.to_dict(), rk, s, choice)
        store.save_analysis(int(run_id), KIND, int(run["data_version"]), res, _columns(res))
    return write_s


def _runs(results: dict, ids: list[int], curves: dict) -> list[RunCurves]:
    return [RunCurves(i, results[i]["run"], curves[(i, ENTROPY)], curves[(i, VAL)], group=None,
                      stage=results[i].get("stage") or {}, collapse=results[i].get("collapse") or {}) for i in ids]


def dashboard_way(store: Store, results: dict, ids: list[int]) -> tuple[float, float, int, int]:
    t0 = time.perf_counter()
    curves = {}
    for i in ids:
        for k in (ENTROPY, VAL):
            p = store.points(i, k)
            curves[(i, k)] = prepare_curve(p[:, 0], p[:, 1], p[:, 2], smoothing=SMOOTHING)
    t_load = time.perf_counter() - t0
    fig = collapse_figure(_runs(results, ids, curves))
    payload = fig.to_json()
    return time.perf_counter() - t0, t_load, len(payload), naive_points(fig)


def naive_way(store: Store, results: dict, ids: list[int]) -> tuple[float, float, int, int]:
    t0 = time.perf_counter()
    s = store.series(ids, [ENTROPY, VAL])
    curves = {}
    for (i, k), part in s.groupby(["run_id", "key"]):
        curves[(int(i), k)] = prepare_curve(part["step"].to_numpy(), part["value"].to_numpy(),
                                            part["wall_time"].to_numpy(), smoothing=SMOOTHING, n_out=10**9)
    t_load = time.perf_counter() - t0
    fig = collapse_figure(_runs(results, ids, curves))
    payload = fig.to_json()
    return time.perf_counter() - t0, t_load, len(payload), naive_points(fig)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(p) for p in out]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def browser_rss(url: str, ids: list[int], workdir: Path) -> dict[str, float] | str:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return "chromium not installed"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "playwright not installed"
    import requests

    port = _free_port()
    env = {**os.environ, "ENTROPY_DASH_DB": url}
    log = open(workdir / "streamlit.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    out: dict[str, float] = {}
    try:
        for _ in range(300):
            try:
                if requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        out["rss_idle_mb"] = _rss_mb(proc.pid)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=chromium, headless=True,
                                   args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = b.new_page(viewport={"width": 1500, "height": 1400})
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/collapse?runs={','.join(map(str, ids))}", wait_until="networkidle")
            page.wait_for_selector(".js-plotly-plot", timeout=300_000)
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .trace').length > 0 || "
                                   "document.querySelectorAll('.js-plotly-plot canvas').length > 0", timeout=300_000)
            out["page_s"] = time.perf_counter() - t0
            out["rss_after_page_mb"] = _rss_mb(proc.pid)
            page.screenshot(path=str(workdir / "collapse-100-runs.png"))
            t0 = time.perf_counter()
            page.reload(wait_until="networkidle")
            page.wait_for_selector(".js-plotly-plot", timeout=300_000)
            out["reload_s"] = time.perf_counter() - t0
            out["rss_after_reload_mb"] = _rss_mb(proc.pid)
            b.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        log.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="where to build the store (default: a temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="bench-dashboard-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "bench.db"
    url = f"sqlite:///{db}"
    if not db.exists():
        print(f"building {N_RUNS} runs × {N_STEPS:,} steps × 2 metrics in {db} …", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        write_s = build(url)
        print(f"  written in {write_s:.1f} s, analysed in {time.perf_counter() - t0 - write_s:.1f} s",
              file=sys.stderr, flush=True)
    store = Store.open(url, create=False)
    results = {r["run_id"]: r for r in load_results(store)}
    ids = sorted(results)
    rows = []
    for n in (1, 10, 100):
        sel = ids[:n]
        d = dashboard_way(store, results, sel)
        nv = naive_way(store, results, sel)
        rows.append({"runs": n, "dash total s": d[0], "dash load s": d[1], "dash payload MB": d[2] / 1e6,
                     "dash max pts/trace": d[3], "naive total s": nv[0], "naive load s": nv[1],
                     "naive payload MB": nv[2] / 1e6, "naive max pts/trace": nv[3],
                     "speed-up": nv[0] / d[0], "payload ratio": nv[2] / d[2]})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(f"\nCollapse figure, {N_RUNS} runs × {N_STEPS:,} steps in SQLite (H and R every step), smoothing "
              f"{SMOOTHING}; dashboard = DB-API read + MinMaxLTTB ≤ 2,000/trace, naive = Store.series + every point")
        print(table.to_string(index=False))
    mem = browser_rss(url, ids, workdir)
    print("\nstreamlit run + Chromium, Collapse page with all 100 runs selected:")
    if isinstance(mem, str):
        print(f"  not measured: {mem}")
    else:
        for k, v in mem.items():
            print(f"  {k:22} {v:8.1f}")
    if not args.dir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"\nstore and screenshot kept in {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
