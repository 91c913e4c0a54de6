"""The `paper` preset in Dagster: every RL variant of configs/presets/paper.yaml besides GTAlign itself (the
reward baselines user-only, llm-only, linear of Table 5; GTAlign's other RL seeds; the matrix-consistency ablation)
trained from the same SFT model, and the evaluation over all of them on the same prompts.

The variants run one after another through `run_rl`, the Pipes path `rl_model` trains GTAlign with; the `paper`
job gives the evaluation and registered_model assets the preset through their run config, so all read the variant
list and the registry candidates from one file.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from gtalign.config import parse_params
from gtalign.layout import PAPER_PRESET
from pipelines.defs.resources import TORCH_OP_TAGS, MlflowResource, ProjectResource
from pipelines.defs.training import RLRunConfig, run_rl, sft_model


def paper_variants(project: ProjectResource) -> list[str]:
    """The preset's RL variants that `rl_model` does not train (it trains params.yaml `rl.variant`, GTAlign)."""
    params = parse_params(project.params(presets=[PAPER_PRESET]))
    return [v for v in params.pipeline.variants if v != params.rl.variant]


def _baseline_metadata(variant: str, results: Sequence[dg.PipesExecutionResult]) -> dict[str, Any]:
    """What one baseline's Pipes run reported, under `<variant>/`: its path, MLflow run, held-out numbers, and the
    RL checks' verdicts (this asset declares no checks of its own: the baselines are reported, not gated)."""
    out: dict[str, Any] = {}
    for result in results:
        if isinstance(result, dg.MaterializeResult):
            keep = ("path", "mlflow_run_id", "heldout_by_source")
            out |= {
                f"{variant}/{k}": v
                for k, v in (result.metadata or {}).items()
                if k in keep or k.startswith("heldout_")
            }
        elif isinstance(result, dg.AssetCheckResult):
            out[f"{variant}/{result.check_name}"] = result.passed
    return out


@dg.asset(
    op_tags=TORCH_OP_TAGS,
    group_name="training",
    kinds={"pytorch", "mlflow"},
    deps=[sft_model],
    description="The paper preset's other RL variants: the same GRPO run as rl_model with the user-only, llm-only and "
    "linear (U+L)/2 rewards instead of sqrt(U L), GTAlign with other RL seeds, and GTAlign plus the exact "
    "matrix-consistency term. artifacts/models/rl-<variant>.",
)
def paper_baselines(
    context: dg.AssetExecutionContext,
    project: ProjectResource,
    mlflow: MlflowResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    metadata: dict[str, Any] = {}
    for variant in paper_variants(project):
        invocation = run_rl(context, pipes_subprocess_client, project, mlflow, RLRunConfig(variant=variant))
        metadata |= _baseline_metadata(variant, invocation.get_results(implicit_materializations=False))
    return dg.MaterializeResult(metadata=metadata)


PAPER_RUN_CONFIG = {
    "ops": {op: {"config": {"presets": [PAPER_PRESET]}} for op in ("evaluation", "registered_model")}
}  # the evaluation covers every variant; the release lets the gate pick among the preset's candidates
