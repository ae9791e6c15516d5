"""Write simulated runs into MLflow exactly as verl's MLflow logger would.

verl (``verl/utils/tracking.py``) starts one MLflow run per training job in the experiment named after the
project, logs the flattened trainer config as params, and at every step calls ``mlflow.log_metrics`` with
that step's metrics after replacing ``@`` by ``_at_`` (MLflow names may not contain ``@``), so
``val-core/gsm8k-sim/acc/mean@1`` is stored as ``val-core/gsm8k-sim/acc/mean_at_1``. The validation before
training is logged at step 0 on its own; later validations share their step with that step's training
metrics. Here the same records are written with ``MlflowClient.log_batch`` (up to 1000 metrics per call)
instead of one call per step, with run start/end times and wall-clock timestamps of a plausible job.

Works with a tracking server URL (``http://127.0.0.1:5000``) and with a store URI
(``sqlite:////path/mlflow.db``; artifacts then go beside the database file, never into the working
directory).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from entropy_dash.errors import ConfigError
from entropy_dash.simulator import ENTROPY_KEY, SCORE_KEY, SimulatedRun, val_key

MAX_METRICS_PER_BATCH = 1000  # MLflow's limits for one log_batch call
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
STEP_SECONDS = 30.0  # simulated wall-clock time of one training step
RUN_GAP_SECONDS = 60.0  # simulated pause between consecutive runs of a sweep
KNOWN_LAW_RUN = "known-law-a{a:g}-b{b:g}"
KNOWN_LAW_TASK = "known-law"


def mlflow_key(key: str) -> str:
    """The metric name verl's ``_MlflowLoggingAdapter`` writes for ``key``."""
    return key.replace("@", "_at_")


def log_runs(runs: Sequence[SimulatedRun], tracking_uri: str, experiment: str = "entropy-demo", *,
             skip_existing: bool = True, start_time_ms: int | None = None) -> list[str]:
    """Log ``runs`` into ``experiment`` (created if missing) and return their MLflow run ids, in order.

    With ``skip_existing`` a run whose name already exists, finished, in the experiment is not logged
    again; its id is returned instead (so a second ``demo`` adds nothing). The runs are laid out one after
    another in time, ending now (or starting at ``start_time_ms``).
    """
    if not runs:
        raise ConfigError("no simulated runs to log")
    client, exp_id = _client_and_experiment(tracking_uri, experiment)
    existing = _finished_runs_by_name(client, exp_id) if skip_existing else {}
    durations = [_duration_ms(r) for r in runs]
    gap = int(RUN_GAP_SECONDS * 1000)
    t = start_time_ms if start_time_ms is not None else _now_ms() - sum(durations) - gap * len(runs)
    ids = []
    for run, duration in zip(runs, durations, strict=True):
        name = run.config.name
        if name in existing:
            ids.append(existing[name])
        else:
            ids.append(_log_one(client, exp_id, name, run.params, run.tags, run.metrics, t))
        t += duration + gap
    return ids


def log_known_law(tracking_uri: str, experiment: str = "entropy-demo", a: float = 0.3, b: float = 1.2, *,
                  steps: int = 200, val_every: int = 5, noise: float = 0.0, seed: int = 0,
                  h_start: float = 1.2, h_end: float = 0.1, decay_steps: float = 40.0) -> str:
    """Log one run whose validation accuracy follows R = −a·e^H + b exactly (plus N(0, noise²)).

    Entropy decays as ``h_end + (h_start − h_end)·exp(−t/decay_steps)`` over steps 1..``steps``; the
    validation at step s (s = 0 and every ``val_every`` steps) is computed from the entropy the project's
    alignment rule pairs it with (step s + 1, or step s for the last one when s = ``steps``), so fitting the
    ingested run recovers a, b and the ceiling b − a. Keys are verl's, as in the demo runs. Returns the run id.
    """
    if steps < 3 or val_every < 1:
        raise ConfigError(f"a known-law run needs steps >= 3 and val_every >= 1, got {steps} and {val_every}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ConfigError(f"noise must be a finite standard deviation >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1)
    h = h_end + (h_start - h_end) * np.exp(-t / decay_steps)
    val_steps = np.arange(0, steps + 1, val_every)
    paired = h[np.minimum(val_steps + 1, steps) - 1]  # entropy logged at step s + 1 (or s at the end)
    r = -a * np.exp(paired) + b + noise * rng.standard_normal(len(val_steps))
    score = np.clip(-a * np.exp(h) + b + noise * rng.standard_normal(steps), 0.0, 1.0)
    name = KNOWN_LAW_RUN.format(a=a, b=b)
    metrics = {ENTROPY_KEY: (t, h), SCORE_KEY: (t, score), val_key(KNOWN_LAW_TASK): (val_steps, r)}
    params: dict[str, str | float | int] = {
        "trainer/experiment_name": name, "trainer/total_training_steps": steps, "trainer/test_freq": val_every,
        "sim/law_a": a, "sim/law_b": b, "sim/noise": noise, "sim/seed": seed,
    }
    tags = {"mlflow.runName": name, "algorithm": "known-law", "model_size": "none", "intervention": "none",
            "task": KNOWN_LAW_TASK, "simulated": "true"}
    client, exp_id = _client_and_experiment(tracking_uri, experiment)
    start = _now_ms() - int(steps * STEP_SECONDS * 1000)
    return _log_one(client, exp_id, name, params, tags, metrics, start)


# ------------------------------------------------------------------------------------------------ helpers


def _client_and_experiment(tracking_uri: str, experiment: str):  # -> (MlflowClient, str)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if not experiment:
        raise ConfigError("the MLflow experiment name must not be empty")
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return client, found.experiment_id
        return client, client.create_experiment(experiment, artifact_location=_artifact_location(tracking_uri))
    except MlflowException as exc:
        raise ConfigError(f"could not open MLflow experiment {experiment!r} at {tracking_uri}: {exc}") from exc


def _artifact_location(tracking_uri: str) -> str | None:
    """For a local database store, ``mlartifacts/`` beside the database file; servers choose their own."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme.startswith("sqlite") and parsed.path not in ("", "/:memory:"):
        db_path = Path(parsed.path[1:] if parsed.path.startswith("//") else parsed.path)
        return (db_path.resolve().parent / "mlartifacts").as_uri()
    return None


def _finished_runs_by_name(client, exp_id: str) -> dict[str, str]:
    out: dict[str, str] = {}
    token = None
    while True:
        page = client.search_runs([exp_id], filter_string="attributes.status = 'FINISHED'", max_results=1000,
                                  page_token=token)
        for r in page:
            out.setdefault(r.info.run_name, r.info.run_id)
        token = page.token
        if not token:
            return out


def _log_one(client, exp_id: str, name: str, params: dict[str, str | float | int], tags: dict[str, str],
             metrics: dict[str, tuple[np.ndarray, np.ndarray]], start_ms: int) -> str:
    """Create one run, log params, tags and all metric points in batches, and mark it finished."""
    from mlflow.entities import Metric, Param, RunTag

    run = client.create_run(exp_id, start_time=start_ms, run_name=name)
    run_id = run.info.run_id
    step_ms = int(STEP_SECONDS * 1000)
    points = [
        Metric(mlflow_key(key), float(v), start_ms + int(s) * step_ms, int(s))
        for key, (steps, values) in metrics.items()
        for s, v in zip(np.asarray(steps).tolist(), np.asarray(values, dtype=float).tolist(), strict=True)
    ]
    points.sort(key=lambda m: (m.step, m.key))  # the order a trainer logs them in
    param_list = [Param(k, str(v)) for k, v in params.items()]
    tag_list = [RunTag(k, v) for k, v in tags.items() if k != "mlflow.runName"]
    for chunk in _chunks(param_list, MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=chunk, synchronous=True)
    for chunk in _chunks(tag_list, MAX_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=chunk, synchronous=True)
    for chunk in _chunks(points, MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=chunk, synchronous=True)
    last_step = max((int(np.max(s)) for s, _ in metrics.values() if len(s)), default=0)
    with contextlib.redirect_stdout(sys.stderr):  # MLflow prints "View run …" links; stdout is for --json
        client.set_terminated(run_id, "FINISHED", end_time=start_ms + last_step * step_ms + 1000)
    return run_id


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _duration_ms(run: SimulatedRun) -> int:
    return int(run.config.steps * STEP_SECONDS * 1000) + 1000


def _now_ms() -> int:
    return int(time.time() * 1000)
