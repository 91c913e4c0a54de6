"""Data-driven automation, off by default: when the raw data version (the md5 that data.dvc pins) changes, the
whole chain re-materialises.

A sensor rather than declarative automation (`AutomationCondition`): `raw_data` is materialised by `dvc pull`, so
nothing inside Dagster notices a new data.dvc (a `git pull`, or a hand edit recorded by `dvc repro`); the sensor reads
the pointer, the way `raw_data` versions itself. It starts STOPPED: turn it on in the UI (Automation) or with
`dagster sensor start raw_data_version_sensor`; it needs the daemon (`dagster dev` runs one).
"""

import dagster as dg

from gtalign.tracking import data_version
from pipelines.defs.resources import ProjectResource


def raw_data_version_sensor_for(job_name: str) -> dg.SensorDefinition:
    """The sensor that launches job `job_name` once per new data.dvc md5 (the first tick only records the current
    one, so turning it on launches nothing)."""

    @dg.sensor(
        name="raw_data_version_sensor",
        job_name=job_name,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Re-runs the pipeline when the raw data version (the md5 in data.dvc) changes. Off by default.",
    )
    def raw_data_version_sensor(context: dg.SensorEvaluationContext, project: ProjectResource) -> dg.SensorResult:
        md5 = data_version(project.path)
        if md5 is None:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"no data.dvc under {project.path}"))
        if context.cursor is None:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"recorded data version {md5}"), cursor=md5)
        if md5 == context.cursor:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"data version {md5} unchanged"))
        context.log.info(f"data version {context.cursor} -> {md5}: launching {job_name}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=md5, tags={"gtalign/data_version": md5})], cursor=md5
        )

    return raw_data_version_sensor
