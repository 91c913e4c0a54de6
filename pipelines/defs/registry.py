"""Registry assets: evaluation -> registered_model (challenger) -> promotion_gate (blocking check) -> champion.

Thin wiring over `gtalign.registry`: `registered_model` calls `register_from_params`, the `promotion_gate` check
calls `promote_from_params` (the same gate as `gtalign registry promote` and the DVC stage), and `champion` reports
the version the gate crowned. The gate runs in the check, not in `champion`, because its decision must be recorded
on the model version both ways: a rejection fails the check, which blocks `champion` from materialising.
"""

import dagster as dg

from gtalign import registry
from gtalign.config import parse_params
from pipelines.defs.resources import MlflowResource, ProjectResource

GROUP = "registry"


class RegisterRunConfig(dg.Config):
    """Per-run overrides of params.yaml `registry:` (unset = params.yaml)."""

    model_dir: str | None = None
    metrics_file: str | None = None
    evaluated_model: str | None = None


class PromotionGateConfig(dg.Config):
    tolerance: float | None = None


def _uri(project: ProjectResource, mlflow: MlflowResource) -> str:
    from gtalign.tracking import default_tracking_uri

    return mlflow.uri() or default_tracking_uri(project.path)


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow"},
    deps=[dg.AssetKey("evaluation")],
    description="The trained policy logged as an MLflow pyfunc (models-from-code over the HF checkpoint), "
    "registered as a new `gtalign-assistant` version with the alias `challenger`, tagged with its evaluation "
    "metrics and the DVC data version.",
)
def registered_model(
    config: RegisterRunConfig, project: ProjectResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    params = parse_params(project.params())
    reg = registry.register_from_params(
        project.path,
        params.registry,
        model_dir=config.model_dir,
        metrics_file=config.metrics_file,
        evaluated_model=config.evaluated_model,
        tracking_uri=_uri(project, mlflow),
        steering=params.steering,
    )
    return dg.MaterializeResult(
        metadata={
            "model_name": reg.name,
            "version": reg.version,
            "model_uri": reg.model_uri,
            "alias": reg.alias,
            "data_version": reg.data_version or "unknown",
            "mlflow_run_id": reg.run_id,
            **{f"metric/{k}": v for k, v in reg.metrics.items()},
        },
        data_version=dg.DataVersion(f"{reg.name}/{reg.version}"),
    )


@dg.asset_check(
    asset=registered_model,
    blocking=True,
    description="The promotion gate: the challenger becomes champion only if it reaches every registry.gate.floors "
    "value, its mean welfare beats the champion's (or there is none) and no source's answer quality drops beyond the "
    "tolerance. Fails (and blocks `champion`) on rejection; the decision and reasons are tagged on the model version "
    "either way.",
)
def promotion_gate(
    config: PromotionGateConfig, project: ProjectResource, mlflow: MlflowResource
) -> dg.AssetCheckResult:
    cfg = parse_params(project.params()).registry
    decision = registry.promote_from_params(cfg, _uri(project, mlflow), tolerance=config.tolerance)
    registry.write_decision(decision, project.path / cfg.decision_file)
    return dg.AssetCheckResult(
        passed=decision.promoted,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(decision.reasons),
        metadata={
            "decision": decision.decision,
            "challenger": decision.version,
            "previous_champion": decision.previous_champion or "none",
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
            "tolerance": decision.tolerance,
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow"},
    deps=[registered_model],
    description="The version behind `models:/gtalign-assistant@champion` after the gate promoted the challenger.",
)
def champion(project: ProjectResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    name = parse_params(project.params()).registry.model_name
    info = registry.describe(_uri(project, mlflow), name)["aliases"].get(registry.CHAMPION)
    if info is None:
        raise dg.Failure(f"{name!r} has no champion although the promotion gate passed")
    return dg.MaterializeResult(
        metadata={
            "model_uri": registry.champion_uri(name),
            "version": info["version"],
            "mlflow_run_id": info["run_id"] or "",
            "reasons": info["tags"].get(registry.REASONS_TAG, ""),
            **{f"metric/{k}": v for k, v in info["metrics"].items()},
        },
        data_version=dg.DataVersion(f"{name}/{info['version']}"),
    )


ASSETS = [registered_model, champion]
ASSET_CHECKS = [promotion_gate]
