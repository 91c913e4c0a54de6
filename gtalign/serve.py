"""An OpenAI-compatible HTTP server for the GTAlign assistant, with pricing steering chosen per request.

Run it with `gtalign serve --model models:/gtalign-assistant@champion` (or a checkpoint folder) and talk to it with
any OpenAI client::

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=os.environ.get("GTALIGN_API_KEY", "none"))
    r = client.chat.completions.create(model="gtalign-assistant", messages=[...], extra_body={"pricing": "api"})
    r.choices[0].message.content          # the <response> block ({"return": "full"} gives all four blocks)
    r.choices[0].message.gtalign          # {"payoff", "chosen_cell", "optimal_cell", "action", "pricing", ...}

Endpoints: `POST /v1/chat/completions` (non-streaming, and streaming as server-sent events in OpenAI's chunk format),
`GET /v1/models`, `GET /health`, and `GET /`: a page (gtalign/resources/web/index.html, no build step) that asks one
question under both pricing regimes and shows each payoff grid with the frontier and the chosen cell. A chat without
a system turn is wrapped in the training prompt (`serve.prompt_style`), as the MLflow pyfunc does.

Why it is built this way:

* **One deployment, both pricing regimes.** The policy writes its matrix for the regime it was trained under
  (`steering.native_pricing`); a request's `pricing` (`extra_body={"pricing": "api"}`) selects the edit that moves it
  to the asked regime (`gtalign.steering.transform_for`), spliced in at `</payoff>` with one prefill per answer.
  The request and the `gtalign` object are built by `gtalign.steering.answer`, the code the registered MLflow pyfunc
  runs too, so `mlflow models serve` and this server answer a chat and a pricing alike.
* **Model calls are blocking**, so they run in one worker thread that owns the model; requests wait in a bounded
  queue and are taken in micro-batches (up to `max_batch_size` requests of any lengths and pricing per forward).
  When the queue is full the server answers 429 at once instead of letting latency grow without bound.
* **Safe defaults.** Binds 127.0.0.1; an API key is required when the environment variable named by `api_key_env`
  is set (401 otherwise); `max_tokens` is bounded (400 above `max_tokens_limit`, and prompt + max_tokens must fit
  the model's context); bodies above `max_request_bytes` get 413; every error is an OpenAI-style body
  `{"error": {"message", "type", "param", "code"}}`. A request that crashes the model gets 500 alone: a failed batch
  is retried one request at a time so the others still complete, and the worker keeps running.
* **Streaming never retracts text.** In `response` mode only the `<response>` block is streamed, from after the
  payoff is settled; in `full` mode the text before `<payoff>` streams at once and the (possibly edited) payoff and
  the rest once the payoff is settled. Markers that may still be completing (`</response>`, a stop string, a
  partial UTF-8 character) are held back, so the concatenated deltas equal the non-streaming content.

Registered models: `gtalign.registry.resolve_model` turns `models:/NAME@ALIAS` (or `models:/NAME/VERSION`) into the
Hugging Face folder stored in the pyfunc's `hf_dir` artifact, downloaded once into a cache, and the `steering:` the
version was registered with, which the server applies (`serve.steering_from: model`; `params` keeps params.yaml's)
as `mlflow models serve` does; `GET /health` says which it uses.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations (`request: Request`, imported
# inside `create_app` to keep this module light) at definition time.
import asyncio
import contextlib
import hmac
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gtalign.protocol import apply_prompt_style
from gtalign.registry import resolve_model
from gtalign.steering import AnalyzeMode, Pricing, Steerer, SteeringConfig, SteerOutput, SteerRequest
from gtalign.steering.answer import answer_fields, load_steerer, steer_request
from gtalign.steering.config import logged_steering

log = logging.getLogger(__name__)

__all__ = [
    "Engine",
    "EngineBusy",
    "ServeSettings",
    "answer_text",
    "build_engine",
    "create_app",
    "run_server",
    "serve_settings",
]


# ---------------------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------------------
class ServeSettings(BaseModel):
    """params.yaml `serve:` (unknown keys are an error); the CLI overrides single keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="params.yaml serve")

    model: str = Field("models:/gtalign-assistant@champion", description="a models:/ URI or a checkpoint folder")
    served_model_name: str | None = Field(None, description="the `model` id clients send; default: derived")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key_env: str = Field("GTALIGN_API_KEY", description="env var holding the key; unset/empty = no auth")
    default_max_tokens: int = Field(320, ge=1)
    max_tokens_limit: int = Field(1024, ge=1)
    max_request_bytes: int = Field(1 << 20, ge=1024)
    max_messages: int = Field(64, ge=1)
    max_batch_size: int = Field(8, ge=1)
    max_queue: int = Field(32, ge=1, description="waiting requests beyond which the server answers 429")
    device: str | None = None
    log_level: str = "info"
    steering_from: Literal["model", "params"] = Field(
        "model",
        description="model: a registered model is served with the `steering:` it was registered with (what its "
        "MLflow pyfunc applies), a checkpoint folder or a version logged without one with params.yaml's; "
        "params: params.yaml `steering:` always",
    )
    prompt_style: str = Field(
        "compact",
        pattern="^(compact|full|none)$",
        description="wrap chats without a system turn in the prompt the policy was trained on (as the MLflow pyfunc "
        "does with registry.serving.prompt_style); none = send every chat verbatim",
    )


def serve_settings(settings: ServeSettings, **overrides: Any) -> ServeSettings:
    """params.yaml `serve:` with CLI overrides (None = keep params), validated again."""
    values = settings.model_dump()
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ServeSettings.model_validate(values)


# ---------------------------------------------------------------------------------------------------------------
# Engine: the model, one worker thread, a bounded queue
# ---------------------------------------------------------------------------------------------------------------
class EngineBusy(RuntimeError):
    """The request queue is full (the server answers 429)."""


@dataclass
class _Job:
    request: SteerRequest
    future: Future = field(default_factory=Future)
    cancelled: bool = False


class Engine:
    """Owns the model and runs queued requests in micro-batches on one worker thread (model calls block)."""

    def __init__(
        self,
        steerer: Steerer,
        steering: SteeringConfig,
        *,
        name: str,
        max_queue: int = 32,
        max_batch_size: int = 8,
        steering_source: str = "params",
    ) -> None:
        self.steerer = steerer
        self.steering = steering
        self.steering_source = steering_source  # where `steering` came from: params, or the registered model
        self.name = name
        self.max_batch_size = max_batch_size
        self.context_limit: int | None = getattr(
            getattr(steerer.model, "config", None), "max_position_embeddings", None
        )
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._running = 0
        self._thread = threading.Thread(target=self._work, name="gtalign-engine", daemon=True)
        self._thread.start()

    @property
    def tokenizer(self) -> Any:
        return self.steerer.tokenizer

    def stats(self) -> dict[str, int]:
        return {"queued": self._queue.qsize(), "running": self._running}

    def steering_summary(self) -> dict[str, Any]:
        """What the server steers with (in /health and the start-up line): where it came from and the keys that
        decide whether a pricing request moves an answer."""
        cfg = self.steering
        return {
            "from": self.steering_source,
            "native_pricing": cfg.native_pricing,
            "transform": cfg.transform,
            "price_per_100_words": cfg.price_per_100_words,
            "analyze": cfg.analyze,
        }

    def submit(self, request: SteerRequest) -> _Job:
        """Queue one request; raises `EngineBusy` when the queue is full."""
        job = _Job(request)
        user_stop = request.should_stop
        request.should_stop = lambda: job.cancelled or bool(user_stop and user_stop())
        request.on_finish = lambda out: _resolve(job.future, out)  # answered when its row ends, not its batch
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise EngineBusy(f"{self._queue.maxsize} requests are already waiting") from None
        return job

    def close(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < self.max_batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # let the loop end after this batch
                    break
                jobs.append(nxt)
            jobs = [j for j in jobs if not j.cancelled and j.future.set_running_or_notify_cancel()]
            if jobs:
                self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        self._running = len(jobs)
        try:
            outs = self.steerer.generate([j.request for j in jobs])
        except Exception:
            if len(jobs) == 1:
                log.exception("generation failed")
                jobs[0].future.set_exception(RuntimeError("generation failed"))
                return
            for job in jobs:  # isolate the failing request: the others must still complete
                if not job.future.done():  # rows that ended before the crash were answered already
                    self._run_alone(job)
        else:
            for job, out in zip(jobs, outs, strict=True):
                _resolve(job.future, out)
        finally:
            self._running = 0

    def _run_alone(self, job: _Job) -> None:
        try:
            _resolve(job.future, self.steerer.generate([job.request])[0])
        except Exception:
            log.exception("generation failed")
            job.future.set_exception(RuntimeError("generation failed"))


def _resolve(future: Future, out: SteerOutput) -> None:
    if not future.done():
        future.set_result(out)


def build_engine(
    model: str | Path,
    *,
    root: Path,
    steering: SteeringConfig,
    settings: ServeSettings,
    tracking_uri: str | None = None,
) -> Engine:
    """Resolve and load the model, wrap it in a `Steerer` and start the worker.

    `steering` is params.yaml's; a registered model is served with the steering it was registered with instead
    (`settings.steering_from: model`), so that this server and `mlflow models serve` answer a pricing alike."""
    resolved = resolve_model(model, root=root, tracking_uri=tracking_uri)
    logged = logged_steering(resolved.config) if settings.steering_from == "model" else None
    steering, source = (logged, resolved.source) if logged else (steering, "params")
    steerer = load_steerer(resolved.folder, steering, batch_size=settings.max_batch_size, device=settings.device)
    name = settings.served_model_name or _default_name(str(model))
    return Engine(
        steerer,
        steering,
        name=name,
        max_queue=settings.max_queue,
        max_batch_size=settings.max_batch_size,
        steering_source=source,
    )


def _default_name(model: str) -> str:
    if model.startswith("models:/"):
        return model[len("models:/") :].split("@", 1)[0].split("/", 1)[0]
    return Path(model).name or "gtalign"


# ---------------------------------------------------------------------------------------------------------------
# The request schema (OpenAI's chat completions, the fields this server acts on; other fields are ignored)
# ---------------------------------------------------------------------------------------------------------------
class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[_TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(BaseModel):
    """What a client may send. Unknown fields (vLLM's `top_k`, `chat_template_kwargs`, `user`...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    pricing: Pricing | None = None
    analyze: AnalyzeMode | None = None  # who writes <analyze>: the model or the exact solver (default: params)
    return_: Literal["response", "full"] = Field("response", alias="return")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop must be up to 4 non-empty strings")
        return value

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


# ---------------------------------------------------------------------------------------------------------------
# What the client sees
# ---------------------------------------------------------------------------------------------------------------
def _held_back(text: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of one of `markers` (it may still complete)."""
    best = 0
    for marker in markers:
        for n in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:n]):
                best = n
                break
    return best


def answer_text(text: str, mode: Literal["response", "full"], stops: Sequence[str] = ()) -> str:
    """The final content: the `<response>` block (or, without one, the whole text), or all four blocks."""
    return _visible(text, mode, stops, settled=True, final=True)


def _visible(text: str, mode: str, stops: Sequence[str], *, settled: bool, final: bool) -> str:
    """What may be shown of `text` so far; every earlier result is a prefix of every later one (see module doc)."""
    hold: list[str] = list(stops)
    if mode == "full":
        out = text
        if not settled and not final:
            cut = text.find("<payoff>")
            out = text[:cut] if cut >= 0 else text
            hold.append("<payoff>")
    else:
        if not settled and not final:
            return ""
        start = text.find("<response>")
        if start < 0:
            if not final:
                return ""
            out = text.strip()  # no response block: show everything rather than nothing
        else:
            out = text[start + len("<response>") :]
            end = out.find("</response>")
            if end >= 0:
                out, final = out[:end], True
            else:
                hold.append("</response>")
            out = out.lstrip()
    for stop in stops:
        at = out.find(stop)
        if at >= 0:
            out, final = out[:at], True
    if final:
        return out.rstrip() if mode == "response" else out
    out = out[: len(out) - _held_back(out, hold)].rstrip("\ufffd")
    return out.rstrip() if mode == "response" else out


def _error(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> Any:
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    headers = {"Retry-After": "1"} if status == 429 else None
    return JSONResponse(body, status_code=status, headers=headers)


class _RequestError(Exception):
    def __init__(self, status: int, message: str, type_: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.args_ = (status, message, type_, param, code)


# ---------------------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------------------
def create_app(engine: Engine, settings: ServeSettings) -> Any:
    """The FastAPI app over a running `Engine`. The API key is read from the environment here, once."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    api_key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
    app = FastAPI(title="gtalign", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Any:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Any:
        return _error(400, str(exc.errors()[:1]), "invalid_request_error")

    @app.exception_handler(_RequestError)
    async def request_error(_: Request, exc: _RequestError) -> Any:
        return _error(*exc.args_)

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> Any:
        log.exception("request failed")
        return _error(500, "internal error while handling the request", "server_error")

    def authorize(request: Request) -> None:
        if not api_key:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise _RequestError(401, "invalid or missing API key", "invalid_request_error", None, "invalid_api_key")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": engine.name, **engine.stats(), "steering": engine.steering_summary()}

    # The page at `/` (gtalign/resources/web/index.html) asks both pricings through the API above. It is static and
    # holds no secret, so it is served without a key; its API calls send the key the user types (401 without it).
    from importlib.resources import files

    from fastapi.responses import HTMLResponse

    page = (files("gtalign.resources") / "web" / "index.html").read_text(encoding="utf-8")

    @app.get("/")
    async def index() -> Any:
        return HTMLResponse(page)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        card = {"id": engine.name, "object": "model", "created": 0, "owned_by": "gtalign"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        authorize(request)
        body = await _read_body(request, settings.max_request_bytes)
        chat = _parse_chat(body, settings)
        if chat.model not in (None, engine.name):
            raise _RequestError(
                404,
                f"the model {chat.model!r} does not exist; this server serves {engine.name!r}",
                "invalid_request_error",
                "model",
                "model_not_found",
            )
        max_tokens = chat.max_completion_tokens or chat.max_tokens or settings.default_max_tokens
        if max_tokens > settings.max_tokens_limit:
            raise _RequestError(
                400,
                f"max_tokens {max_tokens} is above this server's limit {settings.max_tokens_limit}",
                "invalid_request_error",
                "max_tokens",
                "max_tokens_exceeded",
            )
        messages = apply_prompt_style(
            [{"role": m.role if m.role != "developer" else "system", "content": m.text()} for m in chat.messages],
            settings.prompt_style,
        )
        prompt_ids = await asyncio.to_thread(engine.steerer.prompt_ids, messages)
        if engine.context_limit and len(prompt_ids) + max_tokens > engine.context_limit:
            raise _RequestError(
                400,
                f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the model's context "
                f"of {engine.context_limit} tokens",
                "invalid_request_error",
                "messages",
                "context_length_exceeded",
            )
        pricing = chat.pricing or engine.steering.native_pricing
        steer = steer_request(
            messages,
            pricing,
            engine.steering,
            max_new_tokens=max_tokens,
            temperature=chat.temperature,
            top_p=chat.top_p,
            seed=chat.seed,
            prompt_ids=prompt_ids,
            analyze=chat.analyze,
        )
        created, cid = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"
        if not chat.stream:
            job = _submit(engine, steer)
            out = await _wait(job)
            return _completion_body(cid, created, engine, out, chat, pricing)
        updates = _Updates(asyncio.get_running_loop())
        steer.on_update = updates.push
        job = _submit(engine, steer)
        return StreamingResponse(
            _stream(cid, created, engine, job, updates, chat, pricing),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


async def _read_body(request: Any, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _RequestError(
            413, f"request body over {limit} bytes", "invalid_request_error", None, "request_too_large"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _RequestError(
                413, f"request body over {limit} bytes", "invalid_request_error", None, "request_too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_chat(body: bytes, settings: ServeSettings) -> ChatRequest:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise _RequestError(400, f"request body is not valid JSON: {e}", "invalid_request_error") from None
    if not isinstance(data, dict):
        raise _RequestError(400, "request body must be a JSON object", "invalid_request_error")
    extra = data.get("extra_body")  # a client that nested extra_body literally
    if isinstance(extra, dict):
        data = {**extra, **{k: v for k, v in data.items() if k != "extra_body"}}
    try:
        chat = ChatRequest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise _RequestError(400, f"{param}: {first.get('msg')}", "invalid_request_error", param) from None
    if len(chat.messages) > settings.max_messages:
        raise _RequestError(400, f"more than {settings.max_messages} messages", "invalid_request_error", "messages")
    return chat


def _submit(engine: Engine, steer: SteerRequest) -> _Job:
    try:
        return engine.submit(steer)
    except EngineBusy as e:
        raise _RequestError(429, f"server busy: {e}; retry later", "rate_limit_error", None, "server_busy") from None


async def _wait(job: _Job) -> SteerOutput:
    try:
        return await asyncio.wrap_future(job.future)
    except asyncio.CancelledError:
        job.cancelled = True
        raise
    except Exception:
        raise _RequestError(500, "generation failed for this request", "server_error") from None


def _usage(out: SteerOutput) -> dict[str, int]:
    return {
        "prompt_tokens": out.prompt_tokens,
        "completion_tokens": out.completion_tokens,
        "total_tokens": out.prompt_tokens + out.completion_tokens,
    }


def _finish_reason(out: SteerOutput, chat: ChatRequest) -> str:
    """ "stop" when the model ended or a stop string cut the content; "length" when max_tokens cut it."""
    if chat.stops and any(s in answer_text(out.text, chat.return_) for s in chat.stops):
        return "stop"
    return "length" if out.finish_reason == "length" else "stop"


def _completion_body(
    cid: str, created: int, engine: Engine, out: SteerOutput, chat: ChatRequest, pricing: str
) -> dict[str, Any]:
    content = answer_text(out.text, chat.return_, chat.stops)
    message = {
        "role": "assistant",
        "content": content,
        "gtalign": answer_fields(out, pricing, engine.steering),
    }
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": engine.name,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(out, chat)}],
        "usage": _usage(out),
    }


class _Updates:
    """The latest (ids, settled) of a streaming row, handed from the worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()
        self.latest: tuple[list[int], bool] = ([], False)

    def push(self, ids: list[int], settled: bool) -> None:
        self.latest = (ids, settled)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the client is gone
            self.loop.call_soon_threadsafe(self.event.set)


def _sse(data: Mapping[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


async def _stream(
    cid: str, created: int, engine: Engine, job: _Job, updates: _Updates, chat: ChatRequest, pricing: str
) -> AsyncIterator[bytes]:
    def chunk(delta: Mapping[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": dict(delta), "finish_reason": finish, **extra}
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": engine.name}
        return _sse({**body, "choices": [choice]})

    sent = ""
    decode = engine.tokenizer.decode
    try:
        yield chunk({"role": "assistant", "content": ""})
        future = asyncio.wrap_future(job.future)
        while not future.done():
            waiter = asyncio.ensure_future(updates.event.wait())
            await asyncio.wait({future, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            updates.event.clear()
            ids, settled = updates.latest
            shown = _visible(
                decode(ids, skip_special_tokens=True), chat.return_, chat.stops, settled=settled, final=False
            )
            if len(shown) > len(sent) and shown.startswith(sent):
                yield chunk({"content": shown[len(sent) :]})
                sent = shown
        try:
            out = future.result()
        except Exception:
            yield _sse(
                {
                    "error": {
                        "message": "generation failed for this request",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
            return
        final = answer_text(out.text, chat.return_, chat.stops)
        if final.startswith(sent) and len(final) > len(sent):
            yield chunk({"content": final[len(sent) :]})
        finish = _finish_reason(out, chat)
        yield chunk({}, finish, gtalign=answer_fields(out, pricing, engine.steering))
        if (chat.stream_options or {}).get("include_usage"):
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": engine.name}
            yield _sse({**body, "choices": [], "usage": _usage(out)})
        yield _sse("[DONE]")
    finally:
        if not job.future.done():
            job.cancelled = True  # the client went away: stop generating for it


# ---------------------------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------------------------
def run_server(engine: Engine, settings: ServeSettings) -> None:
    """Serve until interrupted (uvicorn; one process, the engine's worker thread does the model work)."""
    import uvicorn

    app = create_app(engine, settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level, timeout_keep_alive=30
    )
    try:
        uvicorn.Server(config).run()
    finally:
        engine.close()
