"""Training assets: base_model -> sft_model -> rl_model (variant by run config), with their checks.

`base_model` runs in-process (it builds a tokenizer and a seeded config in seconds, or writes a pointer to a
pretrained model). `sft_model` and `rl_model` run the training step as a subprocess through Dagster Pipes
(`python -m gtalign.train.pipes_entry ...`), so the same asset can launch it under `accelerate launch` with a
DeepSpeed/FSDP config (`launcher` in the run config) or be swapped for a Pipes client that runs on a cluster. The
subprocess reports the metadata and the check results; the checks are declared here as the assets' check specs
(names from `gtalign.train.pipes_entry`). The `paper` job's baselines train through the same `run_rl`.
"""

import json
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from gtalign.config import parse_params
from gtalign.layout import rl_model_name
from gtalign.train import stages as train_stages
from gtalign.train.pipes_entry import RL_CHECKS, SFT_CHECKS
from pipelines.defs import data
from pipelines.defs.resources import TORCH_OP_TAGS, MlflowResource, ProjectResource

GROUP = "training"


class LaunchConfig(dg.Config):
    """How the training subprocess is started; empty = params.yaml `<stage>.launcher` (`python` = this Python), e.g.
    `accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml` (then `-m gtalign.train.pipes_entry`
    is appended), or `accelerate launch --config_file configs/accelerate/cpu_ddp.yaml`."""

    launcher: str = ""
    preset: str | None = None  # YAML overlaid on params.yaml, e.g. configs/train/qwen2.5-3b.yaml
    evaluate: bool = True


class SFTRunConfig(LaunchConfig):
    """Per-run overrides of params.yaml `sft:` (unset = params.yaml)."""

    max_steps: int | None = None  # this and the fields below: sft.args
    learning_rate: float | None = None
    per_device_train_batch_size: int | None = None
    seed: int | None = None


class RLRunConfig(LaunchConfig):
    """Which welfare variant to train, plus per-run overrides of params.yaml `rl:`."""

    variant: str = "cobb_douglas"  # cobb_douglas (GTAlign) | user | llm | linear | ces | a name in rl.variants
    judge: str | None = None
    normalization: str | None = None
    max_steps: int | None = None  # this and the fields below: rl.args
    learning_rate: float | None = None
    seed: int | None = None


# Run-config fields that set gtalign's own keys of a section, and those handed to TRL (the section's `args`).
SFT_OVERRIDES: tuple[str, ...] = ()
SFT_ARGS = ("max_steps", "learning_rate", "per_device_train_batch_size", "seed")
RL_OVERRIDES = ("variant", "judge", "normalization")
RL_ARGS = ("max_steps", "learning_rate", "seed")


def run_training(
    context: dg.AssetExecutionContext,
    client: dg.PipesSubprocessClient,
    project: ProjectResource,
    mlflow: MlflowResource,
    config: LaunchConfig,
    stage: str,
    overrides: tuple[str, ...],
    args: tuple[str, ...],
    extra: Sequence[str] = (),
) -> dg.PipesClientCompletedInvocation:
    """`python -m gtalign.train.pipes_entry <stage>` (or under `config.launcher`) through Pipes, with params.yaml,
    the run config's preset and its set fields handed over as one JSON file (every rank reads the same values)."""
    presets = [config.preset] if config.preset else []
    section = {k: getattr(config, k) for k in overrides} | {"args": {k: getattr(config, k) for k in args}}
    params = project.params({stage: section}, presets=presets)
    launcher = shlex.split(config.launcher or params.get(stage, {}).get("launcher") or "python")
    if launcher == ["python"]:
        launcher = [sys.executable]  # this venv's interpreter, whatever `python` is on PATH
    with tempfile.TemporaryDirectory(prefix="gtalign-pipes-") as tmp:
        params_json = Path(tmp) / "params.json"
        params_json.write_text(json.dumps(params, default=str), encoding="utf-8")
        cmd = [*launcher, "-m", "gtalign.train.pipes_entry", stage, "--root", str(project.path)]
        cmd += ["--params-json", str(params_json), *extra]
        if mlflow.uri():
            cmd += ["--tracking-uri", mlflow.uri()]
        if not config.evaluate:
            cmd.append("--no-eval")
        env = {"TOKENIZERS_PARALLELISM": "false", "GTALIGN_ROOT": str(project.path)}
        return client.run(context=context, command=cmd, env=env, cwd=str(project.path))


def run_rl(
    context: dg.AssetExecutionContext,
    client: dg.PipesSubprocessClient,
    project: ProjectResource,
    mlflow: MlflowResource,
    config: RLRunConfig,
) -> dg.PipesClientCompletedInvocation:
    """One RL variant, trained as `rl_model` trains GTAlign (the `paper` job's baselines run through here too)."""
    context.log.info(f"RL variant {config.variant} -> artifacts/models/{rl_model_name(config.variant)}")
    return run_training(
        context, client, project, mlflow, config, "rl", RL_OVERRIDES, RL_ARGS, ["--variant", config.variant]
    )


@dg.asset(
    op_tags=TORCH_OP_TAGS,
    group_name=GROUP,
    kinds={"pytorch", "mlflow"},
    deps=[data.sft_demonstrations],
    description="The policy before training: the tiny Qwen2 model with a tokenizer trained on the curated corpus and "
    "demonstrations (CPU preset), or a pointer to a pretrained model (params.yaml base_model.kind=pretrained).",
)
def base_model(project: ProjectResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    result = train_stages.base_model_stage(project.path, parse_params(project.params()), tracking_uri=mlflow.uri())
    return dg.MaterializeResult(
        metadata={
            **{k: float(v) for k, v in result.metrics.items()},
            "kind": result.kind,
            "path": str(result.path),
            "mlflow_run_id": result.run_id or "",
        }
    )


@dg.asset(
    op_tags=TORCH_OP_TAGS,
    group_name=GROUP,
    kinds={"pytorch", "mlflow"},
    deps=[base_model, data.sft_demonstrations],
    check_specs=[dg.AssetCheckSpec(name, asset="sft_model") for name in SFT_CHECKS],
    description="SFT warm start (TRL SFTTrainer, completion-only loss) on the four-block demonstrations; held-out "
    "strict format validity and welfare before and after. Runs as a Pipes subprocess (accelerate-launchable).",
)
def sft_model(
    context: dg.AssetExecutionContext,
    config: SFTRunConfig,
    project: ProjectResource,
    mlflow: MlflowResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
):
    return run_training(
        context, pipes_subprocess_client, project, mlflow, config, "sft", SFT_OVERRIDES, SFT_ARGS
    ).get_results()


@dg.asset(
    op_tags=TORCH_OP_TAGS,
    group_name=GROUP,
    kinds={"pytorch", "mlflow"},
    deps=[sft_model],
    check_specs=[dg.AssetCheckSpec(name, asset="rl_model") for name in RL_CHECKS],
    description="Welfare-reward RL (TRL GRPOTrainer; the paper's PPO/GAE does not exist in TRL 1.x) from the SFT "
    "model; the variant (cobb_douglas = GTAlign, user, llm, linear, ces) is the run config's `variant`. Runs as a "
    "Pipes subprocess; reports held-out welfare before/after and the reward curve.",
)
def rl_model(
    context: dg.AssetExecutionContext,
    config: RLRunConfig,
    project: ProjectResource,
    mlflow: MlflowResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
):
    return run_rl(context, pipes_subprocess_client, project, mlflow, config).get_results()


TRAINING_ASSETS = [base_model, sft_model, rl_model]

# For convenience of definitions.py: a job over the training assets only (AssetSelection objects, never strings).
training_job = dg.define_asset_job(
    "training", selection=dg.AssetSelection.assets(*TRAINING_ASSETS), description="base model -> SFT -> RL"
)

__all__ = ["TRAINING_ASSETS", "base_model", "rl_model", "sft_model", "training_job"]
