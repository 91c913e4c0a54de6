"""The GTAlign welfare reward (see `gtalign.reward.score` for the formula)."""

from gtalign.reward.config import AGGREGATIONS, RewardConfig
from gtalign.reward.score import RewardInput, RewardResult, score_batch, score_completion, score_reading
from gtalign.reward.tasks import TASKS, get_task

__all__ = [
    "AGGREGATIONS",
    "TASKS",
    "RewardConfig",
    "RewardInput",
    "RewardResult",
    "get_task",
    "score_batch",
    "score_completion",
    "score_reading",
]
