"""DVC's records of what the pipeline produced: after `gtalign demo`, `dvc.lock` and the DVC cache describe every
output of every `dvc.yaml` stage, exactly as after `dvc repro`.

The demo runs the stages' library functions in one process (faster than a subprocess per stage, and the same code
`dvc repro` runs), so DVC did not see them run. `dvc commit --force` is DVC's own way to adopt outputs produced
outside `dvc repro`: it hashes every stage's deps, params and outs into `dvc.lock` and moves the outs into the cache.
Afterwards `dvc status` is clean, `dvc repro` has nothing to do, `dvc metrics show` / `dvc plots show` read the
run's numbers, and `dvc push` / `dvc pull` move the trained models (outs go to the `artifacts` remote, the raw data
to `gtalign`).

Only a run with params.yaml as written may be recorded: `dvc.lock` states that the outputs follow from params.yaml,
which a run with a preset or `--set` overrides did not use (`make paper` leaves the records as they were, and says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gtalign.data.raw import run_dvc


class RecordError(RuntimeError):
    """DVC refused to record the outputs; the message carries what DVC said."""


@dataclass(frozen=True)
class Recorded:
    clean: bool  # `dvc status` found nothing to reproduce afterwards
    status: dict[str, object]  # `dvc status --json` (empty when clean)

    def describe(self) -> str:
        if self.clean:
            return "dvc.lock records every stage; `dvc status`: up to date"
        return f"dvc.lock written, but `dvc status` still lists {sorted(self.status)}"


def _said(done: object) -> str:
    text = f"{getattr(done, 'stderr', '')}{getattr(done, 'stdout', '')}"
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())[-800:]


def record_outputs(root: Path, *, timeout: float = 600.0) -> Recorded:
    """`dvc commit --force` over every stage, then `dvc status`; raise `RecordError` with DVC's words on failure."""
    root = Path(root).resolve()
    done = run_dvc(root, "commit", "--force", timeout=timeout)
    if done.returncode != 0:
        raise RecordError(f"`dvc commit --force` failed in {root} (exit {done.returncode}): {_said(done)}")
    status = run_dvc(root, "status", "--json", timeout=timeout)
    if status.returncode != 0:
        raise RecordError(f"`dvc status` failed in {root} (exit {status.returncode}): {_said(status)}")
    listed = json.loads(status.stdout or "{}")
    return Recorded(clean=not listed, status=listed)


__all__ = ["RecordError", "Recorded", "record_outputs"]
