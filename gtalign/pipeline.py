"""The whole pipeline in order, for `gtalign demo` (`make demo`, `make paper`): the same stage functions the DVC
stages and the Dagster assets call, run one after the other in this process.

    pull -> curate + validate -> demonstrations -> teacher eval -> base model -> SFT -> RL (each variant)
         -> pricing steering -> evaluation + report -> register (challenger) -> promotion gate (champion)
         -> DVC records (dvc.lock + cache, as after `dvc repro`; only when the params are params.yaml's)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gtalign import registry, versioning
from gtalign.config import DEFAULT_PARAMS, Params
from gtalign.data import pull_data
from gtalign.data import stages as data
from gtalign.evaluate.directions import Direction, paper_directions
from gtalign.evaluate.stages import evaluation_stage
from gtalign.evaluate.steering import steering_eval_stage
from gtalign.tracking import default_tracking_uri
from gtalign.train import stages as train


@dataclass
class PipelineSummary:
    seconds: dict[str, float] = field(default_factory=dict)
    report: Path | None = None
    release: registry.Release | None = None  # every candidate's registration and the gate's decision on it
    headline: dict[str, float] = field(default_factory=dict)
    directions: list[Direction] = field(default_factory=list)
    dvc: str = ""  # what DVC's records say after the run

    @property
    def champion(self) -> str | None:
        """The champion's version after the release (None: no candidate passed the gate, or no release ran)."""
        return self.release.decision.champion if self.release else None


def run_pipeline(root: Path, params: Params, *, log: Callable[[str], None] = print) -> PipelineSummary:
    """Run every stage with `params`; stops at the first failing stage (its exception propagates)."""
    root = root.resolve()
    summary = PipelineSummary()
    variants = params.pipeline.variants
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("data: dvc pull", lambda: pull_data(root)),
        ("curate + validate", lambda: data.curate_stage(root, params)),
        ("SFT demonstrations", lambda: data.demonstrations_stage(root, params)),
        ("rule teacher on the test sets", lambda: data.teacher_eval_stage(root, params)),
        ("base model", lambda: train.base_model_stage(root, params)),
        ("SFT", lambda: train.sft_stage(root, params)),
        *[(f"RL ({v})", lambda v=v: train.rl_stage(root, params, v)) for v in variants],
        ("pricing steering", lambda: steering_eval_stage(root, params)),
        ("evaluation + report", lambda: evaluation_stage(root, params)),
        (
            "register + promote",
            lambda: registry.release(
                root, params.registry, tracking_uri=default_tracking_uri(root), steering=params.steering
            ),
        ),
    ]
    recordable = params.as_in(root / DEFAULT_PARAMS)
    if recordable:
        steps.append(("DVC records", lambda: versioning.record_outputs(root)))
    else:
        summary.dvc = "not recorded: this run overlaid presets or overrides on params.yaml, which dvc.lock would claim"
    results: dict[str, Any] = {}
    for i, (name, step) in enumerate(steps, 1):
        log(f"[{i}/{len(steps)}] {name}")
        t0 = time.perf_counter()
        results[name] = step()
        summary.seconds[name] = time.perf_counter() - t0
    evaluation = results["evaluation + report"]
    summary.report = evaluation.paths.get("report_md")
    summary.headline = {k: v for k, v in evaluation.metrics.items() if k.endswith("/welfare_mean")}
    directions = paper_directions(evaluation.metrics, replicates=params.rl.replicates())
    summary.directions = [d for d in directions if d.holds is not None]
    summary.release = results["register + promote"]
    if recordable:
        summary.dvc = results["DVC records"].describe()
    return summary
