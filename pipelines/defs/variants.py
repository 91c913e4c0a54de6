"""The RL variants besides GTAlign itself (`Params.other_variants`: `pipeline.variants` minus `rl.variant`, which
`rl_model` trains), each the same GRPO run from the same SFT model with its own reward or seed. In the default job
that is the matrix-consistency variant (the registry gate then picks between it and GTAlign); the `paper` job's
preset adds the reward baselines user-only, llm-only, linear of Table 5 and GTAlign's other RL seeds.

The variants run one after another through `run_rl`, the Pipes path `rl_model` trains GTAlign with; the `paper` job
gives this asset, the evaluation and registered_model the preset through their run config, so all read the variant
list and the registry candidates from one file.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from gtalign.config import parse_params
from gtalign.layout import PAPER_PRESET
from pipelines.defs.resources import TORCH_OP_TAGS, MlflowResource, PresetsRunConfig, ProjectResource
from pipelines.defs.training import RLRunConfig, run_rl, sft_model


def _variant_metadata(variant: str, results: Sequence[dg.PipesExecutionResult]) -> dict[str, Any]:
    """What one variant's Pipes run reported, under `<variant>/`: its path, MLflow run, held-out numbers, and the
    RL checks' verdicts (this asset declares no checks of its own: the variants are reported here, and the
    registry gate judges the candidates among them)."""
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
    description="The other RL variants of pipeline.variants: the same GRPO run as rl_model with GTAlign plus the "
    "exact matrix-consistency term (default), and in the paper job the user-only, llm-only and linear (U+L)/2 "
    "rewards instead of sqrt(U L) and GTAlign with other RL seeds. artifacts/models/rl-<variant>.",
)
def rl_variants(
    context: dg.AssetExecutionContext,
    config: PresetsRunConfig,
    project: ProjectResource,
    mlflow: MlflowResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    metadata: dict[str, Any] = {}
    for variant in parse_params(project.params(presets=config.presets)).other_variants():
        invocation = run_rl(context, pipes_subprocess_client, project, mlflow, RLRunConfig(variant=variant))
        metadata |= _variant_metadata(variant, invocation.get_results(implicit_materializations=False))
    return dg.MaterializeResult(metadata=metadata)


PAPER_RUN_CONFIG = {
    "ops": {op: {"config": {"presets": [PAPER_PRESET]}} for op in ("rl_variants", "evaluation", "registered_model")}
}  # the variants and the evaluation cover the preset's list; the release lets the gate pick among its candidates
