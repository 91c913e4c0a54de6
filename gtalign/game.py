"""The GTAlign game: a 2x3 normal-form game between the user and the assistant, and every rule over it.

The user's type (paper §2: the set of follow-up actions the user will take) is DQ (detailed question) or VQ (vague
question); the assistant acts DA (direct answer), CQ (one clarifying question) or AQ (answer plus one follow-up
question). Each of the six joint cells carries two payoffs, `LLM` and `user`. The policy writes this matrix in its
`<payoff>` block and then, in `<analyze>`, "derives the Pareto frontier" and picks one cell by the system prompt's
tie-break: 1) maximise social welfare, 2) if tied, maximise user, 3) if still tied, maximise LLM.

Everything that reads a matrix (the protocol parser, the reward's matrix-consistency term, the evaluator, the SFT
demonstrations, pricing steering) calls this module, so there is one definition of the frontier, of welfare and of
the optimum. Pure Python, stdlib only, tens of microseconds per matrix.

Choices made here, where the paper, its prompt and its code leave room:

* **Welfare is a parameter** (`WelfareRule`). The prompt maximises the sum `LLM + user`; the paper's objective is the
  Nash product / geometric mean `sqrt(U L)`, generalised in App. C.2-C.3 to Cobb-Douglas `U^a L^(1-a)` and CES
  `(a U^rho + (1-a) L^rho)^(1/rho)` (U = `user`, L = `LLM`). The same rules aggregate the reward's U and L
  (`gtalign.reward`), with the paper's baselines `linear` (the mean), `user` and `llm`.
* **Negative payoffs** (the prompt asks for values in about [-5, 5]). `sum`, `linear`, `user`, `llm` and `nash` take
  any real payoffs; `nash`
  is the plain product `LLM * user`, as the published inference code (`pareto_optimal_keys`) ranks cells, so two
  negatives multiply to a positive. `geometric` is `sqrt(LLM * user)` taken literally, which is real whenever the
  product is >= 0 (both negative included) and is extended to a negative product as `-sqrt(|LLM * user|)`: it is
  then a strictly increasing function of the Nash product and always ranks cells exactly as `nash` does (the paper
  treats the product and its geometric mean as one objective). `cobb_douglas` and `ces` are App. C's welfare
  functions over non-negative welfare levels; a real power of a negative number is not real and any shift to make
  it positive would move the optimum by an arbitrary constant, so they raise `ValueError` on a negative payoff.
* **The optimum is chosen among frontier cells**, as the prompt says. For a welfare that is monotone in both payoffs
  (sum; every rule on non-negative payoffs) this changes nothing: the lexicographic maximum of (welfare, user, LLM)
  is never Pareto-dominated. For the product on signed payoffs it matters: a dominated cell (-4, -4) has product 16
  but is never the optimum.
* **Welfare ties allow float rounding.** Payoffs are one-decimal numbers, so `0.1 + 0.2` and `0.3` are the same
  welfare to the model writing `<analyze>`; welfare values closer than `WELFARE_REL_TOL` of the matrix's payoff
  scale tie, and the user payoff decides. User and LLM payoffs are compared exactly. On the frontier two cells with
  the same user payoff have the same LLM payoff, so step 3 of the tie-break only ever meets exact duplicates; those
  resolve to the first cell in `CELLS` order (`optimal_cells` returns all of them).

Example (the paper's Table 1)::

    >>> m = PayoffMatrix.from_dict({
    ...     "DQ_AQ": {"LLM": 3, "user": 3}, "DQ_CQ": {"LLM": 1, "user": 2}, "DQ_DA": {"LLM": 1, "user": 0},
    ...     "VQ_AQ": {"LLM": 0, "user": 4}, "VQ_CQ": {"LLM": 0, "user": 1}, "VQ_DA": {"LLM": 1, "user": 1}})
    >>> pareto_frontier(m), optimal_cell(m), nash_equilibria(m), dilemma_witness(m)
    (('DQ_AQ', 'VQ_AQ'), 'DQ_AQ', ('VQ_DA',), ('VQ_DA', 'DQ_AQ'))
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "ACTIONS",
    "CELLS",
    "DEFAULT_RULE",
    "USER_TYPES",
    "WELFARE_KINDS",
    "WELFARE_REL_TOL",
    "Analysis",
    "Payoff",
    "PayoffMatrix",
    "WelfareKind",
    "WelfareRule",
    "analyze",
    "cell_name",
    "dilemma_witness",
    "dominates",
    "is_prisoners_dilemma",
    "nash_equilibria",
    "optimal_action",
    "optimal_cell",
    "optimal_cells",
    "pareto_frontier",
    "row_cells",
    "split_cell",
    "welfare",
]

USER_TYPES: tuple[str, ...] = ("DQ", "VQ")
ACTIONS: tuple[str, ...] = ("DA", "CQ", "AQ")
# The system prompt's key order; every tuple of cells this module returns follows it.
CELLS: tuple[str, ...] = ("DQ_AQ", "DQ_CQ", "DQ_DA", "VQ_AQ", "VQ_CQ", "VQ_DA")
_INDEX: dict[str, int] = {c: i for i, c in enumerate(CELLS)}
_SPLIT: tuple[tuple[str, str], ...] = tuple((c[:2], c[3:]) for c in CELLS)
_ROWS: dict[str, tuple[int, ...]] = {t: tuple(i for i, (ut, _) in enumerate(_SPLIT) if ut == t) for t in USER_TYPES}
_ALL: tuple[int, ...] = tuple(range(len(CELLS)))
_KEYS = ("LLM", "user")  # the prompt's per-cell keys, in its order

# Two welfare values tie when they differ by at most this fraction of max(|best welfare|, |largest payoff|^d), d the
# rule's degree of homogeneity (2 for nash, else 1): rounding, not the payoffs, must not decide a tie (module doc).
WELFARE_REL_TOL = 1e-9


def cell_name(user_type: str, action: str) -> str:
    """`("DQ", "AQ") -> "DQ_AQ"`; raises `ValueError` on an unknown user type or action."""
    if user_type not in USER_TYPES:
        raise ValueError(f"unknown user type {user_type!r} (expected one of {', '.join(USER_TYPES)})")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} (expected one of {', '.join(ACTIONS)})")
    return f"{user_type}_{action}"


def split_cell(cell: str) -> tuple[str, str]:
    """`"DQ_AQ" -> ("DQ", "AQ")`; raises `ValueError` on anything but one of the six `CELLS`."""
    try:
        return _SPLIT[_INDEX[cell]]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cell {cell!r} (expected one of {', '.join(CELLS)})") from None


def row_cells(user_type: str) -> tuple[str, ...]:
    """The three cells of one user type, in `CELLS` order (the assistant's choices once the type is known)."""
    if user_type not in _ROWS:
        raise ValueError(f"unknown user type {user_type!r} (expected one of {', '.join(USER_TYPES)})")
    return tuple(CELLS[i] for i in _ROWS[user_type])


def _finite_real(value: Any) -> float | None:
    """`value` as a float when it is a finite real number (bools excluded: JSON `true` is no payoff), else None."""
    if type(value) is not float:  # the common case skips the slow abstract-base-class checks
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return None
        value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class Payoff:
    """The two payoffs of one cell. Finite floats only: NaN or inf would make dominance and the argmax meaningless."""

    llm: float
    user: float

    def __post_init__(self) -> None:
        for name in ("llm", "user"):
            raw = getattr(self, name)
            value = _finite_real(raw)
            if value is None:
                raise ValueError(f"Payoff.{name} must be a finite real number, got {raw!r}")
            object.__setattr__(self, name, value)


def dominates(a: Payoff, b: Payoff) -> bool:
    """True iff `a` Pareto-dominates `b`: at least as good for both players and strictly better for one (App. C.1)."""
    return a.user >= b.user and a.llm >= b.llm and (a.user > b.user or a.llm > b.llm)


class PayoffMatrix(Mapping[str, Payoff]):
    """An immutable payoff matrix: exactly the six `CELLS`, each a `Payoff`; iterates in `CELLS` order.

    Build it from the prompt's JSON shape with `from_dict`, or from `{cell: Payoff}` with the constructor. Two
    matrices are equal when all six payoffs are equal, whatever the key order they were built from.
    """

    __slots__ = ("_hash", "_payoffs")
    _payoffs: tuple[Payoff, ...]
    _hash: int

    def __init__(self, payoffs: Mapping[str, Payoff]) -> None:
        problem = _cell_set_problem(payoffs)
        if problem:
            raise ValueError(f"payoff matrix {problem}")
        for cell in CELLS:
            if not isinstance(payoffs[cell], Payoff):
                raise TypeError(f"cell {cell!r} must be a Payoff, got {type(payoffs[cell]).__name__}")
        values = tuple(payoffs[c] for c in CELLS)
        object.__setattr__(self, "_payoffs", values)
        object.__setattr__(self, "_hash", hash(values))

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> PayoffMatrix:
        """Read the prompt's shape `{"DQ_AQ": {"LLM": 1.0, "user": 2.0}, ...}` (any key order).

        Strict: exactly the six cells, each with exactly the keys `LLM` and `user`, each a finite real number (ints
        are accepted, bools and strings are not). Every problem raises `ValueError` naming the cell and key, so a
        parser can report it as the reason a completion has no valid matrix. Tolerant readings (case, aliases,
        numeric strings) belong to the protocol parser, not here.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"payoff matrix must be a mapping of cells, got {type(data).__name__}")
        problem = _cell_set_problem(data)
        if problem:
            raise ValueError(f"payoff matrix {problem}")
        payoffs: dict[str, Payoff] = {}
        for cell in CELLS:
            entry = data[cell]
            if not isinstance(entry, Mapping):
                kind = type(entry).__name__
                raise ValueError(f"cell {cell!r} must be a mapping with keys 'LLM' and 'user', got {kind}")
            missing = [k for k in _KEYS if k not in entry]
            extra = [k for k in entry if k not in _KEYS]
            if missing or extra:
                parts = ([f"is missing key(s) {_names(missing)}"] if missing else []) + (
                    [f"has unexpected key(s) {_names(extra)}"] if extra else []
                )
                raise ValueError(f"cell {cell!r} " + " and ".join(parts))
            values = {}
            for key in _KEYS:
                value = _finite_real(entry[key])
                if value is None:
                    raise ValueError(f"cell {cell!r} key {key!r} must be a finite real number, got {entry[key]!r}")
                values[key] = value
            payoffs[cell] = Payoff(llm=values["LLM"], user=values["user"])
        return cls(payoffs)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """The prompt's shape, cells in `CELLS` order and keys `LLM`, `user`: `from_dict(m.to_dict()) == m`."""
        return {c: {"LLM": p.llm, "user": p.user} for c, p in zip(CELLS, self._payoffs, strict=True)}

    @property
    def cells(self) -> tuple[str, ...]:
        """The six cell names, in `CELLS` order."""
        return CELLS

    def map(self, fn: Callable[[str, Payoff], Payoff]) -> PayoffMatrix:
        """A new matrix with `fn(cell, payoff)` in every cell (pricing steering edits payoffs this way)."""
        return PayoffMatrix({c: fn(c, p) for c, p in zip(CELLS, self._payoffs, strict=True)})

    def __getitem__(self, cell: str) -> Payoff:
        try:
            return self._payoffs[_INDEX[cell]]
        except (KeyError, TypeError):
            raise KeyError(cell) from None

    def __iter__(self) -> Iterator[str]:
        return iter(CELLS)

    def __len__(self) -> int:
        return len(CELLS)

    def __contains__(self, cell: object) -> bool:
        return isinstance(cell, str) and cell in _INDEX

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PayoffMatrix):
            return NotImplemented
        return self._payoffs == other._payoffs

    def __hash__(self) -> int:
        return self._hash

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PayoffMatrix is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("PayoffMatrix is immutable")

    def __reduce__(self) -> tuple[type[PayoffMatrix], tuple[dict[str, Payoff]]]:
        # Slots plus a blocking __setattr__ defeat the default pickle protocol; rebuild through the constructor.
        return (PayoffMatrix, (dict(zip(CELLS, self._payoffs, strict=True)),))

    def __repr__(self) -> str:
        return f"PayoffMatrix.from_dict({self.to_dict()!r})"


def _names(keys: list[Any]) -> str:
    return ", ".join(repr(k) for k in keys)


def _cell_set_problem(data: Mapping[Any, Any]) -> str:
    """'' when `data` has exactly the six cells, else what is missing and what is unexpected."""
    missing = [c for c in CELLS if c not in data]
    extra = [k for k in data if k not in _INDEX]
    parts = ([f"is missing cell(s) {_names(missing)}"] if missing else []) + (
        [f"has unexpected cell(s) {_names(extra)}"] if extra else []
    )
    return " and ".join(parts)


# --------------------------------------------------------------------------------------------------------- welfare
WelfareKind = Literal["sum", "nash", "geometric", "cobb_douglas", "ces", "linear", "user", "llm"]
WELFARE_KINDS: tuple[str, ...] = get_args(WelfareKind)
_DEGREE = {"nash": 2}  # homogeneity, welfare(t*p) = t^d W: 1 for every other rule


@dataclass(frozen=True)
class WelfareRule:
    """How a cell's two payoffs become one social-welfare number (U = `user`, L = `LLM`).

    * `sum`: L + U, the system prompt's "maximize social welfare (LLM + user)".
    * `linear`: (U + L) / 2, the paper's linear reward baseline (Table 5): the sum's ranking on half its scale.
    * `user`, `llm`: U alone, L alone, the paper's single-sided reward baselines.
    * `nash`: L * U, the Nash product, the paper's objective as the published inference code ranks it. Any sign.
    * `geometric`: sqrt(L * U), the paper's W = sqrt(U L); `-sqrt(|L * U|)` when the product is negative, so that it
      always ranks like `nash`.
    * `cobb_douglas`: U^alpha * L^(1 - alpha) (App. C.2, C.3), GTAlign's reward sqrt(U L) at alpha = 1/2;
      non-negative payoffs only.
    * `ces`: (alpha U^rho + (1 - alpha) L^rho)^(1/rho) (App. C.3); non-negative payoffs only. rho <= 0 keeps
      zero-dominance (W = 0 when U or L is 0), rho = 0 is Cobb-Douglas (the limit), rho = 1 the weighted mean.

    `alpha` (the user's share, in [0, 1]) is read by `cobb_douglas` and `ces` only, `rho` (finite) by `ces` only.
    Calling the rule on a `Payoff` gives its welfare.
    """

    kind: WelfareKind = "sum"
    alpha: float = 0.5
    rho: float = -1.0

    def __post_init__(self) -> None:
        if self.kind not in WELFARE_KINDS:
            raise ValueError(f"unknown welfare kind {self.kind!r} (expected one of {', '.join(WELFARE_KINDS)})")
        alpha, rho = _finite_real(self.alpha), _finite_real(self.rho)
        if alpha is None or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a real number in [0, 1], got {self.alpha!r}")
        if rho is None:
            raise ValueError(f"rho must be a finite real number, got {self.rho!r}")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "rho", rho)

    def __call__(self, payoff: Payoff) -> float:
        return welfare(payoff, self)


# The system prompt's rule: maximise LLM + user.
DEFAULT_RULE = WelfareRule()


def welfare(payoff: Payoff, rule: WelfareRule = DEFAULT_RULE) -> float:
    """The social welfare of one cell under `rule` (see `WelfareRule` for each formula and its domain)."""
    user, llm = payoff.user, payoff.llm
    kind = rule.kind
    if kind == "sum":
        return llm + user
    if kind == "linear":
        return (user + llm) / 2
    if kind == "user":
        return user
    if kind == "llm":
        return llm
    if kind == "nash":
        return llm * user
    if kind == "geometric":
        product = user * llm
        if math.isfinite(product) and (product or not (user and llm)):
            root = math.sqrt(abs(product))  # correctly rounded: sqrt(9) is exactly 3
        else:  # the product over- or underflowed; the square roots of the factors do not
            root = math.sqrt(abs(user)) * math.sqrt(abs(llm))
        return -root if (user < 0) != (llm < 0) and root else root
    if user < 0 or llm < 0:
        raise ValueError(
            f"{kind} welfare needs non-negative payoffs, got {payoff!r}; use the sum, nash or geometric rule for "
            "signed payoff matrices"
        )
    if kind == "cobb_douglas":
        return _cobb_douglas(user, llm, rule.alpha)
    return _ces(user, llm, rule.alpha, rule.rho)


def _cobb_douglas(user: float, llm: float, alpha: float) -> float:
    """U^alpha L^(1-alpha) for user, llm >= 0; at alpha = 1/2 as the published reward computes it, (U L)^0.5.

    The published spelling keeps the GTAlign reward bit-identical to the published code's; a product that over- or
    underflows falls back to the factors' powers, which do not.
    """
    if alpha == 0.5:
        product = user * llm
        if math.isfinite(product) and (product or not (user and llm)):
            return product**0.5
    return user**alpha * llm ** (1.0 - alpha)


def _ces(user: float, llm: float, alpha: float, rho: float) -> float:
    """CES welfare for user, llm >= 0, exact at the edges and free of overflow for any finite rho.

    A zero weight drops its side (alpha = 1 gives U, alpha = 0 gives L, as Cobb-Douglas does). Otherwise both
    payoffs are divided by m (the larger one for rho > 0, the smaller for rho < 0), so that every ratio^rho <= 1,
    and W = m * s^(1/rho) with s = sum_i w_i r_i^rho in (0, 1], taken through logs; near s = 1 as
    log1p(sum_i w_i expm1(rho ln r_i)), accurate as rho -> 0, where W tends to Cobb-Douglas (|rho| < 1e-150 is
    treated as 0; the two differ by far less than a float's precision there).
    """
    if alpha == 1.0:
        return user
    if alpha == 0.0:
        return llm
    if abs(rho) < 1e-150:
        return _cobb_douglas(user, llm, alpha)
    if user == 0.0 or llm == 0.0:
        if rho < 0:
            return 0.0  # zero-dominance: 0^rho is infinite, so the whole power mean is 0
        # rho > 0: the zero side adds nothing, W = (w x^rho)^(1/rho) = w^(1/rho) x (0.0 ** big underflows to 0)
        return alpha ** (1.0 / rho) * user if llm == 0.0 else (1.0 - alpha) ** (1.0 / rho) * llm
    m = max(user, llm) if rho > 0 else min(user, llm)
    log_m = math.log(m)  # logs of the ratios as differences: user / m itself can under- or overflow
    a, b = rho * (math.log(user) - log_m), rho * (math.log(llm) - log_m)  # both <= 0
    t = alpha * math.expm1(a) + (1.0 - alpha) * math.expm1(b)  # s - 1, accurate while s is near 1
    # log s: log1p near s = 1 (rho -> 0); directly otherwise, where 1 + t would cancel (s tiny).
    log_s = math.log1p(t) if t > -0.5 else math.log(alpha * math.exp(a) + (1.0 - alpha) * math.exp(b))
    e = log_s / rho  # W lies between user and llm, but exp(e) alone can overflow when m is tiny
    return m * math.exp(e) if e < 700.0 else math.exp(log_m + e)


# -------------------------------------------------------------------------------------------- frontier and optimum
def _frontier(payoffs: tuple[Payoff, ...], indices: tuple[int, ...]) -> tuple[int, ...]:
    points = [(i, payoffs[i].user, payoffs[i].llm) for i in indices]
    # `dominates`, inlined: this is the hot loop of every call.
    return tuple(
        i for i, u, v in points if not any(u2 >= u and v2 >= v and (u2 > u or v2 > v) for _, u2, v2 in points)
    )


def pareto_frontier(matrix: PayoffMatrix) -> tuple[str, ...]:
    """The cells no other cell Pareto-dominates, in `CELLS` order; never empty. Equal cells both stay on it."""
    return tuple(CELLS[i] for i in _frontier(matrix._payoffs, _ALL))


def _welfares(matrix: PayoffMatrix, rule: WelfareRule) -> list[float]:
    # All six, even when only some are candidates: a rule that is undefined on the matrix fails the same way
    # whichever cells are dominated.
    out = []
    for cell, payoff in zip(CELLS, matrix._payoffs, strict=True):
        try:
            out.append(welfare(payoff, rule))
        except ValueError as err:
            raise ValueError(f"cell {cell!r}: {err}") from None
    return out


def _optimal(matrix: PayoffMatrix, rule: WelfareRule, user_type: str | None) -> tuple[int, ...]:
    """Indices that survive the prompt's tie-break among the frontier of the candidates (all cells or one row)."""
    if user_type is None:
        candidates = _ALL
    elif user_type in _ROWS:
        candidates = _ROWS[user_type]
    else:
        raise ValueError(f"unknown user type {user_type!r} (expected one of {', '.join(USER_TYPES)})")
    payoffs = matrix._payoffs
    scores = _welfares(matrix, rule)
    front = _frontier(payoffs, candidates)
    # 1) maximise welfare, up to rounding relative to the matrix's scale (payoff scale ^ homogeneity degree).
    best = max(scores[i] for i in front)
    size = max(max(abs(p.user), abs(p.llm)) for p in payoffs)
    scale = size * size if _DEGREE.get(rule.kind, 1) == 2 else size  # a product, not **, so huge payoffs give inf
    tol = WELFARE_REL_TOL * max(abs(best), scale)
    tied = [i for i in front if scores[i] == best or (math.isfinite(tol) and best - scores[i] <= tol)]
    # 2) maximise user, 3) maximise LLM: exact comparisons of the numbers as written.
    top = max((payoffs[i].user, payoffs[i].llm) for i in tied)
    return tuple(i for i in tied if (payoffs[i].user, payoffs[i].llm) == top)


def optimal_cells(
    matrix: PayoffMatrix, rule: WelfareRule = DEFAULT_RULE, user_type: str | None = None
) -> tuple[str, ...]:
    """Every frontier cell the prompt's three-step tie-break cannot separate, in `CELLS` order (usually one).

    With `user_type`, only that row's cells compete. More than one cell means identical payoffs, so acting on any
    of them is equally optimal; an evaluator can accept all of them.
    """
    return tuple(CELLS[i] for i in _optimal(matrix, rule, user_type))


def optimal_cell(matrix: PayoffMatrix, rule: WelfareRule = DEFAULT_RULE, user_type: str | None = None) -> str:
    """The cell `<analyze>` should settle on: among frontier cells, max welfare, then max user, then max LLM, then
    the first in `CELLS` order. With `user_type`, the best cell of that row."""
    return CELLS[_optimal(matrix, rule, user_type)[0]]


def optimal_action(matrix: PayoffMatrix, rule: WelfareRule = DEFAULT_RULE, user_type: str | None = None) -> str:
    """The assistant action (DA, CQ or AQ) of `optimal_cell`: what `<response>` should do."""
    return _SPLIT[_optimal(matrix, rule, user_type)[0]][1]


# ----------------------------------------------------------------------------------------------------- equilibria
def _equilibria(payoffs: tuple[Payoff, ...]) -> tuple[int, ...]:
    out = []
    for t, row in _ROWS.items():
        other = _ROWS[USER_TYPES[1 - USER_TYPES.index(t)]]
        llm_best = max(payoffs[i].llm for i in row)
        for k, i in enumerate(row):  # rows list actions in the same order, so row[k] and other[k] share a column
            if payoffs[i].llm == llm_best and payoffs[i].user >= payoffs[other[k]].user:
                out.append(i)
    return tuple(sorted(out))


def nash_equilibria(matrix: PayoffMatrix) -> tuple[str, ...]:
    """Pure-strategy Nash equilibria of the simultaneous game, in `CELLS` order (possibly none).

    The user picks the row (DQ/VQ) for its `user` payoff, the assistant the column (DA/CQ/AQ) for its `LLM` payoff;
    a cell is an equilibrium iff neither gains strictly by deviating alone (weak best responses: ties count).
    """
    return tuple(CELLS[i] for i in _equilibria(matrix._payoffs))


def dilemma_witness(matrix: PayoffMatrix) -> tuple[str, str] | None:
    """`(equilibrium, better)` where `better` Pareto-dominates the pure equilibrium, or None if there is none.

    The paper's "classic Prisoner's Dilemma": rational unilateral play ends in a cell both players would trade for
    another. The first dominated equilibrium in `CELLS` order is reported, with the first frontier cell dominating
    it (a dominated cell is always dominated by some frontier cell, since dominance is a strict partial order).
    """
    payoffs = matrix._payoffs
    front = _frontier(payoffs, _ALL)
    for e in _equilibria(payoffs):
        for f in front:
            if dominates(payoffs[f], payoffs[e]):
                return CELLS[e], CELLS[f]
    return None


def is_prisoners_dilemma(matrix: PayoffMatrix) -> bool:
    """True iff some pure Nash equilibrium is Pareto-dominated by another cell."""
    return dilemma_witness(matrix) is not None


# ------------------------------------------------------------------------------------------------------- analysis
@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything `<analyze>` talks about, solved exactly: for writing demonstrations and checking completions."""

    matrix: PayoffMatrix
    rule: WelfareRule
    welfare: dict[str, float] = field(hash=False)  # per cell, in CELLS order; read-only by convention
    frontier: tuple[str, ...]
    optimum: str
    optimal_cells: tuple[str, ...]
    action: str
    equilibria: tuple[str, ...]
    dilemma: tuple[str, str] | None


def analyze(matrix: PayoffMatrix, rule: WelfareRule = DEFAULT_RULE) -> Analysis:
    """Solve the matrix under `rule`: welfare per cell, frontier, optimum and its action, equilibria, dilemma."""
    best = optimal_cells(matrix, rule)
    return Analysis(
        matrix=matrix,
        rule=rule,
        welfare=dict(zip(CELLS, _welfares(matrix, rule), strict=True)),
        frontier=pareto_frontier(matrix),
        optimum=best[0],
        optimal_cells=best,
        action=split_cell(best[0])[1],
        equilibria=nash_equilibria(matrix),
        dilemma=dilemma_witness(matrix),
    )
