"""`gtalign teacher-eval`: how well the rule teacher plays, before any model is trained."""

from __future__ import annotations

from pathlib import Path

import typer

from gtalign.cli.data import DATA_ERRORS
from gtalign.cli.options import ParamsFile, Root
from gtalign.cli.support import cli_params, exit_on
from gtalign.data.stages import teacher_eval_stage


def teacher_eval(root: Root = Path("."), params: ParamsFile = None) -> None:
    """Score the rule teacher on a sample of every test set with the rule judges."""
    with exit_on(*DATA_ERRORS, prefix="teacher_eval: "):
        result = teacher_eval_stage(root.resolve(), cli_params(root, params))
    typer.echo(result.summary.to_markdown(f"Rule teacher on the test sets ({result.path})"))
