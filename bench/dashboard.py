"""Benchmark: the Collapse and Ceiling pages as a user meets them — headless Chromium against `streamlit run`,
from navigation until the last chart is drawn — next to the naive way, in one run.

Run: ``python bench/dashboard.py [--dir DIR] [--keep] [--runs 10,100] [--pages collapse,ceiling]``.

Builds a SQLite store of 100 runs × 20,000 steps (policy entropy and validation accuracy logged at every
step: 4 M points, written with ``Store.write_run``, which also writes the downsampled levels) in four
models × two algorithms × four interventions, all finished (so the Ceiling page draws its backtest), and analyses
them (``analysis.pipeline.refresh_analyses``).
Then, for each way, page and number of selected runs (10 and 100):

* **cold**: a fresh ``streamlit run`` server and a fresh browser context, timed from ``page.goto`` until the
  app's script has finished (``stApp[data-test-script-state=notRunning]``, the running indicator gone) and
  every plotly chart is drawn (its traces in the SVG, its WebGL canvas when it has WebGL traces);
* **warm**: a reload of the same page in the same browser (the server's caches and the browser's are warm).

It reports the points drawn per chart (every x value of every trace, read from the drawn chart) and the
server's resident memory (VmRSS of the streamlit process) after the warm load. With ``--repeat N`` each
row is measured N times and the fastest cold and warm loads are kept (the largest memory).

* **dashboard** = ``dashboard/app.py``: a point budget per chart (``dashboard.budget``), levels read from
  ``metric_lod``, WebGL when traces are many, one summary marker per run instead of stage bands at many runs;
* **naive** = ``bench/naive/app.py``: the Collapse page as it was before (``bench/naive/today.py``): every
  stored point read per trace, ≤ 2,000 points per trace whatever the number of runs, a band and markers
  per run (its Ceiling page is the product's own, so both columns time the same Ceiling code);
* **dashboard-webgl**: the dashboard with WebGL traces whatever the number of lines
  (``ENTROPY_DASH_WEBGL_TRACES=0``), to show what WebGL costs where it is drawn in software;
* **floor** = ``bench/floor/app.py``: Streamlit and plotly alone drawing as many lines and points as the
  Collapse page at that number of runs, nothing else — what no change to the page itself can go below;

and the Groups page (the dashboard only). "load" is the machine's 1-minute load average when the row
started: the machine is shared, and wall times grow with it.

Also prints, in-process (no browser), what the Collapse page's server side costs: read + build + JSON.
Exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.streamlit_server import Server, proc_mb  # noqa: E402
from db import Store  # noqa: E402
from db.records import RunData, RunInfo, Series  # noqa: E402
from ingest.keys import resolve_roles  # noqa: E402

N_RUNS = 100
N_STEPS = 20_000
ENTROPY, VAL = "actor/entropy", "val-core/bench/acc/mean@1"
MODELS = ("Qwen2.5-0.5B", "Qwen2.5-1.5B", "Qwen2.5-7B", "Qwen2.5-32B")
INTERVENTIONS = ("none", "clip-cov", "kl-cov", "entropy-bonus")
# way → (app, environment): "dashboard (WebGL)" is the dashboard with WebGL traces at any number of lines
WAYS = {"dashboard": (ROOT / "dashboard" / "app.py", {}),
        "naive": (ROOT / "bench" / "naive" / "app.py", {}),
        "dashboard-webgl": (ROOT / "dashboard" / "app.py", {"ENTROPY_DASH_WEBGL_TRACES": "0"}),
        "floor": (ROOT / "bench" / "floor" / "app.py", {})}
CHARTS = {"collapse": 1, "ceiling": 3, "groups": 2}
NAIVE_PAGES = ("collapse", "ceiling")
ONLY_COLLAPSE = ("dashboard-webgl", "floor")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# ------------------------------------------------------------------------------------------ the store
def build(url: str, n_runs: int = N_RUNS, n_steps: int = N_STEPS) -> tuple[float, float]:
    """Write ``n_runs`` runs × ``n_steps`` steps × 2 metrics, then analyse them; returns (write s, analyse s)."""
    from analysis.pipeline import refresh_analyses

    store = Store.open(url)
    sid = store.source_id("file", "/bench/dashboard")
    rng = np.random.default_rng(0)
    steps = np.arange(1, n_steps + 1)
    t0 = time.perf_counter()
    for i in range(n_runs):
        model, algo, iv = MODELS[i % 4], ("grpo", "ppo")[(i // 4) % 2], INTERVENTIONS[(i // 8) % 4]
        size = (0.5, 1.5, 7.0, 32.0)[i % 4]
        keep = {"none": 0.0, "clip-cov": 0.08, "kl-cov": 0.06, "entropy-bonus": 0.04}[iv]
        floor = rng.uniform(0.02, 0.06) + keep
        tau = rng.uniform(1500, 4000) * (1 + 4 * keep)
        h = floor + (1.2 - floor) * np.exp(-steps / tau) * (1 + 0.05 * rng.standard_normal(n_steps))
        a, b = rng.uniform(0.25, 0.35), 0.95 + 0.03 * np.log(size)
        r = np.clip(b - a * np.exp(h) + 0.01 * rng.standard_normal(n_steps), 0, 1)
        wall = 1.7e9 + steps * 30.0 + i * 1e6
        data = RunData(RunInfo(f"bench-{i}", f"bench-{model}-{algo}-{iv}-{i:03d}", project=f"sweep-{'ab'[i % 2]}",
                               model=model, algorithm=algo, tags={"intervention": iv, "seed": str(i)},
                               params={"lr": [1e-6, 3e-6][i % 2]}, status="FINISHED"),
                       (Series.build(ENTROPY, steps, h, wall), Series.build(VAL, steps, r, wall)))
        store.write_run(sid, data, resolve_roles(data.all_keys()))
    write_s = time.perf_counter() - t0
    refresh_analyses(store)
    return write_s, time.perf_counter() - t0 - write_s


# ------------------------------------------------------------------------------------------ server + browser
DRAWN_JS = """(n) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return null;
  if (document.querySelector('[data-testid="stException"]')) return 'exception';
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  if (plots.length < n) return null;
  const points = [];
  for (const gd of plots) {
    if (!gd._fullData || !gd._fullLayout || !gd.data || gd._fullData.length !== gd.data.length) return null;
    const svg = gd._fullData.filter(t => t.type === 'scatter' && t.visible === true).length;
    if (gd.querySelectorAll('.scatterlayer .trace').length < svg) return null;
    if (gd._fullData.some(t => t.type === 'scattergl') && !gd.querySelector('canvas.gl-canvas-context')) return null;
    points.push(gd._fullData.reduce((s, t) => s + ((t.x && t.x.length) || 0), 0));
  }
  return points;
}"""
FRAMES_JS = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


def _wait_drawn(page, n_charts: int, timeout_s: float = 300) -> list[int]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        handle = page.wait_for_function(DRAWN_JS, arg=n_charts, timeout=timeout_s * 1000, polling=50)
    except PlaywrightTimeout:
        drawn = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        raise RuntimeError(f"{page.url}: {drawn} of {n_charts} charts drawn after {timeout_s:.0f} s; the page says: "
                           f"{page.inner_text('[data-testid=stMain]')[-500:]!r}") from None
    points = handle.json_value()
    if points == "exception":
        raise RuntimeError(f"the page raised: {page.inner_text('[data-testid=stException]')[:500]}")
    page.evaluate(FRAMES_JS)  # the frame that paints what was just laid out
    return points


def time_page(browser, way: str, url: str, path: str, n_charts: int, workdir: Path, tag: str,
              env: dict[str, str] | None = None) -> dict:
    """Cold (fresh server, fresh browser context) and warm (reload) load of ``path``."""
    app, way_env = WAYS[way]
    server = Server(url, workdir / f"streamlit-{tag}.log", app=app, env={**way_env, **(env or {})})
    try:
        ctx = browser.new_context(viewport={"width": 1500, "height": 1300})
        page = ctx.new_page()
        t0 = time.perf_counter()
        page.goto(server.base + path, wait_until="commit")
        points = _wait_drawn(page, n_charts)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        page.reload(wait_until="commit")
        points = _wait_drawn(page, n_charts)
        warm = time.perf_counter() - t0
        page.screenshot(path=str(workdir / f"{tag}.png"))
        rss = proc_mb(server.proc.pid)
        ctx.close()
    finally:
        server.stop()
    return {"cold s": cold, "warm s": warm, "points per chart": points, "server RSS MB": rss}


# ------------------------------------------------------------------------------------------ in-process
def server_side(url: str, ids: list[int]) -> dict[str, float]:
    """The Collapse figure's server-side cost without Streamlit (read + build + JSON), both ways, as the
    pages do it (the dashboard: read at the chart's budget from the stored levels; naive: every point)."""
    sys.path.insert(0, str(ROOT / "bench" / "naive"))
    from streamlit.logger import set_log_level

    set_log_level("error")  # the dashboard's caches note that there is no Streamlit runtime here
    import today

    from analysis.pipeline import current_results
    from dashboard.collapse_figure import RunCurves, chart_points, collapse_figure, marker_points
    from dashboard.curves import choose_level
    from dashboard.data import build_curve
    from plots.downsample import trace_budget

    store = Store.open(url, create=False)
    results = {r.run_id: r for r in current_results(store)}
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    n_out = trace_budget(2 * len(ids), marker_points(len(ids)))
    keys = sorted({k for i in ids for k in (results[i].entropy_key, results[i].performance_key)})
    levels: dict = {}
    for run_id, key, level, n in store.lod_levels(ids, keys).itertuples(index=False):
        levels.setdefault((run_id, key), {})[level] = n
    runs = []
    for i in ids:
        res = results[i]
        hc, rc = (build_curve(store, i, k, 0.0, "step", n_out, choose_level(levels.get((i, k), {}), n_out))
                  for k in (res.entropy_key, res.performance_key))
        runs.append(RunCurves(i, res.run, hc, rc, stage=res.stage, collapse=res.collapse))
    fig = collapse_figure(runs)
    payload = fig.to_json()
    out["dashboard s"], out["dashboard MB"], out["dashboard points"] = (time.perf_counter() - t0, len(payload) / 1e6,
                                                                        chart_points(fig))
    t0 = time.perf_counter()
    runs = []
    for i in ids:
        res = results[i].to_dict()  # the page before read the stored dict
        curves = []
        for k in (res["entropy_key"], res["performance_key"]):
            p = store.points(i, k)
            curves.append(today.prepare_curve(p[:, 0], p[:, 1], p[:, 2]))
        runs.append(today.RunCurves(i, res["run"], curves[0], curves[1], stage=res.get("stage") or {},
                                    collapse=res.get("collapse") or {}))
    fig = today.collapse_figure(runs)
    payload = fig.to_json()
    out["naive s"], out["naive MB"], out["naive points"] = (time.perf_counter() - t0, len(payload) / 1e6,
                                                            chart_points(fig))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="where to build the store (default: a temp dir, removed unless --keep); "
                                  "a store already there is reused")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--runs", default="10,100", help="numbers of selected runs (default 10,100)")
    ap.add_argument("--pages", default="collapse,ceiling,groups")
    ap.add_argument("--ways", default="dashboard,naive,floor,dashboard-webgl")
    ap.add_argument("--repeat", type=int, default=1, help="time each page this many times (fresh server each) "
                                                          "and keep the fastest cold and warm load")
    args = ap.parse_args()
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="bench-dashboard-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "bench.db"
    url = f"sqlite:///{db}"
    if not db.exists():
        print(f"building {N_RUNS} runs × {N_STEPS:,} steps × 2 metrics in {db} …", file=sys.stderr, flush=True)
        write_s, analyse_s = build(url)
        print(f"  written in {write_s:.1f} s (points and levels), analysed in {analyse_s:.1f} s", file=sys.stderr,
              flush=True)
    store = Store.open(url, create=False)
    ids = [int(i) for i in store.runs_frame()["id"]]
    counts = [int(n) for n in args.runs.split(",")]

    print("\nCollapse page, server side only (read + build figure + JSON, no Streamlit, no browser):")
    rows = []
    for n in counts:
        rows.append({"runs": n, **server_side(url, ids[:n])})
    with pd.option_context("display.width", 200, "display.float_format", "{:.2f}".format):
        print(pd.DataFrame(rows).to_string(index=False))

    if not Path(CHROMIUM).exists():
        print(f"\nChromium not found at {CHROMIUM}: pages not timed (make system-deps installs it)")
        return 0
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for page_name in args.pages.split(","):
            for n in counts:
                sel = ",".join(map(str, ids[:n]))
                path = f"/{page_name}?runs={sel}" + (f"&run={ids[0]}" if page_name == "ceiling" else "")
                for way in args.ways.split(","):
                    if (way == "naive" and page_name not in NAIVE_PAGES) or (way in ONLY_COLLAPSE
                                                                             and page_name != "collapse"):
                        continue
                    env = {"BENCH_FLOOR_RUNS": str(n)} if way == "floor" else None
                    tag = f"{page_name}-{n}-{way}"
                    print(f"  timing {tag} …", file=sys.stderr, flush=True)
                    load = os.getloadavg()[0]
                    tries = [time_page(browser, way, url, "/" if way == "floor" else path, CHARTS[page_name],
                                       workdir, tag, env)
                             for _ in range(args.repeat)]
                    best = {**tries[0], "cold s": min(t["cold s"] for t in tries),
                            "warm s": min(t["warm s"] for t in tries),
                            "server RSS MB": max(t["server RSS MB"] for t in tries)}
                    rows.append({"page": page_name, "runs": n, "way": way, **best, "load": load})
        browser.close()
    table = pd.DataFrame(rows)
    table["points per chart"] = [" / ".join(f"{p:,}" for p in pts) for pts in table["points per chart"]]
    print(f"\nPages in headless Chromium ({CHROMIUM}, software rendering), store of {N_RUNS} runs × {N_STEPS:,} "
          "steps; cold = fresh server + fresh browser context, warm = reload; goal (Collapse): 100 runs cold ≤ 3 s, "
          "warm ≤ 1.5 s; 10 runs cold ≤ 1.5 s, warm ≤ 0.7 s; server ≤ 1 GB")
    with pd.option_context("display.width", 220, "display.max_colwidth", 60, "display.float_format", "{:.2f}".format):
        print(table.to_string(index=False))
    for page_name in table["page"].unique():
        for n in counts:
            part = table[(table["page"] == page_name) & (table["runs"] == n)].set_index("way")
            if "dashboard" not in part.index:
                continue
            d = part.loc["dashboard"]
            if "naive" in part.index:
                v = part.loc["naive"]
                print(f"  {page_name}, {n} runs: cold {v['cold s'] / d['cold s']:.1f}× faster, warm "
                      f"{v['warm s'] / d['warm s']:.1f}× faster than the naive way")
            if "floor" in part.index:
                f = part.loc["floor"]
                print(f"  {page_name}, {n} runs: Streamlit and plotly alone drawing as many points take "
                      f"{f['cold s']:.2f} s cold, {f['warm s']:.2f} s warm; the page adds {d['cold s'] - f['cold s']:.2f} "
                      f"and {d['warm s'] - f['warm s']:.2f} s")
    (workdir / "bench-dashboard.json").write_text(json.dumps(rows, indent=1, default=str))
    if not args.dir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"\nstore, screenshots and server logs kept in {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
