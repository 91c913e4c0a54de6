"""The `gtalign` command tree is an interface (scripts, DVC stages, docs and CI call it), so it is pinned: every
command path with its help and every parameter, compared with a committed snapshot. And `gtalign --help` stays light:
loading the CLI imports none of the heavy libraries a command needs only when it runs.

After an intended change to the CLI, rewrite the snapshot and review its diff:
    PYTHONPATH=. python tests/test_cli_surface.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from gtalign.cli import app

SNAPSHOT = Path(__file__).parent / "data" / "cli_surface.json"
HEAVY = ("torch", "transformers", "trl", "mlflow", "dagster")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return f"Path({value})"
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return f"{type(value).__name__}({_jsonable(getattr(value, 'value', None))})"  # e.g. typer's DefaultPlaceholder


def _param(p: Any) -> dict[str, Any]:
    descriptor = getattr(p, "type_descriptor", None)
    return {
        "kind": type(p).__name__,
        "name": p.name,
        "opts": list(p.opts),
        "secondary_opts": list(p.secondary_opts),
        "required": p.required,
        "default": _jsonable(p.default),
        "is_flag": getattr(p, "is_flag", False),
        "multiple": p.multiple,
        "nargs": p.nargs,
        "help": getattr(p, "help", None),
        "metavar": p.metavar,
        "min": getattr(p, "min", None),
        "max": getattr(p, "max", None),
        "hidden": getattr(p, "hidden", False),
        "envvar": _jsonable(p.envvar),
        "rich_help_panel": _jsonable(getattr(p, "rich_help_panel", None)),
        "annotation": str(descriptor.annotation) if descriptor is not None else None,
    }


def surface(command: Any, path: str = "gtalign") -> dict[str, Any]:
    """`{command path: {help, ..., params, commands}}` for the command and everything under it; `commands` keeps
    the order `--help` lists them in."""
    subcommands = getattr(command, "commands", {})
    out = {
        path: {
            "help": command.help,
            "short_help": command.short_help,
            "epilog": command.epilog,
            "no_args_is_help": command.no_args_is_help,
            "hidden": command.hidden,
            "rich_help_panel": _jsonable(getattr(command, "rich_help_panel", None)),
            "params": [_param(p) for p in command.params],
            "commands": list(subcommands),
        }
    }
    for name, sub in subcommands.items():
        out.update(surface(sub, f"{path} {name}"))
    return out


def current() -> dict[str, Any]:
    return surface(typer.main.get_command(app))


def test_the_command_tree_matches_the_snapshot() -> None:
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    got = current()
    assert sorted(got) == sorted(expected), "command paths changed"
    for path in expected:
        assert got[path] == expected[path], path


def test_loading_the_cli_imports_no_heavy_library() -> None:
    probe = f"import sys, gtalign.cli; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(current(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
