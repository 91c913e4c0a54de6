"""The OpenAI-compatible server against the official `openai` client, on 127.0.0.1 with an ephemeral port.

The served model is `ScriptedLM` (tests/steering_support.py): it writes a matrix whose optimum is DQ_CQ under
subscription pricing and DQ_DA once the API cost is spliced in, and acts on whatever matrix it can see, so the
tests can check that `pricing` changes the payoff and the action end to end.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from conftest import REPO_ROOT
from steering_support import CQ_MATRIX, RESPONSES, TEST_WORDS, ScriptedLM, running_server

from gtalign.protocol import check_strict
from gtalign.registry import resolve_model
from gtalign.serve import Engine, ServeSettings, answer_text, create_app
from gtalign.steering import Steerer, SteeringConfig, transform_for
from gtalign.steering.config import logged_steering

NAME = "gtalign-test"
STEERING = SteeringConfig(expected_words=TEST_WORDS, price_per_100_words=2.0)
Q = [{"role": "user", "content": "What is 2 + 2?"}]


def compact(question: str) -> list[dict[str, str]]:
    from gtalign.protocol import render_messages

    return render_messages(question, style="compact")


def start(tok, *, lm: ScriptedLM | None = None, **settings):
    lm = lm or ScriptedLM(tok)
    cfg = ServeSettings(model="unused", served_model_name=NAME, **settings)
    engine = Engine(
        Steerer(lm, tok, batch_size=cfg.max_batch_size),
        STEERING,
        name=NAME,
        max_queue=cfg.max_queue,
        max_batch_size=cfg.max_batch_size,
    )
    return engine, create_app(engine, cfg)


@pytest.fixture(scope="module")
def server(tok):
    engine, app = start(tok, max_tokens_limit=512, max_request_bytes=8192)
    with running_server(app) as url:
        yield url
    engine.close()


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def paced_client(tok):
    """A server whose model takes 20 ms a forward: the stream coalesces what the worker wrote since the event loop
    last looked, so only a model slower than the loop shows that deltas really arrive one after another (with
    the instant scripted model a busy machine can finish the answer before the first look)."""
    engine, app = start(tok, lm=ScriptedLM(tok, delay_s=0.02))
    with running_server(app) as url:
        yield openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
    engine.close()


# ---------------------------------------------------------------------------------------------------- the happy path
def test_models_and_health(client, server):
    assert [m.id for m in client.models.list()] == [NAME]
    health = httpx.get(server.removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok" and health["model"] == NAME


def test_pricing_changes_the_spliced_payoff_and_the_action(client):
    native = client.chat.completions.create(model=NAME, messages=compact("What is 2 + 2?"))
    api = client.chat.completions.create(model=NAME, messages=compact("What is 2 + 2?"), extra_body={"pricing": "api"})
    same = client.chat.completions.create(
        model=NAME, messages=compact("What is 2 + 2?"), extra_body={"pricing": "subscription"}
    )
    g_native, g_api = native.choices[0].message.gtalign, api.choices[0].message.gtalign
    assert native.choices[0].message.content == RESPONSES["CQ"] == same.choices[0].message.content
    assert api.choices[0].message.content == RESPONSES["DA"]
    assert g_native["payoff"] == CQ_MATRIX.to_dict() and not g_native["steered"]
    assert g_api["payoff"] == transform_for("api", STEERING)(CQ_MATRIX).to_dict()
    assert g_api["original_payoff"] == CQ_MATRIX.to_dict() and g_api["steered"]
    assert (g_native["chosen_cell"], g_native["action"], g_native["pricing"]) == ("DQ_CQ", "CQ", "subscription")
    assert (g_api["chosen_cell"], g_api["optimal_cell"], g_api["action"], g_api["pricing"]) == (
        "DQ_DA",
        "DQ_DA",
        "DA",
        "api",
    )
    assert api.choices[0].finish_reason == "stop" and api.usage.completion_tokens > 0


def test_full_return_gives_all_four_blocks(client):
    r = client.chat.completions.create(
        model=NAME, messages=compact("What is 2 + 2?"), extra_body={"pricing": "api", "return": "full"}
    )
    strict = check_strict(r.choices[0].message.content)
    assert strict.ok and strict.matrix == transform_for("api", STEERING)(CQ_MATRIX)


@pytest.mark.parametrize("mode", ["response", "full"])
@pytest.mark.parametrize("pricing", ["api", "subscription"])
def test_streaming_deltas_add_up_to_the_non_streaming_answer(paced_client, mode, pricing):
    client = paced_client
    extra = {"pricing": pricing, "return": mode}
    whole = client.chat.completions.create(model=NAME, messages=compact("What is 2 + 2?"), extra_body=extra)
    stream = client.chat.completions.create(
        model=NAME,
        messages=compact("What is 2 + 2?"),
        extra_body=extra,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # really streamed
    last = [c for c in chunks if c.choices][-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.choices[0].model_extra["gtalign"] == whole.choices[0].message.gtalign
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert chunks[0].choices[0].delta.role == "assistant"


def test_max_tokens_cut_is_reported_as_length(client):
    r = client.chat.completions.create(model=NAME, messages=Q, max_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5


def test_stop_strings_cut_the_content(client):
    r = client.chat.completions.create(model=NAME, messages=compact("What is 2 + 2?"), stop=["sum"])
    assert r.choices[0].message.content == "Do you mean the" and r.choices[0].finish_reason == "stop"


def test_answer_text_without_response_block_falls_back_to_the_text():
    assert answer_text("no blocks here ", "response") == "no blocks here"
    assert answer_text("<response> partial answer", "response") == "partial answer"


# ------------------------------------------------------------------------------------------------ bad requests
def _status(call) -> tuple[int, dict]:
    with pytest.raises(openai.APIStatusError) as info:
        call()
    return info.value.status_code, info.value.body


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": Q, "temperature": "hot"}, "temperature"),
        ({"messages": Q, "n": 2}, "n"),
        ({"messages": Q, "max_tokens": 0}, "max_tokens"),
        ({"messages": Q, "extra_body": {"pricing": "free"}}, "pricing"),
    ],
)
def test_malformed_requests_get_400_with_an_openai_error_body(client, kwargs, param):
    status, body = _status(lambda: client.chat.completions.create(model=NAME, **kwargs))
    assert status == 400 and body["type"] == "invalid_request_error" and body["param"].startswith(param)


def test_missing_messages_and_bad_json(server):
    r = httpx.post(f"{server}/chat/completions", json={"model": NAME})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(f"{server}/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{server}/chat/completions", json=[1, 2])
    assert r.status_code == 400


def test_limits_on_max_tokens_body_size_and_model(client, server):
    status, body = _status(lambda: client.chat.completions.create(model=NAME, messages=Q, max_tokens=100_000))
    assert status == 400 and body["code"] == "max_tokens_exceeded" and body["param"] == "max_tokens"
    huge = [{"role": "user", "content": "x" * 10_000}]
    status, body = _status(lambda: client.chat.completions.create(model=NAME, messages=huge))
    assert status == 413 and body["code"] == "request_too_large"
    status, body = _status(lambda: client.chat.completions.create(model="gpt-9", messages=Q))
    assert status == 404 and body["code"] == "model_not_found"
    r = httpx.get(server.removesuffix("/v1") + "/nope")
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(f"{server}/chat/completions").status_code == 405


def test_prompt_plus_max_tokens_must_fit_the_context(tok):
    engine, app = start(tok, lm=ScriptedLM(tok, max_position_embeddings=128))
    with running_server(app) as url:
        c = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        status, body = _status(lambda: c.chat.completions.create(model=NAME, messages=compact("2 + 2?")))
        assert status == 400 and body["code"] == "context_length_exceeded"
    engine.close()


def test_api_key_is_required_when_set(tok, monkeypatch):
    monkeypatch.setenv("GTALIGN_TEST_KEY", "s3cret")
    engine, app = start(tok, api_key_env="GTALIGN_TEST_KEY")
    with running_server(app) as url:
        for key in ("wrong", ""):
            c = openai.OpenAI(base_url=url, api_key=key or "-", max_retries=0)
            with pytest.raises(openai.AuthenticationError) as info:
                c.chat.completions.create(model=NAME, messages=Q)
            assert info.value.body["code"] == "invalid_api_key"
            with pytest.raises(openai.AuthenticationError):
                c.models.list()
        assert httpx.post(f"{url}/chat/completions", json={"messages": Q}).status_code == 401
        ok = openai.OpenAI(base_url=url, api_key="s3cret", max_retries=0)
        assert ok.chat.completions.create(model=NAME, messages=Q).choices[0].message.content
        assert httpx.get(url.removesuffix("/v1") + "/health").status_code == 200  # probes need no key
    engine.close()


# ------------------------------------------------------------------------------------------- load and failures
def test_a_crashing_request_gets_500_and_the_server_keeps_serving(tok, client):
    engine, app = start(tok, max_batch_size=4)
    with running_server(app) as url:
        c = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        crash = [{"role": "user", "content": "CRASH please"}]
        with ThreadPoolExecutor(4) as pool:  # crash and good requests share batches
            futures = [pool.submit(c.chat.completions.create, model=NAME, messages=m) for m in [crash, Q, Q, crash]]
            results = []
            for f in futures:
                try:
                    results.append(f.result().choices[0].message.content)
                except openai.InternalServerError as e:
                    results.append(e.status_code)
        assert results[0] == 500 and results[3] == 500 and all(isinstance(r, str) for r in results[1:3])
        stream = c.chat.completions.create(model=NAME, messages=crash, stream=True)
        with pytest.raises(openai.APIError):
            list(stream)
        assert c.chat.completions.create(model=NAME, messages=Q).choices[0].message.content
    engine.close()


def test_a_full_queue_answers_429(tok):
    engine, app = start(tok, lm=ScriptedLM(tok, delay_s=0.01), max_queue=1, max_batch_size=1)
    with running_server(app) as url:
        with ThreadPoolExecutor(6) as pool:
            codes = list(
                pool.map(lambda _: httpx.post(f"{url}/chat/completions", json={"messages": Q}, timeout=60), range(6))
            )
        statuses = sorted(r.status_code for r in codes)
        assert statuses[0] == 200 and statuses[-1] == 429 and set(statuses) <= {200, 429}
        busy = next(r for r in codes if r.status_code == 429)
        assert busy.json()["error"]["code"] == "server_busy" and busy.headers["retry-after"] == "1"
        c = openai.OpenAI(base_url=url, api_key="x", max_retries=3)  # the client's retries ride it out
        assert c.chat.completions.create(model=NAME, messages=Q).choices[0].message.content
    engine.close()


def test_bounded_load_8_concurrent_clients(server, capsys):
    clients, per_client = 8, 4
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        c = openai.OpenAI(base_url=server, api_key="x", max_retries=0, timeout=60)
        for j in range(per_client):
            t0 = time.perf_counter()
            try:
                pricing = "api" if (k + j) % 2 else "subscription"
                r = c.chat.completions.create(
                    model=NAME, messages=compact(f"{k} + {j}?"), extra_body={"pricing": pricing}
                )
                expected = RESPONSES["DA"] if pricing == "api" else RESPONSES["CQ"]
                assert r.choices[0].message.content == expected
            except Exception as e:  # collected, asserted below
                with lock:
                    errors.append(repr(e))
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    start_t = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start_t
    assert not errors, errors[:3]
    q = statistics.quantiles(latencies, n=100)
    with capsys.disabled():
        print(
            f"\nload: {len(latencies)} requests, {clients} clients, {wall:.2f} s, {len(latencies) / wall:.1f} req/s; "
            f"latency p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms"
        )


# ------------------------------------------------------------------------------------------------ judge e2e
def test_the_openai_judge_runs_against_this_server(tok):
    """As a judge backend the server sends the judge's prompts verbatim (`prompt_style: none`): the GTAlign framing
    is for the assistant's own users."""
    from gtalign.reward.judges.base import JudgeRequest
    from gtalign.reward.judges.openai import OpenAIJudge, OpenAIJudgeConfig

    engine, app = start(tok, prompt_style="none")
    extra = {"single_turn_prompt": "What is 2 + 2?"}
    requests = [
        JudgeRequest("math-hard", "The answer is $\\boxed{4}$.", "4", extra),
        JudgeRequest("math-hard", "It is 5.", "4", extra),
        JudgeRequest("math-hard", "NOVERDICT", "4", extra),
    ]
    with running_server(app) as server:
        config = OpenAIJudgeConfig(
            base_url=server, model=NAME, max_tokens=256, cache_path=None, max_retries=0, raise_on_failure_rate=False
        )
        judge = OpenAIJudge(config)
        verdicts = judge.judge(requests)
    engine.close()
    assert [v.value for v in verdicts[:2]] == [1.0, 1.0]  # the scripted model always answers \boxed{1}
    assert verdicts[2].value is None and verdicts[2].error
    stats = judge.stats
    assert stats.http_calls == 3 and stats.failed == 1


# ------------------------------------------------------------------------------------------- registry resolution
@pytest.fixture()
def registered(tok, tmp_path):
    """A tiny checkpoint registered as `gtalign-assistant@challenger` with a steering section unlike params.yaml's."""
    from gtalign.modeling import TinyModelConfig, build_tiny_model
    from gtalign.registry import register

    folder = tmp_path / "hf"
    tok.save_pretrained(folder)
    build_tiny_model(
        tok,
        TinyModelConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1
        ),
    ).save_pretrained(folder)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged = SteeringConfig(expected_words=TEST_WORDS, price_per_100_words=30.0, analyze="solver")
    reg = register(tmp_path, folder, {"welfare_mean": 0.5}, tracking_uri=uri, steering=logged)
    return folder, uri, reg, logged


def test_resolve_model_reads_the_registered_pyfunc(registered, tmp_path):
    """A registered `gtalign-assistant` version resolves, by alias, to its Hugging Face folder (downloaded once) and
    the steering it was registered with; a checkpoint folder resolves to itself, with no config."""
    folder, uri, reg, logged = registered
    resolved = resolve_model("models:/gtalign-assistant@challenger", root=tmp_path, tracking_uri=uri)
    assert (resolved.folder / "config.json").exists() and (resolved.folder / "model.safetensors").exists()
    config = json.loads((resolved.folder / "config.json").read_text())
    assert config == json.loads((folder / "config.json").read_text())
    assert resolved.source == f"models:/gtalign-assistant/{reg.version}"
    assert logged_steering(resolved.config) == logged.model_copy(update={"eval": SteeringConfig().eval})
    assert resolved.config["prompt_style"] == "compact"
    again = resolve_model(f"models:/gtalign-assistant/{reg.version}", root=tmp_path, tracking_uri=uri)
    assert again == resolved  # cached under artifacts/served_models/<name>/<version>
    plain = resolve_model(folder)
    assert plain.folder == folder and plain.config == {} and logged_steering(plain.config) is None
    with pytest.raises(FileNotFoundError):
        resolve_model(tmp_path / "missing")


@pytest.mark.parametrize("steering_from", ["model", "params"])
def test_a_registered_model_is_served_with_its_own_steering(registered, tmp_path, steering_from):
    """`gtalign serve models:/...` steers with the settings the version was registered with (price 30, the solver
    writing the analysis here), as its MLflow pyfunc does, unless `serve.steering_from: params`; /health says which."""
    from gtalign.serve import build_engine

    _, uri, reg, logged = registered
    settings = ServeSettings(model="models:/gtalign-assistant@challenger", steering_from=steering_from)
    engine = build_engine(settings.model, root=tmp_path, steering=STEERING, settings=settings, tracking_uri=uri)
    try:
        with running_server(create_app(engine, settings)) as url:
            health = httpx.get(url.removesuffix("/v1") + "/health", timeout=30).json()
    finally:
        engine.close()
    expected, source = (logged, reg.model_uri) if steering_from == "model" else (STEERING, "params")
    assert engine.steering.model_dump(exclude={"eval"}) == expected.model_dump(exclude={"eval"})
    assert health["steering"] == {
        "from": source,
        "native_pricing": "subscription",
        "transform": "cost",
        "price_per_100_words": expected.price_per_100_words,
        "analyze": expected.analyze,
    }


def test_params_yaml_serve_section_loads():
    from gtalign.config import load_typed_params
    from gtalign.serve import serve_settings

    s = serve_settings(load_typed_params(REPO_ROOT / "params.yaml").serve, port=0)
    assert s.host == "127.0.0.1" and s.port == 0 and s.max_tokens_limit >= s.default_max_tokens


def test_a_misspelt_serve_key_is_an_error_naming_section_and_key():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"params\.yaml serve") as err:
        ServeSettings.model_validate({"prot": 8000})
    assert "prot" in str(err.value) and "Extra inputs are not permitted" in str(err.value)


@pytest.mark.parametrize(("style", "framed"), [("compact", True), ("none", False)])
def test_a_bare_chat_gets_the_training_prompt_like_the_pyfunc(tok, style: str, framed: bool) -> None:
    """`serve.prompt_style`: a chat without a system turn is wrapped in the prompt the policy learned (as the MLflow
    pyfunc does with registry.serving.prompt_style), so both servers see the same prompt; `none` sends it verbatim."""
    from gtalign.protocol import apply_prompt_style

    engine, app = start(tok, prompt_style=style)
    bare = [{"role": "user", "content": "What is 2 + 2?"}]
    with running_server(app) as url:
        r = httpx.post(f"{url}/chat/completions", json={"model": NAME, "messages": bare, "max_tokens": 8}, timeout=60)
    engine.close()
    assert r.status_code == 200, r.text
    sent = compact("What is 2 + 2?") if framed else bare
    assert r.json()["usage"]["prompt_tokens"] == len(engine.steerer.prompt_ids(sent))
    assert apply_prompt_style(bare, style) == sent
