"""Dagster definitions, all in one place: `dagster dev -m pipelines.definitions` (UI) or
`dagster job execute -m pipelines.definitions -j gtalign_pipeline` (CLI).

Selections are AssetSelection objects, never strings: the venv shares antlr4 4.9.3 with DVC, and Dagster's string
selection parser needs 4.13 (README: "Three ways to drive the pipeline").
"""


import dagster as dg

from pipelines.defs import data
from pipelines.defs.resources import MlflowResource, ProjectResource

ASSETS = [data.raw_data, data.curated_data, data.sft_demonstrations, data.teacher_eval]

gtalign_pipeline = dg.define_asset_job(
    "gtalign_pipeline",
    selection=dg.AssetSelection.assets(*ASSETS),
    description="Everything, in order: data -> curation (+ expectations) -> demonstrations -> evaluation.",
)
data_job = dg.define_asset_job("data_only", selection=dg.AssetSelection.assets(data.raw_data, data.curated_data))

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=[data.curated_data_expectations],
    jobs=[gtalign_pipeline, data_job],
    resources={"project": ProjectResource(), "mlflow": MlflowResource()},
)
