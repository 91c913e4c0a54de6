"""`gtalign data ...`: pull the raw sets, curate and validate them, write the SFT demonstrations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gtalign.cli.options import ParamsFile, Presets, Root, Sets
from gtalign.cli.support import cli_params, exit_on
from gtalign.data import DataPullError, DataValidationError, RawDataMissingError, pull_data
from gtalign.data.stages import curate_stage, demonstrations_stage

data_app = typer.Typer(help="Raw data, curation, validation and demonstrations.", no_args_is_help=True)

# What a data stage may fail with when the data or the remote is not there: one clear message, exit 1.
DATA_ERRORS = (RawDataMissingError, DataPullError, DataValidationError, FileNotFoundError)


@data_app.command("pull")
def data_pull(root: Root = Path(".")) -> None:
    """`dvc pull` the raw GTAlign sets into data/ (the remote is ../shared/gtalign-data/dvc-store by default)."""
    with exit_on(DataPullError):
        path = pull_data(root.resolve())
    typer.echo(f"data ready in {path}")


@data_app.command("curate")
def data_curate(root: Root = Path("."), params: ParamsFile = None) -> None:
    """Curate and validate the raw sets into artifacts/curated (stops with a report on a failed expectation)."""
    with exit_on(*DATA_ERRORS, prefix="curate: "):
        result = curate_stage(root.resolve(), cli_params(root, params))
    typer.echo(result.report.to_markdown())
    typer.echo(f"validation: {result.validation.n_expectations} expectations passed; wrote {result.paths['data']}")


@data_app.command("demonstrations")
def data_demonstrations(
    root: Root = Path("."),
    params: ParamsFile = None,
    preset: Presets = None,
    set_: Sets = None,
    recipe: Annotated[
        str | None,
        typer.Option(help="rule teacher: label | game (default: params demonstrations.recipe)"),
    ] = None,
) -> None:
    """Write the SFT demonstrations (rule teacher) and report their welfare and action mix."""
    overrides = {"demonstrations": {"recipe": recipe}}
    typed = cli_params(root, params, presets=preset, sets=set_, overrides=overrides)
    with exit_on(*DATA_ERRORS, ValueError, prefix="demonstrations: "):
        result = demonstrations_stage(root.resolve(), typed)
    typer.echo(result.summary.to_markdown(f"{result.count} demonstrations in {result.path}"))
    if result.actions is not None:
        typer.echo(result.actions.to_markdown())
