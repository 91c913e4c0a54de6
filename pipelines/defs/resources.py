"""Resources: where the project lives and where MLflow tracks. I/O configuration only; no pipeline logic."""

import os
from pathlib import Path
from typing import Any

import dagster as dg

from gtalign.config import load_params

REPO_ROOT = Path(__file__).resolve().parents[2]


class ProjectResource(dg.ConfigurableResource):
    """The repo root (params.yaml, data/, artifacts/) and the params file every stage reads."""

    root: str = os.environ.get("GTALIGN_ROOT", str(REPO_ROOT))
    params_file: str = "params.yaml"

    @property
    def path(self) -> Path:
        return Path(self.root).resolve()

    def params(self, overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """params.yaml with per-run overrides from the asset's run config (None values are left out)."""
        params = load_params(self.path / self.params_file)
        for name, values in (overrides or {}).items():
            params.setdefault(name, {}).update({k: v for k, v in values.items() if v is not None})
        return params


class MlflowResource(dg.ConfigurableResource):
    """Our own small MLflow resource (dagster-mlflow lags Dagster 1.13): the tracking URI every stage logs to.

    Empty means the project default, `sqlite:///<root>/mlflow.db` (or MLFLOW_TRACKING_URI when set).
    """

    tracking_uri: str = ""

    def uri(self) -> str | None:
        return self.tracking_uri or None

    def run_url(self, run_id: str | None) -> str | None:
        if not run_id:
            return None
        base = self.tracking_uri if self.tracking_uri.startswith("http") else "mlflow ui"
        return f"{base} #/experiments/*/runs/{run_id}" if base == "mlflow ui" else f"{base}/#/runs/{run_id}"


#: Op tag of the assets that run torch (training, steering, evaluation). `pipelines.definitions` lets the executor run
#: one of them at a time: two torch processes on one CPU box each start a thread per core and both crawl (the paper
#: job's rl_model and paper_baselines side by side took 19 min for a 2.5 min RL run on 2 cores).
TORCH_OP_TAGS = {"gtalign/compute": "torch"}
