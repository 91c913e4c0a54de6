"""Registry assets: evaluation -> registered_model (challenger) -> promotion_gate (blocking check) -> champion.

Thin wiring over `gtalign.registry`: `registered_model` calls `release`, the same function as `gtalign registry
release`, the DVC stage and `gtalign demo`: it registers the checkpoint (or each of `registry.candidates` in turn)
and runs the gate on each, which records its decision on the model version both ways. The `promotion_gate` check
reports that release: it passes when one of its versions became champion, and a failure blocks `champion`.
"""

import dagster as dg

from gtalign import registry
from gtalign.config import parse_params
from pipelines.defs.resources import MlflowResource, PresetsRunConfig, ProjectResource

GROUP = "registry"
_RELEASE_KEY = "release"  # registered_model's output: the check reads the release it judges from it


class RegisterRunConfig(PresetsRunConfig):
    """Per-run overrides of params.yaml `registry:` (unset = params.yaml): presets overlaid first (the `paper` job's,
    whose candidates the gate then picks among), then single keys; `model_dir` / `evaluated_model` pick one
    checkpoint, so they are an error while `registry.candidates` names several."""

    model_dir: str | None = None
    metrics_file: str | None = None
    evaluated_model: str | None = None
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
    "metrics and the DVC data version, and judged by the promotion gate; with `registry.candidates` each variant in "
    "turn (`gtalign.registry.release`).",
)
def registered_model(
    config: RegisterRunConfig, project: ProjectResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    params = parse_params(project.params(presets=config.presets))
    try:
        cfg = params.registry.overridden(
            model_dir=config.model_dir,
            metrics_file=config.metrics_file,
            evaluated_model=config.evaluated_model,
            tolerance=config.tolerance,
        )
    except registry.RegistryError as e:
        raise dg.Failure(str(e)) from None
    done = registry.release(project.path, cfg, tracking_uri=_uri(project, mlflow), steering=params.steering)
    reg = done.registration
    return dg.MaterializeResult(
        metadata={
            "model_name": reg.name,
            "version": reg.version,
            "model_uri": reg.model_uri,
            "alias": reg.alias,
            "data_version": reg.data_version or "unknown",
            "mlflow_run_id": reg.run_id,
            "champion": done.decision.champion or "none",
            _RELEASE_KEY: dg.MetadataValue.json(done.to_dict()),
            **{f"metric/{k}": v for k, v in reg.metrics.items()},
        },
        data_version=dg.DataVersion(f"{reg.name}/{reg.version}"),
    )


@dg.asset_check(
    asset=registered_model,
    blocking=True,
    description="The promotion gate's verdict on this release: a challenger became champion only if it reached "
    "every registry.gate.floors value, its mean welfare beat the champion's (or there was none) and no source's "
    "answer quality dropped beyond the tolerance. Fails (and blocks `champion`) when no version of the release was "
    "promoted; the decisions and reasons are tagged on the model versions either way.",
)
def promotion_gate(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(registered_model.key)
    if event is None or event.asset_materialization is None:
        raise dg.Failure("registered_model has not been materialised: there is no release to judge")
    done = event.asset_materialization.metadata[_RELEASE_KEY].value  # gtalign.registry.Release.to_dict()
    return dg.AssetCheckResult(
        passed=done["crowned"],
        severity=dg.AssetCheckSeverity.ERROR,
        description=done["description"],
        metadata={
            "decision": "promoted" if done["crowned"] else "rejected",
            "challenger": done["steps"][-1]["version"],
            "champion": done["champion"] or "none",
            "previous_champion": done["previous_champion"] or "none",
            "reasons": dg.MetadataValue.md("\n".join(f"- {line}" for line in done["lines"])),
            "tolerance": done["tolerance"],
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
