"""What a model is asked for a curated row: its chat prompt and the extra info its reward needs.

Demonstrations, SFT/RL held-out evaluation, the evaluation stage and steering all render prompts here, so every
model is measured on the format it was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gtalign.data.raw import messages_of
from gtalign.protocol import render_messages


def prompt_messages(row: Mapping[str, Any], style: str) -> list[dict[str, str]]:
    """The published prompt (verbatim) for `full`, the compact rendering for tiny models."""
    if style == "full":
        return messages_of(row["messages"])
    return render_messages(str(row["question"]), style="compact")


def extra_info_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's `extra_info` as a dict, whether stored as JSON text (parquet) or a mapping; {} when unreadable."""
    raw = row.get("extra_info")
    if isinstance(raw, str) and raw:
        try:
            return json.loads(raw)
        except ValueError:
            return {}
    return dict(raw) if isinstance(raw, Mapping) else {}
