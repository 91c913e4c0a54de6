"""Corrupted data is refused before anything downstream runs: by the CLI / DVC stage (exit 1 with a readable
report) and by Dagster (the blocking expectations check stops the demonstrations asset)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from conftest import BIN, REPO_ROOT

from pipelines.defs import data as data_assets
from pipelines.defs.resources import MlflowResource, ProjectResource

GTALIGN = str(BIN / "gtalign")


@pytest.fixture(scope="module")
def corrupted_root(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A project root whose wildguard test set has labels outside {harmful, unharmful}, kept by the drop rules."""
    root = tmp_path_factory.mktemp("corrupted")
    shutil.copytree(data_dir, root / "data")
    path = root / "data" / "wildguard" / "test.parquet"
    frame = pd.read_parquet(path)
    frame["reward_model"] = [{**rm, "ground_truth": "maybe"} for rm in frame["reward_model"]]
    frame.to_parquet(path)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["curate"]["drop"] = ["empty_turn", "over_long_turn", "exact_duplicate", "train_test_leak"]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def test_cli_stage_refuses_corrupted_data_with_a_readable_report(corrupted_root: Path):
    proc = subprocess.run(
        [GTALIGN, "data", "curate", "--root", str(corrupted_root)], capture_output=True, text=True, cwd=corrupted_root
    )
    assert proc.returncode == 1
    err = proc.stderr
    assert "curate:" in err and "wildguard" in err
    # the expectation, the column, the source, the count and sample rows by uid
    assert "expect_column_values_to_match_regex on `ground_truth` (source wildguard): 40 of 240 unexpected" in err
    assert "expect_column_values_to_not_be_null on `label` (source wildguard): 40 of 240 unexpected" in err
    assert "'maybe'" in err and "uid `wildguard:test:" in err
    assert not (corrupted_root / "artifacts" / "curated" / "curated.parquet").exists()
    assert (corrupted_root / "artifacts" / "curated" / "validation.md").exists()


def test_dagster_blocking_check_stops_downstream(corrupted_root: Path, tmp_path: Path):
    result = dg.materialize(
        [data_assets.curated_data, data_assets.curated_data_expectations, data_assets.sft_demonstrations],
        resources={
            "project": ProjectResource(root=str(corrupted_root)),
            "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
        },
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 1 and not evaluations[0].passed
    report = evaluations[0].metadata["report"].value
    assert "wildguard" in report
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "curated_data" in materialized
    assert "sft_demonstrations" not in materialized
