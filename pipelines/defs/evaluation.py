"""The evaluation asset: base, SFT and every RL variant on the same held-out prompts, with the report.

Its metadata carries the report (markdown), the plot files and the headline numbers; the registry assets
(`pipelines/defs/registry.py`) depend on it by key.
"""

import dagster as dg

from gtalign import stages
from pipelines.defs.resources import MlflowResource, ProjectResource
from pipelines.defs.training import TRAINING_ASSETS

GROUP = "evaluation"


class EvaluationRunConfig(dg.Config):
    """Per-run overrides: which RL variants to include (unset = params.yaml `pipeline.variants`)."""

    variants: list[str] | None = None


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow", "matplotlib"},
    deps=[*TRAINING_ASSETS, dg.AssetKey("paper_baselines")],  # the baselines only run in the `paper` job
    description="Tables 3-7 of the paper (format, answer, Ans./Token, R/T, behaviour, welfare, Pareto metrics, OOD, "
    "exact matrix reasoning) with bootstrap intervals, per model and source; artifacts/report/report.md and plots.",
)
def evaluation(config: EvaluationRunConfig, project: ProjectResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    params = project.params({"pipeline": {"variants": config.variants}})
    result = stages.evaluation_stage(project.path, params, tracking_uri=mlflow.uri())
    headline = {k: float(v) for k, v in result.metrics.items() if k.endswith(("/welfare_mean", "/format_mean"))}
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(result.markdown),
            "report_path": dg.MetadataValue.path(str(result.paths.get("report_md", ""))),
            **{f"plot_{p.stem}": dg.MetadataValue.path(str(p)) for p in result.plots},
            **headline,
            "mlflow_run_ids": dg.MetadataValue.json(result.run_ids),
        }
    )
