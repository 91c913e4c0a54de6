"""Resources: where the project lives and where MLflow tracks. I/O configuration only; no pipeline logic."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from gtalign.config import load_params_with, overlay_set

REPO_ROOT = Path(__file__).resolve().parents[2]


class ProjectResource(dg.ConfigurableResource):
    """The repo root (params.yaml, data/, artifacts/) and the params file every stage reads."""

    root: str = os.environ.get("GTALIGN_ROOT", str(REPO_ROOT))
    params_file: str = "params.yaml"

    @property
    def path(self) -> Path:
        return Path(self.root).resolve()

    def params(
        self, overrides: dict[str, dict[str, Any]] | None = None, presets: Sequence[str] = ()
    ) -> dict[str, Any]:
        """params.yaml, each preset (relative to the root) overlaid in order, then per-run overrides from the asset's
        run config (None values are left out)."""
        params = load_params_with(self.path / self.params_file, [self.path / p for p in presets])
        return overlay_set(params, overrides or {})


class PresetsRunConfig(dg.Config):
    """Presets overlaid on params.yaml for one run (the `paper` job's), read through `ProjectResource.params`."""

    presets: list[str] = Field(default_factory=list)


class MlflowResource(dg.ConfigurableResource):
    """Our own small MLflow resource (dagster-mlflow lags Dagster 1.13): the tracking URI every stage logs to.

    Empty means the project default, `sqlite:///<root>/mlflow.db` (or MLFLOW_TRACKING_URI when set).
    """

    tracking_uri: str = ""

    def uri(self) -> str | None:
        return self.tracking_uri or None


#: Op tag of the assets that run torch (training, steering, evaluation). `pipelines.definitions` lets the executor run
#: one of them at a time: two torch processes on one CPU box each start a thread per core, and side by side both run
#: several times slower than one after the other.
TORCH_OP_TAGS = {"gtalign/compute": "torch"}
