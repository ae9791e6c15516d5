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
    """Where a headline forecast starts and the step it forecasts, read from the document it comes from."""

    live: bool  # a forecast to the planned end of a run in progress; False: a finished run's backtest row
    start: float  # the step the forecast was made from
    end: float  # the step it forecasts

    @classmethod
    def of_live(cls, forecast: Mapping[str, Any]) -> HeadlineSpan:
        """The span of a run's live forecast (the ``forecast`` of its ``fit --json`` row)."""
        return cls(True, float(forecast["from_step"]), float(forecast["horizon_step"]))

    @classmethod
    def of_backtest(cls, row: Mapping[str, Any]) -> HeadlineSpan:
        """The span of a finished run's backtest row (a row of ``backtest --json``)."""
        end = row.get("planned_end_step") or np.mean(row["final_steps"])
        return cls(False, float(row["cutoff_step"]), float(end))


def path_of_headline(h: pd.Series, r: pd.Series, result: RunAnalysis, headline: Mapping[str, Any],
                     span: HeadlineSpan) -> dict[str, np.ndarray] | None:
    """``analysis.forecasting.headline_path`` of ``headline`` for the run of ``result`` (its stored analysis)
    with entropy ``h`` and performance ``r``; ``span`` is read from the same document."""
    return headline_path(h, r, cutoff_step=span.start, end_step=span.end,
                         rng=MetricRange.from_dict(result.range), warmup=warmup_mode(result),
                         weights=headline["weights"], final=headline["predicted_final"],
                         interval=headline["interval"])
