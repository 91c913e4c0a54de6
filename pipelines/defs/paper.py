"""The `paper` preset in Dagster: the paper's reward baselines (user-only, llm-only, linear; Table 5) trained from
the same SFT model as GTAlign, and the evaluation over all four variants on the same prompts.

The baselines run in-process, one after another, through the same `rl_stage` the `rl_model` asset runs (through
Pipes) for GTAlign; the `paper` job gives the evaluation asset the four variants through its run config.
"""

import dagster as dg

from gtalign.config import parse_params
from gtalign.train import stages as train_stages
from pipelines.defs.resources import TORCH_OP_TAGS, MlflowResource, ProjectResource
from pipelines.defs.training import sft_model

BASELINES = ("user", "llm", "linear")


@dg.asset(
    op_tags=TORCH_OP_TAGS,
    group_name="training",
    kinds={"pytorch", "mlflow"},
    deps=[sft_model],
    description="The paper's RL baselines: the same GRPO run as rl_model with the user-only, llm-only and linear "
    "(U+L)/2 rewards instead of sqrt(U L). artifacts/models/rl-{user,llm,linear}.",
)
def paper_baselines(project: ProjectResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    params = parse_params(project.params())
    metadata: dict[str, float | str] = {}
    for variant in BASELINES:
        result = train_stages.rl_stage(project.path, params, variant, tracking_uri=mlflow.uri())
        metadata[f"{variant}/path"] = str(result.path)
        metadata[f"{variant}/mlflow_run_id"] = result.run_id or ""
        metadata.update({f"{variant}/{k}": float(v) for k, v in result.metrics.items() if k.startswith("heldout_")})
    return dg.MaterializeResult(metadata=metadata)


PAPER_RUN_CONFIG = {"ops": {"evaluation": {"config": {"variants": ["cobb_douglas", *BASELINES]}}}}
