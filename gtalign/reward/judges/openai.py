"""`openai` judge: asks any OpenAI-compatible endpoint (vLLM, SGLang, a hosted API) the published judge prompts.

Why it looks the way it does:
- The published code called the judge synchronously, one completion at a time, and turned every failure into a
  silent 0 reward. Judging is the slow step of RL and evaluation, and a silent 0 is indistinguishable from a wrong
  answer. So here requests run concurrently (bounded by a semaphore, so a judge server is not flooded), each call
  has a timeout and bounded retries on transient errors only, and every failure is a verdict with `value=None` and
  an `error` of the form `"<kind>: <reason>"`, counted by kind in `stats`.
- Replies are cached in sqlite, keyed by a hash of the full request (model, messages, every sampling parameter,
  prompt id, version and text hash), so re-running an evaluation or resuming a run costs no judge calls and gives
  the same verdicts; a changed prompt or sampling parameter is a different key. The raw reply text is stored, not
  the parsed verdict, so a fixed parser re-reads old replies without asking again.
- A batch whose failure rate exceeds `max_failure_rate` raises `JudgeFailureRateExceeded` AFTER all verdicts are
  computed; the exception carries them (`.verdicts`), so the caller can still write them before deciding to stop.
  That is the one deliberate exception to the `Judge` protocol's "must not raise": a judge that is down should stop
  a pipeline loudly, not train on failures. Set `raise_on_failure_rate=False` to only count.

The sampling defaults are the published ones (temperature 0.6, top_p 0.95, top_k 20 and thinking on via
`extra_body`, max_tokens 32768). A hosted API that rejects `top_k`/`chat_template_kwargs` needs `extra_body={}`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import sqlite3
import ssl
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gtalign.reward.judges.base import JudgeRequest, JudgeVerdict
from gtalign.reward.judges.prompts import (
    SOURCE_PROMPTS,
    JudgeError,
    JudgePrompt,
    get_prompt,
    parse_judge_reply,
    prompt_for_source,
    render_judge_prompt,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Bumped when the cache key or table layout changes, so old entries are never misread.
CACHE_SCHEMA = 1
#: Used when the API-key environment variable is unset: local vLLM/SGLang servers accept any key.
LOCAL_API_KEY = "EMPTY"


def _published_extra_body() -> dict[str, Any]:
    return {"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}}


class OpenAIJudgeConfig(BaseModel):
    """Where the judge is served and how to call it; maps 1:1 to `reward.judge.openai` in params.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="OpenAI-compatible base URL, e.g. http://localhost:30000/v1")
    model: str = Field(description="served model name; part of the cache key, so name the real model")
    api_key_env: str = Field("OPENAI_API_KEY", description=f"env var holding the key; unset -> {LOCAL_API_KEY!r}")
    concurrency: int = Field(8, ge=1, description="max requests in flight at once")
    timeout_s: float = Field(60.0, gt=0, description="per attempt, connect to last byte")
    max_retries: int = Field(3, ge=0, description="retries after the first attempt, on transient errors only")
    backoff_s: float = Field(2.0, ge=0, description="delay before retry k is backoff_s * 2**(k-1), capped")
    backoff_max_s: float = Field(30.0, ge=0, description="cap on one backoff delay (and on a 429's Retry-After)")
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int | None = Field(32768, ge=1, description="None omits the field (for APIs that refuse it)")
    extra_body: dict[str, Any] = Field(default_factory=_published_extra_body)
    cache_path: Path | None = Field(Path(".judge-cache/judge.sqlite"), description="None disables the cache")
    max_failure_rate: float = Field(0.05, ge=0, le=1, description="per judge() batch")
    raise_on_failure_rate: bool = True

    @field_validator("extra_body")
    @classmethod
    def _json_serialisable(cls, value: dict[str, Any]) -> dict[str, Any]:
        """extra_body is sent as JSON and hashed into the cache key, so it must serialise deterministically."""
        try:
            json.dumps(value, sort_keys=True)
        except TypeError as exc:
            raise ValueError(f"extra_body must be JSON-serialisable: {exc}") from exc
        return value


class JudgeFailureRateExceeded(RuntimeError):
    """Too many requests of one batch failed; the verdicts are still here, so callers can write them first."""

    def __init__(self, verdicts: list[JudgeVerdict], failures: Mapping[str, int], threshold: float) -> None:
        self.verdicts = verdicts
        self.failures = dict(failures)
        self.threshold = threshold
        failed = sum(self.failures.values())
        self.rate = failed / len(verdicts) if verdicts else 0.0
        by_kind = ", ".join(f"{kind}={n}" for kind, n in sorted(self.failures.items()))
        super().__init__(
            f"openai judge: {failed}/{len(verdicts)} requests failed ({self.rate:.1%} > max_failure_rate "
            f"{threshold:.1%}); by reason: {by_kind}. Verdicts are on this exception's .verdicts; the first errors: "
            + "; ".join(v.error or "" for v in verdicts if not v.ok)[:600]
        )


@dataclass(frozen=True, slots=True)
class OpenAIJudgeStats:
    """Counters since the judge was made: what was asked, what the network and the cache did, what failed."""

    requests: int = 0
    http_calls: int = 0  # attempts sent, retries included
    cache_hits: int = 0
    deduplicated: int = 0  # identical requests in one batch answered by a single call
    retries: int = 0
    cache_write_errors: int = 0  # replies that were used but could not be stored (logged; not a verdict failure)
    failures: Mapping[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


@dataclass(slots=True)
class _Counts:
    """Mutable per-batch counters; merged into the judge's totals under a lock when the batch ends."""

    requests: int = 0
    http_calls: int = 0
    cache_hits: int = 0
    deduplicated: int = 0
    retries: int = 0
    cache_write_errors: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, other: _Counts) -> None:
        self.requests += other.requests
        self.http_calls += other.http_calls
        self.cache_hits += other.cache_hits
        self.deduplicated += other.deduplicated
        self.retries += other.retries
        self.cache_write_errors += other.cache_write_errors
        self.failures.update(other.failures)


class SqliteReplyCache:
    """Raw judge replies by request hash, in one sqlite file (WAL, so several processes can share it)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS judge_replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL, model TEXT, "
            "prompt TEXT, created_at REAL, request TEXT)"
        )
        self._db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):  # stay under sqlite's bound-variable limit
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, reply FROM judge_replies WHERE key IN ({marks})", chunk)
            found.update(dict(rows.fetchall()))
        return found

    def put(self, key: str, reply: str, model: str, prompt_ref: str, request: Mapping[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO judge_replies VALUES (?, ?, ?, ?, ?, ?)",
            (key, reply, model, prompt_ref, time.time(), json.dumps(request, ensure_ascii=False, sort_keys=True)),
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def request_cache_key(body: Mapping[str, Any], prompt: JudgePrompt) -> str:
    """sha256 over everything that can change a reply: the request body as sent plus the prompt's identity.

    The base URL is left out on purpose (a local server on another port is the same judge); the model name is in.
    """
    payload = {"schema": CACHE_SCHEMA, "prompt": prompt.ref, "prompt_sha256": prompt.sha256, "request": body}
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Outcome:
    reply: str | None
    kind: str | None = None
    reason: str | None = None


def _status_snippet(exc: openai.APIStatusError) -> str:
    """The server's own error message (OpenAI's `{"error": {"message": ...}}`), else the client's summary."""
    body = exc.body
    message = body.get("message") if isinstance(body, Mapping) else None
    if not isinstance(message, str):
        message = str(exc.message)
    return message.replace("\n", " ")[:200]


def _classify(exc: BaseException) -> tuple[str, str, bool, float | None]:
    """(kind, reason, retryable, retry_after_s) for one failed attempt.

    Transient: timeouts, connection errors, 429 and 5xx. Any other 4xx (bad key, unknown model, bad parameter)
    will fail the same way again, so it is not retried.
    """
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return "timeout", "no complete reply within timeout_s", True, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", f"{type(exc).__name__}: {exc}", True, None
    if isinstance(exc, openai.RateLimitError):
        retry_after: float | None = None
        try:
            retry_after = float(exc.response.headers.get("retry-after", ""))
        except ValueError:
            retry_after = None
        return "rate_limited", f"HTTP 429: {_status_snippet(exc)}", True, retry_after
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        kind = "server_error" if code >= 500 else "http_error"
        return kind, f"HTTP {code}: {_status_snippet(exc)}", code >= 500, None
    if isinstance(exc, openai.APIError):
        return "bad_response", f"{type(exc).__name__}: {exc}", False, None
    return "unexpected", f"{type(exc).__name__}: {exc}", False, None


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default TLS verification context, built once per process: building it (loading the CA bundle) costs
    about 0.1 s, which every batch would otherwise pay, since each batch needs a client on its own event loop."""
    return httpx.create_ssl_context()


def _run_coroutine(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` to completion from sync code: directly when this thread has no event loop (the usual case,
    including worker threads), else on a fresh thread, because `asyncio.run` refuses to nest inside a running loop
    (Jupyter, an async caller that forgot `ajudge`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="openai-judge") as pool:
        return pool.submit(asyncio.run, coro).result()


class OpenAIJudge:
    """A `Judge` backed by an OpenAI-compatible chat-completions endpoint. See the module docstring for why."""

    name = "openai"

    def __init__(self, config: OpenAIJudgeConfig) -> None:
        self.config = config
        self._totals = _Counts()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public
    @property
    def stats(self) -> OpenAIJudgeStats:
        """A snapshot of the counters summed over every batch this judge has run."""
        with self._lock:
            t = self._totals
            return OpenAIJudgeStats(
                requests=t.requests,
                http_calls=t.http_calls,
                cache_hits=t.cache_hits,
                deduplicated=t.deduplicated,
                retries=t.retries,
                cache_write_errors=t.cache_write_errors,
                failures=dict(t.failures),
            )

    def provenance(self) -> dict[str, Any]:
        """What to log next to verdicts (MLflow params): endpoint, model, sampling and prompt versions; no key."""
        return {
            "judge": self.name,
            **self.config.model_dump(mode="json", exclude={"api_key_env"}),
            "prompts": sorted({get_prompt(prompt_id).ref for prompt_id in set(SOURCE_PROMPTS.values())}),
        }

    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeVerdict]:
        """One verdict per request, in order. Sync; safe from any thread, with or without a running event loop.

        Raises `JudgeFailureRateExceeded` (carrying all verdicts) when the batch's failure rate is above
        `max_failure_rate` and `raise_on_failure_rate` is set; never raises for a single bad request.
        """
        reqs = list(requests)
        if not reqs:
            return []
        verdicts, counts = _run_coroutine(self._judge_batch(reqs))
        return self._finish(verdicts, counts)

    async def ajudge(self, requests: Sequence[JudgeRequest]) -> list[JudgeVerdict]:
        """`judge` for callers already inside an event loop."""
        reqs = list(requests)
        if not reqs:
            return []
        verdicts, counts = await self._judge_batch(reqs)
        return self._finish(verdicts, counts)

    # ------------------------------------------------------------------ internals
    def _finish(self, verdicts: list[JudgeVerdict], counts: _Counts) -> list[JudgeVerdict]:
        with self._lock:
            self._totals.add(counts)
        failed = sum(counts.failures.values())
        if failed:
            log.warning("openai judge: %d/%d failed: %s", failed, len(verdicts), dict(counts.failures))
        if self.config.raise_on_failure_rate and failed / len(verdicts) > self.config.max_failure_rate:
            raise JudgeFailureRateExceeded(verdicts, counts.failures, self.config.max_failure_rate)
        return verdicts

    def _body(self, prompt_text: str) -> dict[str, Any]:
        """The chat-completions request, shaped as the published code sent it (one user message)."""
        cfg = self.config
        body: dict[str, Any] = {
            "model": cfg.model,
            "messages": [{"role": "user", "content": prompt_text}],
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
        }
        if cfg.max_tokens is not None:
            body["max_tokens"] = cfg.max_tokens
        if cfg.extra_body:
            body["extra_body"] = cfg.extra_body
        return body

    async def _judge_batch(self, reqs: list[JudgeRequest]) -> tuple[list[JudgeVerdict], _Counts]:
        counts = _Counts(requests=len(reqs))
        verdicts: list[JudgeVerdict | None] = [None] * len(reqs)
        # request index -> cache key; key -> (body, prompt) for the distinct requests
        key_of: dict[int, str] = {}
        planned: dict[str, tuple[dict[str, Any], JudgePrompt]] = {}
        for i, req in enumerate(reqs):
            try:
                prompt = prompt_for_source(req.source)
                body = self._body(render_judge_prompt(req))
            except JudgeError as exc:
                verdicts[i] = JudgeVerdict(value=None, error=f"{exc.kind}: {exc}")
                counts.failures[exc.kind] += 1
                continue
            key = request_cache_key(body, prompt)
            key_of[i] = key
            planned.setdefault(key, (body, prompt))

        cache = SqliteReplyCache(self.config.cache_path) if self.config.cache_path is not None else None
        try:
            outcomes: dict[str, _Outcome] = {}
            if cache is not None:
                outcomes = {k: _Outcome(reply=r) for k, r in cache.get_many(planned).items()}
            counts.cache_hits = sum(1 for k in key_of.values() if k in outcomes)
            to_fetch = [k for k in planned if k not in outcomes]
            counts.deduplicated = sum(1 for k in key_of.values() if k not in outcomes) - len(to_fetch)
            if to_fetch:
                fetched = await self._fetch_all([(k, *planned[k]) for k in to_fetch], cache, counts)
                outcomes.update(fetched)
        finally:
            if cache is not None:
                cache.close()

        for i, key in key_of.items():
            outcome = outcomes[key]
            if outcome.reply is None:
                verdicts[i] = JudgeVerdict(value=None, error=f"{outcome.kind}: {outcome.reason}")
                counts.failures[outcome.kind or "unexpected"] += 1
                continue
            try:
                verdicts[i] = JudgeVerdict(value=parse_judge_reply(reqs[i].source, outcome.reply))
            except JudgeError as exc:
                verdicts[i] = JudgeVerdict(value=None, error=f"{exc.kind}: {exc}")
                counts.failures[exc.kind] += 1
        missing = [i for i, v in enumerate(verdicts) if v is None]
        if missing:  # a bug here, not a judge failure: never hand back misaligned verdicts
            raise RuntimeError(f"openai judge produced no verdict for requests {missing[:10]}")
        return [v for v in verdicts if v is not None], counts

    async def _fetch_all(
        self,
        jobs: list[tuple[str, dict[str, Any], JudgePrompt]],
        cache: SqliteReplyCache | None,
        counts: _Counts,
    ) -> dict[str, _Outcome]:
        cfg = self.config
        api_key = os.environ.get(cfg.api_key_env) or LOCAL_API_KEY
        semaphore = asyncio.Semaphore(cfg.concurrency)
        # The client's own retries are off: ours classify and count every attempt.
        async with openai.AsyncOpenAI(
            base_url=cfg.base_url,
            api_key=api_key,
            timeout=cfg.timeout_s,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=_ssl_context()),
        ) as client:

            async def one(key: str, body: dict[str, Any], prompt: JudgePrompt) -> tuple[str, _Outcome]:
                outcome = await self._fetch(client, semaphore, body, counts)
                if outcome.reply is not None and cache is not None:
                    try:
                        cache.put(key, outcome.reply, cfg.model, prompt.ref, body)
                    except sqlite3.Error as exc:  # a reply in hand is worth more than its cache entry
                        counts.cache_write_errors += 1
                        log.warning("openai judge: could not cache a reply in %s: %s", cfg.cache_path, exc)
                return key, outcome

            results = await asyncio.gather(*(one(k, b, p) for k, b, p in jobs))
        return dict(results)

    async def _fetch(
        self, client: openai.AsyncOpenAI, semaphore: asyncio.Semaphore, body: dict[str, Any], counts: _Counts
    ) -> _Outcome:
        """One request with retries; the semaphore is held only while a call is in flight, not while backing off."""
        cfg = self.config
        attempt = 0
        while True:
            async with semaphore:
                counts.http_calls += 1
                try:
                    async with asyncio.timeout(cfg.timeout_s):
                        completion = await client.chat.completions.create(**body)
                except Exception as exc:  # classified below; a single request must never raise
                    kind, reason, retryable, retry_after = _classify(exc)
                else:
                    return _reply_of(completion)
            if not retryable or attempt >= cfg.max_retries:
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                return _Outcome(reply=None, kind=kind, reason=reason + tries)
            attempt += 1
            counts.retries += 1
            delay = min(cfg.backoff_s * 2 ** (attempt - 1), cfg.backoff_max_s)
            if retry_after is not None:
                delay = min(max(delay, retry_after), cfg.backoff_max_s)
            log.debug("openai judge: %s (%s); retry %d in %.2fs", kind, reason, attempt, delay)
            await asyncio.sleep(delay)


def _reply_of(completion: Any) -> _Outcome:
    """The reply text, as the published code read it (`choices[0].message.content`); reasoning fields are ignored."""
    choices = getattr(completion, "choices", None)
    if not choices:
        return _Outcome(reply=None, kind="bad_response", reason="the completion has no choices")
    content = choices[0].message.content
    if content is None:
        finish = getattr(choices[0], "finish_reason", None)
        return _Outcome(
            reply=None,
            kind="bad_response",
            reason=f"the reply has no content (finish_reason={finish!r}; a thinking judge may have hit max_tokens)",
        )
    return _Outcome(reply=content)
