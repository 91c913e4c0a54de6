"""Calling an OpenAI-compatible chat-completions endpoint (vLLM, SGLang, a hosted API) many times, safely and cheaply.

The `openai` judge (`gtalign.reward.judges.openai`) and the `openai` SFT teacher (`gtalign.teacher`) both need the
same thing: send a batch of request bodies, get one reply text or one reasoned failure per body, and never pay twice
for the same request. This module is that shared machinery; what to ask and how to read the replies stays with the
caller.

Why it looks the way it does:
- Requests run concurrently, bounded by a semaphore (a model server is not flooded); the semaphore is held only
  while a call is in flight, not while backing off.
- Every attempt has a timeout; only transient failures (timeouts, connection errors, 429, 5xx) are retried, with
  capped exponential backoff that honours a 429's Retry-After. Any other 4xx (bad key, unknown model, bad parameter)
  would fail the same way again. A request that still fails is an `Outcome` with `reply=None` and a `kind` and
  `reason`, never an exception and never an empty string, so the caller can count it instead of scoring it as 0.
- Replies are cached in sqlite, keyed by a hash of the full request body plus a caller-given namespace (for the
  judge: the prompt's id, version and text hash), so a rerun or a resumed run costs no calls and gets the same
  replies; any changed field is a different key. The raw reply text is stored, so a fixed parser re-reads old
  replies without asking again. Failures are not cached: the next run asks again.
- Identical requests in one batch are sent once.

Run a batch from sync code with `run_coroutine(fetch_replies(config, requests, counts, table=...))`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import re
import sqlite3
import ssl
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Bumped when the cache key or table layout changes, so old entries are never misread.
CACHE_SCHEMA = 1
#: Used when the API-key environment variable is unset: local vLLM/SGLang servers accept any key.
LOCAL_API_KEY = "EMPTY"


class EndpointConfig(BaseModel):
    """Where a model is served and how to call it. Callers subclass it with their sampling fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="OpenAI-compatible base URL, e.g. http://localhost:30000/v1")
    model: str = Field(description="served model name; part of the cache key, so name the real model")
    api_key_env: str = Field("OPENAI_API_KEY", description=f"env var holding the key; unset -> {LOCAL_API_KEY!r}")
    concurrency: int = Field(8, ge=1, description="max requests in flight at once")
    timeout_s: float = Field(60.0, gt=0, description="per attempt, connect to last byte")
    max_retries: int = Field(3, ge=0, description="retries after the first attempt, on transient errors only")
    backoff_s: float = Field(2.0, ge=0, description="delay before retry k is backoff_s * 2**(k-1), capped")
    backoff_max_s: float = Field(30.0, ge=0, description="cap on one backoff delay (and on a 429's Retry-After)")
    cache_path: Path | None = Field(None, description="sqlite reply cache; None disables the cache")


def check_json_serialisable(value: Mapping[str, Any], name: str = "extra_body") -> None:
    """Raise ValueError unless `value` serialises to JSON: it is sent as JSON and hashed into the cache key."""
    try:
        json.dumps(value, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"{name} must be JSON-serialisable: {exc}") from exc


@dataclass(slots=True)
class CallCounts:
    """Mutable counters of one batch (or a caller's running totals); `add` merges another batch in.

    `fetch_replies` fills `requests` (those it was given), `http_calls`, `cache_hits`, `deduplicated`, `retries` and
    `cache_write_errors`. It leaves `failures` to the caller, which alone knows what counts as a failure once a reply
    is read (an unparsable reply is one too), and counts each failed request once.
    """

    requests: int = 0
    http_calls: int = 0  # attempts sent, retries included
    cache_hits: int = 0
    deduplicated: int = 0  # identical requests in one batch answered by a single call
    retries: int = 0
    cache_write_errors: int = 0  # replies that were used but could not be stored (logged; not a failure)
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, other: CallCounts) -> None:
        self.requests += other.requests
        self.http_calls += other.http_calls
        self.cache_hits += other.cache_hits
        self.deduplicated += other.deduplicated
        self.retries += other.retries
        self.cache_write_errors += other.cache_write_errors
        self.failures.update(other.failures)


_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SqliteReplyCache:
    """Raw replies by request hash, in one table of one sqlite file (WAL, so several processes can share it).

    One file may hold several tables (the teacher keeps its replies and its per-prompt selections side by side).
    """

    def __init__(self, path: Path, table: str = "replies") -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"table must be a plain sqlite identifier, got {table!r}")
        self.table = table
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # `prompt` holds the caller's short label for what was asked (kept under its first name for old caches).
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, reply TEXT NOT NULL, model TEXT, "
            "prompt TEXT, created_at REAL, request TEXT)"
        )
        self._db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):  # stay under sqlite's bound-variable limit
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, reply FROM {self.table} WHERE key IN ({marks})", chunk)
            found.update(dict(rows.fetchall()))
        return found

    def put(self, key: str, reply: str, model: str, ref: str, request: Mapping[str, Any]) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?, ?, ?, ?, ?)",
            (key, reply, model, ref, time.time(), json.dumps(request, ensure_ascii=False, sort_keys=True)),
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def cache_key(body: Mapping[str, Any], namespace: Mapping[str, Any]) -> str:
    """sha256 over everything that can change a reply: the request body as sent plus the caller's `namespace`.

    The namespace holds what the body does not show (the judge: its prompt's id, version and text hash). The base
    URL is left out on purpose (a local server on another port is the same model); the model name is in the body.
    """
    if {"schema", "request"} & set(namespace):
        raise ValueError("namespace keys 'schema' and 'request' are reserved")
    payload = {"schema": CACHE_SCHEMA, **namespace, "request": body}
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat-completions request: the body as sent, and what else identifies its reply in the cache."""

    body: dict[str, Any]
    namespace: Mapping[str, Any] = field(default_factory=dict)
    ref: str = ""  # short label stored next to the cached reply (e.g. "accuracy@1"), for people reading the cache

    @property
    def key(self) -> str:
        return cache_key(self.body, self.namespace)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A reply text, or why there is none (`kind` is a short counter key, `reason` says what happened)."""

    reply: str | None
    kind: str | None = None
    reason: str | None = None

    @property
    def error(self) -> str | None:
        return None if self.reply is not None else f"{self.kind}: {self.reason}"


def _status_snippet(exc: openai.APIStatusError) -> str:
    """The server's own error message (OpenAI's `{"error": {"message": ...}}`), else the client's summary."""
    body = exc.body
    message = body.get("message") if isinstance(body, Mapping) else None
    if not isinstance(message, str):
        message = str(exc.message)
    return message.replace("\n", " ")[:200]


def classify_failure(exc: BaseException) -> tuple[str, str, bool, float | None]:
    """(kind, reason, retryable, retry_after_s) for one failed attempt.

    Transient: timeouts, connection errors, 429 and 5xx. Any other 4xx (bad key, unknown model, bad parameter)
    will fail the same way again, so it is not retried.
    """
    import openai  # local: the SDK takes ~0.4 s to import; every `gtalign` command would pay it at start-up

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
def ssl_context() -> ssl.SSLContext:
    """httpx's default TLS verification context, built once per process: building it (loading the CA bundle) costs
    about 0.1 s, which every batch would otherwise pay, since each batch needs a client on its own event loop."""
    return httpx.create_ssl_context()


def run_coroutine(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` to completion from sync code: directly when this thread has no event loop (the usual case,
    including worker threads), else on a fresh thread, because `asyncio.run` refuses to nest inside a running loop
    (Jupyter, an async caller that forgot the async API)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-client") as pool:
        return pool.submit(asyncio.run, coro).result()


def reply_of(completion: Any) -> Outcome:
    """The reply text, as the published code read it (`choices[0].message.content`); reasoning fields are ignored."""
    choices = getattr(completion, "choices", None)
    if not choices:
        return Outcome(reply=None, kind="bad_response", reason="the completion has no choices")
    content = choices[0].message.content
    if content is None:
        finish = getattr(choices[0], "finish_reason", None)
        return Outcome(
            reply=None,
            kind="bad_response",
            reason=f"the reply has no content (finish_reason={finish!r}; a thinking model may have hit max_tokens)",
        )
    return Outcome(reply=content)


async def fetch_replies(
    config: EndpointConfig,
    requests: Sequence[ChatRequest],
    counts: CallCounts,
    *,
    table: str = "replies",
    name: str = "llm client",
    on_done: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """One `Outcome` per request, in order: from the cache, else from the endpoint (deduplicated, with retries).

    Every reply fetched is stored as soon as it arrives, so an interrupted batch loses no paid-for reply. `table` is
    the cache table (callers sharing a file keep their own); `name` prefixes log lines; `on_done(k)` is called as k
    more requests are resolved (for progress bars). Counts go to `counts` (see `CallCounts`). Never raises for a
    request that fails.
    """
    keys = [r.key for r in requests]
    counts.requests += len(requests)
    planned: dict[str, ChatRequest] = {}
    for key, req in zip(keys, requests, strict=True):
        planned.setdefault(key, req)
    cache = SqliteReplyCache(config.cache_path, table) if config.cache_path is not None else None
    try:
        outcomes: dict[str, Outcome] = {}
        if cache is not None:
            outcomes = {k: Outcome(reply=r) for k, r in cache.get_many(planned).items()}
        counts.cache_hits += sum(1 for k in keys if k in outcomes)
        if on_done is not None and outcomes:
            on_done(sum(1 for k in keys if k in outcomes))
        to_fetch = [k for k in planned if k not in outcomes]
        counts.deduplicated += sum(1 for k in keys if k not in outcomes) - len(to_fetch)
        if to_fetch:
            multiplicity = Counter(keys)
            fetched = await _fetch_all(
                config, [(k, planned[k]) for k in to_fetch], cache, counts, name, on_done, multiplicity
            )
            outcomes.update(fetched)
    finally:
        if cache is not None:
            cache.close()
    return [outcomes[k] for k in keys]


async def _fetch_all(
    config: EndpointConfig,
    jobs: list[tuple[str, ChatRequest]],
    cache: SqliteReplyCache | None,
    counts: CallCounts,
    name: str,
    on_done: Callable[[int], None] | None,
    multiplicity: Mapping[str, int],
) -> dict[str, Outcome]:
    import openai  # local: the SDK takes ~0.4 s to import; every `gtalign` command would pay it at start-up

    api_key = os.environ.get(config.api_key_env) or LOCAL_API_KEY
    semaphore = asyncio.Semaphore(config.concurrency)
    # The client's own retries are off: ours classify and count every attempt.
    async with openai.AsyncOpenAI(
        base_url=config.base_url,
        api_key=api_key,
        timeout=config.timeout_s,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(verify=ssl_context()),
    ) as client:

        async def one(key: str, req: ChatRequest) -> tuple[str, Outcome]:
            outcome = await _fetch(config, client, semaphore, req.body, counts, name)
            if outcome.reply is not None and cache is not None:
                try:
                    cache.put(key, outcome.reply, config.model, req.ref, req.body)
                except sqlite3.Error as exc:  # a reply in hand is worth more than its cache entry
                    counts.cache_write_errors += 1
                    log.warning("%s: could not cache a reply in %s: %s", name, config.cache_path, exc)
            if on_done is not None:
                on_done(multiplicity[key])
            return key, outcome

        results = await asyncio.gather(*(one(k, r) for k, r in jobs))
    return dict(results)


async def _fetch(
    config: EndpointConfig,
    client: openai.AsyncOpenAI,
    semaphore: asyncio.Semaphore,
    body: dict[str, Any],
    counts: CallCounts,
    name: str,
) -> Outcome:
    """One request with retries; the semaphore is held only while a call is in flight, not while backing off."""
    attempt = 0
    while True:
        async with semaphore:
            counts.http_calls += 1
            try:
                async with asyncio.timeout(config.timeout_s):
                    completion = await client.chat.completions.create(**body)
            except Exception as exc:  # classified below; a single request must never raise
                kind, reason, retryable, retry_after = classify_failure(exc)
            else:
                return reply_of(completion)
        if not retryable or attempt >= config.max_retries:
            tries = f" (after {attempt + 1} attempts)" if attempt else ""
            return Outcome(reply=None, kind=kind, reason=reason + tries)
        attempt += 1
        counts.retries += 1
        delay = min(config.backoff_s * 2 ** (attempt - 1), config.backoff_max_s)
        if retry_after is not None:
            delay = min(max(delay, retry_after), config.backoff_max_s)
        log.debug("%s: %s (%s); retry %d in %.2fs", name, kind, reason, attempt, delay)
        await asyncio.sleep(delay)
