"""The `openai` SFT teacher: best of N answers by social welfare, from any OpenAI-compatible endpoint.

The paper's SFT data (paper.md §3, App. B.3) keeps, out of nine teacher answers per question, the one with the
highest social welfare. `best_of_n` does that for any served model (vLLM, SGLang, a hosted API):

1. N candidates per prompt, each its own request carrying `seed = config.seed + k`. Separate requests rather than
   the `n` field because not every server supports `n`, and because each candidate is then cached on its own: a
   rerun with a larger N asks only for the new ones.
2. Every candidate is scored by the welfare reward RL and evaluation use (`gtalign.reward.score_batch`, with the
   judge chosen in params.yaml), so "best" means what training will reward.
3. Only candidates that pass `gtalign.protocol.check_strict` compete: the SFT set teaches the strict four-block
   format, and the reward's tolerant reader would let a sloppy answer win. Among them the highest welfare wins;
   a tie goes to the lower seed, so the choice is deterministic.
4. A prompt with no eligible candidate is dropped and counted by reason: `no_reply` (every request failed),
   `no_strict_candidate` (replies came, none strictly valid), `no_scored_candidate` (valid ones, but the judge gave
   no verdict). Candidate-level problems are counted by kind too (`request:<kind>`, `strict_format`,
   `unscored:<kind>`), never dropped silently.
5. Resumable: every reply is cached in sqlite as it arrives (`gtalign.llm_client`), and each prompt's selection is
   journaled in the same file as soon as its chunk is scored, so an interrupted run loses nothing and a rerun costs
   no calls and no rescoring. A selection with a candidate that failed transiently (request error, judge error) is
   not journaled: the next run asks again for just the missing replies (the cache answers the rest).
6. A teacher that is down stops the run loudly: after each chunk, when the share of failed candidate requests so far
   exceeds `max_failure_rate`, `TeacherFailureRateExceeded` is raised carrying the partial result.

Use it from the pipeline with `demonstrations.teacher: openai` (params.yaml,
`gtalign.data.stages.demonstrations_stage`).
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gtalign.demonstrations import Ambiguity
from gtalign.llm_client import (
    CallCounts,
    ChatRequest,
    EndpointConfig,
    Outcome,
    SqliteReplyCache,
    cache_key,
    check_json_serialisable,
    fetch_replies,
    run_coroutine,
)
from gtalign.protocol import check_strict
from gtalign.reward.config import RewardConfig
from gtalign.reward.judges.base import Judge
from gtalign.reward.score import RewardInput, RewardResult, score_batch

log = logging.getLogger(__name__)

#: Cache tables in the teacher's sqlite file: raw candidate replies, and one selection per prompt.
REPLY_TABLE = "teacher_replies"
SELECTION_TABLE = "teacher_selections"
#: Bumped when selection rules or the journal record change, so old selections are never reused.
SELECTION_VERSION = 1

DROP_NO_REPLY = "no_reply"
DROP_NO_STRICT = "no_strict_candidate"
DROP_NO_SCORE = "no_scored_candidate"


class OpenAITeacherConfig(EndpointConfig):
    """The teacher's endpoint and sampling; maps 1:1 to `demonstrations.openai` in params.yaml.

    Defaults follow the paper's recipe (best of 9, sampled at temperature 1.0); `extra_body` is empty so a hosted API
    accepts the request (a local Qwen3 server may want `{"chat_template_kwargs": {"enable_thinking": false}}`, since
    a `<think>` block in the reply's content fails the strict format).
    """

    n: int = Field(9, ge=1, description="candidates per prompt (paper: 9); one request each")
    seed: int = Field(0, description="candidate k is requested with seed = seed + k")
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(8192, ge=1, description="None omits the field (for APIs that refuse it)")
    extra_body: dict[str, Any] = Field(default_factory=dict)
    concurrency: int = Field(16, ge=1, description="max requests in flight at once")
    timeout_s: float = Field(600.0, gt=0, description="per attempt; a long answer takes minutes on a busy server")
    cache_path: Path | None = Field(
        Path(".teacher-cache/teacher.sqlite"), description="replies and selections; None disables cache and resume"
    )
    chunk_prompts: int = Field(64, ge=1, description="prompts fetched, scored and journaled together")
    max_failure_rate: float = Field(
        0.05, ge=0, le=1, description="share of candidate requests that may fail before the run stops"
    )

    @field_validator("extra_body")
    @classmethod
    def _json_serialisable(cls, value: dict[str, Any]) -> dict[str, Any]:
        """extra_body is sent as JSON and hashed into the cache key, so it must serialise deterministically."""
        check_json_serialisable(value, "extra_body")
        return value


class DemonstrationsParams(BaseModel):
    """params.yaml `demonstrations:`: which teacher writes the SFT demonstrations, and how they are scored."""

    model_config = ConfigDict(extra="forbid")

    teacher: Literal["rule", "openai"] = Field(
        "rule", description="rule (offline, right by construction) | openai (best of N by welfare, `openai:`)"
    )
    judge: str = Field("rule", description="scores the openai teacher's candidates and the set's welfare")
    seed: int = Field(0, description="rule teacher only (as are analyze_rule and max_response_words)")
    splits: list[str] = Field(default_factory=lambda: ["train"])
    analyze_rule: str = Field("sum", description="the welfare rule the rule teacher's <analyze> applies")
    max_response_words: int = 120
    recipe: Literal["label", "game"] = Field(
        "label",
        description="rule teacher: label (one label-driven row per prompt) | game (neutral thinking, all actions, "
        "counterfactual pricing edits; gtalign.demonstrations_game)",
    )
    ambiguity: Ambiguity = Field(
        "label",
        description="recipe label: label (an ambiguous question -> VQ_CQ, a clear one -> DQ_DA: the hidden label "
        "decides) | hedge (every Ambig-QA question -> DQ_AQ: ask whether the common reading is meant, then answer "
        "it; the action the judge rates good under both labels, learnable from the prompt: params.yaml's default, "
        "with random SFT batches; README)",
    )
    counterfactual_share: float = Field(
        0.5, ge=0.0, le=0.5, description="recipe game: share of the set that is counterfactual (base rows majority)"
    )
    max_action_share: float = Field(
        0.5, gt=0.0, le=1.0, description="recipe game: the most any response action may be of the set (else an error)"
    )
    min_frontier: int = Field(
        2,
        ge=1,
        le=6,
        description="rule teacher: the fewest Pareto-frontier cells a matrix keeps (2: a trade-off in every "
        "demonstration; 1: also the one-cell frontiers its noise gives, which the model's own matrices have and the "
        "solver then analyses)",
    )
    steered: bool = Field(
        False,
        description="recipe label: each row whose optimum a steering cost edit moves (steering's cost modes at "
        "steering.eval.prices) is followed by its steered copy: the same prompt and thinking, the edited matrix, the "
        "solver's analysis and a response doing the new optimum (gtalign.demonstrations.demonstrate_steered)",
    )
    counterfactual_loss: Literal["completion", "analyze", "response"] = Field(
        "completion",
        description="where a counterfactual (recipe game) or steered (recipe label) row's loss starts: completion "
        "(it also learns to write the edited matrix) | analyze (the edited matrix is context, as steering splices "
        "it; SFT row key loss_from) | response (the analysis is context too, as the solver splices it)",
    )
    openai: OpenAITeacherConfig | None = Field(None, description="the served teacher (teacher: openai)")


class TeacherEvalParams(BaseModel):
    """params.yaml `teacher_eval:`: the rule teacher on a seeded sample of every test set."""

    model_config = ConfigDict(extra="forbid")

    per_source: int = Field(20, ge=1)
    seed: int = 0


@dataclass(frozen=True, slots=True)
class TeacherPrompt:
    """One curated row as the teacher needs it: the chat to answer and what the reward needs to score answers.

    `messages` are sent as they are (the same prompt the SFT row will hold); `extra_info` must be JSON-serialisable.
    """

    uid: str
    source: str
    ground_truth: str
    messages: Sequence[Mapping[str, str]]
    extra_info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One candidate's fate: its welfare (None when it got no reply or no verdict) and, if it cannot win, why."""

    seed: int
    welfare: float | None
    kind: str | None = None  # None: eligible; request:<kind> | strict_format | unscored:<kind>
    reason: str | None = None

    @property
    def request_failed(self) -> bool:
        return self.kind is not None and self.kind.startswith("request:")

    @property
    def transient(self) -> bool:
        """A failure that may not recur: asking again (request) or judging again (judge) could change the choice."""
        return self.request_failed or self.kind == "unscored:judge"


@dataclass(frozen=True, slots=True)
class Selection:
    """The outcome for one prompt: the kept text (None when dropped), its welfare and seed, or the drop reason."""

    index: int  # position in the prompts given to `best_of_n`
    uid: str
    text: str | None
    welfare: float | None
    seed: int | None
    reason: str | None
    candidates: tuple[Candidate, ...]
    resumed: bool = False

    @property
    def kept(self) -> bool:
        return self.text is not None


@dataclass(frozen=True, slots=True)
class TeacherStats:
    """What a teacher run did: prompts, candidates, network and cache, kept and dropped, and welfare."""

    prompts: int
    candidates: int  # candidate slots: prompts x n (resumed prompts included)
    resumed: int  # prompts whose selection came from the journal (no request, no scoring)
    requests: int  # candidate requests made this run (cache hits included)
    calls: int  # HTTP attempts, retries included
    cache_hits: int
    retries: int
    deduplicated: int
    cache_write_errors: int
    kept: int
    dropped: Mapping[str, int]
    failures: Mapping[str, int]  # candidate problems by kind
    welfare_kept_mean: float | None
    welfare_all_mean: float | None  # over every candidate that has a welfare (strictly invalid ones included)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def to_metrics(self, prefix: str = "teacher_") -> dict[str, float]:
        """Flat numbers for metrics files and MLflow (means absent when undefined)."""
        out: dict[str, float] = {
            f"{prefix}{name}": float(getattr(self, name))
            for name in (
                "prompts",
                "candidates",
                "resumed",
                "requests",
                "calls",
                "cache_hits",
                "retries",
                "deduplicated",
                "kept",
            )
        }
        out[f"{prefix}dropped"] = float(self.dropped_total)
        out.update({f"{prefix}dropped_{reason}": float(n) for reason, n in self.dropped.items()})
        out.update({f"{prefix}failures_{kind.replace(':', '_')}": float(n) for kind, n in self.failures.items()})
        if self.welfare_kept_mean is not None:
            out[f"{prefix}welfare_kept_mean"] = self.welfare_kept_mean
        if self.welfare_all_mean is not None:
            out[f"{prefix}welfare_all_mean"] = self.welfare_all_mean
        return out


@dataclass(frozen=True, slots=True)
class TeacherResult:
    """Selections in prompt order (all of them after a full run) and the run's stats."""

    selections: list[Selection]
    stats: TeacherStats

    @property
    def texts(self) -> list[str | None]:
        """The kept text per selection, None where the prompt was dropped."""
        return [s.text for s in self.selections]


class TeacherFailureRateExceeded(RuntimeError):
    """Too many candidate requests failed (the teacher is down or misconfigured); the partial result is attached."""

    def __init__(self, result: TeacherResult, failed: int, asked: int, threshold: float) -> None:
        self.result = result
        self.failed, self.asked, self.threshold = failed, asked, threshold
        kinds = Counter({k: n for k, n in result.stats.failures.items() if k.startswith("request:")})
        first = next((c.reason for s in result.selections for c in s.candidates if c.request_failed), None)
        super().__init__(
            f"openai teacher: {failed}/{asked} candidate requests failed ({failed / asked:.1%} > max_failure_rate "
            f"{threshold:.1%}); by kind: {dict(kinds)}; first: {first}. Finished selections are journaled: rerun "
            "to resume."
        )


# ---------------------------------------------------------------------------------------------------------------
# requests and keys
# ---------------------------------------------------------------------------------------------------------------
def candidate_body(config: OpenAITeacherConfig, messages: Sequence[Mapping[str, str]], k: int) -> dict[str, Any]:
    """The chat-completions request for candidate k of one prompt; `seed` makes each candidate its own request."""
    body: dict[str, Any] = {
        "model": config.model,
        "messages": [dict(m) for m in messages],
        "temperature": config.temperature,
        "top_p": config.top_p,
        "seed": config.seed + k,
    }
    if config.max_tokens is not None:
        body["max_tokens"] = config.max_tokens
    if config.extra_body:
        body["extra_body"] = config.extra_body
    return body


def _requests(config: OpenAITeacherConfig, prompt: TeacherPrompt) -> list[ChatRequest]:
    return [
        ChatRequest(candidate_body(config, prompt.messages, k), {"purpose": "sft_teacher"}, f"candidate@{k}")
        for k in range(config.n)
    ]


def _selection_key(
    prompt: TeacherPrompt, requests: Sequence[ChatRequest], reward: RewardConfig, judge_id: Mapping[str, Any]
) -> str:
    """Everything a selection depends on: the candidates' requests, what the reward sees, the reward and the judge."""
    body = {
        "candidates": [r.key for r in requests],
        "source": prompt.source,
        "ground_truth": prompt.ground_truth,
        "extra_info": dict(prompt.extra_info),
        "reward": reward.model_dump(mode="json"),
        "judge": dict(judge_id),
    }
    return cache_key(body, {"selection": SELECTION_VERSION})


def _record(sel: Selection) -> str:
    return json.dumps(
        {
            "uid": sel.uid,
            "text": sel.text,
            "welfare": sel.welfare,
            "seed": sel.seed,
            "reason": sel.reason,
            "candidates": [[c.seed, c.welfare, c.kind, c.reason] for c in sel.candidates],
        },
        ensure_ascii=False,
    )


def _from_record(raw: str, index: int, uid: str) -> Selection:
    rec = json.loads(raw)
    candidates = tuple(Candidate(seed, welfare, kind, reason) for seed, welfare, kind, reason in rec["candidates"])
    return Selection(index, uid, rec["text"], rec["welfare"], rec["seed"], rec["reason"], candidates, resumed=True)


# ---------------------------------------------------------------------------------------------------------------
# choosing
# ---------------------------------------------------------------------------------------------------------------
def _candidate(seed: int, text: str | None, outcome: Outcome, result: RewardResult | None) -> Candidate:
    if text is None or result is None:
        return Candidate(seed, None, f"request:{outcome.kind or 'unexpected'}", outcome.error)
    strict = check_strict(text)
    if not strict.ok:
        return Candidate(seed, result.score, "strict_format", strict.reason)
    if result.score is None:
        return Candidate(seed, None, f"unscored:{result.error_kind or 'unknown'}", result.error)
    return Candidate(seed, result.score, None, None)


def choose(index: int, uid: str, texts: Sequence[str | None], candidates: Sequence[Candidate]) -> Selection:
    """The highest-welfare eligible candidate (ties: lower seed), or the reason there is none."""
    eligible = [(c, t) for c, t in zip(candidates, texts, strict=True) if c.kind is None and c.welfare is not None]
    if eligible:
        best, text = max(eligible, key=lambda ct: (ct[0].welfare, -ct[0].seed))
        return Selection(index, uid, text, best.welfare, best.seed, None, tuple(candidates))
    kinds = [c.kind or "" for c in candidates]
    if all(k.startswith("request:") for k in kinds):
        reason = DROP_NO_REPLY
    elif any(k.startswith("unscored:") for k in kinds):
        reason = DROP_NO_SCORE  # strictly valid answers exist, but none could be scored
    else:
        reason = DROP_NO_STRICT
    return Selection(index, uid, None, None, None, reason, tuple(candidates))


def _run_chunk(
    items: Sequence[tuple[int, TeacherPrompt, list[ChatRequest]]],
    config: OpenAITeacherConfig,
    judge: Judge,
    reward: RewardConfig,
    counts: CallCounts,
    on_done: Callable[[int], None] | None,
) -> list[Selection]:
    """Fetch every candidate of a chunk of prompts at once (one concurrent batch), score them in one judge batch."""
    requests = [r for _, _, reqs in items for r in reqs]
    outcomes = run_coroutine(
        fetch_replies(config, requests, counts, table=REPLY_TABLE, name="openai teacher", on_done=on_done)
    )
    texts = [o.reply.strip() if o.reply is not None else None for o in outcomes]
    inputs: list[RewardInput] = []
    owners: list[int] = []  # position in `requests` of each scored candidate
    pos = 0
    for _, prompt, reqs in items:
        for _ in reqs:
            if texts[pos] is not None:
                inputs.append(RewardInput(texts[pos], prompt.source, prompt.ground_truth, prompt.extra_info))
                owners.append(pos)
            pos += 1
    results: list[RewardResult | None] = [None] * len(requests)
    for where, result in zip(owners, score_batch(inputs, judge, reward) if inputs else [], strict=True):
        results[where] = result
    selections: list[Selection] = []
    pos = 0
    for index, prompt, reqs in items:
        span = range(pos, pos + len(reqs))
        candidates = [_candidate(config.seed + k, texts[j], outcomes[j], results[j]) for k, j in enumerate(span)]
        selections.append(choose(index, prompt.uid, [texts[j] for j in span], candidates))
        pos += len(reqs)
    return selections


# ---------------------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------------------
@contextmanager
def _progress(show: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over candidate requests; yields the advance callback (thread-safe, as rich's bar is)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]openai teacher[/] candidates"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=False,
    ) as bar:
        task = bar.add_task("candidates", total=total)
        yield lambda k: bar.advance(task, k)


def _stats(selections: Sequence[Selection], prompts: int, n: int, counts: CallCounts) -> TeacherStats:
    candidates = [c for s in selections for c in s.candidates]
    kept = [s.welfare for s in selections if s.kept and s.welfare is not None]
    scored = [c.welfare for c in candidates if c.welfare is not None]
    return TeacherStats(
        prompts=prompts,
        candidates=prompts * n,
        resumed=sum(s.resumed for s in selections),
        requests=counts.requests,
        calls=counts.http_calls,
        cache_hits=counts.cache_hits,
        retries=counts.retries,
        deduplicated=counts.deduplicated,
        cache_write_errors=counts.cache_write_errors,
        kept=len(kept),
        dropped=dict(Counter(s.reason for s in selections if s.reason is not None)),
        failures=dict(Counter(c.kind for c in candidates if c.kind is not None)),
        welfare_kept_mean=statistics.fmean(kept) if kept else None,
        welfare_all_mean=statistics.fmean(scored) if scored else None,
    )


def best_of_n(
    prompts: Sequence[TeacherPrompt],
    config: OpenAITeacherConfig,
    judge: Judge,
    reward: RewardConfig | None = None,
    *,
    judge_config: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> TeacherResult:
    """Ask the teacher for `config.n` candidates per prompt and keep the best strictly valid one by welfare.

    `judge` and `reward` score the candidates (the same `score_batch` as RL and evaluation). `judge_config`
    identifies the judge's verdicts in the selection journal (pass its kind and options; default: its name), so a
    changed judge or reward re-selects instead of reusing stale choices. Prompts are handled in chunks of
    `config.chunk_prompts`; each chunk's selections are journaled before the next starts. Raises
    `TeacherFailureRateExceeded` (with the partial result) when too many requests fail; see the module docstring.
    """
    reward = reward or RewardConfig()
    judge_id = dict(judge_config) if judge_config is not None else {"name": judge.name}
    plans = [_requests(config, p) for p in prompts]
    keys = [_selection_key(p, reqs, reward, judge_id) for p, reqs in zip(prompts, plans, strict=True)]
    done: dict[int, Selection] = {}
    counts = CallCounts()
    journal = SqliteReplyCache(config.cache_path, SELECTION_TABLE) if config.cache_path is not None else None
    try:
        if journal is not None:
            found = journal.get_many(keys)
            for i, key in enumerate(keys):
                if key in found:
                    done[i] = _from_record(found[key], i, prompts[i].uid)
        todo = [i for i in range(len(prompts)) if i not in done]
        if done:
            log.info("openai teacher: %d/%d prompts resumed from %s", len(done), len(prompts), config.cache_path)
        asked = failed = 0  # candidate requests of this run, and those that failed
        with _progress(progress, len(todo) * config.n) as advance:
            for start in range(0, len(todo), config.chunk_prompts):
                chunk = [(i, prompts[i], plans[i]) for i in todo[start : start + config.chunk_prompts]]
                for sel in _run_chunk(chunk, config, judge, reward, counts, advance):
                    done[sel.index] = sel
                    asked += len(sel.candidates)
                    failed += sum(1 for c in sel.candidates if c.request_failed)
                    if journal is not None and not any(c.transient for c in sel.candidates):
                        about = {"uid": sel.uid, "source": prompts[sel.index].source}
                        journal.put(
                            keys[sel.index], _record(sel), config.model, f"selection@{SELECTION_VERSION}", about
                        )
                if asked and failed / asked > config.max_failure_rate:
                    partial = [done[i] for i in sorted(done)]
                    stats = _stats(partial, len(prompts), config.n, counts)
                    raise TeacherFailureRateExceeded(
                        TeacherResult(partial, stats), failed, asked, config.max_failure_rate
                    )
    finally:
        if journal is not None:
            journal.close()
    result = TeacherResult(
        [done[i] for i in range(len(prompts))], _stats(list(done.values()), len(prompts), config.n, counts)
    )
    _log_summary(result.stats)
    return result


def _log_summary(stats: TeacherStats) -> None:
    def mean(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    log.info(
        "openai teacher: kept %d/%d prompts (dropped %s); %d candidate requests, %d HTTP calls, %d cache hits, "
        "%d resumed; candidate problems %s; welfare kept %s vs all candidates %s",
        stats.kept,
        stats.prompts,
        dict(stats.dropped),
        stats.requests,
        stats.calls,
        stats.cache_hits,
        stats.resumed,
        dict(stats.failures),
        mean(stats.welfare_kept_mean),
        mean(stats.welfare_all_mean),
    )
