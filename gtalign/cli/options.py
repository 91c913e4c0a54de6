"""Options that several `gtalign` commands take, declared once (with their type) so that they read the same
everywhere: `root: Root = Path(".")`, `params: ParamsFile = None`.

An option only one module takes is declared there. The two `--root` variants differ only in their help text; they are
kept apart so that `gtalign ... --help` stays as it was (tests/data/cli_surface.json pins it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ROOT = typer.Option("--root", help="repo root (where params.yaml, data/ and artifacts/ live)")
ROOT_TRACKED = typer.Option("--root", help="repo root (params.yaml, artifacts/, mlflow.db)")
PARAMS = typer.Option("--params", help="params file (default: <root>/params.yaml)")

PRESET = typer.Option(
    "--preset", help="YAML overlaid on params (e.g. configs/train/qwen2.5-3b.yaml), repeatable, applied in order"
)
SET = typer.Option("--set", help="override one value: section.key=value (YAML value), repeatable")

MODEL = typer.Option(
    "--model", help="checkpoint folder or registered model URI, e.g. models:/gtalign-assistant@champion"
)
TRACKING_URI = typer.Option("--tracking-uri", help="MLflow URI (default: $MLFLOW_TRACKING_URI, else <root>/mlflow.db)")

Root = Annotated[Path, ROOT]
RootTracked = Annotated[Path, ROOT_TRACKED]
ParamsFile = Annotated[Path | None, PARAMS]
Presets = Annotated[list[Path] | None, PRESET]
Sets = Annotated[list[str] | None, SET]
Model = Annotated[str | None, MODEL]
TrackingUri = Annotated[str | None, TRACKING_URI]
