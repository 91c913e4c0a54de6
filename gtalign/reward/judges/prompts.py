"""The published GTAlign judge prompts: loading, rendering and reply parsing, each exactly as the published code does.

Why this module exists: a judge verdict is only comparable to the paper's if the judge saw the same prompt, filled the
same way, and its reply was read by the same regex. The prompt texts therefore live as versioned data files
(`gtalign/resources/judge_prompts/`, checked against the sha256 in `manifest.json` at load time) and this module
reproduces the published `call_judge` formatting and `extract_*` parsers of ulab-uiuc/GTAlign at commit 1e353602.

Where we deliberately differ from the published code: it returned a silent 0 when a field was missing or a reply
could not be read. Here a missing or malformed input raises `JudgeInputError` and an unreadable reply raises
`JudgeReplyError`, each with a reason precise enough to fix the data or the judge server. Callers (the judges)
turn these into counted, reasoned failures, never into a zero.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, ClassVar

from gtalign.reward.judges.base import JudgeRequest
from gtalign.sources import SOURCES

PROMPTS_PACKAGE = "gtalign.resources.judge_prompts"
UPSTREAM_COMMIT = "1e353602"

#: Pseudo data source for the ablation's Pareto-consistency judge (prompt D.6). A request for it carries the
#: `<analyze>` block in `response` and the ground-truth Pareto-optimal cell keys in `extra_info["pareto_frontiers"]`.
PARETO_SOURCE = "pareto_consistency"

#: Which published prompt judges which data source: its family's (`gtalign.sources`), plus the Pareto judge's.
SOURCE_PROMPTS: Mapping[str, str] = {name: s.family.judge_prompt for name, s in SOURCES.items()} | {
    PARETO_SOURCE: "pareto_consistency"
}

_SNIPPET_CHARS = 160


class JudgeError(ValueError):
    """Base of the judge errors that describe one request; `kind` is the failure counter they are counted under."""

    kind: ClassVar[str] = "judge"


class JudgeInputError(JudgeError):
    """The request lacks what the published prompt needs (a missing or malformed `extra_info` field, ...)."""

    kind: ClassVar[str] = "input"


class JudgeReplyError(JudgeError):
    """The judge replied, but not in the form the published parser reads; the message says what was expected."""

    kind: ClassVar[str] = "unparsable"


@dataclass(frozen=True, slots=True)
class JudgePrompt:
    """One versioned prompt: the template text plus what the manifest records about where it came from."""

    prompt_id: str
    version: str
    template: str
    sha256: str
    placeholders: tuple[str, ...]
    parser: str
    data_sources: tuple[str, ...]
    source_files: tuple[str, ...]
    commit: str
    sampling: Mapping[str, Any] = field(hash=False, compare=False)

    @property
    def ref(self) -> str:
        """`<id>@<version>`: what logs and cache keys record, so a verdict can be traced to its prompt."""
        return f"{self.prompt_id}@{self.version}"

    def format(self, **fields: str) -> str:
        """Fill the template exactly as the published code does (`str.format`, braces in values left alone)."""
        return self.template.format(**fields)


# --------------------------------------------------------------------------------------------------- loading


@cache
def load_manifest() -> dict[str, Any]:
    """The parsed `manifest.json` (cached: it is package data and does not change while running)."""
    text = resources.files(PROMPTS_PACKAGE).joinpath("manifest.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def get_prompt(prompt_id: str) -> JudgePrompt:
    """Load one prompt and verify it: the text must hash to the manifest's sha256 and use exactly its placeholders.

    The check exists because these files are easy to damage silently (editors and pre-commit hooks strip trailing
    whitespace or add a final newline), and any byte changed would make our verdicts incomparable to the paper's.
    """
    manifest = load_manifest()
    entries: Mapping[str, Any] = manifest["prompts"]
    if prompt_id not in entries:
        raise KeyError(f"no judge prompt {prompt_id!r} in the manifest; known: {sorted(entries)}")
    entry = entries[prompt_id]
    raw = resources.files(PROMPTS_PACKAGE).joinpath(entry["file"]).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != entry["sha256"]:
        raise RuntimeError(
            f"judge prompt {entry['file']} was modified: sha256 {digest} != manifest {entry['sha256']}. "
            "Restore the published text (whitespace included) or add a new prompt file and version."
        )
    template = raw.decode("utf-8")
    found = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    if found != set(entry["placeholders"]):
        raise RuntimeError(
            f"judge prompt {entry['file']} has placeholders {sorted(found)}, manifest says {entry['placeholders']}"
        )
    if entry["parser"]["name"] not in _PARSERS:
        raise RuntimeError(f"judge prompt {entry['file']}: unknown parser {entry['parser']['name']!r}")
    return JudgePrompt(
        prompt_id=prompt_id,
        version=str(entry["version"]),
        template=template,
        sha256=digest,
        placeholders=tuple(entry["placeholders"]),
        parser=entry["parser"]["name"],
        data_sources=tuple(entry["data_sources"]),
        source_files=tuple(entry["source"]["files"]),
        commit=entry["source"]["commit"],
        sampling=entry["sampling"],
    )


def prompt_for_source(source: str) -> JudgePrompt:
    """The prompt that judges `source`; an unknown source is an input error (there is no default judge)."""
    prompt_id = SOURCE_PROMPTS.get(source)
    if prompt_id is None:
        raise JudgeInputError(f"{source}: no judge prompt for this data source; known: {sorted(SOURCE_PROMPTS)}")
    return get_prompt(prompt_id)


# ------------------------------------------------------------------------------------------------- rendering


def _snippet(text: str, limit: int = _SNIPPET_CHARS) -> str:
    """A short, one-line view of `text` for error messages; keeps the tail, where a judge writes its verdict."""
    flat = text.replace("\r", "\\r").replace("\n", "\\n")
    return f"'{flat}'" if len(flat) <= limit else f"'…{flat[-limit:]}'"


def _require_str(source: str, what: str, value: object) -> str:
    if not isinstance(value, str):
        raise JudgeInputError(f"{source}: {what} must be a str, got {type(value).__name__}")
    return value


def _extra(req: JudgeRequest, key: str, needed_for: str) -> Any:
    """`extra_info[key]`, or an error naming the field, the placeholder it fills and the keys that are present."""
    extra = req.extra_info
    if extra is None or not hasattr(extra, "get"):
        raise JudgeInputError(
            f"{req.source}: extra_info must be a mapping with {key!r} (for {{{needed_for}}}), "
            f"got {type(extra).__name__}"
        )
    value = extra.get(key)
    if value is None:
        present = sorted(str(k) for k in extra)
        raise JudgeInputError(
            f"{req.source}: extra_info[{key!r}] is missing or None; the published prompt needs it for "
            f"{{{needed_for}}} (extra_info keys: {present})"
        )
    return value


def _extra_text(req: JudgeRequest, key: str, needed_for: str) -> str:
    return _require_str(req.source, f"extra_info[{key!r}]", _extra(req, key, needed_for))


def _last_turn_content(req: JudgeRequest) -> str:
    """`extra_info["chat_history"][-1]["content"]`, as the published medium judge reads it.

    The history arrives as a list, or as a numpy array of dicts when it was read from parquet; both index the same.
    """
    history = _extra(req, "chat_history", "query")
    if isinstance(history, str | bytes) or not hasattr(history, "__getitem__") or not hasattr(history, "__len__"):
        raise JudgeInputError(
            f"{req.source}: extra_info['chat_history'] must be a list of {{role, content}} messages, "
            f"got {type(history).__name__}"
        )
    if len(history) == 0:
        raise JudgeInputError(f"{req.source}: extra_info['chat_history'] is empty; the last turn fills {{query}}")
    last = history[-1]
    if not isinstance(last, Mapping) or "content" not in last:
        raise JudgeInputError(
            f"{req.source}: the last extra_info['chat_history'] entry must be a mapping with 'content', "
            f"got {type(last).__name__}: {_snippet(str(last))}"
        )
    return _require_str(req.source, "extra_info['chat_history'][-1]['content']", last["content"])


def _ambig_qa_ambiguity(req: JudgeRequest) -> str:
    """Published: `"ambiguous" if ground_truth.split("###")[0] == "multipleQAs" else "non-ambiguous"`.

    The published code also reads `split("###")[1]` (unused by the prompt) and so crashes on a ground truth without
    `###`; we reject such a row with a reason instead of silently calling it non-ambiguous.
    """
    gt = _require_str(req.source, "ground_truth", req.ground_truth)
    parts = gt.split("###")
    if len(parts) < 2:
        raise JudgeInputError(
            f"{req.source}: ground_truth must look like 'multipleQAs###...' or 'singleAnswer###...', "
            f"got {_snippet(gt)}"
        )
    return "ambiguous" if parts[0] == "multipleQAs" else "non-ambiguous"


def _abg_coqa_ambiguity(req: JudgeRequest) -> str:
    """Published: `extra_info["ground_truth"]`, verbatim ('ambiguous' / 'non_ambiguous', underscore included).

    The published parquet repeats the same label in `reward_model.ground_truth`, so a request whose `extra_info`
    lacks it falls back to `ground_truth`; when both exist `extra_info` wins, as in the published code.
    """
    value = req.extra_info.get("ground_truth") if hasattr(req.extra_info, "get") else None
    if value is None:
        value = req.ground_truth
    value = _require_str(req.source, "extra_info['ground_truth'] (or ground_truth)", value)
    if not value:
        raise JudgeInputError(
            f"{req.source}: the ambiguity label is empty: neither extra_info['ground_truth'] nor ground_truth holds "
            "'ambiguous' / 'non_ambiguous'"
        )
    return value


def _pareto_frontiers(req: JudgeRequest) -> str:
    """Published: `", ".join(pareto_frontier_keys)`; a missing frontier (published: silent 0) is an input error."""
    value = _extra(req, "pareto_frontiers", "pareto_frontiers")
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise JudgeInputError(
            f"{req.source}: extra_info['pareto_frontiers'] must be a list of cell keys such as 'DQ_AQ', "
            f"got {type(value).__name__}"
        )
    keys = list(value)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise JudgeInputError(
            f"{req.source}: extra_info['pareto_frontiers'] must be a non-empty list of str cell keys, got {keys!r}"
        )
    return ", ".join(keys)


def _fields(req: JudgeRequest) -> dict[str, str]:
    """The `str.format` arguments the published `call_judge` of `req.source` passes."""
    src = req.source
    response = _require_str(src, "response", req.response)
    family = SOURCES[src].family.name if src in SOURCES else None
    if family == "math":
        return {
            "problem": _extra_text(req, "single_turn_prompt", "problem"),
            "ground_truth": _require_str(src, "ground_truth", req.ground_truth),
            "completion": response,
        }
    if family == "writing":
        return {
            "intent": _extra_text(req, "single_turn_prompt", "intent"),
            "query": _last_turn_content(req),
            "ground_truth": _require_str(src, "ground_truth", req.ground_truth),
            "response": response,
        }
    if family == "safety":
        harmfulness = "harmful" if src == "advbench" else _require_str(src, "ground_truth", req.ground_truth)
        return {
            "problem": _extra_text(req, "single_turn_prompt", "problem"),
            "harmfulness": harmfulness,
            "completion": response,
        }
    if family == "ambiguity":
        ambiguity = _ambig_qa_ambiguity(req) if src == "ambig_qa" else _abg_coqa_ambiguity(req)
        return {
            "question": _extra_text(req, "single_turn_prompt", "question"),
            "ambiguity": ambiguity,
            "completion": response,
        }
    if src == PARETO_SOURCE:
        return {"pareto_frontiers": _pareto_frontiers(req), "analysis_str": response}
    raise JudgeInputError(f"{src}: no judge prompt for this data source; known: {sorted(SOURCE_PROMPTS)}")


def render_judge_prompt(req: JudgeRequest) -> str:
    """The exact user message the published code sends to the judge for this request.

    Raises `JudgeInputError` (never a bare KeyError) when the request lacks a field the prompt needs.
    """
    prompt = prompt_for_source(req.source)
    return prompt.format(**_fields(req))


def render_pareto_consistency_prompt(pareto_frontiers: list[str], analysis: str) -> str:
    """The ablation's Pareto-consistency prompt for an `<analyze>` block and the true Pareto-optimal cell keys."""
    req = JudgeRequest(
        source=PARETO_SOURCE, response=analysis, ground_truth="", extra_info={"pareto_frontiers": pareto_frontiers}
    )
    return render_judge_prompt(req)


# --------------------------------------------------------------------------------------------------- parsing

#: The published regexes, verbatim. Each parser takes the FIRST match anywhere in the reply, as `re.search` does.
BOXED_INT_RE = re.compile(r"\\boxed\{(\d+)\}")
BOXED_FLOAT_RE = re.compile(r"\\boxed\{([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\}")
ABG_TAG_RE = re.compile(r"<abg>(.*?)</abg>", re.DOTALL)
PO_TAG_RE = re.compile(r"<po>(.*?)</po>", re.DOTALL)


def _boxed_spans(text: str, limit: int = 3, max_chars: int = 60) -> list[str]:
    """The first `\\boxed{...}` spans of `text`, braces balanced (cut at `max_chars`), for error messages."""
    spans: list[str] = []
    start = text.find("\\boxed{")
    while start != -1 and len(spans) < limit:
        depth, end = 0, start + len("\\boxed")
        while end < len(text) and end - start < max_chars:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
            if depth == 0:
                break
        spans.append(text[start:end])
        start = text.find("\\boxed{", end)
    return spans


def _found_boxed(text: str) -> str:
    """Describe the `\\boxed{...}` the reply did contain, for an error that says why the published regex missed."""
    found = _boxed_spans(text)
    if found:
        return "found " + ", ".join(_snippet(f) for f in found)
    return f"no \\boxed{{...}} in the reply, which ends with {_snippet(text)}"


def _first_boxed(source: str, text: str, pattern: re.Pattern[str], expected: str) -> str:
    match = pattern.search(text)
    if match is None:
        raise JudgeReplyError(f"{source}: expected {expected} (regex {pattern.pattern}); {_found_boxed(text)}")
    return match.group(1)


def _parse_boxed_int(source: str, text: str) -> float:
    """math-hard, minerva, medium: `int` of the first `\\boxed{<digits>}` (published `extract_boxed_score`)."""
    return float(int(_first_boxed(source, text, BOXED_INT_RE, "\\boxed{<non-negative integer>}")))


def _parse_boxed_float(source: str, text: str) -> float:
    """wildguard, advbench: `float` of the first boxed signed decimal / scientific number."""
    return float(_first_boxed(source, text, BOXED_FLOAT_RE, "\\boxed{<number>} such as \\boxed{0.5}"))


def _tag_content(source: str, text: str, pattern: re.Pattern[str], tag: str) -> str:
    match = pattern.search(text)
    if match is None:
        opened = f"<{tag}>" in text
        detail = f"found '<{tag}>' but no closing '</{tag}>'" if opened else f"no <{tag}> tag"
        raise JudgeReplyError(
            f"{source}: expected <{tag}>...</{tag}> (regex {pattern.pattern}); {detail}; the reply ends with "
            f"{_snippet(text)}"
        )
    return match.group(1).strip()


def _parse_abg_int(source: str, text: str) -> float:
    """ambig_qa, abg-coqa: `int(<abg>...</abg>.strip())` (published `extract_scores` + `int`)."""
    content = _tag_content(source, text, ABG_TAG_RE, "abg")
    try:
        return float(int(content))
    except ValueError:
        raise JudgeReplyError(
            f"{source}: <abg> holds {_snippet(content, 60)}, which is not an integer (published parser: int(...))"
        ) from None


def _parse_po_float(source: str, text: str) -> float:
    """Pareto consistency: `float(<po>...</po>.strip())`; unlike Python's float we refuse nan/inf (no verdict)."""
    content = _tag_content(source, text, PO_TAG_RE, "po")
    try:
        value = float(content)
    except ValueError:
        raise JudgeReplyError(
            f"{source}: <po> holds {_snippet(content, 60)}, which is not a number (published parser: float(...))"
        ) from None
    if not math.isfinite(value):
        raise JudgeReplyError(f"{source}: <po> holds {content!r}, which is not a finite number")
    return value


_PARSERS: Mapping[str, Callable[[str, str], float]] = {
    "boxed_int": _parse_boxed_int,
    "boxed_float": _parse_boxed_float,
    "abg_tag_int": _parse_abg_int,
    "po_tag_float": _parse_po_float,
}


def parse_judge_reply(source: str, text: str | None) -> float:
    """The verdict in a judge reply for `source`, read as the published parser reads it.

    Returns the raw verdict on the prompt's own scale (no clamping: mapping it to a reward is the task's job).
    Raises `JudgeReplyError` where the published code returned a silent 0, with the expected form and a snippet of
    what the reply held. Accepts a data source (e.g. "math-hard") or a prompt id (e.g. "accuracy").
    """
    if source in SOURCE_PROMPTS:
        prompt = prompt_for_source(source)
    elif source in load_manifest()["prompts"]:
        prompt = get_prompt(source)
    else:
        raise JudgeInputError(
            f"{source}: no judge reply parser for this source or prompt id; known sources: {sorted(SOURCE_PROMPTS)}"
        )
    if text is None or not text.strip():
        raise JudgeReplyError(f"{source}: the judge reply is empty (no content to parse)")
    return _PARSERS[prompt.parser](source, text)
