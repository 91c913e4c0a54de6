"""Data assets: raw_data (DVC, + blocking expectations on every raw row) -> curated_data (+ blocking expectations
check) -> sft_demonstrations, teacher_eval.

Each asset calls one `gtalign.data.stages` function and turns its result into metadata.
"""

import dagster as dg
import pandas as pd

from gtalign.config import parse_params
from gtalign.data import pull_data, stages
from gtalign.data.validate import ValidationReport
from gtalign.tracking import data_version
from pipelines.defs.resources import MlflowResource, ProjectResource

GROUP = "data"


class CurateRunConfig(dg.Config):
    """Per-run overrides of params.yaml `curate:` (unset = params.yaml)."""

    preset: str | None = None
    seed: int | None = None
    prompt_style: str | None = None


def _counts_md(table: pd.DataFrame) -> dg.MetadataValue:
    counts = table.groupby(["source", "split"]).size().unstack(fill_value=0).reset_index()
    header = "| " + " | ".join(map(str, counts.columns)) + " |\n|" + "---|" * len(counts.columns) + "\n"
    rows = "".join("| " + " | ".join(map(str, r)) + " |\n" for r in counts.itertuples(index=False))
    return dg.MetadataValue.md(header + rows)


@dg.asset(
    group_name=GROUP,
    kinds={"dvc", "parquet"},
    description="The ten published GTAlign parquet sets under data/, pulled with DVC; versioned by the "
    "directory md5 recorded in data.dvc.",
)
def raw_data(project: ProjectResource) -> dg.MaterializeResult:
    path = pull_data(project.path)
    md5 = data_version(project.path) or "unknown"
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*.parquet"))
    return dg.MaterializeResult(
        metadata={"path": str(path), "files": len(files), "dvc_md5": md5}, data_version=dg.DataVersion(md5)
    )


def _check_result(report: ValidationReport) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=report.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "expectations": report.n_expectations,
            "failures": len(report.failures),
            "excused_by_drop_rules": sum(e.count for e in report.excused),
            "report": dg.MetadataValue.md(report.to_markdown()),
        },
    )


@dg.asset_check(
    asset=raw_data,
    blocking=True,
    description="The Great Expectations suites on every raw row, before any preset samples: a failing row stops "
    "curation unless a named `curate.drop` rule removes it (then it is listed as excused).",
)
def raw_data_expectations(project: ProjectResource) -> dg.AssetCheckResult:
    return _check_result(stages.raw_validation_stage(project.path, parse_params(project.params())))


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet", "mlflow"},
    deps=[raw_data],
    description="One typed table of all sources: duplicates, leaks and bad rows flagged or dropped by named "
    "rules, the tiny/full preset applied, a stratified dev split carved from train.",
)
def curated_data(config: CurateRunConfig, project: ProjectResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    params = project.params({"curate": config.model_dump()})
    result = stages.curate_stage(project.path, parse_params(params), tracking_uri=mlflow.uri(), validate=False)
    preview = result.table[["uid", "source", "split", "label", "question"]].head(8)
    return dg.MaterializeResult(
        metadata={
            "rows": len(result.table),
            "rows_by_source_and_split": _counts_md(result.table),
            "curation_report": dg.MetadataValue.md(result.report.to_markdown()),
            "preview": dg.MetadataValue.md(preview.to_string(index=False).join(["```\n", "\n```"])),
            "path": str(result.paths["data"]),
            "mlflow_run_id": result.run_id or "",
        }
    )


@dg.asset_check(
    asset=curated_data,
    blocking=True,
    description="Great Expectations suites per source; a failure stops everything downstream.",
)
def curated_data_expectations(project: ProjectResource) -> dg.AssetCheckResult:
    return _check_result(stages.validate_stage(project.path, parse_params(project.params())))


@dg.asset(
    group_name=GROUP,
    kinds={"jsonl", "mlflow"},
    deps=[curated_data],
    description="Four-block SFT demonstrations for the curated train rows (rule teacher), with their welfare.",
)
def sft_demonstrations(project: ProjectResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    result = stages.demonstrations_stage(project.path, parse_params(project.params()), tracking_uri=mlflow.uri())
    return dg.MaterializeResult(
        metadata={
            "count": result.count,
            "path": str(result.path),
            "welfare": dg.MetadataValue.md(result.summary.to_markdown("Demonstrations")),
            **{k: float(v) for k, v in result.metrics.items()},
            "mlflow_run_id": result.run_id or "",
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow"},
    deps=[curated_data],
    description="The rule teacher on a sample of every test set, scored by the rule judges: the reward's "
    "reference point before any training.",
)
def teacher_eval(project: ProjectResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    result = stages.teacher_eval_stage(project.path, parse_params(project.params()), tracking_uri=mlflow.uri())
    return dg.MaterializeResult(
        metadata={
            "welfare": dg.MetadataValue.md(result.summary.to_markdown("Rule teacher on the test sets")),
            **{k: float(v) for k, v in result.metrics.items()},
            "mlflow_run_id": result.run_id or "",
        }
    )
