"""Across runs: model size from names/params/tags, and the log-linear fit of a law coefficient against size.

Model size. ``parse_model_size`` reads the parameter count, in billions, from text such as a model name or
path ("Qwen2.5-0.5B-Instruct" → 0.5, "gemma-2-2b-it" → 2, "llama-7b" → 7, "70B" → 70, "gpt2-124M" → 0.124).
A mixture-of-experts name "8x7B" gives the nominal product 56 (the dense-equivalent total is smaller; the
name does not say by how much). In "Qwen3-30B-A3B" the first size (30, the total) wins over the active count.
A number counts only when a unit letter B/M follows it directly and no letter follows the unit, so
"bsz256", "prompt1024" or "gsm8k" are not sizes. ``model_size_from`` tries a run's model, name, params and tags.

Scaling fit. Within a model family the coefficients of R = −a·e^H + b vary log-linearly with model size
(Cui et al., "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models", 2025):
coefficient = k·ln(size in billions) + c. ``fit_scaling`` is that ordinary least-squares fit with standard
errors, a Student-t interval and R².
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.errors import FitError
from models.intervals import DEFAULT_CONFIDENCE, t_quantile

_SIZE = re.compile(r"(?<![\d.])(?:(?P<experts>\d+)\s*[xX]\s*)?(?P<num>\d+(?:\.\d+)?)\s?(?P<unit>[bBmM])(?![A-Za-z])")
_UNIT = {"b": 1.0, "m": 1e-3}
_MODEL_KEYS = ("model", "model_name", "model_path", "base_model", "actor_rollout_ref.model.path",
               "model_name_or_path", "model_size", "size")


def parse_model_size(text: str | None) -> float | None:
    """Billions of parameters named in ``text`` (rules in the module docstring), or None."""
    if not text:
        return None
    for m in _SIZE.finditer(str(text)):
        value = float(m["num"]) * _UNIT[m["unit"].lower()]
        if m["experts"]:
            value *= int(m["experts"])
        if value > 0:
            return value
    return None


def model_size_from(model: str | None = None, name: str | None = None,
                    params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None) -> float | None:
    """First size found in the run's model, then model-like params/tags keys, then its name."""
    candidates: list[Any] = [model]
    for source in (params or {}, tags or {}):
        candidates += [v for k, v in source.items() if any(str(k).lower().endswith(mk) for mk in _MODEL_KEYS)]
    candidates.append(name)
    for c in candidates:
        size = parse_model_size(c) if isinstance(c, str) else None
        if size is not None:
            return size
    return None


@dataclass(frozen=True)
class ScalingFit:
    """coefficient = k·ln(size) + c, fitted over runs of one family."""

    k: float
    c: float
    k_se: float
    c_se: float
    cov_kc: float
    r2: float
    n: int
    sigma: float  # residual standard deviation (n − 2 dof)
    size_min: float
    size_max: float
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def k_ci(self) -> tuple[float, float]:
        half = t_quantile(self.n - 2, self.confidence) * self.k_se
        return (self.k - half, self.k + half)

    def predict(self, size: float | np.ndarray) -> np.ndarray:
        return self.k * np.log(np.asarray(size, dtype=float)) + self.c

    def interval(self, size: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``confidence`` interval of the fitted line at ``size`` (of the mean, not of a new run)."""
        x = np.log(np.asarray(size, dtype=float))
        var = self.k_se**2 * x**2 + self.c_se**2 + 2 * x * self.cov_kc
        half = t_quantile(self.n - 2, self.confidence) * np.sqrt(np.maximum(var, 0))
        mid = self.predict(size)
        return mid - half, mid + half

    def to_dict(self) -> dict:
        return {"k": self.k, "c": self.c, "k_se": self.k_se, "c_se": self.c_se, "cov_kc": self.cov_kc,
                "r2": self.r2, "n": self.n, "sigma": self.sigma, "size_min": self.size_min,
                "size_max": self.size_max, "k_ci": list(self.k_ci), "confidence": self.confidence,
                "form": "coefficient = k * ln(size_B) + c"}


def fit_scaling(sizes: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, *,
                confidence: float = DEFAULT_CONFIDENCE) -> ScalingFit:
    """OLS of ``values`` on ln(``sizes``) (sizes in billions). Needs ≥ 3 runs and ≥ 2 distinct sizes."""
    s = np.asarray(sizes, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    if s.shape != v.shape:
        raise FitError(f"sizes and values differ in length: {s.size} vs {v.size}", "shape")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(v))) or np.any(s <= 0):
        raise FitError("model sizes must be positive and values finite; drop runs without a parsed size",
                       "non_finite")
    if s.size < 3:
        raise FitError(f"need at least 3 runs to fit a coefficient against model size, got {s.size}",
                       "too_few_points")
    x = np.log(s)
    xm, vm = x.mean(), v.mean()
    sxx = float(((x - xm) ** 2).sum())
    if sxx <= 1e-12:
        raise FitError("all runs have the same model size; a size trend needs at least two sizes",
                       "no_size_spread")
    k = float(((x - xm) * (v - vm)).sum() / sxx)
    c = float(vm - k * xm)
    resid = v - (k * x + c)
    n = s.size
    sigma2 = float((resid**2).sum() / (n - 2))
    syy = float(((v - vm) ** 2).sum())
    return ScalingFit(
        k=k, c=c, k_se=float(np.sqrt(sigma2 / sxx)), c_se=float(np.sqrt(sigma2 * (1 / n + xm**2 / sxx))),
        cov_kc=float(-xm * sigma2 / sxx), r2=1 - float((resid**2).sum()) / syy if syy > 0 else 1.0, n=n,
        sigma=float(np.sqrt(sigma2)), size_min=float(s.min()), size_max=float(s.max()), confidence=confidence,
    )


def fit_scaling_table(rows: Iterable[Mapping[str, Any]], coefficients: Sequence[str] = ("a", "b", "ceiling"),
                      *, group: str | None = None) -> dict[tuple[Any, str], ScalingFit | str]:
    """Fit each coefficient against ``size`` per ``group`` value (e.g. family or algorithm) over ``rows``
    (mappings with a ``size`` key in billions, None where unknown). Groups that cannot be fitted map to
    the reason, so a table can say why."""
    out: dict[tuple[Any, str], ScalingFit | str] = {}
    by: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        by.setdefault(r.get(group) if group else None, []).append(r)
    for g, rs in by.items():
        for coef in coefficients:
            pts = [(r["size"], r[coef]) for r in rs if r.get("size") is not None and r.get(coef) is not None]
            try:
                out[(g, coef)] = fit_scaling([p[0] for p in pts], [p[1] for p in pts])
            except FitError as exc:
                out[(g, coef)] = str(exc)
    return out
