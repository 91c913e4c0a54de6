"""The registered assistant as an MLflow pyfunc, logged as *models from code* (`python_model=<this file>`).

MLflow copies this file into the model and executes it at load time, so nothing is pickled: the model is the
Hugging Face folder in `artifacts["hf_dir"]` plus this code (and the `gtalign` package, bundled as a code path by
`gtalign.registry`, so a fresh process or a serving container does not need the repo).

Input: a DataFrame (or a list of records) with one column `messages`, each row a chat — a list of
`{"role": ..., "content": ...}`. Output: a DataFrame, one row per chat:

- `return="full"` (default): `completion` (the raw four-block answer), `response` (the text of its `<response>`
  block, None when the block is missing), `format_ok` / `format_error` (the strict four-block check) and `pricing`
  (the pricing parameter, echoed).
- `return="response"`: only `response`.

Params: `max_new_tokens`, `temperature` (0 = greedy), `return`, and `pricing`, which this model accepts and echoes
but does not apply: it generates plainly. Pricing steering (the matrix edited at `</payoff>`, `gtalign.steering`) is
served by `gtalign serve` (a `pricing` field per request) and measured by `gtalign steer eval`, both of which load the
Hugging Face folder of a registered version (`gtalign.registry.resolve_model`).

`predict` deliberately has NO type hints: MLflow 3 derives the signature from hints and would discard the params
schema we log (ecosystem notes §4).
"""

from __future__ import annotations

import mlflow
import pandas as pd

from gtalign.modeling import generate, load_model
from gtalign.protocol import check_strict, extract_block, render_messages

RETURN_MODES = ("full", "response")
DEFAULT_PARAMS = {"max_new_tokens": 256, "temperature": 0.0, "return": "full", "pricing": ""}
FULL_COLUMNS = ("completion", "response", "format_ok", "format_error", "pricing")


def conversations(model_input) -> list[list[dict[str, str]]]:
    """Normalise what pyfunc may hand us into a list of chats.

    With the logged signature MLflow always passes a DataFrame with a `messages` column; the other shapes (a list of
    records, a list of chats, a list of plain strings as single user turns) make direct calls and tests convenient.
    """
    if isinstance(model_input, pd.DataFrame):
        if "messages" not in model_input.columns:
            raise ValueError(f"expected a 'messages' column, got columns {list(model_input.columns)}")
        rows = model_input["messages"].tolist()
    elif isinstance(model_input, dict) and "messages" in model_input:
        rows = [model_input["messages"]]
    elif isinstance(model_input, list | tuple):
        rows = [r["messages"] if isinstance(r, dict) and "messages" in r else r for r in model_input]
    else:
        raise ValueError(f"unsupported input type {type(model_input).__name__}; send a 'messages' column")
    chats: list[list[dict[str, str]]] = []
    for i, row in enumerate(rows):
        if isinstance(row, str):
            chats.append([{"role": "user", "content": row}])
            continue
        turns = list(row) if row is not None else []
        if not turns:
            raise ValueError(f"chat #{i} has no messages")
        chats.append([{"role": str(t["role"]), "content": str(t["content"])} for t in turns])
    return chats


def apply_prompt_style(chat: list[dict[str, str]], style: str) -> list[dict[str, str]]:
    """Wrap a bare chat in the prompt the policy was trained on, unless it already carries a system turn.

    The policy learned the four-block format under a specific system prompt and user-turn instruction
    (`curate.prompt_style`); a client that sends just "What is 2+2?" should get the same framing. A chat with its own
    system message is sent verbatim, as is everything when the style is "none".
    """
    if style == "none" or any(t["role"] == "system" for t in chat) or chat[-1]["role"] != "user":
        return chat
    rendered = render_messages(chat[-1]["content"], style=style)  # type: ignore[arg-type]
    return [rendered[0], *chat[:-1], rendered[1]]


class GTAlignAssistant(mlflow.pyfunc.PythonModel):
    """Chat messages in, the four-block answer (and its parsed `<response>`) out."""

    def load_context(self, context):
        self.model, self.tokenizer = load_model(context.artifacts["hf_dir"])
        config = dict(context.model_config or {})
        self.prompt_style = str(config.get("prompt_style", "none"))
        self.seed = int(config.get("seed", 0))
        self.batch_size = int(config.get("batch_size", 16))

    def predict(self, context, model_input, params=None):
        p = {**DEFAULT_PARAMS, **(params or {})}
        mode = str(p["return"])
        if mode not in RETURN_MODES:
            raise ValueError(f"return must be one of {RETURN_MODES}, got {mode!r}")
        pricing = "" if p["pricing"] is None else str(p["pricing"])
        chats = [apply_prompt_style(c, self.prompt_style) for c in conversations(model_input)]
        completions = generate(
            self.model,
            self.tokenizer,
            chats,
            max_new_tokens=int(p["max_new_tokens"]),
            temperature=float(p["temperature"]),
            batch_size=self.batch_size,
            seed=self.seed,
        )
        responses = [extract_block(c, "response") for c in completions]
        if mode == "response":
            return pd.DataFrame({"response": responses})
        strict = [check_strict(c) for c in completions]
        return pd.DataFrame(
            {
                "completion": completions,
                "response": responses,
                "format_ok": [s.ok for s in strict],
                "format_error": [s.reason for s in strict],
                "pricing": [pricing] * len(completions),
            }
        )


mlflow.models.set_model(GTAlignAssistant())
