"""The MLflow model registry: log the trained policy as a pyfunc, register it as a challenger, promote by a gate.

Three drivers (the `gtalign registry` CLI, the `dvc repro` stage, the Dagster `registered_model` asset) all call
`release`, which runs the same two functions on each of `registry.candidates` in turn, so a release decision cannot
depend on how it was launched:

- `register(...)` logs the Hugging Face checkpoint as a models-from-code pyfunc (`gtalign/pyfunc_model.py`, with the
  `gtalign` package bundled as code), registers a new version of `gtalign-assistant`, gives it the alias
  `challenger`, and tags it with its evaluation metrics (`gtalign.metric.<name>`) and the DVC data version. The
  model carries params.yaml `steering:` in its `model_config` (its `pricing` param steers as `gtalign serve` does)
  and an input example (one chat, `pricing="api"`), so the MLflow UI shows how to call it.
- `promote(...)` is the gate: the challenger becomes `champion` only if it reaches every floor of
  `registry.gate.floors` (absolute minimums such as `matrix_analyze_mean: 0.9`: a champion keeps its matrix
  reasoning, even the first one), its mean social welfare beats the champion's (or there is no champion) and no
  source's answer quality drops by more than a tolerance. The decision and its reasons are written as tags on the
  challenger version either way, and a `PromotionDecision` comes back.

Metrics come from the evaluation's flat JSON (`artifacts/metrics/evaluation.json`) through a key mapping (see
`MetricKeys`): by default `<model>/welfare_mean` becomes `welfare_mean` and every `<model>/answer/<source>` becomes
`answer/<source>`, the names the gate reads. Metrics live on the model version as tags, not only on the run, because
the gate must compare two versions that may come from different runs, experiments or even tracking servers' eras.

Serving reads the registry back: `resolve_model` turns `models:/NAME@ALIAS` (or `models:/NAME/VERSION`, or a
checkpoint folder) into the Hugging Face folder behind it and the `model_config` it was logged with, for
`gtalign serve` (which serves a registered model with the steering it was registered with) and `gtalign steer eval`.

Aliases, not stages: stages are deprecated in MLflow 3. Note that `search_model_versions` returns empty `aliases`,
so aliases are always read with `get_model_version_by_alias`.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gtalign.layout import rl_model_name
from gtalign.steering.config import SteeringConfig, steering_entry
from gtalign.tracking import data_version, default_tracking_uri, run

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models import ModelSignature

MODEL_NAME = "gtalign-assistant"
CHALLENGER = "challenger"
CHAMPION = "champion"
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
ARTIFACT_NAME = "assistant"  # the logged model's name inside its run

METRIC_TAG_PREFIX = "gtalign.metric."
DATA_VERSION_TAG = "gtalign.data_version"
EVALUATED_MODEL_TAG = "gtalign.evaluated_model"
CHECKPOINT_TAG = "gtalign.checkpoint"
DECISION_TAG = "gtalign.promotion.decision"
REASONS_TAG = "gtalign.promotion.reasons"
COMPARED_TO_TAG = "gtalign.promotion.compared_to"
TOLERANCE_TAG = "gtalign.promotion.tolerance"
GATE_METRIC_TAG = "gtalign.promotion.metric"
DECIDED_AT_TAG = "gtalign.promotion.decided_at"
SUPERSEDED_BY_TAG = "gtalign.promotion.superseded_by"

DEFAULT_METRIC_KEYS = {"welfare_mean": "{model}/welfare_mean"}
DEFAULT_METRIC_PREFIXES = {"answer/": "{model}/answer/"}

EXAMPLE_MAX_NEW_TOKENS = 8  # the input example's budget (MLflow predicts on it at logging time)

_TAG_VALUE_LIMIT = 5000  # MLflow's limit on a model version tag value
_EPS = 1e-9  # float slack so that a drop of exactly the tolerance passes


class RegistryError(RuntimeError):
    """A registry operation cannot proceed (no such model, no challenger, metrics missing from the evaluation)."""


# ---------------------------------------------------------------------------------------------------------------
# Metrics: evaluation.json -> the registry's metric names
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricKeys:
    """How the evaluation's flat metrics dict maps to the metric names stored on a model version.

    `keys` maps one registry name to one evaluation key; `prefixes` maps a registry prefix to an evaluation prefix,
    and every evaluation key under it is copied with the prefix swapped. `{model}` in either template is the
    evaluated model's name (e.g. the RL variant `cobb_douglas`). Every key must exist and every prefix must match at
    least one key: an empty match is a misconfigured mapping, and a silently vacuous gate would promote anything.
    """

    keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_METRIC_KEYS))
    prefixes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_METRIC_PREFIXES))

    def select(self, evaluation: Mapping[str, Any], model: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, template in self.keys.items():
            key = template.format(model=model)
            if key not in evaluation:
                near = sorted(k for k in evaluation if k.startswith(f"{model}/"))[:10]
                raise RegistryError(f"evaluation has no key {key!r} (for {name!r}); keys for {model!r}: {near}")
            out[name] = _finite(evaluation[key], key)
        for name_prefix, template in self.prefixes.items():
            prefix = template.format(model=model)
            matched = {k: v for k, v in evaluation.items() if k.startswith(prefix) and len(k) > len(prefix)}
            if not matched:
                raise RegistryError(f"evaluation has no keys under {prefix!r} (for {name_prefix!r}*)")
            out.update({name_prefix + k[len(prefix) :]: _finite(v, k) for k, v in matched.items()})
        return out


def _finite(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise RegistryError(f"evaluation metric {key!r} must be a finite number, got {value!r}")
    return float(value)


def read_metrics(path: str | Path, model: str, keys: MetricKeys | None = None) -> dict[str, float]:
    """The registry metrics of `model` from an evaluation JSON file (a flat dict)."""
    path = Path(path)
    if not path.exists():
        raise RegistryError(f"{path}: no such metrics file (run the evaluation first)")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a flat JSON object, got {type(data).__name__}")
    return (keys or MetricKeys()).select(data, model)


def metrics_of(version: ModelVersion) -> dict[str, float]:
    """The metrics a version was registered with (its `gtalign.metric.*` tags)."""
    out: dict[str, float] = {}
    for key, value in (version.tags or {}).items():
        if key.startswith(METRIC_TAG_PREFIX):
            try:
                out[key[len(METRIC_TAG_PREFIX) :]] = float(value)
            except ValueError:
                continue
    return out


# ---------------------------------------------------------------------------------------------------------------
# Configuration (params.yaml `registry:`)
# ---------------------------------------------------------------------------------------------------------------
class GateConfig(BaseModel):
    """params.yaml `registry.gate:`: what `promote` compares."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="params.yaml registry.gate")

    metric: str = Field("welfare_mean", description="the challenger must beat the champion on this metric")
    answer_prefix: str = Field("answer/", description="per-source answer metrics, none may drop beyond tolerance")
    tolerance: float = Field(0.02, description="absolute drop allowed per source, in the answer metric's units")
    floors: dict[str, float] = Field(
        default_factory=dict,
        description="registry metric -> the least value a challenger must reach, champion or not (e.g. "
        "matrix_analyze_mean: 0.9); each must be one of registry.metric_keys",
    )


class ServingConfig(BaseModel):
    """params.yaml `registry.serving:`: the pyfunc signature's defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="params.yaml registry.serving")

    max_new_tokens: int = 256
    temperature: float = 0.0
    prompt_style: str = Field("compact", description="wrap chats without a system turn: compact | full | none")


class RegistryConfig(BaseModel):
    """params.yaml `registry:`, typed and strict (a misspelt key is an error); defaults as documented there."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="params.yaml registry")

    model_name: str = MODEL_NAME
    model_dir: str = Field(
        f"artifacts/models/{rl_model_name('cobb_douglas')}", description="the HF checkpoint to register"
    )
    metrics_file: str = Field("artifacts/metrics/evaluation.json", description="flat JSON written by the evaluation")
    evaluated_model: str = Field("cobb_douglas", description="{model} in the key templates")
    candidates: list[str] = Field(
        default_factory=list,
        description="RL variants `release` registers in turn, each judged by the gate against the champion so far "
        "(artifacts/models/rl-<variant>, its evaluation under <variant>); empty = model_dir / evaluated_model alone",
    )
    metric_keys: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_METRIC_KEYS))
    metric_prefixes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_METRIC_PREFIXES))
    gate: GateConfig = Field(default_factory=GateConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    decision_file: str = "artifacts/metrics/promotion.json"

    @property
    def metric_mapping(self) -> MetricKeys:
        return MetricKeys(keys=self.metric_keys, prefixes=self.metric_prefixes)

    @model_validator(mode="after")
    def _floors_are_registered(self) -> RegistryConfig:
        unknown = sorted(set(self.gate.floors) - set(self.metric_keys))
        if unknown:
            raise ValueError(
                f"gate.floors {unknown}: not registered metrics; add each to metric_keys "
                f"(have {sorted(self.metric_keys)})"
            )
        return self

    def overridden(
        self,
        *,
        model_dir: str | Path | None = None,
        metrics_file: str | Path | None = None,
        evaluated_model: str | None = None,
        decision_file: str | Path | None = None,
        tolerance: float | None = None,
    ) -> RegistryConfig:
        """This config with one run's overrides (CLI options, Dagster run config); unset keeps params.yaml's.

        A checkpoint or evaluated name picks one model, which `candidates` already name: both at once is an error
        rather than a silent choice of one."""
        picked = {"model_dir": model_dir, "evaluated_model": evaluated_model}
        if self.candidates and any(v is not None for v in picked.values()):
            given = ", ".join(k for k, v in picked.items() if v is not None)
            raise RegistryError(
                f"{given} registers one checkpoint, but registry.candidates names {self.candidates} (each is "
                "artifacts/models/rl-<variant>); set registry.candidates=[] to register one"
            )
        files = {"metrics_file": metrics_file, "decision_file": decision_file, **picked}
        update: dict[str, Any] = {k: str(v) for k, v in files.items() if v is not None}
        if tolerance is not None:
            update["gate"] = self.gate.model_copy(update={"tolerance": tolerance})
        return self.model_copy(update=update)

    def for_candidates(self) -> list[RegistryConfig]:
        """One config per candidate (its checkpoint and evaluated name), or this one when no candidates are set."""
        return [
            self.model_copy(update={"model_dir": f"artifacts/models/{rl_model_name(v)}", "evaluated_model": v})
            for v in self.candidates
        ] or [self]


# ---------------------------------------------------------------------------------------------------------------
# Logging and registration
# ---------------------------------------------------------------------------------------------------------------
def signature(max_new_tokens: int = 256, temperature: float = 0.0) -> ModelSignature:
    """Chat messages in, the four-block answer out; the params' defaults are the serving defaults."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Object, ParamSchema, ParamSpec, Property, Schema

    message = Object([Property("role", DataType.string), Property("content", DataType.string)])
    return ModelSignature(
        inputs=Schema([ColSpec(Array(message), "messages")]),
        outputs=Schema(
            [
                ColSpec(DataType.string, "completion", required=False),
                ColSpec(DataType.string, "response", required=False),
                ColSpec(DataType.boolean, "format_ok", required=False),
                ColSpec(DataType.string, "format_error", required=False),
                ColSpec(DataType.string, "pricing", required=False),
                ColSpec(DataType.string, "payoff", required=False),  # JSON: the matrix in the answer
                ColSpec(DataType.string, "original_payoff", required=False),  # JSON: the one the model wrote
                ColSpec(DataType.string, "optimal_cell", required=False),
                ColSpec(DataType.string, "chosen_cell", required=False),
                ColSpec(DataType.string, "action", required=False),
                ColSpec(DataType.boolean, "steered", required=False),
                ColSpec(DataType.string, "analyze", required=False),  # model | solver: who was asked to write it
                ColSpec(DataType.boolean, "solver_analyze", required=False),  # the solver did
                ColSpec(DataType.string, "steer_error", required=False),
            ]
        ),
        params=ParamSchema(
            [
                ParamSpec("max_new_tokens", DataType.long, int(max_new_tokens)),
                ParamSpec("temperature", DataType.double, float(temperature)),
                ParamSpec("return", DataType.string, "full"),
                ParamSpec("pricing", DataType.string, ""),
                ParamSpec("analyze", DataType.string, ""),  # model | solver; "" = params.yaml steering.analyze
            ]
        ),
    )


def input_example() -> tuple[Any, dict[str, Any]]:
    """One chat and the params to steer it, stored with the model so the MLflow UI shows how to call it.

    MLflow runs `predict` on it when the model is logged (to validate the serving input): `max_new_tokens` is
    kept at `EXAMPLE_MAX_NEW_TOKENS` so that costs one model load and a few decoding steps, not a full answer.
    """
    import pandas as pd

    chat = [{"role": "user", "content": "What is the capital of France?"}]
    return pd.DataFrame({"messages": [chat]}), {"pricing": "api", "max_new_tokens": EXAMPLE_MAX_NEW_TOKENS}


def _requirements() -> list[str]:
    """Pinned where the serialisation format matters (mlflow, transformers), loose for torch (CPU or CUDA build)."""
    from importlib.metadata import PackageNotFoundError, version

    out = ["torch"]
    for pkg in ("mlflow", "transformers", "tokenizers", "pandas"):
        try:
            out.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            out.append(pkg)
    return out


def _bundle_package(dest: Path) -> Path:
    """A clean copy of the `gtalign` package (no caches) to ship as the model's code path.

    Bundling makes the model loadable in any process with the pip requirements, and pins the parsing and prompt code
    to the version the model was registered with.
    """
    src = Path(__file__).resolve().parent
    target = dest / "gtalign"
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def client_for(client_or_uri: MlflowClient | str | None = None, root: Path | None = None) -> MlflowClient:
    """An MlflowClient whose registry is the tracking store (a URI, the project default, or a given client)."""
    from mlflow import MlflowClient

    if isinstance(client_or_uri, MlflowClient):
        return client_or_uri
    uri = client_or_uri or default_tracking_uri(root or Path("."))
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@dataclass(frozen=True)
class Registration:
    """A new model version: where it is, what it was evaluated at, and which alias it got."""

    name: str
    version: str
    model_uri: str  # models:/<name>/<version>
    run_id: str
    model_id: str | None
    metrics: dict[str, float]
    data_version: str | None
    alias: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register(
    root: Path,
    model_dir: str | Path,
    metrics: Mapping[str, float],
    *,
    name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    alias: str = CHALLENGER,
    evaluated_model: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    prompt_style: str = "compact",
    steering: SteeringConfig | None = None,
    tags: Mapping[str, str] | None = None,
) -> Registration:
    """Log `model_dir` (a Hugging Face folder) as the assistant pyfunc and register it as a new `alias` version.

    `metrics` use the registry names (`welfare_mean`, `answer/<source>`, ...; see `read_metrics`); they go to the run
    as metrics and to the version as `gtalign.metric.*` tags, the latter being what `promote` compares. `steering`
    (params.yaml `steering:`, defaults when None) goes into the model's `model_config`: the pyfunc applies a
    request's `pricing` with it, as `gtalign serve` does.
    """
    import mlflow

    root = Path(root)
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise RegistryError(f"{model_dir}: not a Hugging Face model folder (no config.json)")
    metrics = {k: _finite(v, k) for k, v in metrics.items()}
    data_ver = data_version(root)
    run_params = {
        "registry": {
            "name": name,
            "model_dir": str(model_dir),
            "evaluated_model": evaluated_model or "",
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "prompt_style": prompt_style,
        }
    }
    with (
        run(root, "register", params=run_params, tracking_uri=tracking_uri) as active,
        tempfile.TemporaryDirectory(prefix="gtalign-code-") as tmp,
    ):
        # (The "Add type hints" warning is by design, since hints would drop the params schema.)
        info = mlflow.pyfunc.log_model(
            name=ARTIFACT_NAME,
            python_model=str(PYFUNC_FILE),
            artifacts={"hf_dir": str(model_dir)},
            code_paths=[str(_bundle_package(Path(tmp)))],
            signature=signature(max_new_tokens, temperature),
            input_example=input_example(),
            pip_requirements=_requirements(),
            model_config={"prompt_style": prompt_style, "seed": 0, "steering": steering_entry(steering)},
            tags={DATA_VERSION_TAG: data_ver or "unknown"},
        )
        if metrics:  # on the run and on the logged model, whose page (and its versions') shows them
            mlflow.log_metrics(metrics, model_id=info.model_id)
        run_id = active.info.run_id
        uri = mlflow.get_tracking_uri()
    client = client_for(uri)
    version_tags = {
        **{f"{METRIC_TAG_PREFIX}{k}": repr(v) for k, v in metrics.items()},
        DATA_VERSION_TAG: data_ver or "unknown",
        CHECKPOINT_TAG: str(model_dir),
        **({EVALUATED_MODEL_TAG: evaluated_model} if evaluated_model else {}),
        **dict(tags or {}),
    }
    _ensure_registered_model(client, name)
    mv = client.create_model_version(
        name, source=info.model_uri, run_id=run_id, tags=version_tags, model_id=info.model_id
    )
    client.set_registered_model_alias(name, alias, mv.version)
    return Registration(
        name, str(mv.version), f"models:/{name}/{mv.version}", run_id, info.model_id, metrics, data_ver, alias
    )


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            description="GTAlign assistant: chat messages in, the four-block answer (thinking, payoff, analyze, "
            "response) out. Aliases: challenger = latest registered, champion = passed the promotion gate.",
        )


def register_from_params(
    root: Path,
    cfg: RegistryConfig,
    *,
    model_dir: str | Path | None = None,
    metrics_file: str | Path | None = None,
    evaluated_model: str | None = None,
    tracking_uri: str | None = None,
    steering: SteeringConfig | None = None,
) -> Registration:
    """`register` with every default from params.yaml `registry:` (relative paths are under `root`); `steering` is
    params.yaml `steering:`, logged with the model for its `pricing` param."""
    model = evaluated_model or cfg.evaluated_model
    metrics = read_metrics(Path(root) / (metrics_file or cfg.metrics_file), model, cfg.metric_mapping)
    return register(
        root,
        Path(root) / (model_dir or cfg.model_dir),
        metrics,
        name=cfg.model_name,
        tracking_uri=tracking_uri,
        evaluated_model=model,
        max_new_tokens=cfg.serving.max_new_tokens,
        temperature=cfg.serving.temperature,
        prompt_style=cfg.serving.prompt_style,
        steering=steering,
    )


# ---------------------------------------------------------------------------------------------------------------
# The promotion gate
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateResult:
    """The pure part of a decision: pass or not, and why (every failing check, or what made it pass)."""

    passed: bool
    reasons: tuple[str, ...]


def gate(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    tolerance: float,
    metric: str = "welfare_mean",
    per_source_answer_prefix: str = "answer/",
    challenger_version: str = "?",
    champion_version: str | None = None,
    floors: Mapping[str, float] | None = None,
) -> GateResult:
    """Compare two versions' metrics; no I/O, so the rule itself is unit-testable.

    Passes when the challenger has `metric`, reaches every `floors` value (absolute, whoever the champion is: a
    first version that fails a floor leaves no champion), and either there is no champion, or its `metric` is
    strictly higher and no `<prefix><source>` the champion has drops by more than `tolerance` (absolute, in the
    metric's own units) or is missing. A champion without `metric` cannot be beaten on evidence, so it blocks (move
    the alias by hand).
    """
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    if metric not in challenger:
        return GateResult(False, (f"challenger v{challenger_version} has no {metric!r} metric",))
    below: list[str] = []
    reached: list[str] = []
    for key, floor in sorted((floors or {}).items()):
        if key not in challenger:
            below.append(f"{key} missing for challenger (floor {floor:.4f})")
        elif challenger[key] < floor - _EPS:
            below.append(f"{key} {challenger[key]:.4f} < floor {floor:.4f}")
        else:
            reached.append(f"{key} {challenger[key]:.4f} >= floor {floor:.4f}")
    if below:
        return GateResult(False, tuple(below))
    new = challenger[metric]
    if champion is None:
        return GateResult(
            True, (f"no champion yet; v{challenger_version} is the first ({metric} {new:.4f})", *reached)
        )
    if metric not in champion:
        return GateResult(False, (f"champion v{champion_version} has no {metric!r} metric to compare against",))
    failures: list[str] = []
    old = champion[metric]
    welfare_ok = new > old
    welfare_reason = f"{metric} {new:.4f} {'>' if welfare_ok else '<='} champion v{champion_version} {old:.4f}"
    if not welfare_ok:
        failures.append(welfare_reason)
    sources = sorted(k for k in champion if k.startswith(per_source_answer_prefix))
    for key in sources:
        if key not in challenger:
            failures.append(f"{key} missing for challenger (champion v{champion_version} {champion[key]:.4f})")
            continue
        drop = champion[key] - challenger[key]
        if drop > tolerance + _EPS:
            failures.append(
                f"{key} dropped {drop:.4f} ({champion[key]:.4f} -> {challenger[key]:.4f}) > tolerance {tolerance:.4f}"
            )
    if failures:
        return GateResult(False, tuple(failures))
    return GateResult(
        True,
        (
            welfare_reason,
            f"no source's answer quality dropped more than {tolerance:.4f} ({len(sources)} compared)",
            *reached,
        ),
    )


@dataclass(frozen=True)
class PromotionDecision:
    """What `promote` decided about the challenger, and the champion afterwards."""

    name: str
    version: str  # the challenger that was judged
    promoted: bool
    reasons: tuple[str, ...]
    previous_champion: str | None
    champion: str | None  # after the decision
    metric: str
    tolerance: float
    challenger_value: float | None
    champion_value: float | None

    @property
    def decision(self) -> Literal["promoted", "rejected"]:
        return "promoted" if self.promoted else "rejected"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": list(self.reasons), "decision": self.decision}


def _version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def promote(
    client_or_uri: MlflowClient | str | None,
    name: str = MODEL_NAME,
    *,
    tolerance: float,
    metric: str = "welfare_mean",
    per_source_answer_prefix: str = "answer/",
    floors: Mapping[str, float] | None = None,
) -> PromotionDecision:
    """The promotion gate (the one function every driver calls): judge `@challenger` against `@champion`.

    Promoted: `champion` moves to the challenger, the old champion gets `gtalign.promotion.superseded_by`. Either
    way the challenger gets `gtalign.promotion.{decision,reasons,compared_to,metric,tolerance,decided_at}` tags.
    Idempotent: judging a challenger that already is the champion changes nothing and reports it promoted.
    """
    from mlflow.exceptions import MlflowException

    client = client_for(client_or_uri)
    try:
        client.get_registered_model(name)
    except MlflowException as e:
        raise RegistryError(f"no registered model {name!r} in {client.tracking_uri}") from e
    challenger = _version_by_alias(client, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(f"{name!r} has no {CHALLENGER!r} version to promote (register one first)")
    champion = _version_by_alias(client, name, CHAMPION)
    new_metrics = metrics_of(challenger)
    old_metrics = metrics_of(champion) if champion is not None else None
    version, old_version = str(challenger.version), (str(champion.version) if champion is not None else None)

    def decision(passed: bool, reasons: tuple[str, ...], now_champion: str | None) -> PromotionDecision:
        return PromotionDecision(
            name=name,
            version=version,
            promoted=passed,
            reasons=reasons,
            previous_champion=old_version,
            champion=now_champion,
            metric=metric,
            tolerance=float(tolerance),
            challenger_value=new_metrics.get(metric),
            champion_value=(old_metrics or {}).get(metric),
        )

    if old_version == version:
        return decision(True, (f"v{version} is already the champion",), version)
    result = gate(
        new_metrics,
        old_metrics,
        tolerance=tolerance,
        metric=metric,
        per_source_answer_prefix=per_source_answer_prefix,
        challenger_version=version,
        champion_version=old_version,
        floors=floors,
    )
    tags = {
        DECISION_TAG: "promoted" if result.passed else "rejected",
        REASONS_TAG: "; ".join(result.reasons)[:_TAG_VALUE_LIMIT],
        COMPARED_TO_TAG: old_version or "none",
        GATE_METRIC_TAG: metric,
        TOLERANCE_TAG: repr(float(tolerance)),
        DECIDED_AT_TAG: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if result.passed:
        client.set_registered_model_alias(name, CHAMPION, version)
        if old_version is not None:
            client.set_model_version_tag(name, old_version, SUPERSEDED_BY_TAG, version)
    return decision(result.passed, result.reasons, version if result.passed else old_version)


def promote_from_params(
    cfg: RegistryConfig, client_or_uri: MlflowClient | str | None = None, *, tolerance: float | None = None
) -> PromotionDecision:
    """`promote` with the gate settings of params.yaml `registry.gate` (tolerance overridable per call)."""
    return promote(
        client_or_uri,
        cfg.model_name,
        tolerance=cfg.gate.tolerance if tolerance is None else tolerance,
        metric=cfg.gate.metric,
        per_source_answer_prefix=cfg.gate.answer_prefix,
        floors=cfg.gate.floors,
    )


def write_decision(
    decision: PromotionDecision, path: str | Path, candidates: Sequence[tuple[str, PromotionDecision]] = ()
) -> Path:
    """The (last) decision as JSON (the DVC stage's output and `dvc metrics` file), with each candidate's own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = decision.to_dict()
    if candidates:
        record["candidates"] = {variant: d.to_dict() for variant, d in candidates}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Release:
    """What `release` did: each candidate's registration and the gate's decision on it, in the order judged."""

    steps: tuple[tuple[str, Registration, PromotionDecision], ...]  # (evaluated model, registration, decision)

    @property
    def registration(self) -> Registration:
        return self.steps[-1][1]

    @property
    def decision(self) -> PromotionDecision:
        """The last decision: its `champion` is the champion after the whole release."""
        return self.steps[-1][2]

    @property
    def crowned(self) -> bool:
        """Whether one of this release's versions became champion (the Dagster gate check passes on it)."""
        return any(decision.promoted for _, _, decision in self.steps)

    def lines(self) -> list[str]:
        """One line per candidate: `<variant>: v<version> <decision>: <reasons>` (the CLI and the Dagster check)."""
        return [
            f"{variant}: v{registration.version} {decision.decision}: {'; '.join(decision.reasons)}"
            for variant, registration, decision in self.steps
        ]

    def to_dict(self) -> dict[str, Any]:
        """The release as JSON-able data, with a one-line `description` (one version: its reasons)."""
        lines = self.lines()
        return {
            "crowned": self.crowned,
            "champion": self.decision.champion,
            "previous_champion": self.steps[0][2].previous_champion,
            "tolerance": self.decision.tolerance,
            "description": "; ".join(self.decision.reasons) if len(self.steps) == 1 else " | ".join(lines),
            "lines": lines,
            "steps": [{"variant": v, "version": r.version, **d.to_dict()} for v, r, d in self.steps],
        }


def release(
    root: Path, cfg: RegistryConfig, *, tracking_uri: str | None = None, steering: SteeringConfig | None = None
) -> Release:
    """Register the configured checkpoint as `challenger`, run the gate, write the decision file (the DVC stage,
    `gtalign registry release`, the Dagster `registered_model` asset and the last step of `gtalign demo`);
    `steering` as in `register_from_params`.

    With `registry.candidates` (e.g. GTAlign and its matrix-consistency variant) each candidate in turn is
    registered and judged against the champion so far: the gate, not a person, picks which variant serves. The
    decision file holds the last decision and, with candidates, every candidate's."""
    uri = tracking_uri or default_tracking_uri(root)
    steps: list[tuple[str, Registration, PromotionDecision]] = []
    for candidate in cfg.for_candidates():
        registration = register_from_params(root, candidate, tracking_uri=uri, steering=steering)
        steps.append((candidate.evaluated_model, registration, promote_from_params(candidate, uri)))
    done = Release(tuple(steps))
    candidates = [(variant, decision) for variant, _, decision in steps] if cfg.candidates else ()
    write_decision(done.decision, Path(root) / cfg.decision_file, candidates)
    return done


def champion_uri(name: str = MODEL_NAME) -> str:
    """What to pass to `mlflow.pyfunc.load_model` for the current champion."""
    return f"models:/{name}@{CHAMPION}"


def describe(client_or_uri: MlflowClient | str | None, name: str = MODEL_NAME) -> dict[str, Any]:
    """The aliased versions with their tags (for `gtalign registry show` and the Dagster `champion` asset)."""
    client = client_for(client_or_uri)
    out: dict[str, Any] = {"name": name, "aliases": {}}
    for alias in (CHAMPION, CHALLENGER):
        mv = _version_by_alias(client, name, alias)
        if mv is not None:
            out["aliases"][alias] = {
                "version": str(mv.version),
                "model_uri": f"models:/{name}/{mv.version}",
                "run_id": mv.run_id,
                "metrics": metrics_of(mv),
                "tags": {k: v for k, v in (mv.tags or {}).items() if not k.startswith(METRIC_TAG_PREFIX)},
            }
    return out


# ---------------------------------------------------------------------------------------------------------------
# Reading a registered model back (serving, steering evaluation)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model to load: its Hugging Face folder and, for a registered pyfunc, the `model_config` it was logged with
    (`prompt_style`, `seed`, `steering`: what `mlflow models serve` applies; empty for a checkpoint folder)."""

    folder: Path
    config: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""  # models:/NAME/VERSION (the alias resolved), another URI, or the folder


def resolve_model(
    model: str | Path, *, root: Path = Path("."), tracking_uri: str | None = None, cache_dir: Path | None = None
) -> ResolvedModel:
    """The Hugging Face folder behind `model` (a checkpoint path as is, or a registered `models:/` URI) and the
    config its pyfunc was logged with.

    `models:/NAME@ALIAS` and `models:/NAME/VERSION` are resolved to a version with the project's MLflow registry
    (`gtalign.tracking.default_tracking_uri(root)` unless `tracking_uri` is given), downloaded once into
    `cache_dir/NAME/VERSION` (default `<root>/artifacts/served_models`), and the pyfunc's `hf_dir` artifact path and
    `model_config` are read from its MLmodel file. Any other `scheme:/` URI MLflow can download (runs:/, file:)
    works the same way.
    """
    text = str(model)
    if "://" not in text and not text.startswith(("models:/", "runs:/")):
        path = Path(text)
        if not path.is_absolute() and not path.exists() and (Path(root) / path).exists():
            path = Path(root) / path  # params.yaml paths are relative to the repo root
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path}: not a Hugging Face model folder (no config.json)")
        return ResolvedModel(path, source=str(path))
    import mlflow

    uri = tracking_uri or default_tracking_uri(Path(root))
    cache = Path(cache_dir) if cache_dir else Path(root) / "artifacts" / "served_models"
    if text.startswith("models:/"):
        ref = text[len("models:/") :]
        client = client_for(uri)
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = client.get_model_version_by_alias(name, alias).version
        else:
            name, _, version = ref.partition("/")
        dest = cache / name / str(version)
        source = f"models:/{name}/{version}"
    else:
        dest = cache / "uri" / uuid.uuid5(uuid.NAMESPACE_URL, text).hex
        source = text
    if not (dest / "MLmodel").exists():
        tmp = dest.with_name(dest.name + ".partial")
        tmp.mkdir(parents=True, exist_ok=True)
        # models:/ URIs resolve through the *global* registry URI: point it at this store for the download only, so
        # that no later MLflow call in this process talks to it by accident.
        previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp), tracking_uri=uri)
        finally:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])
        tmp.rename(dest)  # atomic: a crashed download never looks complete
    pyfunc = mlflow.models.Model.load(str(dest / "MLmodel")).flavors.get(mlflow.pyfunc.FLAVOR_NAME) or {}
    rel = ((pyfunc.get("artifacts") or {}).get("hf_dir") or {}).get("path")
    folder = dest / rel if rel else next((p.parent for p in sorted(dest.rglob("config.json"))), None)
    if folder is None or not (folder / "config.json").exists():
        raise FileNotFoundError(f"{text}: the downloaded model has no Hugging Face folder (hf_dir artifact)")
    return ResolvedModel(folder, dict(pyfunc.get(mlflow.pyfunc.MODEL_CONFIG) or {}), source)
