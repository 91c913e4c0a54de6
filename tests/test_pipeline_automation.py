"""Data-driven automation (off by default): the sensor launches the pipeline once per new raw data version."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import yaml
from conftest import REPO_ROOT

from pipelines.definitions import defs
from pipelines.defs.resources import ProjectResource

PINNED = "caa0cb12c3e92ff341ea9f7b84b60c64.dir"


def _tick(sensor: dg.SensorDefinition, root: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(cursor=cursor, resources={"project": ProjectResource(root=str(root))})
    return sensor(context)


def test_data_version_change_launches_the_pipeline_once(tmp_path: Path):
    sensor = defs.resolve_sensor_def("raw_data_version_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # off unless someone turns it on
    assert sensor.job_name == "gtalign_pipeline"
    shutil.copy(REPO_ROOT / "data.dvc", tmp_path / "data.dvc")

    first = _tick(sensor, tmp_path, None)  # turning it on records the current version, launches nothing
    assert first.cursor == PINNED and not first.run_requests
    same = _tick(sensor, tmp_path, PINNED)
    assert not same.run_requests and same.skip_reason.skip_message == f"data version {PINNED} unchanged"

    pointer = yaml.safe_load((tmp_path / "data.dvc").read_text())
    pointer["outs"][0]["md5"] = "0123456789abcdef0123456789abcdef.dir"  # e.g. `git pull` brought a new data.dvc
    (tmp_path / "data.dvc").write_text(yaml.safe_dump(pointer))
    changed = _tick(sensor, tmp_path, PINNED)
    assert changed.cursor == "0123456789abcdef0123456789abcdef.dir"
    assert [r.run_key for r in changed.run_requests] == ["0123456789abcdef0123456789abcdef.dir"]
    assert changed.run_requests[0].tags["gtalign/data_version"] == "0123456789abcdef0123456789abcdef.dir"


def test_no_pointer_no_run(tmp_path: Path):
    result = _tick(defs.resolve_sensor_def("raw_data_version_sensor"), tmp_path, PINNED)
    assert not result.run_requests and "no data.dvc" in result.skip_reason.skip_message
