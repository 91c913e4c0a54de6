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

The transport (concurrency, timeouts, classified retries, the sqlite reply cache, counters) is `gtalign.llm_client`,
shared with the `openai` SFT teacher; this module keeps what is judge-specific: prompts, verdicts, the failure-rate
rule and the stats/provenance API.

The sampling defaults are the published ones (temperature 0.6, top_p 0.95, top_k 20 and thinking on via
`extra_body`, max_tokens 32768). A hosted API that rejects `top_k`/`chat_template_kwargs` needs `extra_body={}`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from gtalign.llm_client import (
    CACHE_SCHEMA,
    LOCAL_API_KEY,
    CallCounts,
    ChatRequest,
    EndpointConfig,
    SqliteReplyCache,
    cache_key,
    check_json_serialisable,
    fetch_replies,
    run_coroutine,
)
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

#: The judge's table in its cache file (the name predates `gtalign.llm_client`; kept so old caches still answer).
CACHE_TABLE = "judge_replies"

__all__ = [
    "CACHE_SCHEMA",
    "CACHE_TABLE",
    "LOCAL_API_KEY",
    "JudgeFailureRateExceeded",
    "OpenAIJudge",
    "OpenAIJudgeConfig",
    "OpenAIJudgeStats",
    "SqliteReplyCache",
    "request_cache_key",
]


def _published_extra_body() -> dict[str, Any]:
    return {"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}}


class OpenAIJudgeConfig(EndpointConfig):
    """Where the judge is served and how to call it; maps 1:1 to `reward.judge.openai` in params.yaml.

    The endpoint fields (base_url, model, api_key_env, concurrency, timeout_s, retries, backoff) are
    `gtalign.llm_client.EndpointConfig`'s; the rest is the judge's sampling and failure policy.
    """

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
        check_json_serialisable(value, "extra_body")
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


def request_cache_key(body: Mapping[str, Any], prompt: JudgePrompt) -> str:
    """The judge's cache key: the request body as sent plus the prompt's identity (id, version, text hash).

    Identical to the key before `gtalign.llm_client` existed, so existing judge caches keep answering.
    """
    return cache_key(body, _prompt_namespace(prompt))


def _prompt_namespace(prompt: JudgePrompt) -> dict[str, str]:
    return {"prompt": prompt.ref, "prompt_sha256": prompt.sha256}


class OpenAIJudge:
    """A `Judge` backed by an OpenAI-compatible chat-completions endpoint. See the module docstring for why."""

    name = "openai"

    def __init__(self, config: OpenAIJudgeConfig) -> None:
        self.config = config
        self._totals = CallCounts()
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
        verdicts, counts = run_coroutine(self._judge_batch(reqs))
        return self._finish(verdicts, counts)

    async def ajudge(self, requests: Sequence[JudgeRequest]) -> list[JudgeVerdict]:
        """`judge` for callers already inside an event loop."""
        reqs = list(requests)
        if not reqs:
            return []
        verdicts, counts = await self._judge_batch(reqs)
        return self._finish(verdicts, counts)

    # ------------------------------------------------------------------ internals
    def _finish(self, verdicts: list[JudgeVerdict], counts: CallCounts) -> list[JudgeVerdict]:
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

    async def _judge_batch(self, reqs: list[JudgeRequest]) -> tuple[list[JudgeVerdict], CallCounts]:
        counts = CallCounts()
        verdicts: list[JudgeVerdict | None] = [None] * len(reqs)
        asked: list[int] = []  # indices of the requests that render, in order
        chat: list[ChatRequest] = []
        for i, req in enumerate(reqs):
            try:
                prompt = prompt_for_source(req.source)
                body = self._body(render_judge_prompt(req))
            except JudgeError as exc:
                verdicts[i] = JudgeVerdict(value=None, error=f"{exc.kind}: {exc}")
                counts.failures[exc.kind] += 1
                continue
            asked.append(i)
            chat.append(ChatRequest(body, _prompt_namespace(prompt), prompt.ref))
        counts.requests += len(reqs) - len(asked)  # fetch_replies counts the ones it is given
        outcomes = (
            await fetch_replies(self.config, chat, counts, table=CACHE_TABLE, name="openai judge") if chat else []
        )
        for i, outcome in zip(asked, outcomes, strict=True):
            if outcome.reply is None:
                verdicts[i] = JudgeVerdict(value=None, error=outcome.error)
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
