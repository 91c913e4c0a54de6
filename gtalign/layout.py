"""Where every stage reads and writes, relative to the repo root: the one artifact layout (dvc.yaml names the same
paths), and the one way to write a stage's metrics file.

A leaf module (standard library only) so that every stage, driver and test can import it without pulling in anything
else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HELDOUT_EVAL_FILE = "heldout_eval.json"
HELDOUT_GENERATIONS_FILE = "heldout_generations.jsonl"
# Beside a training's checkpoints: the MLflow run that a resumed training continues.
MLFLOW_RUN_FILE = "gtalign_mlflow_run_id"
# `make paper`'s preset (relative to the repo root): the RL variants the paper's comparison trains and evaluates.
PAPER_PRESET = "configs/presets/paper.yaml"


def rl_model_name(variant: str) -> str:
    """The folder (under artifacts/models and artifacts/checkpoints), metrics file and MLflow run name of the RL
    model trained with `variant`'s reward: `rl-cobb_douglas` is GTAlign."""
    return f"rl-{variant}"


@dataclass(frozen=True)
class Layout:
    """The project's folders. Checkpoints live outside the model folders on purpose: `dvc repro` deletes a stage's
    outputs before running it, which would delete the checkpoints a killed training must resume from."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def curated(self) -> Path:
        return self.artifacts / "curated"

    @property
    def demonstrations(self) -> Path:
        return self.artifacts / "demonstrations"

    @property
    def demonstrations_file(self) -> Path:
        return self.demonstrations / "demonstrations.jsonl"

    @property
    def teacher_eval(self) -> Path:
        return self.artifacts / "teacher_eval"

    def metrics(self, stage: str) -> Path:
        """`artifacts/metrics/<stage>.json`, what `dvc metrics show` reads."""
        return self.artifacts / "metrics" / f"{stage}.json"

    def plot(self, name: str, curve: str) -> Path:
        """A training curve for `dvc plots`: `artifacts/plots/<name>_<curve>.csv`."""
        return self.artifacts / "plots" / f"{name}_{curve}.csv"

    def model(self, name: str) -> Path:
        return self.artifacts / "models" / name

    def checkpoints(self, name: str) -> Path:
        return self.artifacts / "checkpoints" / name

    @property
    def eval_cache(self) -> Path:
        """Held-out evaluations of models a training started from (never written into another stage's output)."""
        return self.artifacts / "cache" / "heldout_eval"

    @property
    def evaluation(self) -> Path:
        return self.artifacts / "evaluation"

    def evaluation_dir(self, model: str) -> Path:
        """One evaluated model's generations, scores and evaluation.json."""
        return self.evaluation / model

    @property
    def report(self) -> Path:
        return self.artifacts / "report"

    @property
    def steering(self) -> Path:
        return self.artifacts / "steering"

    @property
    def steering_report(self) -> Path:
        """`gtalign steer eval`'s section: included in the evaluation report when it exists."""
        return self.steering / "report.md"


def write_metrics(path: Path, metrics: Mapping[str, Any]) -> None:
    """A stage's flat metrics as sorted, indented JSON. Non-finite floats (a loss never logged) are left out: JSON
    has no NaN, and `dvc metrics` and the registry read these files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in metrics.items() if not (isinstance(v, float) and not math.isfinite(v))}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n", encoding="utf-8")
