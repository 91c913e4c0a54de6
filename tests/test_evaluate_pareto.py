"""App. C.1 Pareto metrics on small point sets, every expected number computed by hand."""

import pytest

from gtalign.evaluate.pareto import (
    bounds,
    compare,
    coverage,
    dominance_counts,
    frontier,
    hypervolume,
    regret,
    regrets,
)


def test_dominance_needs_one_strict_coordinate():
    assert dominance_counts([(1, 1), (1, 1), (1, 1), (1, 0)], [(1, 0.5), (0.5, 0.5), (1, 1), (0, 1)]) == (2, 0, 2)


def test_frontier_is_strict_in_both_coordinates_and_keeps_duplicates():
    pts = [(0, 0), (1, 0), (0, 1), (0.5, 0.5), (0.4, 0.4), (1, 0)]
    # (0,0) and (0.4,0.4) are beaten in both coordinates by (0.5,0.5); nothing beats the others in both.
    assert frontier(pts) == [(0, 1), (0.5, 0.5), (1, 0), (1, 0)]
    # As written in C.1: a point beaten in one coordinate and equal in the other stays on F.
    assert frontier([(1, 0.2), (1, 0.5)]) == [(1, 0.2), (1, 0.5)]
    assert frontier([]) == []


def test_hypervolume_is_the_union_of_rectangles():
    # [0,1]x[0,0.5] ∪ [0,0.5]x[0,1] = 0.5 + 0.5 - 0.25
    assert hypervolume([(1, 0.5), (0.5, 1)], (0, 0)) == pytest.approx(0.75)
    # Dominated points add nothing; points on or below the reference add nothing.
    assert hypervolume([(1, 0.5), (0.5, 1), (0.4, 0.4), (0, 3), (3, 0)], (0, 0)) == pytest.approx(0.75)
    assert hypervolume([(2, 3)], (1, 1)) == pytest.approx(2.0)
    assert hypervolume([(2, 3)], (1, 1), scale=(2, 4)) == pytest.approx(0.25)
    assert hypervolume([], (0, 0)) == 0.0


def test_coverage_and_regret_by_hand():
    front = [(1, 0.5), (0.5, 1)]
    b = bounds([(0, 0), (1, 0.5), (0.5, 1)])
    assert (b.u_min, b.u_max, b.l_min, b.l_max) == (0, 1, 0, 1)
    assert coverage([(1, 0.5), (0.5, 0.5), (0.5, 1), (0, 0)], front) == 0.5
    # (0.5,0.5): 0.5 behind either frontier point; (0,0): 1; (0.8,0.9): max(-0.3, 0.1) = 0.1 against (0.5,1).
    assert regrets([(0.5, 0.5), (0, 0), (0.8, 0.9), (1, 0.5)], front, b) == pytest.approx([0.5, 1.0, 0.1, 0.0])
    assert regret([(0.5, 0.5), (0, 0)], front, b) == pytest.approx(0.75)


def test_regret_with_a_zero_range_ignores_that_coordinate():
    b = bounds([(0.2, 0.5), (0.6, 0.5)])
    assert regrets([(0.2, 0.5)], [(0.6, 0.5)], b) == pytest.approx([1.0])


def test_dominance_counts_per_instance():
    a = [(1, 0.5), (0, 0), (0.5, 0.5), (0.9, 0.9)]
    b = [(0.5, 1), (0.2, 0.2), (0.5, 0.5), (0.1, 0.9)]
    assert dominance_counts(a, b) == (1, 1, 2)
    with pytest.raises(ValueError):
        dominance_counts(a, b[:2])


def test_compare_two_methods_by_hand():
    a = {"1": (1.0, 0.5), "2": (0.0, 0.0), "3": (0.5, 0.5), "5": None}
    b = {"1": (0.5, 1.0), "2": (0.2, 0.2), "3": (0.5, 0.5), "4": (0.9, 0.9), "5": (1.0, 1.0)}
    c = compare("math-hard", "A", a, "B", b)
    # Paired instances 1-3 (4 is B's only, 5 unknown for A). S = both sides; bounds [0,1]x[0,1];
    # F = {(0.5,0.5) twice, (0.5,1), (1,0.5)}.
    assert (c.n, c.excluded, c.frontier_size) == (3, 2, 4)
    assert c.coverage_a == pytest.approx(2 / 3) and c.coverage_b == pytest.approx(2 / 3)
    assert c.hypervolume_a == pytest.approx(0.5) and c.hypervolume_b == pytest.approx(0.5)
    # A: (0,0) is 0.5 behind (0.5,0.5); B: (0.2,0.2) is 0.3 behind it.
    assert c.regret_a == pytest.approx(0.5 / 3) and c.regret_b == pytest.approx(0.1)
    assert (c.a_wins, c.b_wins, c.ties) == (0, 1, 2)
    assert compare("x", "A", {"1": None}, "B", {"1": (1, 1)}) is None


def test_compare_with_normalised_hypervolume_and_a_clear_winner():
    a = {"1": (0.8, 0.8), "2": (0.6, 0.9)}
    b = {"1": (0.2, 0.4), "2": (0.4, 0.2)}
    c = compare("medium", "A", a, "B", b, normalize_hypervolume=True)
    # ref (0.2, 0.2), ranges 0.6 x 0.7. A: [0.2,0.8]x[0.2,0.8] ∪ [0.2,0.6]x[0.2,0.9] = 0.36 + 0.4*0.1 = 0.40.
    assert c.hypervolume_a == pytest.approx(0.40 / 0.42)
    assert c.hypervolume_b == 0.0  # every B point lies on the reference in one coordinate
    assert (c.coverage_a, c.coverage_b) == (1.0, 0.0)
    assert c.regret_a == 0.0
    # B (0.2,0.4) vs (0.8,0.8): max(0.6/0.6, 0.4/0.7) = 1; vs (0.6,0.9): max(0.4/0.6, 0.5/0.7) = 5/7 -> 5/7.
    # B (0.4,0.2) vs (0.8,0.8): max(0.4/0.6, 0.6/0.7) = 6/7; vs (0.6,0.9): max(0.2/0.6, 0.7/0.7) = 1 -> 6/7.
    assert c.regret_b == pytest.approx((5 / 7 + 6 / 7) / 2)
    assert (c.a_wins, c.b_wins, c.ties) == (2, 0, 0)
