"""What every `gtalign` sub-CLI shares: the error exit, and reading params.yaml (presets, `--set`) into one.

One place so that a bad params file, preset or override fails the same way from every command: `error: <what and
where>` on stderr and exit 2 (usage), never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from gtalign.config import Params

PRESET_OPTION = typer.Option(
    "--preset", help="YAML overlaid on params (e.g. configs/train/qwen2.5-3b.yaml), repeatable, applied in order"
)
SET_OPTION = typer.Option("--set", help="override one value: section.key=value (YAML value), repeatable")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` to stderr and return the Exit to raise (`raise fail(...) from None`)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def cli_params(
    root: Path,
    params: Path | None = None,
    *,
    presets: Sequence[Path] | None = (),
    sets: Sequence[str] | None = (),
    optional: bool = False,
) -> dict[str, Any]:
    """`params` (default `<root>/params.yaml`), each preset overlaid, then the overrides; `optional` commands (whose
    every setting has a default) run without a params file when none was named."""
    from gtalign.config import ParamsError, load_params_with

    path = params or Path(root) / "params.yaml"
    if optional and params is None and not path.exists():
        return {}
    try:
        return load_params_with(path, list(presets or ()), list(sets or ()))
    except (ParamsError, ValueError, OSError) as e:
        raise fail(str(e)) from None


def parsed(raw: dict[str, Any]) -> Params:
    """`cli_params`' mapping validated into `gtalign.config.Params` (a misspelt key is one clear error, exit 2)."""
    from gtalign.config import ParamsError, parse_params

    try:
        return parse_params(raw)
    except ParamsError as e:
        raise fail(str(e)) from None
