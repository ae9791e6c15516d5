"""Typed analyses (``analysis.results``) for tests of readers, from the few keys a test cares about: every
other key a stored analysis holds gets a neutral value, so a test states only what it checks."""

from __future__ import annotations

from typing import Any

from analysis.results import Collapse, Law, RunAnalysis, Stage
from analysis.version import ANALYSIS_VERSION, SCHEMA_VERSION

LAW = {"a": None, "b": None, "a_se": None, "b_se": None, "cov_ab": None, "ceiling_se": None, "ceiling_lo": None,
       "ceiling_hi": None, "r2": None, "rmse": None, "n": 0, "h_min": None, "h_max": None, "loss": "linear",
       "n_excluded": 0, "flags": [], "weak": None, "range": None}
RESULT = {"schema_version": SCHEMA_VERSION, "analysis_version": ANALYSIS_VERSION, "status": "ok", "reason": None,
          "law": None, "benchmarks": [], "live": None, "backtests": {}, "entropy_key": "actor/entropy",
          "performance_key": "val/score", "performance_kind": "accuracy", "key_reason": None,
          "unrecognised_keys": [], "n_entropy": 0, "n_performance": 0, "n_entropy_nonfinite": 0,
          "n_performance_nonfinite": 0, "last_step": None, "finished": False, "progress": ""}


def law(d: dict[str, Any]) -> Law:
    """A bounded law from a law's dict (``LawFit.to_dict`` or a few keys): raw values = the bounded ones."""
    full = LAW | dict(d)
    full.setdefault("ceiling_raw", full["ceiling"])
    full.setdefault("ceiling_lo_raw", full["ceiling_lo"])
    full.setdefault("ceiling_hi_raw", full["ceiling_hi"])
    full.setdefault("ceiling_ci", [full["ceiling_lo"], full["ceiling_hi"]])
    return Law.from_dict(full)


def analysis(**keys: Any) -> RunAnalysis:
    """A run's analysis with these keys (``law`` may be a dict, loaded by ``law``; ``stage`` and ``collapse``
    dicts by ``stage``/``collapse``)."""
    d = RESULT | keys
    if isinstance(d.get("law"), dict):
        d["law"] = law(d["law"]).to_dict()
    for name, make in (("stage", stage), ("collapse", collapse)):
        if isinstance(d.get(name), dict) and set(d[name]) != {"error", "cause"}:
            d[name] = make(**d[name]).to_dict()
    return RunAnalysis.from_dict(d)


def stage(**keys: Any) -> Stage:
    return Stage.from_dict({"step": None, "range": None, "clear": False, "reason": None} | keys)


def collapse(**keys: Any) -> Collapse:
    return Collapse.from_dict({"verdict": "stable", "alarm": False, "projected_floor_step": None, "message": "",
                               "h_start": None, "h_now": None, "floor": None, "decay_kind": None} | keys)
