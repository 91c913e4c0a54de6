"""The registered assistant as an MLflow pyfunc, logged as *models from code* (`python_model=<this file>`).

MLflow copies this file into the model and executes it at load time, so nothing is pickled: the model is the
Hugging Face folder in `artifacts["hf_dir"]` plus this code (and the `gtalign` package, bundled as a code path by
`gtalign.registry`, so a fresh process or a serving container does not need the repo).

Input: a DataFrame (or a list of records) with one column `messages`, each row a chat — a list of
`{"role": ..., "content": ...}`. Output: a DataFrame, one row per chat:

- `return="full"` (default): `completion` (the raw four-block answer), `response` (the text of its `<response>`
  block, None when the block is missing), `format_ok` / `format_error` (the strict four-block check), and what
  `gtalign serve` returns as its `gtalign` object: `pricing` (the regime answered for), `payoff` and
  `original_payoff` (the matrix in the answer and the one the model wrote, as JSON strings, or None when no matrix
  could be read), `optimal_cell`, `chosen_cell`, `action`, `steered` and `steer_error` (its `error`).
- `return="response"`: only `response`.

Params: `max_new_tokens`, `temperature` (0 = greedy), `return`, `pricing` ("subscription" | "api"; empty = the
policy's native regime) and `analyze` ("model" | "solver"; empty = params.yaml `steering.analyze`), applied exactly
as `gtalign serve` applies them: the matrix is edited at `</payoff>` and spliced back before the model goes on, and
with `solver` the exact solver writes `<analyze>` there too (`gtalign.steering`). The request and the fields are
built by `gtalign.steering.answer`, the code the server runs, with the params.yaml `steering:` section the model was
registered with (its `model_config["steering"]`), so the two ways of serving give the same answer to a chat.
An unknown `pricing` or `return` raises `InvalidParam`, a ValueError that `mlflow models serve` answers with a 400
naming the allowed values.

`predict` deliberately has NO type hints: MLflow 3 derives the signature from hints and would discard the params
schema we log (ecosystem notes §4).
"""

from __future__ import annotations

import json

import mlflow
import mlflow.exceptions
import mlflow.protos.databricks_pb2
import pandas as pd

from gtalign.protocol import apply_prompt_style, check_strict, extract_block
from gtalign.steering.answer import answer_fields, load_steerer, request_analyze, request_pricing, steer_request
from gtalign.steering.config import SteeringConfig, logged_steering
from gtalign.steering.decoder import Steerer

RETURN_MODES = ("full", "response")
DEFAULT_PARAMS = {"max_new_tokens": 256, "temperature": 0.0, "return": "full", "pricing": "", "analyze": ""}
# `answer_fields` keys -> columns (`error` is renamed: next to `format_error` it is the steering/reading error)
FIELD_COLUMNS = {
    "pricing": "pricing",
    "payoff": "payoff",
    "original_payoff": "original_payoff",
    "optimal_cell": "optimal_cell",
    "chosen_cell": "chosen_cell",
    "action": "action",
    "steered": "steered",
    "analyze": "analyze",
    "solver_analyze": "solver_analyze",
    "error": "steer_error",
}
FULL_COLUMNS = ("completion", "response", "format_ok", "format_error", *FIELD_COLUMNS.values())
MATRIX_COLUMNS = ("payoff", "original_payoff")  # dicts, sent as JSON strings (a flat, typed column per field)


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


class InvalidParam(mlflow.exceptions.MlflowException, ValueError):
    """A bad `pricing` or `return` param: a ValueError to Python callers, and to `mlflow models serve` an
    MlflowException, which it answers with a 400 and this message (any other error becomes a generic one)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=mlflow.protos.databricks_pb2.INVALID_PARAMETER_VALUE)


class GTAlignAssistant(mlflow.pyfunc.PythonModel):
    """Chat messages in, the four-block answer (steered to the asked pricing) and what it did out."""

    def load_context(self, context):
        config = dict(context.model_config or {})
        # params.yaml `steering:` as registered; a version registered before it was logged gets the defaults, which is
        # what params.yaml had then.
        steering = logged_steering(config) or SteeringConfig()
        self.bind(
            load_steerer(context.artifacts["hf_dir"], steering, batch_size=int(config.get("batch_size", 16))),
            steering,
            prompt_style=str(config.get("prompt_style", "none")),
            seed=int(config.get("seed", 0)),
        )

    def bind(self, steerer: Steerer, steering: SteeringConfig, *, prompt_style: str = "none", seed: int = 0) -> None:
        """Serve with `steerer` (what `load_context` does with the logged model; tests bind a scripted one)."""
        self.steerer, self.steering, self.prompt_style, self.seed = steerer, steering, prompt_style, seed

    def predict(self, context, model_input, params=None):
        p = {**DEFAULT_PARAMS, **(params or {})}
        mode = str(p["return"])
        if mode not in RETURN_MODES:
            raise InvalidParam(f"return must be one of {RETURN_MODES}, got {mode!r}")
        try:
            pricing = request_pricing("" if p["pricing"] is None else str(p["pricing"]), self.steering)
            analyze = request_analyze("" if p["analyze"] is None else str(p["analyze"]), self.steering)
        except ValueError as e:
            raise InvalidParam(str(e)) from None
        chats = [apply_prompt_style(c, self.prompt_style) for c in conversations(model_input)]
        requests = [
            steer_request(
                chat,
                pricing,
                self.steering,
                max_new_tokens=int(p["max_new_tokens"]),
                temperature=float(p["temperature"]),
                seed=self.seed,
                analyze=analyze,
            )
            for chat in chats
        ]
        outs = self.steerer.generate(requests)
        responses = [extract_block(o.text, "response") for o in outs]
        if mode == "response":
            return pd.DataFrame({"response": responses})
        strict = [check_strict(o.text) for o in outs]
        fields = [answer_fields(o, pricing, self.steering) for o in outs]
        columns = {
            "completion": [o.text for o in outs],
            "response": responses,
            "format_ok": [s.ok for s in strict],
            "format_error": [s.reason for s in strict],
        }
        for key, column in FIELD_COLUMNS.items():
            values = [f[key] for f in fields]
            columns[column] = [_json(v) for v in values] if column in MATRIX_COLUMNS else values
        return pd.DataFrame(columns, columns=list(FULL_COLUMNS))


def _json(matrix):
    return None if matrix is None else json.dumps(matrix)


mlflow.models.set_model(GTAlignAssistant())
