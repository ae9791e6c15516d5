"""A headline forecast as the documents carry it, read in one place: a live run's forecast (its ``fit --json``
``forecast``: from ``from_step`` to the planned ``horizon_step``) or a finished run's backtest row (a row of
``backtest --json``: from ``cutoff_step`` to its ``planned_end_step``, else the mean of its ``final_steps``), and its path for figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.forecasting import headline_path
from analysis.results import RunAnalysis
from analysis.run import warmup_mode
from models.metric_range import MetricRange


@dataclass(frozen=True)
class HeadlineSpan:
    live: bool  # a forecast to the planned end of a run in progress; False: a finished run's backtest row
    start: float  # the step the forecast was made from
    end: float  # the step it forecasts


def headline_span(headline: Mapping[str, Any]) -> HeadlineSpan:
    if "horizon_step" in headline:
        return HeadlineSpan(True, float(headline["from_step"]), float(headline["horizon_step"]))
    end = headline.get("planned_end_step") or np.mean(headline["final_steps"])
    return HeadlineSpan(False, float(headline["cutoff_step"]), float(end))


def path_of_headline(h: pd.Series, r: pd.Series, result: RunAnalysis,
                     headline: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """``analysis.forecasting.headline_path`` of ``headline`` for the run of ``result`` (its stored analysis)
    with entropy ``h`` and performance ``r``."""
    span = headline_span(headline)
    return headline_path(h, r, cutoff_step=span.start, end_step=span.end,
                         rng=MetricRange.from_dict(result.range), warmup=warmup_mode(result),
                         weights=headline["weights"], final=headline["predicted_final"],
                         interval=headline["interval"])
