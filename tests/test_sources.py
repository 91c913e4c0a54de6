"""The source registry: the one description of each source, and the layers that must agree with it."""

from __future__ import annotations

import pytest

from gtalign.data.raw import RAW_FILES, label_for
from gtalign.reward.judges.prompts import SOURCE_PROMPTS, load_manifest
from gtalign.reward.judges.rule import RULE_SOURCES
from gtalign.reward.tasks import TASKS, get_task
from gtalign.sources import (
    FAMILIES,
    IN_DOMAIN_SOURCES,
    OOD_SOURCES,
    SOURCES,
    TRAIN_SPLIT_SOURCES,
    UnknownSourceError,
    get_source,
    sources_of_family,
)


def test_the_seven_published_sources_in_file_order() -> None:
    assert list(SOURCES) == ["math-hard", "medium", "wildguard", "ambig_qa", "minerva", "advbench", "abg-coqa"]
    assert IN_DOMAIN_SOURCES == ("math-hard", "medium", "wildguard", "ambig_qa")
    assert OOD_SOURCES == ("minerva", "advbench", "abg-coqa")
    # Not the in-domain sources: medium is in-domain but publishes no train split.
    assert TRAIN_SPLIT_SOURCES == ("math-hard", "wildguard", "ambig_qa")


def test_raw_files_are_the_registry_files() -> None:
    assert len(RAW_FILES) == 10
    assert {f.relpath for f in RAW_FILES} >= {"math-hard/train.parquet", "ood/abg-coqa/test.parquet"}
    assert [f.source for f in RAW_FILES if f.split == "train"] == list(TRAIN_SPLIT_SOURCES)


def test_each_family_judge_prompt_judges_exactly_its_sources() -> None:
    prompts = load_manifest()["prompts"]
    for family in FAMILIES.values():
        assert prompts[family.judge_prompt]["data_sources"] == list(sources_of_family(family.name))
    assert set(SOURCE_PROMPTS) == {*SOURCES, "pareto_consistency"} == set(RULE_SOURCES)


def test_tasks_read_the_registry() -> None:
    assert list(TASKS) == list(SOURCES)
    for name, task in TASKS.items():
        spec = SOURCES[name]
        assert (task.family, task.in_domain, task.requires_analyze) == (
            spec.family.name,
            spec.in_domain,
            not spec.in_domain,
        )
        assert task.verdict_scale == spec.family.verdict_scale
    with pytest.raises(UnknownSourceError, match="unknown data_source 'gsm8k'; expected one of math-hard, medium"):
        get_task("gsm8k")
    with pytest.raises(KeyError):
        get_source("gsm8k")


@pytest.mark.parametrize(
    ("source", "ground_truth", "label"),
    [
        ("math-hard", "42", "answer"),
        ("medium", "an article", "writing"),
        ("advbench", "Sure, here is", "harmful"),
        ("wildguard", "unharmful", "unharmful"),
        ("wildguard", "maybe", None),
        ("ambig_qa", "multipleQAs###a", "ambiguous"),
        ("abg-coqa", "non_ambiguous", "unambiguous"),
        ("gsm8k", "1", None),
    ],
)
def test_labels_are_in_the_registry_label_set(source: str, ground_truth: str, label: str | None) -> None:
    assert label_for(source, ground_truth) == label
    if label is not None:
        assert label in SOURCES[source].labels
