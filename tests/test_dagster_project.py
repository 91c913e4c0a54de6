"""The Dagster code location is declared by convention (pyproject.toml `[tool.dagster]`): `dagster dev`,
`dagster-webserver` and `dagster definitions validate` find `pipelines.definitions` from the repository root with no
-m/-f flag."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import BIN, REPO_ROOT, copy_project, project_env


def test_definitions_validate_with_no_flags(tmp_path: Path):
    proc = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate"],
        cwd=REPO_ROOT,
        env=project_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "Validation successful for code location gtalign." in log


@pytest.mark.slow
def test_webserver_finds_the_code_location_with_no_flags(tmp_path_factory: pytest.TempPathFactory):
    from test_drivers import _free_port, _graphql  # the webserver helpers of the driver tests

    root = copy_project(tmp_path_factory.mktemp("dagster_project"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=root,
        env=project_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "dagster-webserver exited"
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dagster-webserver did not come up"
            time.sleep(0.5)
        repos = _graphql(
            url,
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } "
            "jobs { name } } } } }",
        )["repositoriesOrError"]["nodes"]
        assert [r["location"]["name"] for r in repos] == ["gtalign"]
        jobs = {j["name"] for j in repos[0]["jobs"]}
        assert {"gtalign_pipeline", "data_only", "paper", "training"} <= jobs
        nodes = _graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"raw_data", "curated_data", "sft_demonstrations", "teacher_eval", "champion"} <= keys
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
