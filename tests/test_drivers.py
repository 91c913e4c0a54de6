"""The three ways to drive the pipeline, each for real, on a copy of the project in a temporary git repo:
`dvc repro` / `dvc exp run -S`, Dagster (the `dagster job execute` CLI and a launch through the UI's webserver
GraphQL API), and MLflow (every stage run recorded with its params and tags).

The copy uses small caps (a few rows per source) so each driver runs the whole data pipeline in well under a
minute; the library code is the same.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import BIN, copy_project, project_env, run_in

pytestmark = pytest.mark.slow

SMALL = {"curate": {"tiny_train_per_source": 20, "tiny_test_per_source": 6}, "teacher_eval": {"per_source": 3}}
STAGES = ("curate", "demonstrations", "teacher_eval")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of the working tree with ../shared beside it (the DVC remote) and small params."""
    root = copy_project(tmp_path_factory.mktemp("drivers"), SMALL)
    run_in([str(BIN / "gtalign"), "data", "pull"], root)
    return root


def test_dvc_repro_then_exp_run_with_a_changed_param(project: Path):
    run_in([str(BIN / "dvc"), "repro", *STAGES], project)  # the data half; training has its own e2e test
    for stage in STAGES:
        assert (project / "artifacts" / "metrics" / f"{stage}.json").exists()
    shown = json.loads(run_in([str(BIN / "dvc"), "metrics", "show", "--json"], project).stdout)
    metrics = next(iter(shown.values()))["data"]
    curate = metrics["artifacts/metrics/curate.json"]["data"]
    assert curate["rows_train"] == 3 * 18  # 20 per training source, 2 of each carved into dev
    status = run_in([str(BIN / "dvc"), "status", *STAGES], project).stdout
    assert "up to date" in status

    run_in(["git", "add", "-A"], project)
    run_in(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro"], project)
    run_in(
        [str(BIN / "dvc"), "exp", "run", "-S", "curate.tiny_train_per_source=10", "-n", "smaller", *STAGES], project
    )
    after = json.loads((project / "artifacts" / "metrics" / "curate.json").read_text())
    assert after["rows_train"] == 3 * 9
    demos = json.loads((project / "artifacts" / "metrics" / "demonstrations.json").read_text())
    with (project / "artifacts" / "demonstrations" / "demonstrations.jsonl").open() as f:
        uids = [json.loads(line)["uid"] for line in f]
    assert demos["count"] == len(uids)  # one label row per train row, plus the steered copies of the hedges
    assert len([u for u in uids if not u.endswith(":steered")]) == 3 * 9


def test_mlflow_records_every_stage_run_with_params_and_tags(project: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("gtalign")
    assert exp is not None and exp.artifact_location == (project / "mlruns").as_uri()
    runs = client.search_runs([exp.experiment_id])
    names = {r.info.run_name for r in runs}
    assert set(STAGES) <= names
    curate = next(r for r in runs if r.info.run_name == "curate")
    assert curate.data.params["curate.preset"] == "tiny"
    assert curate.data.tags["gtalign.data_version"] == "caa0cb12c3e92ff341ea9f7b84b60c64.dir"
    assert len(curate.data.tags["mlflow.source.git.commit"]) == 40
    assert curate.data.metrics["rows"] > 0


def test_dagster_job_execute_cli(project: Path):
    proc = run_in([str(BIN / "dagster"), "job", "execute", "-m", "pipelines.definitions", "-j", "data_only"], project)
    log = proc.stdout + proc.stderr
    assert "RUN_SUCCESS" in log
    assert "Asset check 'curated_data_expectations'" in log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    r = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    r.raise_for_status()
    body = r.json()
    assert "errors" not in body, body
    return body["data"]


def test_dagster_ui_launch_through_the_webserver(project: Path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    ui = subprocess.Popen(
        [sys.executable, "-m", "pipelines.ui", "--port", str(port)],
        cwd=project,
        env=project_env(project),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dagster UI did not come up"
            time.sleep(0.5)
        repos = _graphql(
            url, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
        )["repositoriesOrError"]["nodes"]
        selector = {
            "repositoryLocationName": repos[0]["location"]["name"],
            "repositoryName": repos[0]["name"],
            "pipelineName": "data_only",
        }
        launch = _graphql(
            url,
            "mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) { __typename "
            "... on LaunchRunSuccess { run { runId } } ... on PythonError { message } "
            "... on RunConfigValidationInvalid { errors { message } } } }",
            {"p": {"selector": selector, "runConfigData": {"ops": {"curated_data": {"config": {"seed": 1}}}}}},
        )["launchPipelineExecution"]
        assert launch["__typename"] == "LaunchRunSuccess", launch
        run_id = launch["run"]["runId"]
        status = None
        while time.monotonic() < deadline + 240:
            status = _graphql(
                url, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
            )["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(1)
        assert status == "SUCCESS"
        nodes = _graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        assert {"raw_data", "curated_data", "sft_demonstrations"} <= {n["assetKey"]["path"][0] for n in nodes}
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=30)
