"""The data sources, each described once: every layer (data, reward, judges, evaluation, report) reads this table.

A source is one published task (`data_source` in the parquet files): where its files lie under `data/`, which labels
its rows take, what its ground truth looks like, whether it is in the paper's training domain, and which task family
it belongs to. The family decides the judge: which published judge prompt asks for the verdict and on which scale
(the rule judge and the reward's answer terms are written per family too). The table order is the order of the
published files, which fixes the order of the raw table and of every per-source listing derived from it.

Stdlib only, so that any module can import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "FAMILIES",
    "IN_DOMAIN_SOURCES",
    "OOD_SOURCES",
    "SOURCES",
    "TRAIN_SPLIT_SOURCES",
    "Family",
    "FamilyName",
    "Source",
    "UnknownSourceError",
    "get_source",
    "sources_of_family",
]

FamilyName = Literal["math", "writing", "safety", "ambiguity"]


@dataclass(frozen=True, slots=True)
class Family:
    """What the sources of one task family share: the published judge prompt and the scale of its verdicts."""

    name: FamilyName
    judge_prompt: str  # id in gtalign/resources/judge_prompts/manifest.json
    verdict_scale: tuple[float, ...]


FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        f.name: f
        for f in (
            Family("math", "accuracy", (0, 1)),  # 1 correct / 0 incorrect
            Family("writing", "writing", (0, 1, 2, 3, 4)),  # helpfulness
            Family("safety", "harmfulness", (0, 0.5, 1)),  # harmful: 0.5 refused + safe alternative, 1 refused
            Family("ambiguity", "ambiguity", (0, 1)),  # 1 good ambiguity handling
        )
    }
)


@dataclass(frozen=True, slots=True)
class Source:
    """One published data source."""

    name: str  # the `data_source` value
    display_name: str  # as the paper's tables name it
    family: Family
    in_domain: bool  # the paper's training domain; the others are its out-of-domain test sets
    data_dir: str  # under data/: one `<split>.parquet` per published split
    splits: tuple[str, ...]  # published splits (no train split for medium and the out-of-domain sets)
    labels: frozenset[str]  # the row labels derived from the ground truth (`gtalign.data.raw.label_for`)
    ground_truth_regex: str  # every `reward_model.ground_truth` of the source matches it (data validation)
    ground_truth: str  # what the ground truth holds, in words

    @property
    def files(self) -> tuple[tuple[str, str], ...]:
        """(split, path under data/) of each published file."""
        return tuple((split, f"{self.data_dir}/{split}.parquet") for split in self.splits)

    @property
    def has_train_split(self) -> bool:
        return "train" in self.splits

    @property
    def requires_analyze(self) -> bool:
        """The published ablation code that scored the out-of-domain sets zeroes the reward without `<analyze>`."""
        return not self.in_domain


_MATH, _WRITING, _SAFETY, _AMBIGUITY = (FAMILIES[n] for n in ("math", "writing", "safety", "ambiguity"))
_ANSWER = frozenset({"answer"})
AMBIGUITY_LABELS = frozenset({"ambiguous", "unambiguous"})  # abg-coqa's `non_ambiguous` is read as `unambiguous`

SOURCES: Mapping[str, Source] = MappingProxyType(
    {
        s.name: s
        for s in (
            Source(
                "math-hard", "Math", _MATH, True, "math-hard", ("train", "test"), _ANSWER, r"\S",
                "the LaTeX final answer, e.g. `\\frac{3\\sqrt{3}}{\\pi}`",
            ),
            Source(
                "medium", "Medium", _WRITING, True, "medium", ("test",), frozenset({"writing"}), r"\S",
                "the ideal article text",
            ),
            Source(
                "wildguard", "WildGuard", _SAFETY, True, "wildguard", ("train", "test"),
                frozenset({"harmful", "unharmful"}), r"^(?:harmful|unharmful)$", "`harmful` or `unharmful`",
            ),
            Source(
                "ambig_qa", "Ambig-QA", _AMBIGUITY, True, "ambig_qa", ("train", "test"), AMBIGUITY_LABELS,
                r"^(?:singleAnswer|multipleQAs)###\s*\S",
                "`multipleQAs###<meanings and answers>` (ambiguous) or `singleAnswer###<answer>`",
            ),
            Source(
                "minerva", "Minerva", _MATH, False, "ood/minerva", ("test",), _ANSWER, r"\S",
                "a numeric or LaTeX answer (rounded measurements)",
            ),
            Source(
                "advbench", "AdvBench", _SAFETY, False, "ood/advbench", ("test",), frozenset({"harmful"}),
                r"^Sure, here", "the harmful target string (`Sure, here is ...`); every prompt is harmful",
            ),
            Source(
                "abg-coqa", "AbgCoQA", _AMBIGUITY, False, "ood/abg-coqa", ("test",), AMBIGUITY_LABELS,
                r"^(?:ambiguous|non_ambiguous)$", "`ambiguous` or `non_ambiguous`",
            ),
        )
    }
)  # fmt: skip

#: The paper's in-domain sources (its Tables 3-6); the evaluation's `_in_domain` means are over these.
IN_DOMAIN_SOURCES: tuple[str, ...] = tuple(n for n, s in SOURCES.items() if s.in_domain)
#: The out-of-domain test sets (Table 7).
OOD_SOURCES: tuple[str, ...] = tuple(n for n, s in SOURCES.items() if not s.in_domain)
#: Sources with a published train split: only these get train and dev rows after curation (medium has none).
TRAIN_SPLIT_SOURCES: tuple[str, ...] = tuple(n for n, s in SOURCES.items() if s.has_train_split)


class UnknownSourceError(KeyError):
    def __str__(self) -> str:
        return f"unknown data_source {self.args[0]!r}; expected one of {', '.join(SOURCES)}"


def get_source(name: str) -> Source:
    """The source called `name`; `UnknownSourceError` (a KeyError that lists the known ones) otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise UnknownSourceError(name) from None


def sources_of_family(family: FamilyName) -> tuple[str, ...]:
    """The names of the sources of one family, in table order."""
    return tuple(n for n, s in SOURCES.items() if s.family.name == family)
