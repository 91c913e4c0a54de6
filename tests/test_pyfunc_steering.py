"""The registered MLflow pyfunc steers like `gtalign serve`: same chat and pricing, same completion and fields.

Both go through `gtalign.steering.answer`; these tests check the two paths end to end rather than that code:

- with `ScriptedLM` (tests/steering_support.py), a model that writes a matrix and acts on the one it sees, the pyfunc
  and the HTTP server give the same answer and `gtalign` fields for native and API pricing (API flips CQ to DA);
- with a real tiny model registered into a sqlite store, the version loaded by alias answers like `gtalign serve`
  over the same `models:/` URI, carries the params.yaml `steering:` section it was registered with and an input
  example, and its metrics, data version and gate decision are visible through `MlflowClient`;
- (slow) `mlflow models serve -m models:/NAME@ALIAS` answers `/invocations` with the same rows as `predict`, for a
  very small model overfitted to write one four-block answer, so that `pricing` really changes its matrix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pandas as pd
import pytest
from steering_support import CQ_MATRIX, RESPONSES, ScriptedLM, running_server
from test_registry import DATA_MD5, metrics, tiny_model_dir
from test_registry_server import free_port
from test_serve import NAME, STEERING, compact, start

from gtalign import registry
from gtalign.protocol import render_payoff
from gtalign.pyfunc_model import FIELD_COLUMNS, FULL_COLUMNS, GTAlignAssistant, InvalidParam
from gtalign.registry import CHAMPION, DATA_VERSION_TAG, DECISION_TAG, EXAMPLE_MAX_NEW_TOKENS, MODEL_NAME
from gtalign.serve import ServeSettings, build_engine, create_app
from gtalign.steering import Steerer, SteeringConfig

QUESTION = "What is 2 + 2?"


@pytest.fixture(autouse=True)
def _hermetic_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


def frame(chat: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"messages": [chat]})


def served(
    url: str, chat: list[dict[str, str]], pricing: str, max_tokens: int, analyze: str = ""
) -> tuple[str, dict[str, Any]]:
    """`gtalign serve`'s full content and `gtalign` object for one chat ("" = the field left out)."""
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
    extra = {
        "return": "full",
        **({"pricing": pricing} if pricing else {}),
        **({"analyze": analyze} if analyze else {}),
    }
    r = client.chat.completions.create(model=NAME, messages=chat, max_tokens=max_tokens, extra_body=extra)
    return r.choices[0].message.content, r.choices[0].message.gtalign


def as_served(row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A pyfunc row in the server's terms: (completion, the `gtalign` fields it carries)."""
    fields = {key: row[column] for key, column in FIELD_COLUMNS.items()}
    for key in ("payoff", "original_payoff"):
        fields[key] = None if fields[key] is None else json.loads(fields[key])
    return row["completion"], fields


def server_fields(gtalign: dict[str, Any]) -> dict[str, Any]:
    return {key: gtalign[key] for key in FIELD_COLUMNS}


# ---------------------------------------------------------------------------------------------------------------
# A scripted model: pricing changes the matrix and the action
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scripted_server(tok):
    engine, app = start(tok)
    with running_server(app) as url:
        yield url
    engine.close()


def scripted_pyfunc(tok) -> GTAlignAssistant:
    model = GTAlignAssistant()
    model.bind(Steerer(ScriptedLM(tok), tok, batch_size=8), STEERING, prompt_style="compact")
    return model


@pytest.mark.parametrize(
    ("pricing", "regime", "steered", "action"),
    [("", "subscription", False, "CQ"), ("subscription", "subscription", False, "CQ"), ("api", "api", True, "DA")],
)
def test_pyfunc_answers_like_gtalign_serve(
    tok, scripted_server: str, pricing: str, regime: str, steered: bool, action: str
) -> None:
    chat = compact(QUESTION)
    row = scripted_pyfunc(tok).predict(None, frame(chat), {"pricing": pricing, "max_new_tokens": 256})
    assert list(row.columns) == list(FULL_COLUMNS)
    completion, fields = as_served(row.to_dict("records")[0])
    content, gtalign = served(scripted_server, chat, pricing, 256)
    assert completion == content
    assert fields == server_fields(gtalign)
    assert (fields["pricing"], fields["steered"], fields["action"]) == (regime, steered, action)
    # the matrix the model wrote is reported when a transform looked at it; the API edit is spliced into the answer
    assert fields["original_payoff"] == (CQ_MATRIX.to_dict() if steered else None)
    assert (fields["payoff"] == CQ_MATRIX.to_dict()) is not steered
    assert fields["optimal_cell"] == fields["chosen_cell"] == f"DQ_{action}"
    assert row.loc[0, "format_ok"] and row.loc[0, "response"] == RESPONSES[action]


@pytest.mark.parametrize("pricing", ["", "api"])
def test_the_solver_writes_the_analysis_in_both_servers_alike(tok, scripted_server: str, pricing: str) -> None:
    """`analyze: solver` per request: the exact solver's <analyze> is spliced at </payoff> (even with no edit), and
    the pyfunc and `gtalign serve` give the same answer and fields."""
    chat = compact(QUESTION)
    params = {"pricing": pricing, "analyze": "solver", "max_new_tokens": 256}
    completion, fields = as_served(scripted_pyfunc(tok).predict(None, frame(chat), params).to_dict("records")[0])
    content, gtalign = served(scripted_server, chat, pricing, 256, analyze="solver")
    assert (completion, fields) == (content, server_fields(gtalign))
    assert (fields["analyze"], fields["solver_analyze"]) == ("solver", True)
    assert fields["chosen_cell"] == fields["optimal_cell"] == ("DQ_DA" if pricing else "DQ_CQ")
    model_default = as_served(
        scripted_pyfunc(tok).predict(None, frame(chat), {"pricing": pricing}).to_dict("records")[0]
    )
    assert (model_default[1]["analyze"], model_default[1]["solver_analyze"]) == ("model", False)  # params default


def test_pyfunc_batches_chats_and_returns_the_response_alone(tok) -> None:
    model = scripted_pyfunc(tok)
    chats = [compact(QUESTION), compact("What is 3 + 3?")]
    out = model.predict(None, pd.DataFrame({"messages": chats}), {"pricing": "api"})
    assert out["action"].tolist() == ["DA", "DA"] and out["steered"].tolist() == [True, True]
    short = model.predict(None, frame(chats[0]), {"pricing": "api", "return": "response"})
    assert short.to_dict("records") == [{"response": RESPONSES["DA"]}]


def test_unknown_pricing_or_return_is_an_error_naming_the_allowed_values(tok) -> None:
    model = scripted_pyfunc(tok)
    with pytest.raises(ValueError, match=r"unknown pricing 'per_token': expected one of subscription, api") as err:
        model.predict(None, frame(compact(QUESTION)), {"pricing": "per_token"})
    assert isinstance(err.value, InvalidParam) and err.value.get_http_status_code() == 400
    with pytest.raises(ValueError, match=r"return must be one of \('full', 'response'\), got 'all'"):
        model.predict(None, frame(compact(QUESTION)), {"return": "all"})
    with pytest.raises(InvalidParam, match=r"unknown analyze 'judge': expected one of model, solver"):
        model.predict(None, frame(compact(QUESTION)), {"analyze": "judge"})


# ---------------------------------------------------------------------------------------------------------------
# A real tiny model through the registry
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "data.dvc").write_text(f"outs:\n- md5: {DATA_MD5}\n  path: data\n")
    return tmp_path


def test_registered_pyfunc_matches_serve_and_shows_its_record(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import mlflow
    from mlflow.models import Model

    uri = f"sqlite:///{root / 'mlflow.db'}"
    # native API pricing, so "subscription" is the edit; a price the defaults do not have
    steering = SteeringConfig(native_pricing="api", price_per_100_words=3.0)
    reg = registry.register(
        root,
        tiny_model_dir(tmp_path_factory),
        metrics(0.4, math_hard=0.6),
        tracking_uri=uri,
        evaluated_model="cobb_douglas",
        steering=steering,
    )
    assert registry.promote(uri, tolerance=0.05).promoted

    # What a user of the registry sees: the version's tags, its logged model's metrics and data version.
    client = registry.client_for(uri)
    version = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert str(version.version) == reg.version == "1"
    assert version.tags[DECISION_TAG] == "promoted" and version.tags[DATA_VERSION_TAG] == DATA_MD5
    assert version.tags["gtalign.metric.welfare_mean"] == "0.4"
    assert version.source == f"models:/{reg.model_id}"
    logged = client.get_logged_model(reg.model_id)
    assert {m.key: m.value for m in logged.metrics} == {"welfare_mean": 0.4, "answer/math-hard": 0.6}
    assert logged.tags[DATA_VERSION_TAG] == DATA_MD5
    run_params = client.get_run(reg.run_id).data.params  # MLflow logs the model_config there
    assert json.loads(run_params["steering"]) == steering.model_dump(mode="json", exclude={"eval"})

    # The input example the UI shows: one chat, with the params that steer it (cheap: MLflow predicts on it).
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{reg.model_id}", tracking_uri=uri))
    meta = Model.load(local)
    assert meta.load_input_example(local).to_dict("list") == {
        "messages": [[{"role": "user", "content": "What is the capital of France?"}]]
    }
    assert meta.load_input_example_params(local) == {"pricing": "api", "max_new_tokens": EXAMPLE_MAX_NEW_TOKENS}

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    assert model.unwrap_python_model().steering == steering
    settings = ServeSettings(model=f"models:/{MODEL_NAME}@{CHAMPION}", served_model_name=NAME)
    engine = build_engine(settings.model, root=root, steering=steering, settings=settings, tracking_uri=uri)
    chat = compact(QUESTION)
    try:
        with running_server(create_app(engine, settings)) as url:
            for pricing in ("", "subscription"):
                row = model.predict(frame(chat), params={"pricing": pricing, "max_new_tokens": 12})
                completion, fields = as_served(row.to_dict("records")[0])
                content, gtalign = served(url, chat, pricing, 12)
                assert completion == content and fields == server_fields(gtalign)
                # an untrained model writes no matrix: nothing to steer, and the reason is given
                assert fields["pricing"] == (pricing or "api") and fields["steered"] is False
                assert fields["payoff"] is None and fields["error"]
    finally:
        engine.close()


# ---------------------------------------------------------------------------------------------------------------
# mlflow models serve (slow)
# ---------------------------------------------------------------------------------------------------------------
ANSWER = (
    f"<thinking>Scripted.</thinking><payoff>{render_payoff(CQ_MATRIX)}</payoff>"
    f"<analyze>Chosen: DQ_CQ.</analyze><response>{RESPONSES['CQ']}</response>"
)
MAX_NEW_TOKENS = 192  # the whole ANSWER (about 150 tokens), so the payoff closes and is steered


def overfit_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A very small model (one layer, width 64) trained on ANSWER to QUESTION until it says it greedily: it writes a
    matrix, so API pricing has something to edit (what it writes after the splice does not matter here). About 60
    steps, seconds on a CPU; the default tiny model would take minutes."""
    import torch

    from gtalign.modeling import TinyModelConfig, build_base_model, chat_prompt, load_model

    dest = tmp_path_factory.getbasetemp() / "overfit-model"
    if (dest / "config.json").exists():
        return dest
    chat = compact(QUESTION)
    small = TinyModelConfig(
        vocab_size=1024, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=128,
    )  # fmt: skip
    build_base_model(dest, [chat[0]["content"], chat[1]["content"], ANSWER] * 20, small)
    model, tok = load_model(dest)
    prompt = tok(chat_prompt(tok, chat), add_special_tokens=False)["input_ids"]
    answer = [*tok(ANSWER, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    assert len(answer) < MAX_NEW_TOKENS
    ids = torch.tensor([prompt + answer])
    labels = torch.tensor([[-100] * len(prompt) + answer])
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(500):
        out = model(input_ids=ids, labels=labels)
        if out.logits[0, len(prompt) - 1 : -1].argmax(-1).tolist() == answer:
            break  # these weights say it greedily (checked before a step, not after one that may undo it)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    else:
        raise AssertionError(f"the small model did not learn the answer (loss {out.loss.item():.3f})")
    model.eval()
    model.save_pretrained(dest)
    return dest


def invocations(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return {"status": e.code, **json.loads(e.read())}


@pytest.mark.slow
def test_mlflow_models_serve_steers_like_predict(
    root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry.register(root, overfit_model(tmp_path_factory), metrics(0.4, math_hard=0.6), tracking_uri=uri)
    assert registry.promote(uri, tolerance=0.05).promoted
    model_uri = f"models:/{MODEL_NAME}@{CHAMPION}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent  # `mlflow models serve` execs `uvicorn`, found on PATH
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    log_path = tmp_path / "serve.log"
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local", "-p", str(port),
               "-h", "127.0.0.1"]  # fmt: skip
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its uvicorn worker is stopped with it, as a group
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow models serve exited {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow models serve not up in 120 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)

        chat = compact(QUESTION)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        model = mlflow.pyfunc.load_model(model_uri)
        rows = {}
        for pricing in ("subscription", "api"):
            params = {"pricing": pricing, "max_new_tokens": MAX_NEW_TOKENS}
            body = invocations(url, {"dataframe_records": [{"messages": chat}], "params": params})
            expected = model.predict(frame(chat), params=params).to_dict("records")
            assert body == {"predictions": expected}, body
            rows[pricing] = expected[0]
        native, steered = rows["subscription"], rows["api"]
        assert native["completion"] == ANSWER and native["format_ok"]  # what it learned, unsteered
        assert json.loads(native["payoff"]) == CQ_MATRIX.to_dict() and native["original_payoff"] is None
        assert (native["steered"], steered["steered"]) == (False, True)
        assert steered["original_payoff"] == native["payoff"] and steered["payoff"] != native["payoff"]

        bad = invocations(url, {"dataframe_records": [{"messages": chat}], "params": {"pricing": "per_token"}})
        assert bad["status"] == 400 and "expected one of subscription, api" in bad["message"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
