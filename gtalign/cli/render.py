"""The rich summaries the commands print to stderr (stdout stays for what a command produces)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table


def print_rows(title: str, rows: Iterable[tuple[str, str]], *, fold_values: bool = False) -> None:
    """A two-column key/value table on stderr; `fold_values` prints long values (paths) whole, however narrow the
    terminal."""
    table = Table(title=title, show_header=False)
    if fold_values:
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    Console(stderr=True).print(table)


def metric_rows(metrics: dict[str, object], keys: Iterable[str]) -> list[tuple[str, str]]:
    """The `keys` present in `metrics`, in order; floats to four decimals."""
    return [
        (k, f"{metrics[k]:.4f}" if isinstance(metrics[k], float) else str(metrics[k])) for k in keys if k in metrics
    ]
