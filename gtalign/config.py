"""params.yaml is the one place for hyperparameters; this module reads it into typed sections.

Dagster configs, DVC stages and the CLI all start from here, so a value changed in params.yaml (or with
`dvc exp run -S`) reaches every driver the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` over `base`, recursively for mappings (a preset changes a few keys of a section, not all)."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_set(params: dict[str, Any], assignment: str) -> dict[str, Any]:
    """`rl.max_steps=5` -> params with that key set (the value is read as YAML: 5, 1e-5, true, [a, b], null)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ValueError(f"--set expects section.key=value, got {assignment!r}")
    node: dict[str, Any] = {}
    top = node
    parts = key.split(".")
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = yaml.safe_load(raw)
    return deep_merge(params, top)


def load_params_with(
    path: str | Path = DEFAULT_PARAMS, presets: Sequence[str | Path] = (), sets: Sequence[str] = ()
) -> dict[str, Any]:
    """params.yaml, then each preset file overlaid in order, then `section.key=value` overrides."""
    params = load_params(path)
    for preset in presets:
        preset = Path(preset)
        if not preset.is_file():
            raise ParamsError(f"{preset}: no such preset file")
        overlay = yaml.safe_load(preset.read_text(encoding="utf-8")) or {}
        if not isinstance(overlay, dict):
            raise ParamsError(f"{preset}: a preset must be a mapping of params sections")
        params = deep_merge(params, overlay)
    for assignment in sets:
        params = apply_set(params, assignment)
    return params


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


def pipeline_variants(params: Mapping[str, Any]) -> list[str]:
    """The RL variants the pipeline trains and evaluates (`pipeline.variants`; the `paper` preset adds baselines)."""
    variants = section(dict(params), "pipeline").get("variants") or ["cobb_douglas"]
    return [str(v) for v in variants]


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
