"""params.yaml is the one place for hyperparameters; this module reads it into typed sections.

Dagster configs, DVC stages and the CLI all start from here, so a value changed in params.yaml (or with
`dvc exp run -S`) reaches every driver the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gtalign.reward.config import RewardConfig

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(ValueError):
    pass


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file (run from the repo root or pass --params)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name, {}) or {}
    if not isinstance(value, dict):
        raise ParamsError(f"params.yaml: section {name!r} must be a mapping, got {type(value).__name__}")
    return value


def reward_config(params: dict[str, Any], **overrides: Any) -> RewardConfig:
    """The `reward:` section (without its `judge:` sub-section) as a validated RewardConfig."""
    values = {k: v for k, v in section(params, "reward").items() if k != "judge"}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RewardConfig(**values)
    except ValueError as e:
        raise ParamsError(f"params.yaml: reward: {e}") from None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys, the form MLflow and `dvc params diff` show."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
