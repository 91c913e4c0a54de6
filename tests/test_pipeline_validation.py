"""Corrupted data is refused before anything downstream runs: by the CLI / DVC stage (exit 1 with a readable
report) and by Dagster (blocking expectation checks on raw_data and curated_data). Every raw row is validated
before the tiny preset samples, so a bad row outside the sample is refused too, or, where a named `curate.drop`
rule removes it, dropped and reported."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from conftest import BIN, REPO_ROOT

from gtalign.config import parse_params
from gtalign.data import CurateConfig, curate, load_raw, stages, validate
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
    # the expectation, the column, the source, the count and sample rows by uid: every raw wildguard test row that
    # no named drop rule removes (2 of the 300 are exact duplicates), not only the 40 the tiny preset would sample
    assert "expect_column_values_to_match_regex on `ground_truth` (source wildguard): 298 of 3000 unexpected" in err
    assert "expect_column_values_to_not_be_null on `label` (source wildguard): 298 of 3000 unexpected" in err
    # without `unparsable_ground_truth` in curate.drop, the published empty math answers stop the stage too; the
    # tiny sample had never drawn them
    assert "expect_column_values_to_match_regex on `ground_truth` (source math-hard): 2 of 3529 unexpected" in err
    assert "'maybe'" in err and "uid `wildguard:test:" in err
    assert not (corrupted_root / "artifacts" / "curated" / "curated.parquet").exists()
    assert (corrupted_root / "artifacts" / "curated" / "raw_validation.md").exists()


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


# ---------------------------------------------------------------------------------------------------------------
# bad rows the tiny preset would not sample

UNSAMPLED = (7, 8, 9)  # rows of data/wildguard/train.parquet that the tiny preset (seed 0) does not sample
NO_GT_RULE = ["empty_turn", "over_long_turn", "exact_duplicate", "train_test_leak"]


def _root_with_unsampled_maybe(root: Path, data_dir: Path, drop: list[str] | None) -> Path:
    """A project root whose wildguard train rows `UNSAMPLED` have the label "maybe"; `drop` replaces curate.drop."""
    shutil.copytree(data_dir, root / "data")
    path = root / "data" / "wildguard" / "train.parquet"
    frame = pd.read_parquet(path)
    frame["reward_model"] = [
        {**rm, "ground_truth": "maybe"} if i in UNSAMPLED else rm for i, rm in enumerate(frame["reward_model"])
    ]
    frame.to_parquet(path)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    if drop is not None:
        params["curate"]["drop"] = drop
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture(scope="module")
def unsampled_root(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return _root_with_unsampled_maybe(tmp_path_factory.mktemp("unsampled"), data_dir, NO_GT_RULE)


def _maybe_uids(root: Path) -> list[str]:
    raw = load_raw(root / "data")
    return sorted(raw.loc[raw["ground_truth"] == "maybe", "uid"].astype(str))


def test_sampling_alone_would_hide_the_bad_rows(unsampled_root: Path):
    """The hole this closes: curated-table validation alone passes, since the preset never samples these rows."""
    raw = load_raw(unsampled_root / "data")
    table, _ = curate(raw, CurateConfig(drop=NO_GT_RULE))
    bad = raw["ground_truth"] == "maybe"
    assert int(bad.sum()) == len(UNSAMPLED)
    assert not table["uid"].isin(raw.loc[bad, "uid"]).any()
    assert validate(table).success


def test_cli_stage_refuses_bad_rows_outside_the_sample(unsampled_root: Path):
    proc = subprocess.run(
        [GTALIGN, "data", "curate", "--root", str(unsampled_root)], capture_output=True, text=True, cwd=unsampled_root
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr
    assert "expect_column_values_to_match_regex on `ground_truth` (source wildguard): 3 of 3000 unexpected" in err
    assert "expect_column_values_to_not_be_null on `label` (source wildguard): 3 of 3000 unexpected" in err
    for uid in _maybe_uids(unsampled_root):
        assert f"uid `{uid}`: 'maybe'" in err
    assert not (unsampled_root / "artifacts" / "curated" / "curated.parquet").exists()


def test_dagster_raw_data_check_is_blocking_and_fails(unsampled_root: Path):
    spec = next(iter(data_assets.raw_data_expectations.check_specs))
    assert spec.blocking and spec.asset_key == dg.AssetKey("raw_data")
    result = data_assets.raw_data_expectations(project=ProjectResource(root=str(unsampled_root)))
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    report = result.metadata["report"].value
    assert "expect_column_values_to_not_be_null on `label` (source wildguard): 3 of 3000 unexpected" in report
    assert all(f"uid `{uid}`" in report for uid in _maybe_uids(unsampled_root))


def test_named_drop_rule_drops_and_reports_them(tmp_path: Path, data_dir: Path):
    """With `unparsable_ground_truth` in curate.drop (params.yaml), the same rows are dropped, counted and shown."""
    root = _root_with_unsampled_maybe(tmp_path, data_dir, None)
    params = parse_params(yaml.safe_load((root / "params.yaml").read_text()))
    assert "unparsable_ground_truth" in params.curate.drop
    result = stages.curate_stage(root, params, track=False)
    uids = _maybe_uids(root)
    assert not result.table["uid"].isin(uids).any()
    assert result.report.dropped["unparsable_ground_truth"] == {"math-hard": 5, "minerva": 1, "wildguard": 3}
    values = result.report.sample_values["unparsable_ground_truth"]
    why = "ground_truth 'maybe': not one of ['harmful', 'unharmful']"
    assert {u: values[u] for u in uids} == dict.fromkeys(uids, why)
    excused = {(e.column, e.rule, e.count) for e in result.raw_validation.excused if e.source == "wildguard"}
    assert excused == {
        ("label", "unparsable_ground_truth", 3),
        ("ground_truth", "unparsable_ground_truth", 3),
        ("question", "empty_turn", 1),
        ("question", "over_long_turn", 1),
    }
    assert "'maybe'" in (root / "artifacts" / "curated" / "raw_validation.md").read_text()
