"""Great Expectations checks: deliberately corrupted data must be reported by expectation, column, count and row."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO_ROOT

from gtalign.data import DataValidationError, ValidationFailure


def find(failures: list[ValidationFailure], expectation: str, column: str, source: str) -> ValidationFailure:
    matches = [f for f in failures if (f.expectation, f.column, f.source) == (expectation, column, source)]
    got = [(f.expectation, f.column, f.source) for f in failures]
    assert matches, f"no failure {expectation} on {column} ({source}); got {got}"
    return matches[0]


def test_corrupted_rows_are_named(tiny: pd.DataFrame) -> None:
    from gtalign.data import validate

    bad = tiny.copy()
    wild = bad.index[bad["source"] == "wildguard"][0]
    math = bad.index[bad["source"] == "math-hard"][0]
    ambig = bad.index[bad["source"] == "ambig_qa"][:2]
    medium = bad.index[bad["source"] == "medium"][0]
    bad.loc[wild, "label"] = "safe"
    bad.loc[math, "ground_truth"] = pd.NA
    bad.loc[ambig[1], "uid"] = bad.loc[ambig[0], "uid"]
    messages = json.loads(bad.loc[medium, "messages"])
    bad.loc[medium, "messages"] = json.dumps(messages[::-1])
    report = validate(bad)
    assert not report.success

    label = find(report.failures, "expect_column_values_to_be_in_set", "label", "wildguard")
    assert label.unexpected_count == 1 and label.samples == [(tiny.loc[wild, "uid"], "'safe'")]
    null = find(report.failures, "expect_column_values_to_not_be_null", "ground_truth", "math-hard")
    assert null.unexpected_count == 1 and null.samples[0][0] == tiny.loc[math, "uid"]
    dup = find(report.failures, "expect_column_values_to_be_unique", "uid", "all")
    assert dup.unexpected_count == 2 and {uid for uid, _ in dup.samples} == {tiny.loc[ambig[0], "uid"]}
    roles = find(report.failures, "expect_column_values_to_match_regex", "message_roles", "medium")
    assert roles.unexpected_count == 1 and roles.samples == [(tiny.loc[medium, "uid"], "'user,system'")]
    assert len(report.failures) == 4, report.to_markdown()

    text = report.to_markdown()
    n_wild = int((tiny["source"] == "wildguard").sum())
    assert f"expect_column_values_to_be_in_set on `label` (source wildguard): 1 of {n_wild} unexpected" in text
    assert f"uid `{tiny.loc[wild, 'uid']}`: 'safe'" in text
    with pytest.raises(DataValidationError) as err:
        report.raise_for_failures()
    assert str(err.value) == text


def test_missing_column_and_wrong_type_on_hand_made_frame(tiny: pd.DataFrame) -> None:
    from gtalign.data import validate

    small = tiny[tiny["source"] == "advbench"].head(3).drop(columns=["answer"]).copy()
    small["turn_id"] = small["turn_id"].astype("float64")
    report = validate(small)
    exist = find(report.failures, "expect_column_to_exist", "answer", "all")
    assert "column missing" in exist.detail
    kind = find(report.failures, "expect_column_values_to_be_of_type", "turn_id", "all")
    assert "float64" in kind.detail
    assert report.n_rows == 3 and report.sources == ["advbench"]


def test_import_stays_light() -> None:
    code = "import sys, gtalign.data; print('great_expectations' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert done.stdout.strip() == "False"


def test_excused_rows_are_listed_and_the_rest_still_fail(tiny: pd.DataFrame) -> None:
    from gtalign.data import validate

    bad = tiny.copy()
    wild = bad.index[bad["source"] == "wildguard"][:3]
    bad.loc[wild, "label"] = "maybe"
    uids = [str(u) for u in bad.loc[wild, "uid"]]
    report = validate(bad, excused={uids[0]: "unparsable_ground_truth", uids[1]: "exact_duplicate"})
    label = find(report.failures, "expect_column_values_to_be_in_set", "label", "wildguard")
    assert label.unexpected_count == 1 and label.samples == [(uids[2], "'maybe'")]
    assert len(report.failures) == 1 and not report.success
    in_set = ("expect_column_values_to_be_in_set", "label", "wildguard")
    got = {(e.expectation, e.column, e.source, e.rule, e.count, tuple(e.samples)) for e in report.excused}
    assert got == {
        (*in_set, "exact_duplicate", 1, ((uids[1], "'maybe'"),)),
        (*in_set, "unparsable_ground_truth", 1, ((uids[0], "'maybe'"),)),
    }
    text = report.to_markdown()
    assert "expect_column_values_to_be_in_set on `label` (source wildguard): 1 of " in text
    assert "### expect_column_values_to_be_in_set on `label` (source wildguard): 1 dropped by `exact_duplicate`\n" in (
        text
    )

    all_excused = validate(bad, excused=dict.fromkeys(uids, "unparsable_ground_truth"))
    assert all_excused.success and [e.count for e in all_excused.excused] == [3]
