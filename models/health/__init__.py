"""Run-health detectors: one module per detector, each a pure function of a run's curves returning a
``Finding`` (``models.health.finding``)."""

from models.health.finding import RANK, SEVERITIES, Finding, skipped, worst

DETECTORS = ("entropy_collapse", "entropy_blowup", "advantage_collapse", "reward_eval_divergence",
             "length_pathology", "clip_saturation", "kl_drift", "gradient_pathology", "plateau")

__all__ = ["DETECTORS", "RANK", "SEVERITIES", "Finding", "skipped", "worst"]
