"""What every `gtalign` command shares: the error exit, reading params.yaml (presets, `--set`) into one typed
`Params`, and turning a stage's expected failures into that exit.

One place so that a bad params file, preset or override fails the same way from every command: `error: <what and
where>` on stderr and exit 2 (usage), never a traceback; a stage's expected failure exits 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from gtalign.config import Params, ParamsError, load_params_with, overlay_set, parse_params


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` to stderr and return the Exit to raise (`raise fail(...) from None`)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def exit_on(*errors: type[BaseException], prefix: str = "", code: int = 1) -> Iterator[None]:
    """Turn the expected `errors` of the block into `error: <prefix><message>` and exit `code`."""
    try:
        yield
    except errors as e:
        raise fail(f"{prefix}{e}", code=code) from None


def cli_params(
    root: Path,
    params: Path | None = None,
    *,
    presets: Sequence[Path] | None = (),
    sets: Sequence[str] | None = (),
    optional: bool = False,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Params:
    """`params` (default `<root>/params.yaml`), each preset overlaid, then `--set`, then the command's own
    `overrides` per section (None = keep params), parsed once into `Params`; `optional` commands (whose every
    setting has a default) run without a params file when none was named."""
    path = params or Path(root) / "params.yaml"
    try:
        if optional and params is None and not path.exists():
            raw: dict[str, Any] = {}
        else:
            raw = load_params_with(path, list(presets or ()), list(sets or ()))
        return parse_params(overlay_set(raw, overrides or {}))
    except (ParamsError, ValueError, OSError) as e:
        raise fail(str(e)) from None


def set_threads(threads: int | None) -> None:
    """`--threads`: torch's CPU threads (1 is fastest on a busy machine)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
