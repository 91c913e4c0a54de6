"""Tests for `gtalign.game`: the paper's Table 1 worked by hand, every tie-break level, the welfare rules and their
domains, strict parsing errors, and properties (hypothesis) that tie the optimum, the frontier and the equilibria to
their definitions.

Convention in this file: a payoff pair written as a tuple is `(user, LLM)`, the paper's `(U_u, U_l)` order.
"""

from __future__ import annotations

import copy
import math
import pickle
import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paper_tables import TABLE1, TABLE1_DICT

from gtalign.game import (
    ACTIONS,
    CELLS,
    DEFAULT_RULE,
    USER_TYPES,
    WELFARE_KINDS,
    Analysis,
    Payoff,
    PayoffMatrix,
    WelfareRule,
    analyze,
    cell_name,
    dilemma_witness,
    dominates,
    is_prisoners_dilemma,
    nash_equilibria,
    optimal_action,
    optimal_cell,
    optimal_cells,
    pareto_frontier,
    row_cells,
    split_cell,
    welfare,
)

SUM = WelfareRule("sum")
NASH = WelfareRule("nash")
GEOMETRIC = WelfareRule("geometric")
COBB_DOUGLAS = WelfareRule("cobb_douglas", alpha=0.5)
CES = WelfareRule("ces", alpha=0.5, rho=-1.0)
ALL_RULES = (SUM, NASH, GEOMETRIC, COBB_DOUGLAS, CES)
SIGNED_RULES = (SUM, NASH, GEOMETRIC)  # the rules defined on negative payoffs


def grid(cells: dict[str, tuple[float, float]], fill: tuple[float, float] = (0.0, 0.0)) -> PayoffMatrix:
    """A matrix from `{cell: (user, LLM)}`; cells not named get `fill`."""
    pairs = {c: cells.get(c, fill) for c in CELLS}
    return PayoffMatrix({c: Payoff(llm=llm, user=user) for c, (user, llm) in pairs.items()})


# --------------------------------------------------------------------------------------------------- cell names
def test_constants_follow_the_prompt() -> None:
    assert USER_TYPES == ("DQ", "VQ")
    assert ACTIONS == ("DA", "CQ", "AQ")
    assert CELLS == ("DQ_AQ", "DQ_CQ", "DQ_DA", "VQ_AQ", "VQ_CQ", "VQ_DA")
    assert WELFARE_KINDS == ("sum", "nash", "geometric", "cobb_douglas", "ces", "linear", "user", "llm")
    assert WelfareRule("sum", 0.5, -1.0) == DEFAULT_RULE


def test_cell_name_and_split_cell_round_trip() -> None:
    names = {cell_name(t, a) for t in USER_TYPES for a in ACTIONS}
    assert names == set(CELLS)
    for cell in CELLS:
        assert cell_name(*split_cell(cell)) == cell
    assert split_cell("VQ_CQ") == ("VQ", "CQ")
    assert row_cells("DQ") == ("DQ_AQ", "DQ_CQ", "DQ_DA")
    assert row_cells("VQ") == ("VQ_AQ", "VQ_CQ", "VQ_DA")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cell_name("XQ", "DA"), "unknown user type 'XQ' (expected one of DQ, VQ)"),
        (lambda: cell_name("DQ", "QA"), "unknown action 'QA' (expected one of DA, CQ, AQ)"),
        (lambda: split_cell("dq_aq"), "unknown cell 'dq_aq'"),
        (lambda: split_cell(3), "unknown cell 3"),
        (lambda: row_cells("VQ_DA"), "unknown user type 'VQ_DA'"),
    ],
)
def test_names_are_validated(call, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


# ------------------------------------------------------------------------------------------------ payoff matrix
def test_payoff_coerces_ints_and_rejects_non_numbers() -> None:
    p = Payoff(llm=1, user=-2)
    assert (p.llm, p.user) == (1.0, -2.0)
    assert type(p.llm) is float and type(p.user) is float
    for bad in (True, "1.0", None, math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match=re.escape(f"Payoff.llm must be a finite real number, got {bad!r}")):
            Payoff(llm=bad, user=0.0)
    with pytest.raises(AttributeError):
        p.llm = 2.0  # type: ignore[misc]


def test_from_dict_to_dict_round_trip_in_prompt_order() -> None:
    reordered = dict(reversed(list(TABLE1_DICT.items())))
    m = PayoffMatrix.from_dict({c: {"user": v["user"], "LLM": v["LLM"]} for c, v in reordered.items()})
    assert m == TABLE1 and hash(m) == hash(TABLE1)
    out = m.to_dict()
    assert list(out) == list(CELLS)
    assert all(list(v) == ["LLM", "user"] for v in out.values())
    assert out == {
        "DQ_AQ": {"LLM": 3.0, "user": 3.0},
        "DQ_CQ": {"LLM": 1.0, "user": 2.0},
        "DQ_DA": {"LLM": 1.0, "user": 0.0},
        "VQ_AQ": {"LLM": 0.0, "user": 4.0},
        "VQ_CQ": {"LLM": 0.0, "user": 1.0},
        "VQ_DA": {"LLM": 1.0, "user": 1.0},
    }
    assert PayoffMatrix.from_dict(out) == m


def test_matrix_is_an_immutable_mapping() -> None:
    m = TABLE1
    assert m["DQ_AQ"] == Payoff(llm=3.0, user=3.0)
    assert m.cells == CELLS and list(m) == list(CELLS) and len(m) == 6
    assert next(iter(m.items())) == ("DQ_AQ", Payoff(llm=3.0, user=3.0))
    assert "VQ_DA" in m and "vq_da" not in m and 3 not in m
    with pytest.raises(KeyError):
        m["DQ_XX"]
    with pytest.raises(AttributeError, match="immutable"):
        m._payoffs = ()  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del m._payoffs
    assert m != m.to_dict()  # a matrix equals matrices only
    assert m != m.map(lambda c, p: Payoff(llm=p.llm, user=p.user + 1))
    assert len({m, PayoffMatrix.from_dict(TABLE1_DICT)}) == 1
    assert pickle.loads(pickle.dumps(m)) == m
    assert copy.deepcopy(m) == m and copy.copy(m) == m
    assert eval(repr(m), {"PayoffMatrix": PayoffMatrix}) == m


def test_map_edits_every_cell() -> None:
    # The published steering edit for API pricing: user += scale_user everywhere, LLM += 1 / 0.5 / 0 for DA / AQ / CQ.
    bonus = {"DA": 1.0, "AQ": 0.5, "CQ": 0.0}
    edited = TABLE1.map(lambda c, p: Payoff(llm=p.llm + bonus[split_cell(c)[1]], user=p.user - 0.5))
    assert edited["VQ_DA"] == Payoff(llm=2.0, user=0.5)
    assert edited["DQ_AQ"] == Payoff(llm=3.5, user=2.5)
    assert edited["DQ_CQ"] == Payoff(llm=1.0, user=1.5)


def _drop(cell: str) -> dict:
    return {c: v for c, v in TABLE1_DICT.items() if c != cell}


def _with(cell: str, value: object) -> dict:
    return {**TABLE1_DICT, cell: value}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_drop("VQ_DA"), "payoff matrix is missing cell(s) 'VQ_DA'"),
        ({**TABLE1_DICT, "VQ_XX": {"LLM": 0, "user": 0}}, "payoff matrix has unexpected cell(s) 'VQ_XX'"),
        (
            {**_drop("DQ_AQ"), "dq_aq": {"LLM": 3, "user": 3}},
            "payoff matrix is missing cell(s) 'DQ_AQ' and has unexpected cell(s) 'dq_aq'",
        ),
        ({}, "payoff matrix is missing cell(s) 'DQ_AQ', 'DQ_CQ', 'DQ_DA', 'VQ_AQ', 'VQ_CQ', 'VQ_DA'"),
        (_with("DQ_CQ", {"LLM": 1}), "cell 'DQ_CQ' is missing key(s) 'user'"),
        (_with("DQ_CQ", {"LLM": 1, "user": 2, "note": "x"}), "cell 'DQ_CQ' has unexpected key(s) 'note'"),
        (
            _with("VQ_AQ", {"llm": 0, "user": 4}),
            "cell 'VQ_AQ' is missing key(s) 'LLM' and has unexpected key(s) 'llm'",
        ),
        (_with("VQ_CQ", {"LLM": "1.0", "user": 1}), "cell 'VQ_CQ' key 'LLM' must be a finite real number, got '1.0'"),
        (_with("VQ_CQ", {"LLM": 1, "user": True}), "cell 'VQ_CQ' key 'user' must be a finite real number, got True"),
        (_with("VQ_CQ", {"LLM": math.nan, "user": 1}), "cell 'VQ_CQ' key 'LLM' must be a finite real number, got nan"),
        (_with("VQ_CQ", {"LLM": 1, "user": None}), "cell 'VQ_CQ' key 'user' must be a finite real number, got None"),
        (_with("DQ_DA", [1, 0]), "cell 'DQ_DA' must be a mapping with keys 'LLM' and 'user', got list"),
        ([("DQ_AQ", {"LLM": 1, "user": 1})], "payoff matrix must be a mapping of cells, got list"),
    ],
)
def test_from_dict_errors_name_the_cell_and_key(data, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        PayoffMatrix.from_dict(data)


def test_constructor_validates_cells_and_types() -> None:
    with pytest.raises(ValueError, match=re.escape("payoff matrix is missing cell(s) 'VQ_DA'")):
        PayoffMatrix({c: Payoff(llm=0, user=0) for c in CELLS[:-1]})
    with pytest.raises(TypeError, match=re.escape("cell 'DQ_AQ' must be a Payoff, got tuple")):
        PayoffMatrix({c: (0.0, 0.0) for c in CELLS})  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------- paper's Table 1
def test_table1_pareto_frontier_by_hand() -> None:
    # (user, LLM): DQ_AQ (3,3), DQ_CQ (2,1), DQ_DA (0,1), VQ_AQ (4,0), VQ_CQ (1,0), VQ_DA (1,1).
    # DQ_AQ: a dominator needs user >= 3 and LLM >= 3; only VQ_AQ has user >= 3 and its LLM is 0 -> frontier.
    # VQ_AQ: a dominator needs user >= 4; no other cell has it                                 -> frontier.
    # DQ_CQ (2,1), DQ_DA (0,1), VQ_CQ (1,0), VQ_DA (1,1): each <= (3,3) in both, < in one      -> dominated by DQ_AQ.
    assert pareto_frontier(TABLE1) == ("DQ_AQ", "VQ_AQ")
    assert dominates(TABLE1["DQ_AQ"], TABLE1["VQ_DA"]) and not dominates(TABLE1["VQ_AQ"], TABLE1["VQ_DA"])


def test_table1_nash_equilibrium_is_a_prisoners_dilemma() -> None:
    # The user's best row per column: DA: VQ (1 > 0); AQ: VQ (4 > 3); CQ: DQ (2 > 1).
    # The LLM's best column per row: VQ: DA (1 > 0, 0); DQ: AQ (3 > 1, 1).
    # Mutual best responses: VQ_DA only. DQ_AQ (3,3) Pareto-dominates it (1,1): the paper's "classic dilemma".
    assert nash_equilibria(TABLE1) == ("VQ_DA",)
    assert is_prisoners_dilemma(TABLE1) is True
    assert dilemma_witness(TABLE1) == ("VQ_DA", "DQ_AQ")


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.kind)
def test_table1_joint_optimum_is_dq_aq(rule: WelfareRule) -> None:
    # On the frontier: sum 6 vs 4, product 9 vs 0, and every zero-dominant rule gives VQ_AQ (LLM 0) welfare 0.
    assert optimal_cell(TABLE1, rule) == "DQ_AQ"
    assert optimal_cells(TABLE1, rule) == ("DQ_AQ",)
    assert optimal_action(TABLE1, rule) == "AQ"


def test_table1_welfare_per_cell() -> None:
    assert analyze(TABLE1, SUM).welfare == {"DQ_AQ": 6, "DQ_CQ": 3, "DQ_DA": 1, "VQ_AQ": 4, "VQ_CQ": 1, "VQ_DA": 2}
    assert analyze(TABLE1, NASH).welfare == {"DQ_AQ": 9, "DQ_CQ": 2, "DQ_DA": 0, "VQ_AQ": 0, "VQ_CQ": 0, "VQ_DA": 1}
    assert analyze(TABLE1, GEOMETRIC).welfare == {
        "DQ_AQ": 3.0,
        "DQ_CQ": math.sqrt(2),
        "DQ_DA": 0.0,
        "VQ_AQ": 0.0,
        "VQ_CQ": 0.0,
        "VQ_DA": 1.0,
    }
    assert analyze(TABLE1, CES).welfare == {"DQ_AQ": 3, "DQ_CQ": 4 / 3, "DQ_DA": 0, "VQ_AQ": 0, "VQ_CQ": 0, "VQ_DA": 1}


def test_table1_best_action_per_user_type_depends_on_the_rule() -> None:
    # VQ row: VQ_AQ (4,0), VQ_CQ (1,0), VQ_DA (1,1); VQ_CQ is dominated by VQ_DA, leaving VQ_AQ and VQ_DA.
    # Sum: 4 vs 2 -> AQ. Product: 0 vs 1 -> DA. The DQ row's best is AQ (3,3) under both.
    assert optimal_cell(TABLE1, SUM, user_type="VQ") == "VQ_AQ"
    assert optimal_action(TABLE1, SUM, user_type="VQ") == "AQ"
    assert optimal_action(TABLE1, NASH, user_type="VQ") == "DA"
    assert optimal_action(TABLE1, SUM, user_type="DQ") == "AQ"
    assert optimal_action(TABLE1, NASH, user_type="DQ") == "AQ"
    with pytest.raises(ValueError, match="unknown user type 'vq'"):
        optimal_action(TABLE1, SUM, user_type="vq")


def test_table1_analysis() -> None:
    assert analyze(TABLE1) == Analysis(
        matrix=TABLE1,
        rule=SUM,
        welfare={"DQ_AQ": 6.0, "DQ_CQ": 3.0, "DQ_DA": 1.0, "VQ_AQ": 4.0, "VQ_CQ": 1.0, "VQ_DA": 2.0},
        frontier=("DQ_AQ", "VQ_AQ"),
        optimum="DQ_AQ",
        optimal_cells=("DQ_AQ",),
        action="AQ",
        equilibria=("VQ_DA",),
        dilemma=("VQ_DA", "DQ_AQ"),
    )


# ------------------------------------------------------------------------------------------------------ tie-breaks
def test_tie_break_level1_welfare_beats_user() -> None:
    # DQ_AQ (1, 4) sum 5 beats VQ_AQ (4, 0) sum 4 although VQ_AQ is better for the user.
    m = grid({"DQ_AQ": (1.0, 4.0), "VQ_AQ": (4.0, 0.0)})
    assert optimal_cell(m, SUM) == "DQ_AQ"
    assert optimal_cell(m, NASH) == "DQ_AQ"


def test_tie_break_level2_equal_welfare_then_user() -> None:
    # DQ_AQ (1, 3) and VQ_CQ (3, 1): sum 4 each, product 3 each; the user's 3 > 1 picks VQ_CQ (later in CELLS order).
    m = grid({"DQ_AQ": (1.0, 3.0), "VQ_CQ": (3.0, 1.0)})
    for rule in ALL_RULES:
        assert optimal_cells(m, rule) == ("VQ_CQ",)


def test_tie_break_level2_survives_float_rounding() -> None:
    # DQ_CQ (user 0.3, LLM 0.0) and VQ_DA (user 0.2, LLM 0.1) have the same sum, 0.3, as the model reads them; in
    # floats 0.2 + 0.1 > 0.3, which alone would pick VQ_DA. The tie stands and the user's 0.3 picks DQ_CQ.
    assert 0.2 + 0.1 > 0.3 + 0.0
    m = grid({"DQ_CQ": (0.3, 0.0), "VQ_DA": (0.2, 0.1)})
    assert pareto_frontier(m) == ("DQ_CQ", "VQ_DA")
    assert optimal_cells(m, SUM) == ("DQ_CQ",)


def test_tie_break_level3_equal_welfare_and_user_then_llm() -> None:
    # DQ_AQ (0, 1) and VQ_DA (0, 2): product 0 each, user 0 each; the LLM's 2 > 1 picks VQ_DA. On the frontier this
    # is dominance ((0, 2) dominates (0, 1)), so step 3 never meets two frontier cells that differ.
    m = grid({"DQ_AQ": (0.0, 1.0), "VQ_DA": (0.0, 2.0)}, fill=(-1.0, 0.5))
    assert welfare(m["DQ_AQ"], NASH) == welfare(m["VQ_DA"], NASH) == 0.0
    assert optimal_cells(m, NASH) == ("VQ_DA",)
    assert optimal_cells(m, GEOMETRIC) == ("VQ_DA",)
    assert pareto_frontier(m) == ("VQ_DA",)


def test_tie_break_level4_exact_duplicates_resolve_to_cells_order() -> None:
    m = grid({"VQ_DA": (2.0, 2.0), "DQ_CQ": (2.0, 2.0)})
    assert pareto_frontier(m) == ("DQ_CQ", "VQ_DA")  # equal points both stay on the frontier
    for rule in ALL_RULES:
        assert optimal_cells(m, rule) == ("DQ_CQ", "VQ_DA")
        assert optimal_cell(m, rule) == "DQ_CQ"
        assert optimal_action(m, rule) == "CQ"
    same = grid({}, fill=(1.0, 1.0))
    assert pareto_frontier(same) == CELLS and optimal_cells(same) == CELLS and optimal_cell(same) == "DQ_AQ"


# ------------------------------------------------------------------------------------------------- welfare rules
def test_welfare_formulas_exact() -> None:
    p = Payoff(llm=9.0, user=4.0)
    assert welfare(p, SUM) == SUM(p) == 13.0
    assert welfare(p, NASH) == 36.0
    assert welfare(p, GEOMETRIC) == 6.0
    assert welfare(p, COBB_DOUGLAS) == 6.0
    assert welfare(p, WelfareRule("cobb_douglas", alpha=1.0)) == 4.0
    assert welfare(p, WelfareRule("cobb_douglas", alpha=0.0)) == 9.0
    assert welfare(Payoff(llm=3.0, user=1.0), CES) == 1.5  # harmonic mean: 2 * 1 * 3 / (1 + 3)
    assert welfare(Payoff(llm=3.0, user=0.7), WelfareRule("ces", 0.3, 1.0)) == pytest.approx(2.31, rel=1e-15)
    assert welfare(Payoff(llm=2.0, user=2.0), WelfareRule("ces", 0.3, 0.5)) == 2.0
    # The reward's baselines: linear is the mean (half the prompt's sum), user and llm one side each.
    assert welfare(p, WelfareRule("linear")) == 6.5
    assert welfare(p, WelfareRule("user")) == 4.0 and welfare(p, WelfareRule("llm")) == 9.0
    assert welfare(Payoff(llm=-9.0, user=4.0), WelfareRule("linear")) == -2.5


def test_cobb_douglas_at_one_half_is_the_published_square_root_and_survives_overflow() -> None:
    u, v = 0.3113, 0.5271
    assert welfare(Payoff(llm=v, user=u), COBB_DOUGLAS) == (u * v) ** 0.5
    assert welfare(Payoff(llm=1e300, user=1e300), COBB_DOUGLAS) == pytest.approx(1e300, rel=1e-12)
    assert welfare(Payoff(llm=1e-300, user=1e-300), COBB_DOUGLAS) == pytest.approx(1e-300, rel=1e-12)


def test_negative_payoffs_with_the_product_rule() -> None:
    # nash is the plain product (as the published `pareto_optimal_keys` ranks cells): two negatives give a positive.
    assert welfare(Payoff(llm=-2.0, user=-3.0), NASH) == 6.0
    assert welfare(Payoff(llm=-2.0, user=3.0), NASH) == -6.0
    # geometric is sqrt(LLM * user), real for a non-negative product, -sqrt(|LLM * user|) for a negative one.
    assert welfare(Payoff(llm=-2.0, user=-8.0), GEOMETRIC) == 4.0
    assert welfare(Payoff(llm=2.0, user=-8.0), GEOMETRIC) == -4.0
    assert math.copysign(1.0, welfare(Payoff(llm=0.0, user=-8.0), GEOMETRIC)) == 1.0  # 0.0, not -0.0

    # A dominated cell never wins, however large its product: DQ_DA (-4, -4) has product 16 > 1.
    m = grid({"DQ_AQ": (1.0, 1.0), "DQ_DA": (-4.0, -4.0)}, fill=(0.5, 0.5))
    assert max(CELLS, key=lambda c: welfare(m[c], NASH)) == "DQ_DA"  # the unrestricted argmax
    assert pareto_frontier(m) == ("DQ_AQ",)
    assert optimal_cell(m, NASH) == "DQ_AQ"

    # On the frontier the product does prefer a mutual loss: DQ_CQ (-3, -3) scores 9, the two lopsided cells -20.
    m = grid({"DQ_AQ": (5.0, -4.0), "VQ_AQ": (-4.0, 5.0), "DQ_CQ": (-3.0, -3.0)}, fill=(-5.0, -5.0))
    assert pareto_frontier(m) == ("DQ_AQ", "DQ_CQ", "VQ_AQ")
    assert optimal_cell(m, NASH) == "DQ_CQ"
    assert optimal_cell(m, GEOMETRIC) == "DQ_CQ"
    assert optimal_cell(m, SUM) == "DQ_AQ"  # sum 1 = 1 for DQ_AQ and VQ_AQ, the user's 5 > -4 breaks the tie


@pytest.mark.parametrize("rule", [COBB_DOUGLAS, CES, WelfareRule("ces", 0.3, 0.5)], ids=lambda r: f"{r.kind}{r.rho}")
def test_power_rules_reject_negative_payoffs(rule: WelfareRule) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{rule.kind} welfare needs non-negative payoffs, got Payoff(")):
        welfare(Payoff(llm=1.0, user=-0.1), rule)
    # The whole matrix must be in the rule's domain, even a dominated cell: the failure does not depend on dominance.
    m = grid({"DQ_AQ": (3.0, 3.0), "VQ_CQ": (-0.1, 0.0)})
    with pytest.raises(ValueError, match=re.escape(f"cell 'VQ_CQ': {rule.kind} welfare needs non-negative")):
        optimal_cell(m, rule)
    with pytest.raises(ValueError, match=re.escape("cell 'VQ_CQ'")):
        analyze(m, rule)


def test_ces_converges_to_cobb_douglas() -> None:
    p = Payoff(llm=3.0, user=0.7)
    cd = 0.7**0.3 * 3.0**0.7
    assert welfare(p, WelfareRule("cobb_douglas", alpha=0.3)) == cd
    assert welfare(p, WelfareRule("ces", alpha=0.3, rho=0.0)) == cd  # rho = 0 is the limit itself
    for sign in (-1.0, 1.0):
        errors = [abs(welfare(p, WelfareRule("ces", 0.3, sign * r)) - cd) for r in (1.0, 0.1, 1e-2, 1e-3, 1e-6)]
        assert errors == sorted(errors, reverse=True) and len(set(errors)) == len(errors)
        assert errors[-1] < 1e-6 * cd
        assert welfare(p, WelfareRule("ces", 0.3, sign * 1e-12)) == pytest.approx(cd, rel=1e-11)


def test_ces_edges() -> None:
    # Zero-dominance for rho <= 0, none for rho > 0.
    for rho in (-5.0, -1.0, -0.5, 0.0):
        assert welfare(Payoff(llm=3.0, user=0.0), WelfareRule("ces", 0.5, rho)) == 0.0
        assert welfare(Payoff(llm=0.0, user=3.0), WelfareRule("ces", 0.5, rho)) == 0.0
    assert welfare(Payoff(llm=3.0, user=0.0), WelfareRule("ces", 0.5, 1.0)) == 1.5
    assert welfare(Payoff(llm=0.0, user=0.0), WelfareRule("ces", 0.5, 2.0)) == 0.0
    # A zero weight drops its side, as in Cobb-Douglas.
    assert welfare(Payoff(llm=0.0, user=2.0), WelfareRule("ces", 1.0, -1.0)) == 2.0
    assert welfare(Payoff(llm=2.0, user=0.0), WelfareRule("ces", 0.0, -1.0)) == 2.0
    # Extreme exponents approach min and max without overflow.
    assert welfare(Payoff(llm=0.1, user=0.5), WelfareRule("ces", 0.5, -500.0)) == pytest.approx(0.1, rel=2e-3)
    assert welfare(Payoff(llm=0.1, user=0.5), WelfareRule("ces", 0.5, 500.0)) == pytest.approx(0.5, rel=2e-3)
    assert welfare(Payoff(llm=1e300, user=1e-300), WelfareRule("ces", 0.5, 2.0)) == pytest.approx(
        math.sqrt(0.5) * 1e300, rel=1e-12
    )
    assert welfare(Payoff(llm=1e300, user=1e-300), WelfareRule("ces", 0.5, -2.0)) == pytest.approx(
        math.sqrt(2) * 1e-300, rel=1e-12
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "product"}, "unknown welfare kind 'product'"),
        ({"kind": "ces", "alpha": 1.5}, "alpha must be a real number in [0, 1], got 1.5"),
        ({"alpha": -0.1}, "alpha must be a real number in [0, 1], got -0.1"),
        ({"alpha": math.nan}, "alpha must be a real number in [0, 1], got nan"),
        ({"kind": "ces", "rho": math.inf}, "rho must be a finite real number, got inf"),
        ({"rho": "0"}, "rho must be a finite real number, got '0'"),
    ],
)
def test_welfare_rule_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        WelfareRule(**kwargs)


def test_welfare_rule_is_a_frozen_value() -> None:
    rule = WelfareRule("ces", alpha=1, rho=-2)
    assert (rule.alpha, rule.rho) == (1.0, -2.0) and type(rule.alpha) is float
    assert rule == WelfareRule("ces", 1.0, -2.0) and len({rule, WelfareRule("ces", 1.0, -2.0)}) == 1
    with pytest.raises(AttributeError):
        rule.kind = "sum"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------------ equilibria
def test_no_pure_equilibrium() -> None:
    # Best responses cycle DQ_DA -> (user) VQ_DA -> (LLM) VQ_CQ -> (user) DQ_CQ -> (LLM) DQ_DA; AQ is never the LLM's.
    m = grid(
        {
            "DQ_DA": (0.0, 2.0),
            "VQ_DA": (1.0, 0.0),
            "VQ_CQ": (0.0, 2.0),
            "DQ_CQ": (1.0, 0.0),
            "DQ_AQ": (0.0, -1.0),
            "VQ_AQ": (0.0, -1.0),
        }
    )
    assert nash_equilibria(m) == ()
    assert is_prisoners_dilemma(m) is False and dilemma_witness(m) is None


def test_equilibrium_on_the_frontier_is_no_dilemma() -> None:
    # DQ_AQ (4, 4) is the LLM's best in DQ, the user's best in AQ; VQ's LLM-best VQ_AQ (3, 3) loses the user to DQ.
    m = grid({"DQ_AQ": (4.0, 4.0), "VQ_AQ": (3.0, 3.0), "VQ_CQ": (2.0, 0.0), "DQ_CQ": (1.0, 2.0)}, fill=(1.0, 1.0))
    assert nash_equilibria(m) == ("DQ_AQ",)
    assert pareto_frontier(m) == ("DQ_AQ",)
    assert is_prisoners_dilemma(m) is False


def test_two_equilibria_one_dominated() -> None:
    # A stag hunt: DQ_AQ (3, 3) and VQ_DA (2, 2) are both equilibria; VQ_DA is dominated, so it counts as a dilemma.
    m = grid({"DQ_AQ": (3.0, 3.0), "VQ_DA": (2.0, 2.0)})
    assert nash_equilibria(m) == ("DQ_AQ", "VQ_DA")
    assert dilemma_witness(m) == ("VQ_DA", "DQ_AQ")


def test_weak_best_responses_count() -> None:
    assert nash_equilibria(grid({}, fill=(1.0, 1.0))) == CELLS
    assert is_prisoners_dilemma(grid({}, fill=(1.0, 1.0))) is False


# ------------------------------------------------------------------------------------------------------ properties
def _decimals(lo: int, hi: int) -> st.SearchStrategy[float]:
    """One-decimal payoffs in [lo/10, hi/10], as the prompt asks the model to write them; small ones tie often."""
    return st.one_of(st.integers(max(lo, -3), min(hi, 3)), st.integers(lo, hi)).map(lambda k: k / 10)


SIGNED = _decimals(-50, 50)
NONNEG = _decimals(0, 50)
WIDE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def matrices(values: st.SearchStrategy[float]) -> st.SearchStrategy[PayoffMatrix]:
    pairs = st.lists(st.tuples(values, values), min_size=6, max_size=6)
    return pairs.map(lambda ps: PayoffMatrix({c: Payoff(llm=x, user=u) for c, (u, x) in zip(CELLS, ps, strict=True)}))


any_rule = st.builds(
    WelfareRule,
    kind=st.sampled_from(WELFARE_KINDS),
    alpha=st.floats(0.0, 1.0),
    rho=st.floats(-5.0, 5.0),
)
signed_rule = st.sampled_from(SIGNED_RULES)
PROPERTY = settings(max_examples=100, deadline=None)


@PROPERTY
@given(st.one_of(matrices(SIGNED), matrices(WIDE)))
def test_frontier_is_exactly_the_undominated_cells(m: PayoffMatrix) -> None:
    front = pareto_frontier(m)
    assert front and front == tuple(c for c in CELLS if c in front)
    for c in CELLS:
        dominated = any(dominates(m[d], m[c]) for d in CELLS)
        assert (c in front) is not dominated
        if c not in front:  # dominated by a frontier cell, not just by some cell
            assert any(dominates(m[f], m[c]) for f in front)


@PROPERTY
@given(st.one_of(st.tuples(matrices(NONNEG), any_rule), st.tuples(matrices(SIGNED), signed_rule)))
def test_optimum_is_on_the_frontier_for_every_rule(case: tuple[PayoffMatrix, WelfareRule]) -> None:
    m, rule = case
    best = optimal_cells(m, rule)
    assert best and set(best) <= set(pareto_frontier(m))
    assert optimal_cell(m, rule) == best[0]
    assert optimal_action(m, rule) == split_cell(best[0])[1]
    assert len({m[c] for c in best}) == 1  # several optimal cells only when their payoffs are identical
    for t in USER_TYPES:
        row = row_cells(t)
        cell = optimal_cell(m, rule, user_type=t)
        assert cell in row and not any(dominates(m[d], m[cell]) for d in row)
        assert optimal_action(m, rule, user_type=t) == split_cell(cell)[1]
    a = analyze(m, rule)
    assert (a.frontier, a.optimum, a.optimal_cells, a.action) == (pareto_frontier(m), best[0], best, best[0][3:])
    assert a.welfare == {c: welfare(m[c], rule) for c in CELLS}


def _exact_prompt_optimum(m: PayoffMatrix, kind: str) -> str:
    """The prompt's rule applied literally to all six cells in exact decimal arithmetic, no frontier step."""

    def key(i: int) -> tuple[Fraction, Fraction, Fraction, int]:
        p = m[CELLS[i]]
        u, x = Fraction(str(p.user)), Fraction(str(p.llm))
        return (u + x if kind == "sum" else u * x, u, x, -i)

    return CELLS[max(range(len(CELLS)), key=key)]


@PROPERTY
@given(st.one_of(st.tuples(matrices(SIGNED), st.just("sum")), st.tuples(matrices(NONNEG), st.just("nash"))))
def test_optimum_equals_the_exact_prompt_rule_for_monotone_welfare(case: tuple[PayoffMatrix, str]) -> None:
    # For a welfare monotone in both payoffs the frontier step changes nothing, and float rounding decides nothing.
    m, kind = case
    assert optimal_cell(m, WelfareRule(kind)) == _exact_prompt_optimum(m, kind)


@PROPERTY
@given(matrices(SIGNED), st.permutations(CELLS), st.booleans())
def test_optimum_is_invariant_to_key_order(m: PayoffMatrix, order: list[str], swap: bool) -> None:
    data = m.to_dict()
    shuffled = {c: (dict(reversed(data[c].items())) if swap else data[c]) for c in order}
    m2 = PayoffMatrix.from_dict(shuffled)
    assert m2 == m
    for rule in SIGNED_RULES:
        assert optimal_cell(m2, rule) == optimal_cell(m, rule)


@PROPERTY
@given(matrices(SIGNED), st.floats(0.1, 10.0), st.floats(-10.0, 10.0))
def test_positive_affine_transform_keeps_the_sum_optimum(m: PayoffMatrix, a: float, b: float) -> None:
    moved = m.map(lambda c, p: Payoff(llm=a * p.llm + b, user=a * p.user + b))
    assert optimal_cells(moved, SUM) == optimal_cells(m, SUM)
    assert pareto_frontier(moved) == pareto_frontier(m)


@PROPERTY
@given(matrices(NONNEG), st.floats(0.1, 10.0), st.sampled_from([*ALL_RULES, WelfareRule("ces", 0.3, 0.5)]))
def test_positive_scaling_keeps_every_optimum(m: PayoffMatrix, a: float, rule: WelfareRule) -> None:
    scaled = m.map(lambda c, p: Payoff(llm=a * p.llm, user=a * p.user))
    assert optimal_cells(scaled, rule) == optimal_cells(m, rule)


@PROPERTY
@given(matrices(SIGNED))
def test_geometric_ranks_like_nash(m: PayoffMatrix) -> None:
    assert optimal_cells(m, GEOMETRIC) == optimal_cells(m, NASH)


@PROPERTY
@given(st.floats(0.01, 100.0), st.floats(0.01, 100.0), st.floats(0.0, 1.0), st.floats(-5, 5), st.floats(-5, 5))
def test_ces_is_nondecreasing_in_rho(user: float, llm: float, alpha: float, r1: float, r2: float) -> None:
    # The power-mean inequality, with rho = 0 as Cobb-Douglas in between.
    lo, hi = sorted((r1, r2))
    p = Payoff(llm=llm, user=user)
    w_lo, w_hi = welfare(p, WelfareRule("ces", alpha, lo)), welfare(p, WelfareRule("ces", alpha, hi))
    assert w_lo <= w_hi * (1 + 1e-12)
    assert min(user, llm) * (1 - 1e-12) <= w_lo and w_hi <= max(user, llm) * (1 + 1e-12)


@PROPERTY
@given(st.one_of(matrices(_decimals(-3, 3)), matrices(SIGNED)))
def test_equilibria_and_dilemma_match_their_definitions(m: PayoffMatrix) -> None:
    def stable(cell: str) -> bool:
        t, a = split_cell(cell)
        user_ok = all(m[cell].user >= m[cell_name(t2, a)].user for t2 in USER_TYPES)
        llm_ok = all(m[cell].llm >= m[cell_name(t, a2)].llm for a2 in ACTIONS)
        return user_ok and llm_ok

    eqs = nash_equilibria(m)
    assert eqs == tuple(c for c in CELLS if stable(c))
    dilemma = any(dominates(m[d], m[e]) for e in eqs for d in CELLS)
    assert is_prisoners_dilemma(m) is dilemma
    witness = dilemma_witness(m)
    assert (witness is not None) is dilemma
    if witness is not None:
        e, better = witness
        assert e in eqs and better in pareto_frontier(m) and dominates(m[better], m[e])


@PROPERTY
@given(st.one_of(matrices(SIGNED), matrices(WIDE)))
def test_round_trips(m: PayoffMatrix) -> None:
    assert PayoffMatrix.from_dict(m.to_dict()) == m
    assert pickle.loads(pickle.dumps(m)) == m and hash(pickle.loads(pickle.dumps(m))) == hash(m)
