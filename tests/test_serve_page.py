"""The page `gtalign serve` serves at `/`: one question under both pricings, each with its payoff matrix.

Fast tests run the app in process over `ScriptedLM` (tests/steering_support.py). The slow test starts a real
`gtalign serve` process over a tiny Qwen2 model memorised on one question (so it writes a readable matrix), drives
the page in headless Chromium over the DevTools protocol (tests/cdp.py) as a person would, and checks that what the
page shows is what the API answers for the same question and pricing: the six payoffs, the frontier (checked with
`gtalign.game.pareto_frontier`), the chosen cell, the welfare optimum and the response text.
"""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from conftest import BIN, project_env
from steering_support import CQ_MATRIX, RESPONSES, ScriptedLM, running_server

from gtalign.game import ACTIONS, USER_TYPES, PayoffMatrix, pareto_frontier
from gtalign.serve import Engine, ServeSettings, create_app
from gtalign.steering import Pricing, Steerer, SteeringConfig, transform_for

QUESTION = "What is 2 + 2?"


def _app(tok: Any, **settings: Any) -> tuple[Engine, Any]:
    cfg = ServeSettings(model="unused", served_model_name="gtalign-test", **settings)
    engine = Engine(Steerer(ScriptedLM(tok), tok), SteeringConfig(), name="gtalign-test")
    return engine, create_app(engine, cfg)


# ------------------------------------------------------------------------------------------------------ fast
def test_the_page_is_served_as_html_and_asks_every_pricing_the_api_accepts(tok):
    engine, app = _app(tok, api_key_env="")
    with running_server(app) as url:
        r = httpx.get(url.removesuffix("/v1") + "/")
    engine.close()
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>GTAlign: the game behind the answer</title>" in r.text
    assert re.findall(r'data-pricing="(\w+)"', r.text) == list(get_args(Pricing))  # one column per pricing
    assert not re.search(r"https?://|<script src|<link", r.text)  # no CDN, nothing fetched from elsewhere


def test_with_an_api_key_the_page_is_served_but_its_api_calls_need_the_key(tok, monkeypatch):
    monkeypatch.setenv("GTALIGN_PAGE_TEST_KEY", "s3cret")
    engine, app = _app(tok, api_key_env="GTALIGN_PAGE_TEST_KEY")
    body = {"messages": [{"role": "user", "content": QUESTION}], "pricing": "api", "temperature": 0}  # the page's
    with running_server(app) as url:
        page = httpx.get(url.removesuffix("/v1") + "/")
        without = httpx.post(f"{url}/chat/completions", json=body)
        wrong = httpx.post(f"{url}/chat/completions", json=body, headers={"Authorization": "Bearer nope"})
        with_key = httpx.post(f"{url}/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"})
    engine.close()
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for r in (without, wrong):
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert with_key.status_code == 200 and with_key.json()["choices"][0]["message"]["gtalign"]["pricing"] == "api"


# ------------------------------------------------------------------------------------------------------ slow
def _memorised_model(folder: Path, tok: Any) -> Path:
    """A tiny Qwen2 trained on CPU (seconds) to answer QUESTION with a four-block answer over CQ_MATRIX (DQ_CQ) and,
    after the API-priced matrix that `gtalign serve` splices in, to close it and go on with DQ_DA; saved as a Hugging
    Face folder. The API example learns from the matrix's closing `}}` on (the splice decoder has the model spell the
    close itself) and never the edited numbers, which would contradict the native answer."""
    import torch

    from gtalign.modeling import TinyModelConfig, build_tiny_model, chat_prompt
    from gtalign.protocol import apply_prompt_style, render_completion, render_payoff

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    def example(seq: list[int], learn_from: int) -> tuple[Any, Any]:
        x = torch.tensor([seq])
        y = x.clone()
        y[0, :learn_from] = -100
        return x, y

    edited = transform_for("api", SteeringConfig())(CQ_MATRIX)
    # the page sends the bare question; `gtalign serve` wraps it in the training prompt (serve.prompt_style: compact)
    prompt = ids(chat_prompt(tok, apply_prompt_style([{"role": "user", "content": QUESTION}], "compact")))
    native = prompt + ids(render_completion("Scripted.", CQ_MATRIX, "Chosen: DQ_CQ.", RESPONSES["CQ"]) + "<|im_end|>")
    api = prompt + ids(render_completion("Scripted.", edited, "Chosen: DQ_DA.", RESPONSES["DA"]) + "<|im_end|>")
    close = max(i for i in range(len(api)) if tok.decode(api[i:]).startswith("}}</payoff>"))
    model = build_tiny_model(
        tok,
        TinyModelConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
        ),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread, most of all on a busy machine
    try:
        worst = _train(model, opt, [example(native, len(prompt)), example(api, close)])
    finally:
        torch.set_num_threads(threads)
    assert worst < 0.05, f"the tiny model did not memorise its answers (largest token loss {worst:.3f})"
    assert render_payoff(edited) in tok.decode(api)
    tok.save_pretrained(folder)
    model.eval().save_pretrained(folder)
    return folder


def _train(model: Any, opt: Any, examples: list[tuple[Any, Any]]) -> float:
    """Train until every trained token's loss is small, and return the largest. The mean loss is not enough: the
    two answers part at one token (`Chosen: DQ_CQ` after the native matrix, `DQ_DA` after the edited one), which
    a mean over a hundred tokens hides even at 50/50, and greedy decoding then takes the wrong branch."""
    import torch
    import torch.nn.functional as F

    worst = float("inf")
    for _ in range(1000):
        losses = []
        for x, y in examples:
            logits = model(input_ids=x).logits[0, :-1]
            target = y[0, 1:]
            keep = target != -100
            losses.append(F.cross_entropy(logits[keep], target[keep], reduction="none"))
        per_token = torch.cat(losses)
        worst = per_token.max().item()
        if worst < 0.05:
            break
        opt.zero_grad()
        per_token.mean().backward()
        opt.step()
    return worst


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tok: Any) -> Any:
    """A real `gtalign serve` on 127.0.0.1 with an API key: (base URL, key)."""
    root = tmp_path_factory.mktemp("page-serve")  # no params.yaml: the serve and steering defaults
    model = _memorised_model(root / "model", tok)
    port, key = _free_port(), secrets.token_hex(8)
    env = project_env(root, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", GTALIGN_API_KEY=key)
    cmd = [str(BIN / "gtalign"), "serve", "--model", str(model), "--port", str(port), "--threads", "1"]
    log = (root / "serve.log").open("w+")
    proc = subprocess.Popen([*cmd, "--root", str(root)], cwd=root, env=env, stdout=log, stderr=log, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (root / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "gtalign serve did not come up in 120 s"
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        yield base, key
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


# Everything the page shows, per column, read from the DOM (the cells in the order they are laid out).
READ_PAGE = """JSON.stringify([...document.querySelectorAll('.column')].map(c => ({
  pricing: c.dataset.pricing, state: c.dataset.state, status: c.querySelector('.status').textContent,
  header: [...c.querySelectorAll('table.matrix tr')].map(tr => tr.firstElementChild.textContent),
  columns: [...c.querySelectorAll('table.matrix thead th')].map(th => th.textContent),
  cells: [...c.querySelectorAll('td[data-cell]')].map(td => ({
    cell: td.dataset.cell, llm: Number(td.dataset.llm), user: Number(td.dataset.user),
    text: td.querySelector('.llm').textContent + ' | ' + td.querySelector('.user').textContent,
    marks: td.querySelector('.marks').textContent, classes: [...td.classList]})),
  response: c.querySelector('.response') ? c.querySelector('.response').textContent : null})))"""
SETTLED = "[...document.querySelectorAll('.column')].every(c => ['done', 'error'].includes(c.dataset.state))"


def _read(page: Any) -> dict[str, dict[str, Any]]:
    import json

    page.wait_for(SETTLED, 120, "both columns answered")
    return {c["pricing"]: c for c in json.loads(page.evaluate(READ_PAGE))}


def _marked(column: dict[str, Any], cls: str) -> set[str]:
    return {c["cell"] for c in column["cells"] if cls in c["classes"]}


def _assert_shows(column: dict[str, Any], body: dict[str, Any]) -> None:
    """The column shows exactly what the API answered."""
    message = body["choices"][0]["message"]
    g = message["gtalign"]
    assert column["state"] == "done", column["status"]
    assert column["response"] == message["content"]
    assert column["header"] == ["", *USER_TYPES] and column["columns"] == ["", *ACTIONS]
    assert [c["cell"] for c in column["cells"]] == [f"{t}_{a}" for t in USER_TYPES for a in ACTIONS]
    for c in column["cells"]:
        p = g["payoff"][c["cell"]]
        assert (c["llm"], c["user"]) == (p["LLM"], p["user"])
        assert c["text"] == f"LLM {p['LLM']:.2f} | user {p['user']:.2f}"
    assert _marked(column, "frontier") == set(pareto_frontier(PayoffMatrix.from_dict(g["payoff"])))
    assert _marked(column, "chosen") == ({g["chosen_cell"]} if g["chosen_cell"] else set())
    assert _marked(column, "optimal") == ({g["optimal_cell"]} if g["optimal_cell"] else set())
    shows_optimum = {c["cell"] for c in column["cells"] if "welfare optimum" in c["marks"]}
    assert shows_optimum == ({g["optimal_cell"]} - {g["chosen_cell"]})


@pytest.mark.slow
def test_the_page_shows_both_pricings_as_the_api_answers_them(served):
    from cdp import headless_chromium

    base, key = served
    api, auth = {}, {"Authorization": f"Bearer {key}"}
    for pricing in get_args(Pricing):  # what the page asks, asked directly (greedy: the same answer)
        body = {"messages": [{"role": "user", "content": QUESTION}], "pricing": pricing, "temperature": 0}
        r = httpx.post(f"{base}/v1/chat/completions", json=body, headers=auth, timeout=120)
        assert r.status_code == 200, r.text
        api[pricing] = r.json()
    g_sub, g_api = (api[p]["choices"][0]["message"]["gtalign"] for p in ("subscription", "api"))
    # the memorised model writes a readable matrix, and API pricing edits it: the page has something to show
    assert g_sub["payoff"] == CQ_MATRIX.to_dict() and not g_sub["steered"]
    assert g_api["original_payoff"] == CQ_MATRIX.to_dict() and g_api["steered"]
    assert g_api["payoff"] == transform_for("api", SteeringConfig())(CQ_MATRIX).to_dict()
    assert (g_sub["chosen_cell"], g_sub["optimal_cell"], g_api["chosen_cell"], g_api["optimal_cell"]) == (
        "DQ_CQ",
        "DQ_CQ",
        "DQ_DA",
        "DQ_DA",
    )
    assert [api[p]["choices"][0]["message"]["content"] for p in ("subscription", "api")] == [
        RESPONSES["CQ"],
        RESPONSES["DA"],
    ]

    with headless_chromium() as page:
        page.navigate(f"{base}/")
        assert page.evaluate(SETTLED.replace("['done', 'error']", "['idle']"))
        page.type_into("#question", QUESTION)
        page.click("#submit")  # no key yet: both calls are refused and the page says why
        shown = _read(page)
        for column in shown.values():
            assert column["state"] == "error" and column["cells"] == []
            assert column["status"].startswith("error 401: invalid or missing API key")

        page.type_into("#api-key", key)  # kept in localStorage: a reload still has it
        page.navigate(f"{base}/")
        assert page.evaluate("document.getElementById('api-key').value") == key
        page.type_into("#question", QUESTION)
        page.click("#submit")
        shown = _read(page)
        assert set(shown) == set(api)
        for pricing, column in shown.items():
            _assert_shows(column, api[pricing])
        link = page.evaluate("location.href")  # the address bar became a shareable link to the question
        assert link == f"{base}/?{urllib.parse.urlencode({'q': QUESTION})}"

        page.navigate(link)  # opening the link asks the question on load
        assert page.evaluate("document.getElementById('question').value") == QUESTION
        shown = _read(page)
        for pricing, column in shown.items():
            _assert_shows(column, api[pricing])
