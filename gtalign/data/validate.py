"""Great Expectations suites for the raw and curated tables: one table-wide suite and one suite per source.

Why GX and not plain asserts: each failed expectation comes back with its type, column, unexpected count and the
offending rows (by `uid`), which is exactly what a blocking pipeline check must show a person. GX is imported inside
`validate` (the import costs ~2 s), so `import gtalign.data` stays light; analytics are switched off before that.
Two derived views are validated instead of raw JSON where that reads better in a report: `message_roles` (the roles
of `messages`, comma-joined) is checked for the order system, user (, assistant, user)*.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from gtalign.data.raw import COLUMNS, MATH_SOURCES, NON_STRING_DTYPES, STRING_COLUMNS
from gtalign.sources import SOURCES

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# Structural columns are checked once over the whole table; columns whose meaning depends on the task, per source.
NOT_NULL_TABLE: tuple[str, ...] = (
    "uid",
    "split",
    "messages",
    "question",
    "extra_info",
    "single_turn_prompt",
    "turn_id",
)
NOT_NULL_SOURCE: tuple[str, ...] = ("ground_truth", "label")
TYPES: dict[str, str] = {c: "str" for c in STRING_COLUMNS} | dict(NON_STRING_DTYPES)
ROLE_ORDER = r"^system,user(?:,assistant,user)*$"
MEDIUM_MIN_GT_CHARS = 200
VALUE_CHARS = 160

Spec = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ValidationFailure:
    """One failed expectation: what was expected, where, how often it failed, and which rows (uid, value)."""

    expectation: str
    column: str
    source: str
    unexpected_count: int | None
    element_count: int | None
    samples: list[tuple[str, str]] = field(default_factory=list)
    detail: str = ""


@dataclass(frozen=True)
class ExcusedFailure:
    """Rows that failed an expectation and that a named curation rule (`curate.drop`) removes: reported, not fatal."""

    expectation: str
    column: str
    source: str
    rule: str
    count: int
    samples: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ValidationReport:
    """All suites' outcome; `success` is True only when every expectation passed (excused rows aside)."""

    success: bool
    n_rows: int
    n_expectations: int
    sources: list[str]
    failures: list[ValidationFailure] = field(default_factory=list)
    excused: list[ExcusedFailure] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """Readable report: one section per failed expectation with its sample rows."""
        head = "passed" if self.success else f"FAILED ({len(self.failures)} failed expectations)"
        lines = [
            f"# Data validation {head}",
            "",
            f"{self.n_rows} rows, {self.n_expectations} expectations over suites: all, {', '.join(self.sources)}.",
        ]
        for f in self.failures:
            count = "?" if f.unexpected_count is None else str(f.unexpected_count)
            total = "" if f.element_count is None else f" of {f.element_count}"
            lines += ["", f"## {f.expectation} on `{f.column}` (source {f.source}): {count}{total} unexpected"]
            if f.detail:
                lines.append(f"- {f.detail}")
            lines += [f"- uid `{uid}`: {value}" for uid, value in f.samples]
        if self.excused:
            lines += ["", "## Excused: failing rows that a `curate.drop` rule removes before anything samples them"]
        for e in self.excused:
            lines += ["", f"### {e.expectation} on `{e.column}` (source {e.source}): {e.count} dropped by `{e.rule}`"]
            lines += [f"- uid `{uid}`: {value}" for uid, value in e.samples]
        return "\n".join(lines) + "\n"

    def raise_for_failures(self) -> None:
        if not self.success:
            raise DataValidationError(self.to_markdown())


class DataValidationError(ValueError):
    """The data failed its expectations; the message is the readable validation report."""


def _roles(messages: Any) -> str:
    try:
        return ",".join(str(m.get("role")) for m in json.loads(messages))
    except (TypeError, ValueError, AttributeError):
        return "<unparsable messages>"


def _global_specs(columns: Sequence[str]) -> list[Spec]:
    specs: list[Spec] = [("ExpectColumnToExist", {"column": c}) for c in COLUMNS]
    present = set(columns)
    if "uid" in present:
        specs.append(("ExpectColumnValuesToBeUnique", {"column": "uid"}))
    specs += [("ExpectColumnValuesToNotBeNull", {"column": c}) for c in NOT_NULL_TABLE if c in present]
    if "source" in present:
        specs.append(("ExpectColumnValuesToBeInSet", {"column": "source", "value_set": list(SOURCES)}))
    if "split" in present:
        specs.append(("ExpectColumnValuesToBeInSet", {"column": "split", "value_set": ["train", "dev", "test"]}))
    specs += [("ExpectColumnValuesToBeOfType", {"column": c, "type_": t}) for c, t in TYPES.items() if c in present]
    specs += [
        ("ExpectColumnValuesToBeJsonParseable", {"column": c}) for c in ("messages", "extra_info") if c in present
    ]
    return specs


def _source_specs(source: str, columns: Sequence[str], max_turn_chars: int) -> list[Spec]:
    spec = SOURCES[source]
    present = set(columns)
    not_null = [*NOT_NULL_SOURCE, "answer"] if source in MATH_SOURCES | {"ambig_qa"} else list(NOT_NULL_SOURCE)
    specs: list[Spec] = [("ExpectColumnValuesToNotBeNull", {"column": c}) for c in not_null if c in present]
    if "label" in present:
        specs.append(("ExpectColumnValuesToBeInSet", {"column": "label", "value_set": sorted(spec.labels)}))
    if "split" in present:
        splits = ["train", "dev", "test"] if spec.has_train_split else ["test"]
        specs.append(("ExpectColumnValuesToBeInSet", {"column": "split", "value_set": splits}))
    if "messages" in present:
        specs.append(("ExpectColumnValuesToMatchRegex", {"column": "message_roles", "regex": ROLE_ORDER}))
    if "question" in present:
        specs.append(
            (
                "ExpectColumnValueLengthsToBeBetween",
                {"column": "question", "min_value": 1, "max_value": max_turn_chars},
            )
        )
    if "turn_id" in present:
        specs.append(("ExpectColumnValuesToBeBetween", {"column": "turn_id", "min_value": 1, "max_value": 100}))
    if "ground_truth" in present:
        specs.append(("ExpectColumnValuesToMatchRegex", {"column": "ground_truth", "regex": spec.ground_truth_regex}))
        if source in MATH_SOURCES:  # gold answers are bare LaTeX; a stray `$` breaks the $..$ wrapping for math-verify
            specs.append(("ExpectColumnValuesToNotMatchRegex", {"column": "ground_truth", "regex": r"(?<!\\)\$"}))
        if source == "medium":
            specs.append(
                ("ExpectColumnValueLengthsToBeBetween", {"column": "ground_truth", "min_value": MEDIUM_MIN_GT_CHARS})
            )
    return specs


def _short(value: Any) -> str:
    text = "null" if value is None or (not isinstance(value, list | dict) and pd.isna(value)) else repr(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _column(result: Any) -> str:
    kwargs = dict(result.expectation_config.kwargs)
    return kwargs.get("column") or ", ".join(kwargs.get("column_list", [])) or "(table)"


def _samples(rows: Sequence[Any], column: str, id_column: str, sample_size: int) -> list[tuple[str, str]]:
    return [
        (str(row.get(id_column)), _short(row.get(column, row.get(id_column))))
        for row in rows[:sample_size]
        if isinstance(row, dict)
    ]


def _split_excused(
    result: Any, source: str, id_column: str, sample_size: int, excused: Mapping[str, str]
) -> tuple[list[dict[str, Any]] | None, list[ExcusedFailure]]:
    """(the failing rows no rule excuses, or None when the failure cannot be split; the excused rows, per rule).

    Only a row-level failure (GX lists every unexpected row) can be split; a column-level one always stands whole.
    """
    res = dict(result.result or {})
    rows = res.get("unexpected_index_list")
    if not excused or not rows or len(rows) != res.get("unexpected_count"):
        return None, []
    if not all(isinstance(r, dict) for r in rows):
        return None, []
    by_rule: dict[str, list[dict[str, Any]]] = {}
    standing: list[dict[str, Any]] = []
    for row in rows:
        rule = excused.get(str(row.get(id_column)))
        (standing if rule is None else by_rule.setdefault(rule, [])).append(row)
    column, kind = _column(result), result.expectation_config.type
    excuses = [
        ExcusedFailure(kind, column, source, rule, len(part), _samples(part, column, id_column, sample_size))
        for rule, part in sorted(by_rule.items())
    ]
    return standing, excuses


def _failure(
    result: Any, source: str, id_column: str, sample_size: int, rows: list[dict[str, Any]] | None = None
) -> ValidationFailure:
    """One failed expectation; `rows` (the failing rows no rule excuses) replaces GX's own list when given."""
    cfg = result.expectation_config
    kwargs = dict(cfg.kwargs)
    column = _column(result)
    res = dict(result.result or {})
    if rows is not None:
        res |= {"unexpected_index_list": rows, "unexpected_count": len(rows)}
    samples = _samples(res.get("unexpected_index_list") or [], column, id_column, sample_size)
    detail = ""
    if "observed_value" in res:
        detail = f"observed {res['observed_value']!r}"
    elif cfg.type == "expect_column_to_exist":
        detail = "column missing"
    exc = result.exception_info or {}
    if exc.get("raised_exception"):
        detail = f"expectation raised: {str(exc.get('exception_message'))[:300]}"
    expected = {k: v for k, v in kwargs.items() if k not in {"column", "batch_id", "column_list"}}
    if expected:
        detail = (detail + "; " if detail else "") + "expected " + ", ".join(f"{k}={v!r}" for k, v in expected.items())
    return ValidationFailure(
        expectation=cfg.type,
        column=column,
        source=source,
        unexpected_count=res.get("unexpected_count"),
        element_count=res.get("element_count"),
        samples=samples,
        detail=detail,
    )


def validate(
    df: pd.DataFrame,
    *,
    max_turn_chars: int = 6000,
    sample_size: int = 5,
    excused: Mapping[str, str] | None = None,
) -> ValidationReport:
    """Run the table-wide suite and one suite per source present; collect every failed expectation.

    Works on the raw table (`load_raw`) and on the curated one (`curate`): both share the columns in `COLUMNS`.
    `excused` (uid -> rule, `curate.dropped_uids`) names raw rows a `curate.drop` rule removes: their failures are
    listed in `ValidationReport.excused` instead of failing the suite. Every other failing row fails it, whether or
    not a preset would later sample it.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    frame = df.reset_index(drop=True).copy()
    id_column = "uid" if "uid" in frame.columns else "_row"
    if id_column == "_row":
        frame["_row"] = [f"row {i}" for i in range(len(frame))]
    if "messages" in frame.columns:
        frame["message_roles"] = frame["messages"].map(_roles).astype("string")

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("gtalign")
        .add_dataframe_asset("table")
        .add_batch_definition_whole_dataframe("all")
    )
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": [id_column]}

    sources = [s for s in SOURCES if "source" in frame.columns and (frame["source"] == s).any()]
    plans: list[tuple[str, pd.DataFrame, list[Spec]]] = [("all", frame, _global_specs(list(df.columns)))]
    plans += [(s, frame[frame["source"] == s], _source_specs(s, list(df.columns), max_turn_chars)) for s in sources]

    failures: list[ValidationFailure] = []
    excuses: list[ExcusedFailure] = []
    n_expectations = 0
    for name, part, specs in plans:
        # Expectations go in at construction: `suite.add_expectation` on a stored suite re-serialises it each time.
        expectations = [getattr(gxe, kind)(**kwargs) for kind, kwargs in specs]
        suite = context.suites.add(gx.ExpectationSuite(name=f"gtalign_{name}", expectations=expectations))
        n_expectations += len(specs)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"vd_{name}", data=batch, suite=suite)
        )
        run = definition.run(batch_parameters={"dataframe": part}, result_format=result_format)
        for r in run.results:
            if r.success:
                continue
            standing, excused_here = _split_excused(r, name, id_column, sample_size, excused or {})
            excuses += excused_here
            if standing is None or standing:
                failures.append(_failure(r, name, id_column, sample_size, standing))
    failures.sort(key=lambda f: (f.source != "all", f.source, f.column, f.expectation))
    excuses.sort(key=lambda e: (e.source != "all", e.source, e.column, e.expectation, e.rule))
    return ValidationReport(
        success=not failures,
        n_rows=len(frame),
        n_expectations=n_expectations,
        sources=sources,
        failures=failures,
        excused=excuses,
    )
