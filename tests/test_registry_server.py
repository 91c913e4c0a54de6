"""End to end against a real `mlflow server` (what a team would share): register, promote, reject, then load the
champion by alias in a fresh process that only knows the server's URL.

The server listens on 127.0.0.1 on an ephemeral port, keeps its store and artifacts in tmp_path, and is stopped with
SIGTERM (which also stops its uvicorn worker; ecosystem notes §4).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_registry import check_prediction, metrics, predict_in_fresh_process, tiny_model_dir

from gtalign import registry
from gtalign.registry import CHALLENGER, CHAMPION, DECISION_TAG, MODEL_NAME, REASONS_TAG

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        start_new_session=True,  # so a leftover worker can be reaped as a group if SIGTERM is not enough
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {proc.returncode}: {(tmp_path / 'server.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not healthy in 120 s: {(tmp_path / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_register_promote_and_load_champion_through_the_server(
    mlflow_server: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    hf_dir = tiny_model_dir(tmp_path_factory)
    root = tmp_path / "project"
    root.mkdir()

    first = registry.register(root, hf_dir, metrics(0.40, math_hard=0.60), tracking_uri=mlflow_server)
    decision = registry.promote(mlflow_server, MODEL_NAME, tolerance=0.05)
    assert decision.promoted and decision.reasons == ("no champion yet; v1 is the first (welfare_mean 0.4000)",)

    registry.register(root, hf_dir, metrics(0.50, math_hard=0.40), tracking_uri=mlflow_server)
    decision = registry.promote(mlflow_server, MODEL_NAME, tolerance=0.05)
    assert not decision.promoted
    assert decision.reasons == ("answer/math-hard dropped 0.2000 (0.6000 -> 0.4000) > tolerance 0.0500",)

    client = registry.client_for(mlflow_server)
    assert client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version == "1"
    v2 = client.get_model_version_by_alias(MODEL_NAME, CHALLENGER)
    assert v2.version == "2" and v2.tags[DECISION_TAG] == "rejected" and v2.tags[REASONS_TAG] == decision.reasons[0]
    assert not (root / "mlruns").exists()  # artifacts went through the server, not to the local disk

    result = predict_in_fresh_process(mlflow_server, tmp_path)
    assert result["model_id"] == first.model_id
    check_prediction(result)
