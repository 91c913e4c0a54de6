"""params.yaml is the one place for hyperparameters; this module reads it into one typed object, `Params`.

Each driver (the CLI, a DVC stage, a Dagster asset, the Pipes entry point) parses params once, at its entry, with
`parse_params` (or `load_typed_params`), and hands the stages the typed object; a value changed in params.yaml (or
with `dvc exp run -S`) reaches every driver the same way. Every section is strict: a misspelt key is a ParamsError
naming the section and the key. Each section's model lives beside its concern (`gtalign.train.params`,
`gtalign.evaluate.config`, ...); this module only assembles them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from gtalign.data.curate import CurateConfig
from gtalign.evaluate.config import EvaluateConfig
from gtalign.registry import RegistryConfig
from gtalign.reward.config import RewardParams
from gtalign.serve import ServeSettings
from gtalign.steering.config import SteeringConfig
from gtalign.teacher import DemonstrationsParams, TeacherEvalParams
from gtalign.train.params import BaseModelParams, RLParams, SFTParams

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


def overlay_set(params: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`overrides` over `params`, leaving out every None: a CLI option or a Dagster run-config field that was not
    given keeps the params.yaml value."""
    return deep_merge(params, _without_none(overrides))


def _without_none(overlay: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _without_none(v) if isinstance(v, Mapping) else v for k, v in overlay.items() if v is not None}


def apply_set(params: dict[str, Any], assignment: str) -> dict[str, Any]:
    """`rl.args.max_steps=5` -> params with that key set (the value is read as YAML: 5, 1e-5, true, [a, b], null)."""
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


class PipelineParams(BaseModel):
    """params.yaml `pipeline:`."""

    model_config = ConfigDict(extra="forbid")

    variants: list[str] = Field(
        default_factory=lambda: ["cobb_douglas"],
        description="the RL variants trained and evaluated (params.yaml: GTAlign and its consistency variant; the "
        "`paper` preset adds user, llm, linear and two more GTAlign seeds)",
    )


class Params(BaseModel):
    """The whole of params.yaml (+ presets and overrides), validated: one attribute per section."""

    model_config = ConfigDict(extra="forbid")

    curate: CurateConfig = Field(default_factory=CurateConfig)
    demonstrations: DemonstrationsParams = Field(default_factory=DemonstrationsParams)
    teacher_eval: TeacherEvalParams = Field(default_factory=TeacherEvalParams)
    reward: RewardParams = Field(default_factory=RewardParams)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    base_model: BaseModelParams = Field(default_factory=BaseModelParams)
    sft: SFTParams = Field(default_factory=SFTParams)
    rl: RLParams = Field(default_factory=RLParams)
    pipeline: PipelineParams = Field(default_factory=PipelineParams)
    steering: SteeringConfig = Field(default_factory=SteeringConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    serve: ServeSettings = Field(default_factory=ServeSettings)

    _written: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _variants_resolve(self) -> Params:
        """Every variant the pipeline trains is known, and every named variant's reward is a valid reward: a typo
        fails here, before any stage ran, not in the middle of `make paper`."""
        for i, variant in enumerate(self.pipeline.variants):
            self.rl.check_variant(variant, f"pipeline.variants[{i}]")
        for name in self.rl.variants:
            try:
                self.reward.config(**self.rl.with_variant(name).reward_overrides())
            except ValidationError as e:
                first = e.errors()[0]
                raise ValueError(f"rl.variants.{name}.reward: {first['msg']} at {first['loc']}") from None
        return self

    def other_variants(self) -> list[str]:
        """`pipeline.variants` besides `rl.variant` (GTAlign): what Dagster's `rl_variants` trains beside
        `rl_model`."""
        return [v for v in self.pipeline.variants if v != self.rl.variant]

    def written(self, name: str) -> dict[str, Any]:
        """Section `name` as written, without defaults: what MLflow logs as the run's params."""
        return copy.deepcopy(self._written.get(name) or {})

    def as_in(self, path: str | Path) -> bool:
        """Whether these are exactly the params of file `path`: no preset overlaid, no override set."""
        return _sections(load_params(path)) == self._written


def _sections(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ({} if v is None else v) for k, v in dict(raw).items()}


def parse_params(raw: Mapping[str, Any]) -> Params:
    """Validate a params mapping (params.yaml with presets and overrides applied) into `Params`.

    A misspelt or unknown key, or a bad value, is one ParamsError listing each problem as `section.key: reason`.
    """
    written = _sections(raw)
    try:
        params = Params.model_validate(written)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ParamsError(f"params.yaml: {problems}") from None
    params._written = copy.deepcopy(written)
    return params


def load_typed_params(
    path: str | Path = DEFAULT_PARAMS, presets: Sequence[str | Path] = (), sets: Sequence[str] = ()
) -> Params:
    """`load_params_with`, parsed: what a driver calls once at its entry."""
    return parse_params(load_params_with(path, presets, sets))
