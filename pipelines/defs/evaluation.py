"""The evaluation assets: pricing steering of the GTAlign policy, then base, SFT and every RL variant on the same
held-out prompts, with the report (which includes the steering section).

Metadata carries the report (markdown), the plot files and the headline numbers; the registry assets
(`pipelines/defs/registry.py`) depend on `evaluation` by key.
"""

import json

import dagster as dg

from gtalign.config import parse_params
from gtalign.evaluate.directions import directions_markdown, directions_summary, paper_directions
from gtalign.evaluate.stages import evaluation_stage
from gtalign.evaluate.steering import steering_eval_stage
from gtalign.layout import Layout
from pipelines.defs.resources import TORCH_OP_TAGS, MlflowResource, PresetsRunConfig, ProjectResource
from pipelines.defs.training import TRAINING_ASSETS, rl_model
from pipelines.defs.variants import rl_variants

GROUP = "evaluation"


class EvaluationRunConfig(PresetsRunConfig):
    """Per-run overrides: presets, and which RL variants to include (unset = `pipeline.variants` of params.yaml and
    the presets)."""

    variants: list[str] | None = None


@dg.asset(
    op_tags=TORCH_OP_TAGS,
    group_name=GROUP,
    kinds={"mlflow"},
    deps=[rl_model],
    description="Pricing steering (params.yaml `steering.eval`): payoff matrices edited mid-generation under each "
    "pricing mode, how often the action changes and whether the answer follows; artifacts/steering/report.md.",
)
def steering_eval(project: ProjectResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    result = steering_eval_stage(project.path, project.params(), tracking_uri=mlflow.uri())
    headline = {k: float(v) for k, v in result.metrics.items() if "/all/" in k and k.endswith(("_change", "/follows"))}
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(result.markdown),
            **headline,
            "mlflow_run_id": result.run_id or "",
        }
    )


@dg.asset(
    op_tags=TORCH_OP_TAGS,
    group_name=GROUP,
    kinds={"mlflow", "matplotlib"},
    deps=[*TRAINING_ASSETS, steering_eval, rl_variants],
    description="Tables 3-7 of the paper (format, answer, Ans./Token, R/T, behaviour, welfare, Pareto metrics, OOD, "
    "exact matrix reasoning) with bootstrap intervals, per model and source; artifacts/report/report.md and plots.",
)
def evaluation(config: EvaluationRunConfig, project: ProjectResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    params = project.params({"pipeline": {"variants": config.variants}}, presets=config.presets)
    result = evaluation_stage(project.path, parse_params(params), tracking_uri=mlflow.uri())
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


@dg.asset_check(
    asset=evaluation,
    description="The paper's directions on this run (gtalign.evaluate.directions): SFT format validity >= 0.9, "
    "GTAlign welfare > SFT, and (paper job) Cobb-Douglas >= the user-only and llm-only baselines and beats SFT on "
    "most RL seeds. A warning, not a "
    "gate: the tiny model's numbers are reported as they are; claims whose models were not evaluated are listed.",
)
def paper_directions_check(project: ProjectResource) -> dg.AssetCheckResult:
    metrics = json.loads(Layout(project.path).metrics("evaluation").read_text(encoding="utf-8"))
    replicates = parse_params(project.params()).rl.replicates()
    directions = paper_directions(metrics, replicates=replicates)
    passed, description = directions_summary(directions)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"directions": dg.MetadataValue.md(directions_markdown(directions, metrics, replicates))}
        | {d.name: float(d.holds) for d in directions if d.holds is not None},
    )


ASSETS = [steering_eval, evaluation]
ASSET_CHECKS = [paper_directions_check]
