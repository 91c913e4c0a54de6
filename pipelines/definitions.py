"""Dagster definitions, all in one place: `python -m pipelines.ui` (the UI) or
`dagster job execute -j gtalign_pipeline` (CLI). pyproject.toml's `[tool.dagster]` block names this module, so
`dagster dev`, `dagster-webserver` and `dagster definitions validate` find it from the repository root with no flags.

Selections are AssetSelection objects, never strings: the venv shares antlr4 4.9.3 with DVC, and Dagster's string
selection parser needs 4.13 (README: "Three ways to drive the pipeline").
"""

import dagster as dg

from pipelines.defs import automation, data, evaluation, registry, training, variants
from pipelines.defs.resources import TORCH_OP_TAGS, MlflowResource, ProjectResource

DATA_ASSETS = [data.raw_data, data.curated_data, data.sft_demonstrations, data.teacher_eval]
ASSETS = [*DATA_ASSETS, *training.TRAINING_ASSETS, variants.rl_variants, *evaluation.ASSETS, *registry.ASSETS]

gtalign_pipeline = dg.define_asset_job(
    "gtalign_pipeline",
    selection=dg.AssetSelection.assets(*ASSETS),
    description="Everything, in order: data -> curation (+ expectations) -> demonstrations -> base model -> SFT -> "
    "RL (GTAlign and its consistency variant) -> pricing steering -> evaluation + report -> registered models -> "
    "promotion gate (it picks the variant) -> champion.",
)
data_job = dg.define_asset_job("data_only", selection=dg.AssetSelection.assets(*DATA_ASSETS))
paper_job = dg.define_asset_job(
    "paper",
    selection=dg.AssetSelection.assets(*ASSETS),
    config=variants.PAPER_RUN_CONFIG,
    description="The paper preset: gtalign_pipeline with its other RL variants too (reward baselines, seeds), all "
    "evaluated.",
)

# One torch asset at a time (see TORCH_OP_TAGS); the cheap data assets still run in parallel.
executor = dg.multiprocess_executor.configured(
    {"tag_concurrency_limits": [{"key": k, "value": v, "limit": 1} for k, v in TORCH_OP_TAGS.items()]}
)

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=[
        data.raw_data_expectations,
        data.curated_data_expectations,
        *evaluation.ASSET_CHECKS,
        *registry.ASSET_CHECKS,
    ],
    jobs=[gtalign_pipeline, paper_job, data_job, training.training_job],
    sensors=[automation.raw_data_version_sensor_for(gtalign_pipeline.name)],  # STOPPED unless turned on
    executor=executor,
    resources={
        "project": ProjectResource(),
        "mlflow": MlflowResource(),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    },
)
