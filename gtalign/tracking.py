"""MLflow tracking shared by every driver (CLI, `dvc repro`, Dagster): one experiment, pinned artifact location.

MLflow 3 refuses the plain file store, so the default backend is `sqlite:///<repo>/mlflow.db` (override with
MLFLOW_TRACKING_URI, e.g. a `mlflow server`), and artifacts go to `<repo>/mlruns` instead of whatever the current
directory is. Each run gets the flattened params, the git commit and the DVC data version as tags.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

EXPERIMENT = "gtalign"


def default_tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root.resolve() / 'mlflow.db'}"


def data_version(root: Path) -> str | None:
    """The md5 of the raw data directory as recorded in data.dvc (what `raw_data` is versioned by)."""
    pointer = root / "data.dvc"
    if not pointer.exists():
        return None
    outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def setup(root: Path, tracking_uri: str | None = None, experiment: str = EXPERIMENT) -> str:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # the registry lives in the same store: never one left over from another project
    if MlflowClient().get_experiment_by_name(experiment) is None:
        location = None if uri.startswith("http") else (root.resolve() / "mlruns").as_uri()
        MlflowClient().create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return uri


@contextlib.contextmanager
def run(
    root: Path,
    name: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
) -> Iterator[Any]:
    """An MLflow run with the project's standard params and tags; yields the active run."""
    import mlflow

    setup(root, tracking_uri, experiment)
    all_tags = {
        "gtalign.stage": name,
        "gtalign.data_version": data_version(root) or "unknown",
        "mlflow.source.git.commit": git_commit(root) or "unknown",
        **(tags or {}),
    }
    with mlflow.start_run(run_name=name, tags=all_tags) as active:
        if params:
            flat = {k: str(v)[:500] for k, v in flatten(dict(params)).items()}
            mlflow.log_params(flat)
        yield active


def log_stage(
    root: Path,
    stage: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    artifacts: Iterable[Path],
    tracking_uri: str | None,
) -> str:
    """One MLflow run for a data stage: its params, numeric metrics and files; returns the run id."""
    import mlflow

    with run(root, stage, params=params, tracking_uri=tracking_uri) as active:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)})
        for path in artifacts:
            mlflow.log_artifact(str(path))
        return active.info.run_id


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys, the form MLflow and `dvc params diff` show."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
