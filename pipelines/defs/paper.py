"""The `paper` preset in Dagster: the paper's reward baselines (user-only, llm-only, linear; Table 5) trained from
the same SFT model as GTAlign, and the evaluation over all four variants on the same prompts.

The baselines run one after another through `run_rl`, the Pipes path `rl_model` trains GTAlign with; the `paper`
job gives the evaluation asset the four variants through its run config.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from pipelines.defs.resources import TORCH_OP_TAGS, MlflowResource, ProjectResource
from pipelines.defs.training import RLRunConfig, run_rl, sft_model

BASELINES = ("user", "llm", "linear")


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
    description="The paper's RL baselines: the same GRPO run as rl_model with the user-only, llm-only and linear "
    "(U+L)/2 rewards instead of sqrt(U L). artifacts/models/rl-{user,llm,linear}.",
)
def paper_baselines(
    context: dg.AssetExecutionContext,
    project: ProjectResource,
    mlflow: MlflowResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    metadata: dict[str, Any] = {}
    for variant in BASELINES:
        invocation = run_rl(context, pipes_subprocess_client, project, mlflow, RLRunConfig(variant=variant))
        metadata |= _baseline_metadata(variant, invocation.get_results(implicit_materializations=False))
    return dg.MaterializeResult(metadata=metadata)


PAPER_RUN_CONFIG = {"ops": {"evaluation": {"config": {"variants": ["cobb_douglas", *BASELINES]}}}}
