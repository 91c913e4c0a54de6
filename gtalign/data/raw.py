"""Raw data: fetch it with DVC, check it is there, and load the ten published parquet sets into one typed table.

`data/` is DVC-tracked and immutable (`data.dvc` pins its md5); everything derived from it goes under `artifacts/`.
The table keeps the published chat messages verbatim (as a JSON string, which round-trips through parquet exactly,
unlike a list of structs) and adds the fields every later stage needs without re-parsing: the latest user turn,
the ground truth, a per-source label, the reference answer and a stable row id.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gtalign.sources import SOURCES, sources_of_family


@dataclass(frozen=True)
class RawFile:
    """One published parquet file: where it lies under `data/`, its task (`data_source`) and published split."""

    relpath: str
    source: str
    split: str


RAW_FILES: tuple[RawFile, ...] = tuple(
    RawFile(relpath, name, split) for name, source in SOURCES.items() for split, relpath in source.files
)
MATH_SOURCES: frozenset[str] = frozenset(sources_of_family("math"))

# How the two ambiguity sets spell their labels; both map onto the registry's `ambiguous` / `unambiguous`.
AMBIG_QA_PREFIXES: Mapping[str, str] = {"multipleQAs": "ambiguous", "singleAnswer": "unambiguous"}
ABG_COQA_LABELS: Mapping[str, str] = {"ambiguous": "ambiguous", "non_ambiguous": "unambiguous"}

# Every published user message ends its instruction block with this sentence and then the user's latest turn.
# Cutting there (rather than at the last "Question:") is right for the rows whose own text contains "Question:"
# (2 wildguard rows, and every abg-coqa row, whose passage ends in "Question:\n<the question>").
TEMPLATE_END = "keep <analyze> focused.Question:"
QUESTION_MARKER = "Question:"

COLUMNS: tuple[str, ...] = (
    "uid",
    "source",
    "split",
    "conv_id",
    "unique_conv_id",
    "turn_id",
    "n_history_turns",
    "adversarial",
    "messages",
    "question",
    "ground_truth",
    "label",
    "answer",
    "extra_info",
    "single_turn_prompt",
    "reward_style",
)
#: The columns that are not strings, with their dtype; every other column is a (nullable) string.
NON_STRING_DTYPES: Mapping[str, str] = {"turn_id": "int64", "n_history_turns": "int64", "adversarial": "bool"}
STRING_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in NON_STRING_DTYPES)

PULL_HINT = "run `make data` (or `dvc pull` from the repository root)"


class RawDataMissingError(FileNotFoundError):
    """The DVC-tracked raw data is not in the workspace; the message says which file and what to run."""


class DataPullError(RuntimeError):
    """`dvc pull` failed; the message says why in one paragraph and what to run to fix it."""


def check_raw_data(root: Path) -> None:
    """Fail early, and readably, when `root` (the `data/` folder) lacks any of the ten published files.

    A missing file otherwise surfaces as a pyarrow error deep inside a pipeline step.
    """
    root = Path(root)
    missing = [f.relpath for f in RAW_FILES if not (root / f.relpath).is_file()]
    if missing:
        shown = ", ".join(str(root / m) for m in missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise RawDataMissingError(
            f"Raw data missing: {shown} ({len(missing)} of {len(RAW_FILES)} files). "
            f"The data is tracked by DVC (data.dvc); {PULL_HINT} to fetch it."
        )


def extract_question(user_content: str) -> str:
    """The latest user turn: the text after the instruction block's closing `Question:` marker."""
    cut = user_content.find(TEMPLATE_END)
    if cut >= 0:
        return user_content[cut + len(TEMPLATE_END) :].strip()
    cut = user_content.rfind(QUESTION_MARKER)
    return user_content[cut + len(QUESTION_MARKER) :].strip() if cut >= 0 else user_content.strip()


def label_for(source: str, ground_truth: str | None) -> str | None:
    """The row's class label, derived from the ground truth; None when the ground truth does not fit the source."""
    spec = SOURCES.get(source)
    if spec is None:
        return None
    if len(spec.labels) == 1:  # math answers, medium writing, advbench (every prompt is harmful)
        return next(iter(spec.labels))
    gt = (ground_truth or "").strip()
    if source == "ambig_qa":
        prefix, sep, _ = gt.partition("###")
        return AMBIG_QA_PREFIXES.get(prefix) if sep else None
    if source == "abg-coqa":
        return ABG_COQA_LABELS.get(gt)
    return gt if gt in spec.labels else None  # wildguard: the ground truth is the label


def answer_for(source: str, ground_truth: str | None) -> str | None:
    """The reference answer to score against: the math final answer, or ambig_qa's text after `###`."""
    if ground_truth is None:
        return None
    if source in MATH_SOURCES:
        return ground_truth.strip()
    if source == "ambig_qa" and "###" in ground_truth:
        return ground_truth.split("###", 1)[1].strip()
    return None


def _plain(value: Any) -> Any:
    """Numpy arrays and scalars (as pyarrow hands them out) to plain JSON-able Python values."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _messages_json(prompt: Sequence[Mapping[str, Any]]) -> str:
    """Messages as JSON with a fixed key order (role, content), so expectations and hashes see one spelling."""
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in prompt], ensure_ascii=False)


def _id_or_none(value: Any) -> str | None:
    """Conversation ids are int in some files, str or null in others: unify as str, keeping null."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(_plain(value))


def _rows_of(frame: pd.DataFrame, raw: RawFile) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rec in frame.to_dict("records"):
        prompt = _plain(rec["prompt"])
        extra = _plain(rec["extra_info"]) or {}
        reward = _plain(rec["reward_model"]) or {}
        gt = reward.get("ground_truth")
        user_turns = [m["content"] for m in prompt if m.get("role") == "user"]
        history = extra.get("chat_history")
        rows.append(
            {
                "source": raw.source,
                "split": raw.split,
                "conv_id": _id_or_none(rec.get("conv_id")),
                "unique_conv_id": _id_or_none(rec.get("unique_conv_id")),
                "turn_id": int(rec["turn_id"]),
                "n_history_turns": len(history) if history is not None else 0,
                "adversarial": bool(rec.get("adversarial", False)),
                "messages": _messages_json(prompt),
                "question": extract_question(user_turns[-1]) if user_turns else "",
                "ground_truth": gt,
                "label": label_for(raw.source, gt),
                "answer": answer_for(raw.source, gt),
                "extra_info": json.dumps(extra, ensure_ascii=False, sort_keys=True),
                "single_turn_prompt": extra.get("single_turn_prompt"),
                "reward_style": reward.get("style"),
            }
        )
    return rows


def _assign_uids(df: pd.DataFrame) -> pd.Series:
    """`<source>:<split>:<12 hex>` from the row's content, so ids survive re-ordering of the published files.

    Rows that are identical in every hashed field (exact duplicates) get `~1`, `~2`, ... in file order.
    """
    keys = df["source"] + "\x1f" + df["split"] + "\x1f" + df["conv_id"].fillna("") + "\x1f"
    keys = keys + df["turn_id"].astype(str) + "\x1f" + df["messages"] + "\x1f" + df["ground_truth"].fillna("")
    digests = keys.map(lambda k: hashlib.sha1(k.encode("utf-8")).hexdigest()[:12])
    base = df["source"] + ":" + df["split"] + ":" + digests
    occurrence = base.groupby(base).cumcount()
    return base.where(occurrence == 0, base + "~" + occurrence.astype(str))


def load_raw(root: Path) -> pd.DataFrame:
    """All ten published sets as one table (columns `COLUMNS`), in `RAW_FILES` order, with unique `uid`s."""
    root = Path(root)
    check_raw_data(root)
    rows: list[dict[str, Any]] = []
    for raw in RAW_FILES:
        rows.extend(_rows_of(pd.read_parquet(root / raw.relpath), raw))
    df = pd.DataFrame(rows)
    df["uid"] = _assign_uids(df)
    df = df[list(COLUMNS)]
    return df.astype({c: "string" for c in STRING_COLUMNS} | dict(NON_STRING_DTYPES))


def messages_of(messages_json: str) -> list[dict[str, str]]:
    """The chat messages of one row (the `messages` column is JSON)."""
    return json.loads(messages_json)


# ---------------------------------------------------------------------------------------------------------------
# dvc pull with one clear error


def _dvc_command() -> list[str]:
    """`python -m dvc` of this interpreter (DVC is a project dependency); else a `dvc` on PATH."""
    if importlib.util.find_spec("dvc") is not None:
        return [sys.executable, "-m", "dvc"]
    exe = shutil.which("dvc")
    if exe is None:
        raise DataPullError("DVC is not installed: `pip install -e .` (it brings dvc), then run `make data`.")
    return [exe]


def run_dvc(repo_root: Path, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    """`dvc <args>` in `repo_root`, in a subprocess (DVC's logging, config and locks stay out of this process)."""
    # DVC wraps its tables at the terminal width (COLUMNS): widen it so one remote stays on one line.
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "COLUMNS": "10000"}
    return subprocess.run(
        [*_dvc_command(), *args], cwd=repo_root, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _remotes(repo_root: Path) -> tuple[dict[str, str], str | None]:
    """Configured remotes (name -> url as DVC resolves it, i.e. absolute for local paths) and the default's name."""
    listed = run_dvc(repo_root, "remote", "list", timeout=60)
    remotes = {parts[0]: parts[1] for parts in map(str.split, listed.stdout.splitlines()) if len(parts) >= 2}
    default = run_dvc(repo_root, "remote", "default", timeout=60).stdout.strip()  # or "No default remote set"
    return remotes, default if default in remotes else None


def _diagnose(repo_root: Path, remote: str | None) -> str:
    """Why a pull failed, in words: no default remote, or a local remote directory that does not exist."""
    remotes, default = _remotes(repo_root)
    name = remote or default
    if name is None:
        return (
            "No DVC remote is configured (expected `gtalign` in .dvc/config). Add it: "
            "`dvc remote add -d gtalign <path-or-url-of-the-gtalign-dvc-store>`."
        )
    if name not in remotes:
        return f"DVC remote '{name}' is not configured; known remotes: {sorted(remotes) or 'none'}."
    url = remotes[name]
    if "://" not in url and not Path(url).is_dir():
        return (
            f"DVC remote '{name}' points to {url}, which does not exist. The default config expects the shared "
            f"store at ../shared/gtalign-data/dvc-store beside the repository; elsewhere point the remote at your "
            f"copy: `dvc remote modify --local {name} url /path/to/dvc-store`."
        )
    return f"DVC remote '{name}' ({url}) does not hold the files data.dvc asks for (or cannot be read)."


def pull_data(repo_root: Path, *, remote: str | None = None, timeout: float = 600.0) -> Path:
    """`dvc pull` the raw data into `<repo_root>/data` and check it; raise `DataPullError` with a fix on failure.

    Runs DVC in a subprocess so its logging, config and lock handling stay out of the caller's process.
    """
    repo_root = Path(repo_root).resolve()
    if not (repo_root / ".dvc").is_dir() or not (repo_root / "data.dvc").is_file():
        raise DataPullError(
            f"{repo_root} is not wired for DVC (needs .dvc/ and data.dvc): run `dvc init` and copy "
            "../shared/gtalign-data/data.dvc there (see README), then `make data`."
        )
    args = ["pull", "data.dvc"] + (["--remote", remote] if remote else [])
    done = run_dvc(repo_root, *args, timeout=timeout)
    if done.returncode != 0:
        said = " | ".join(line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip())[-800:]
        raise DataPullError(
            f"`dvc pull` failed in {repo_root} (exit {done.returncode}). {_diagnose(repo_root, remote)} "
            f"Then {PULL_HINT}. DVC said: {said}"
        )
    check_raw_data(repo_root / "data")
    return repo_root / "data"
