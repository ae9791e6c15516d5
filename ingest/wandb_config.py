"""W&B run configs as flat parameters, shared by the offline and the cloud source."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONFIG_SEP = "."


def flatten_config(config: Mapping[str, Any], sep: str = CONFIG_SEP) -> dict[str, Any]:
    """Nested config dicts flattened to ``a.b.c`` keys; W&B's internal ``_wandb`` entry is dropped."""
    flat: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for k, v in node.items():
            if not prefix and k in ("_wandb", "wandb_version"):
                continue
            name = f"{prefix}{k}"
            if isinstance(v, Mapping) and v:
                walk(v, name + sep)
            else:
                flat[name] = v

    walk(config, "")
    return flat
