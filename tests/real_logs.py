"""The real verl console logs as numpy curves, read through the project's own parser (ingest.verl_log)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.verl_log import parse_verl_log

ENTROPY = "actor/entropy_loss"  # holds the entropy in this verl version
SCORE = "val/test_score/openai/gsm8k"


def read_verl(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(entropy steps, entropy, validation steps, validation score) in the stored step convention."""
    series = {s.key: s for s in parse_verl_log(path).series}
    h, r = series[ENTROPY], series[SCORE]
    return h.steps.astype(float), h.values, r.steps.astype(float), r.values
