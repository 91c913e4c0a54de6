"""The paper's worked examples as test data, shared by the game and steering tests (no tests here)."""

from __future__ import annotations

from gtalign.game import PayoffMatrix

# The paper's Table 1, (U_user, U_LLM); the PDF's column header "DQ AQ CQ" is read as DA/AQ/CQ (paper.md §2).
TABLE1_DICT = {
    "VQ_DA": {"LLM": 1, "user": 1},
    "VQ_AQ": {"LLM": 0, "user": 4},
    "VQ_CQ": {"LLM": 0, "user": 1},
    "DQ_DA": {"LLM": 1, "user": 0},
    "DQ_AQ": {"LLM": 3, "user": 3},
    "DQ_CQ": {"LLM": 1, "user": 2},
}
TABLE1 = PayoffMatrix.from_dict(TABLE1_DICT)
