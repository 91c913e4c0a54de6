"""Raw loading, curation rules, splits and presets: on the real DVC data and on small hand-made frames."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gtalign.data import (
    COLUMNS,
    CurateConfig,
    CurationReport,
    RawDataMissingError,
    check_raw_data,
    curate,
    extract_question,
    load_curated,
    messages_of,
    validate,
    write_curated,
)
from gtalign.data.curate import RULES, dropped_uids, ground_truth_problem, normalize_text, screen, stratified_pick
from gtalign.data.raw import RAW_FILES, STRING_COLUMNS, answer_for, label_for

SYSTEM = "You are an interactive assistant."
TEMPLATE = "Instructions ... keep <analyze> focused.Question: "


def make_row(
    source: str,
    split: str,
    question: str,
    ground_truth: str | None,
    conv_id: str | None = None,
    *,
    task: str | None = None,
    roles: tuple[str, ...] = ("system", "user"),
    uid: str | None = None,
) -> dict[str, object]:
    """One row of the typed table, as `load_raw` would build it from a published record."""
    contents = {"system": SYSTEM, "user": TEMPLATE + question, "assistant": "Could you clarify?"}
    messages = json.dumps([{"role": r, "content": contents[r]} for r in roles])
    task = question if task is None else task
    extra = {"chat_history": [{"role": "user", "content": question or "x"}], "single_turn_prompt": task}
    return {
        "uid": uid,
        "source": source,
        "split": split,
        "conv_id": conv_id,
        "unique_conv_id": conv_id,
        "turn_id": 1,
        "n_history_turns": 1,
        "adversarial": False,
        "messages": messages,
        "question": question,
        "ground_truth": ground_truth,
        "label": label_for(source, ground_truth),
        "answer": answer_for(source, ground_truth),
        "extra_info": json.dumps(extra),
        "single_turn_prompt": task,
        "reward_style": "rule",
    }


def frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["uid"] = [r["uid"] or f"{r['source']}:{r['split']}:{i:04d}" for i, r in enumerate(rows)]
    return df.astype({c: "string" for c in STRING_COLUMNS})


# ---------------------------------------------------------------------------------------------------------------
# raw


def test_load_raw_counts_and_types(raw_df: pd.DataFrame) -> None:
    assert list(raw_df.columns) == list(COLUMNS)
    assert len(raw_df) == 11624
    assert raw_df["uid"].is_unique
    counts = raw_df.groupby(["source", "split"]).size().to_dict()
    assert counts == {
        ("abg-coqa", "test"): 1055,
        ("advbench", "test"): 520,
        ("ambig_qa", "test"): 300,
        ("ambig_qa", "train"): 2700,
        ("math-hard", "test"): 353,
        ("math-hard", "train"): 3176,
        ("medium", "test"): 248,
        ("minerva", "test"): 272,
        ("wildguard", "test"): 300,
        ("wildguard", "train"): 2700,
    }
    assert str(raw_df["turn_id"].dtype) == "int64" and str(raw_df["adversarial"].dtype) == "bool"
    labels = raw_df.groupby(["source", "label"]).size().to_dict()
    assert labels[("abg-coqa", "ambiguous")] == 123 and labels[("abg-coqa", "unambiguous")] == 932
    assert labels[("ambig_qa", "ambiguous")] == 1417 and labels[("wildguard", "harmful")] == 1550
    assert raw_df["label"].notna().all()


def test_messages_are_verbatim(raw_df: pd.DataFrame, data_dir: Path) -> None:
    published = pd.read_parquet(data_dir / RAW_FILES[0].relpath)
    ours = raw_df[(raw_df["source"] == "math-hard") & (raw_df["split"] == "train")]
    for i in (0, 17, 3000):
        expected = [{"role": m["role"], "content": m["content"]} for m in published["prompt"].iloc[i]]
        assert messages_of(ours["messages"].iloc[i]) == expected
        assert ours["ground_truth"].iloc[i] == published["reward_model"].iloc[i]["ground_truth"]


def test_question_is_latest_user_turn(raw_df: pd.DataFrame) -> None:
    with_history = raw_df[raw_df["source"] != "abg-coqa"]
    for question, extra in zip(with_history["question"], with_history["extra_info"], strict=True):
        history = json.loads(extra)["chat_history"]
        assert question == [m for m in history if m["role"] == "user"][-1]["content"].strip()
    coqa = raw_df[raw_df["source"] == "abg-coqa"]
    assert (coqa["question"] == coqa["single_turn_prompt"].str.strip()).all()


def test_extract_question_prefers_template_marker() -> None:
    assert extract_question(TEMPLATE + "Question: Is A true?") == "Question: Is A true?"
    assert extract_question("no template. Question: a Question: b") == "b"
    assert extract_question("plain text") == "plain text"


def test_labels_and_answers() -> None:
    assert label_for("ambig_qa", "multipleQAs###Meaning 0 ...") == "ambiguous"
    assert label_for("ambig_qa", "singleAnswer###Paris") == "unambiguous"
    assert answer_for("ambig_qa", "singleAnswer###Paris") == "Paris"
    assert label_for("ambig_qa", "Paris") is None
    assert label_for("abg-coqa", "non_ambiguous") == "unambiguous"
    assert label_for("wildguard", "benign") is None
    assert (label_for("minerva", "1.6"), answer_for("minerva", " 1.6 ")) == ("answer", "1.6")
    assert label_for("medium", "text") == "writing" and label_for("advbench", "Sure, here") == "harmful"


def test_check_raw_data_names_missing_file(tmp_path: Path) -> None:
    (tmp_path / "math-hard").mkdir()
    (tmp_path / "math-hard" / "train.parquet").write_bytes(b"")
    with pytest.raises(RawDataMissingError) as err:
        check_raw_data(tmp_path)
    message = str(err.value)
    assert "math-hard/test.parquet" in message and "9 of 10 files" in message
    assert "dvc pull" in message and "make data" in message


# ---------------------------------------------------------------------------------------------------------------
# curation rules on a hand-made frame


def rule_frame() -> pd.DataFrame:
    return frame(
        [
            make_row("wildguard", "train", "How do I bake bread?", "unharmful", "1"),  # 0 ok
            make_row("wildguard", "train", "How do I bake bread?", "unharmful", "1"),  # 1 exact dup of 0
            make_row("wildguard", "train", "how do I  bake bread", "unharmful", "2"),  # 2 normalised dup of 0
            make_row("wildguard", "train", "", "unharmful", "3"),  # 3 empty
            make_row("wildguard", "train", "", "unharmful", "3"),  # 4 empty AND exact dup of 3
            make_row("wildguard", "train", "y" * 50, "harmful", "4"),  # 5 over-long (limit 40)
            make_row("wildguard", "train", "Is this safe?", "maybe", "5"),  # 6 unparsable gt
            make_row("wildguard", "test", "What is the capital of France?", "unharmful", "10"),  # 7 test
            make_row("wildguard", "train", "what is the capital of France", "unharmful", "11"),  # 8 leak (question)
            make_row("wildguard", "train", "Unrelated question", "unharmful", "10"),  # 9 shared conv id
            make_row("math-hard", "train", "Solve x+1=2", "1", "20", task="Solve for x: x+1=2"),  # 10 ok
            make_row("math-hard", "train", "Next step?", "\\frac{1}{2", "21", task="Halve 1"),  # 11 unbalanced
            make_row("math-hard", "test", "What now?", "$5$", "22", task="Five"),  # 12 stray $
            make_row("math-hard", "test", "Help", "1", "23", task="solve for x x+1=2"),  # 13 test copy of task 10
            make_row("ambig_qa", "train", "Who won?", "multipleQAs###Meaning 0: ...", "30"),  # 14 ok
            make_row("ambig_qa", "train", "Who lost?", "Team B", "31"),  # 15 no ###
        ]
    )


def test_rule_counts_exact() -> None:
    cfg = CurateConfig(
        preset="full", dev_fraction=0.0, max_turn_chars=40, drop=["exact_duplicate", "empty_turn", "train_test_leak"]
    )
    out, report = curate(rule_frame(), cfg)
    assert report.flagged["empty_turn"] == {"wildguard": 2}
    assert report.flagged["over_long_turn"] == {"wildguard": 1}
    assert report.flagged["unparsable_ground_truth"] == {"ambig_qa": 1, "math-hard": 2, "wildguard": 1}
    assert report.flagged["exact_duplicate"] == {"wildguard": 2}
    assert report.flagged["normalized_duplicate"] == {"wildguard": 1}
    assert report.flagged["train_test_leak"] == {"math-hard": 1, "wildguard": 1}
    assert report.flagged["shared_conv_id"] == {"wildguard": 1}
    # row 4 is both empty and an exact duplicate: charged to empty_turn, the earlier rule in RULES
    assert report.dropped == {
        "empty_turn": {"wildguard": 2},
        "exact_duplicate": {"wildguard": 1},
        "train_test_leak": {"math-hard": 1, "wildguard": 1},
    }
    assert len(out) == 16 - 5
    assert report.samples["over_long_turn"] == ["wildguard:train:0005"]
    assert set(report.samples["train_test_leak"]) == {"wildguard:train:0008", "math-hard:train:0010"}
    flags = dict(zip(out["uid"], out["flags"], strict=True))
    assert flags["wildguard:train:0002"] == "normalized_duplicate"
    assert flags["wildguard:train:0005"] == "over_long_turn"
    assert flags["wildguard:train:0009"] == "shared_conv_id"
    assert flags["wildguard:train:0000"] == ""


def test_only_configured_rules_drop() -> None:
    out, report = curate(rule_frame(), CurateConfig(preset="full", dev_fraction=0.0, drop=[]))
    assert len(out) == 16 and report.dropped == {}
    assert sum(report.flagged["exact_duplicate"].values()) == 2
    everything = CurateConfig(preset="full", dev_fraction=0.0, max_turn_chars=40, drop=list(RULES))
    out, report = curate(rule_frame(), everything)
    dropped = sum(report.total_dropped(r) for r in RULES)
    assert dropped == 16 - len(out) == 12


def test_ground_truth_problems() -> None:
    assert ground_truth_problem("math-hard", "\\frac{3\\sqrt{3}}{\\pi}") is None
    assert ground_truth_problem("math-hard", "\\$1.65") is None  # escaped dollar: currency
    assert ground_truth_problem("math-hard", "\\left( 1, 2 \\right]") is None
    assert ground_truth_problem("math-hard", "\\{1, 2\\}") is None
    assert ground_truth_problem("math-hard", "") == "empty"
    assert ground_truth_problem("minerva", "x+$ $y") is not None
    assert ground_truth_problem("math-hard", "\\left( 1, 2") is not None
    assert ground_truth_problem("math-hard", "}{") is not None
    assert ground_truth_problem("ambig_qa", "singleAnswer###") is not None
    assert ground_truth_problem("wildguard", "harmful") is None
    assert ground_truth_problem("abg-coqa", "unambiguous") is not None
    assert normalize_text("  Hello,   WORLD!\n") == "hello world"


# ---------------------------------------------------------------------------------------------------------------
# splits and presets


def split_frame() -> pd.DataFrame:
    rows = [make_row("ambig_qa", "train", f"Q{i}?", "multipleQAs###m", str(i)) for i in range(50)]
    rows += [make_row("ambig_qa", "train", f"R{i}?", "singleAnswer###a", str(100 + i)) for i in range(150)]
    rows += [make_row("wildguard", "train", f"W{i}", "harmful" if i % 2 else "unharmful", str(i)) for i in range(100)]
    # three turns of one math task each: they must move to dev together
    rows += [
        make_row("math-hard", "train", f"turn {t} of {i}", str(i), str(i), task=f"task {i}")
        for i in range(40)
        for t in range(3)
    ]
    rows += [make_row("ambig_qa", "test", f"T{i}?", "singleAnswer###a", str(900 + i)) for i in range(10)]
    return frame(rows)


def test_dev_split_is_stratified_and_grouped() -> None:
    out, _ = curate(split_frame(), CurateConfig(preset="full", dev_fraction=0.2, seed=3))
    dev = out[out["split"] == "dev"]
    assert dev.groupby(["source", "label"]).size().to_dict() == {
        ("ambig_qa", "ambiguous"): 10,
        ("ambig_qa", "unambiguous"): 30,
        ("math-hard", "answer"): 24,  # 8 of 40 tasks, 3 rows each
        ("wildguard", "harmful"): 10,
        ("wildguard", "unharmful"): 10,
    }
    math = out[out["source"] == "math-hard"]
    assert (math.groupby("single_turn_prompt")["split"].nunique() == 1).all()
    assert (out[out["source"] == "ambig_qa"]["split"] == "test").sum() == 10


def test_dev_split_deterministic_by_seed() -> None:
    def dev_uids(seed: int) -> set[str]:
        out, _ = curate(split_frame(), CurateConfig(preset="full", dev_fraction=0.2, seed=seed))
        return set(out.loc[out["split"] == "dev", "uid"])

    assert dev_uids(7) == dev_uids(7)
    assert dev_uids(7) != dev_uids(8)


def test_stratified_pick_proportional() -> None:
    strata = pd.Series(["a"] * 30 + ["b"] * 60 + ["c"] * 10)
    picked = strata[stratified_pick(strata, 20, seed=1)]
    assert picked.value_counts().to_dict() == {"b": 12, "a": 6, "c": 2}
    assert list(stratified_pick(strata, 20, seed=1)) == list(stratified_pick(strata, 20, seed=1))
    assert len(stratified_pick(strata, 500, seed=1)) == 100


def test_tiny_preset_caps(raw_df: pd.DataFrame, tiny: pd.DataFrame) -> None:
    sizes = tiny.groupby(["source", "split"]).size().to_dict()
    for source in ("math-hard", "wildguard", "ambig_qa"):
        assert sizes[(source, "train")] + sizes[(source, "dev")] == 200
        assert sizes[(source, "dev")] > 0
    assert {k: v for k, v in sizes.items() if k[1] == "test"} == {
        (s, "test"): 40 for s in ("abg-coqa", "advbench", "ambig_qa", "math-hard", "medium", "minerva", "wildguard")
    }
    ambig_test = tiny[(tiny["source"] == "ambig_qa") & (tiny["split"] == "test")]
    assert ambig_test["label"].value_counts().to_dict() == {"ambiguous": 20, "unambiguous": 20}
    small, report = curate(raw_df, CurateConfig(preset="tiny", tiny_train_per_source=30, tiny_test_per_source=5))
    assert len(small) == 3 * 30 + 7 * 5
    assert report.capped["abg-coqa"] == {"test": 1050}


def test_tiny_is_deterministic(raw_df: pd.DataFrame, tiny: pd.DataFrame) -> None:
    again, _ = curate(raw_df, CurateConfig(preset="tiny"))
    pd.testing.assert_frame_equal(again, tiny)


# ---------------------------------------------------------------------------------------------------------------
# the real data: findings, outputs, expectations


def test_real_data_findings(raw_df: pd.DataFrame) -> None:
    out, report = curate(raw_df, CurateConfig(preset="full"))
    totals = {r: report.total_flagged(r) for r in RULES}
    assert totals == {
        "empty_turn": 1,
        "over_long_turn": 1,
        "unparsable_ground_truth": 6,
        "exact_duplicate": 1467,
        "normalized_duplicate": 2,
        "train_test_leak": 406,
        "shared_conv_id": 1663,
    }
    assert report.flagged["exact_duplicate"] == {"math-hard": 1376, "medium": 21, "wildguard": 70}
    assert len(out) == 11624 - sum(report.total_dropped(r) for r in RULES)
    published_test = raw_df[raw_df["split"] == "test"]
    kept_test = out[out["split"] == "test"]
    assert len(published_test) - len(kept_test) == 16 + 21 + 2 + 1 + 1  # duplicates and unusable gold only
    train, test = out[out["split"] != "test"], kept_test
    for source in ("math-hard", "wildguard"):
        tasks = set(test.loc[test["source"] == source, "single_turn_prompt"].map(normalize_text))
        assert not set(train.loc[train["source"] == source, "single_turn_prompt"].map(normalize_text)) & tasks


def test_write_curated_round_trip(tiny_curated: tuple[pd.DataFrame, CurationReport], tmp_path: Path) -> None:
    tiny, report = tiny_curated
    paths = write_curated(tiny, report, tmp_path / "curated")
    assert {p.name for p in paths.values()} == {"curated.parquet", "report.json", "report.md"}
    pd.testing.assert_frame_equal(load_curated(tmp_path / "curated"), tiny)
    data = json.loads(paths["report_json"].read_text())
    assert data["config"]["preset"] == "tiny" and data["rows_out"]["ambig_qa"]["dev"] == 20
    assert "| exact_duplicate |" in paths["report_md"].read_text()


def test_curated_tiny_passes_validation(tiny: pd.DataFrame) -> None:
    report = validate(tiny)
    assert report.success, report.to_markdown()
    report.raise_for_failures()


def test_raw_data_fails_only_on_known_defects(raw_df: pd.DataFrame) -> None:
    report = validate(raw_df)
    found = {(f.expectation, f.column, f.source, f.unexpected_count) for f in report.failures}
    assert found == {
        ("expect_column_values_to_match_regex", "ground_truth", "math-hard", 5),
        ("expect_column_values_to_not_match_regex", "ground_truth", "minerva", 1),
        ("expect_column_value_lengths_to_be_between", "question", "wildguard", 2),
    }


def test_raw_rows_validated_before_sampling_excuse_only_named_drops(raw_df: pd.DataFrame) -> None:
    """Every raw row goes through the suites; the published defects are excused by the rule that drops each one."""
    cfg = CurateConfig()
    rules = screen(raw_df, cfg)
    report = validate(raw_df, max_turn_chars=cfg.max_turn_chars, excused=dropped_uids(raw_df, rules))
    assert report.success and report.n_rows == 11624, report.to_markdown()
    found = {(e.expectation, e.column, e.source, e.rule, e.count) for e in report.excused}
    assert found == {
        ("expect_column_values_to_match_regex", "ground_truth", "math-hard", "unparsable_ground_truth", 5),
        ("expect_column_values_to_not_match_regex", "ground_truth", "minerva", "unparsable_ground_truth", 1),
        ("expect_column_value_lengths_to_be_between", "question", "wildguard", "empty_turn", 1),
        ("expect_column_value_lengths_to_be_between", "question", "wildguard", "over_long_turn", 1),
    }
    assert "### expect_column_values_to_not_match_regex on `ground_truth` (source minerva): 1 dropped by " in (
        report.to_markdown()
    )
    # the same screen drives curation: the table is the one `curate` builds on its own
    pd.testing.assert_frame_equal(curate(raw_df, cfg, rules)[0], curate(raw_df, cfg)[0])


def test_curation_report_names_each_dropped_row_value(raw_df: pd.DataFrame) -> None:
    _, report = curate(raw_df, CurateConfig())
    minerva = "minerva:test:c52c56cd99de"
    assert minerva in report.samples["unparsable_ground_truth"]  # samples are per source: minerva is not crowded out
    assert report.sample_values["unparsable_ground_truth"][minerva].endswith(": stray $ (gold answers are bare LaTeX)")
    assert report.sample_values["over_long_turn"] == {"wildguard:train:5e3a381b6d7b": "latest turn 12814 chars"}
    assert f"`{minerva}` (ground_truth 'x_{{0}}" in report.to_markdown()
