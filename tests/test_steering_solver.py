"""Pricing steering with an exact solver in the loop (`SteerRequest.analyze="solver"`): at `</payoff>` the decoder
splices the (edited) matrix and the analysis `gtalign.protocol.render_analyze` writes for it, and the model writes
only the response. Scripted-model tests pin the splice exactly; a tiny Qwen2 trained here in seconds checks the
loop on a real model: batches where some rows splice a long analysis and others never close their payoff end, the
spliced answers parse strictly, and an identity solver run reproduces plain greedy generation token for token."""

from __future__ import annotations

import pytest
import torch
from steering_support import CQ_MATRIX, RESPONSES, TEST_WORDS, ScriptedLM

from gtalign.game import CELLS, PayoffMatrix, WelfareRule
from gtalign.modeling import TinyModelConfig, build_tiny_model
from gtalign.protocol import (
    check_strict,
    extract_block,
    parse_payoff_strict,
    read_tolerant,
    render_analyze,
    render_completion,
    render_messages,
    render_payoff,
    render_through_analyze,
)
from gtalign.reward.consistency import matrix_consistency
from gtalign.steering import PricingTransform, Steerer, SteerRequest

SUM = WelfareRule(kind="sum")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny forwards are faster on one thread than on two contended ones (and this machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def api(price: float = 2.0) -> PricingTransform:
    return PricingTransform("subscription->api", price_per_100_words=price, expected_words=TEST_WORDS)


def prompt(question: str) -> list[dict[str, str]]:
    return render_messages(question, style="compact")


# ------------------------------------------------------------------------------------------- scripted, exact
@pytest.mark.parametrize("tok", ["whole", "glued"], indirect=True)  # tags cut whole (tiny) or glued (Qwen): heals
def test_the_solver_writes_the_analysis_of_the_edited_matrix_and_the_model_only_the_response(tok):
    lm = ScriptedLM(tok)
    steerer = Steerer(lm, tok)
    questions = ["What is 2 + 2?", "A longer question, so that the two prompts differ in length: 2 + 2?"]
    outs = steerer.generate([SteerRequest(prompt(q), transform=api(), analyze="solver") for q in questions])
    edited = api()(CQ_MATRIX)
    for i, out in enumerate(outs):
        strict = check_strict(out.text)
        assert strict.ok, strict.reason
        assert strict.matrix == edited and strict.blocks["analyze"] == render_analyze(edited, SUM)
        assert out.text == render_completion("Scripted.", edited, render_analyze(edited, SUM), RESPONSES["DA"])
        assert (out.analyze_mode, out.solver_analyze, out.spliced, out.steer_error) == ("solver", True, True, None)
        assert (out.original, out.edited, out.original_cell, out.edited_cell) == (CQ_MATRIX, edited, "DQ_CQ", "DQ_DA")
        cons = matrix_consistency(read_tolerant(out.text), SUM)
        assert cons.analyze_ok and cons.response_ok
        # the model attended to the prompt once and then exactly the final text (its own payoff masked out)
        seen = tok.decode(lm.visible(i)).rpartition("<|im_start|>assistant\n")[2]
        assert seen == out.text and seen.count("<payoff>") == 1
    assert sum(k > 1 for _, k in lm.calls[1:]) == 1  # both splices fed in one multi-token step
    # the model wrote fewer tokens than it was fed: the solver's analysis is fed, not decoded
    plain = steerer.generate([SteerRequest(prompt(questions[0]), transform=api())])[0]
    assert outs[0].fed_tokens > outs[0].completion_tokens and plain.text != outs[0].text


@pytest.mark.parametrize("transform", [None, PricingTransform("none"), api(0.0)])
def test_without_an_edit_the_solver_still_writes_the_analysis(tok, transform):
    out = Steerer(ScriptedLM(tok), tok).generate(
        [SteerRequest(prompt("2 + 2?"), transform=transform, analyze="solver")]
    )
    [out] = out
    assert out.text == render_completion("Scripted.", CQ_MATRIX, render_analyze(CQ_MATRIX, SUM), RESPONSES["CQ"])
    assert out.original == out.edited == CQ_MATRIX and out.spliced and out.solver_analyze and out.steer_error is None


def test_a_batch_mixes_model_and_solver_rows(tok):
    questions = ["What is 2 + 2?", "Two plus two?", "And what is two and two, added up together?"]
    requests = [
        SteerRequest(prompt(questions[0]), transform=api()),
        SteerRequest(prompt(questions[1]), transform=api(), analyze="solver"),
        SteerRequest(prompt(questions[2])),
    ]
    mixed = Steerer(ScriptedLM(tok), tok).generate(requests)
    alone = Steerer(ScriptedLM(tok), tok).generate([requests[0], requests[2]])
    assert [mixed[0].text, mixed[2].text] == [alone[0].text, alone[1].text]  # model rows: as without the solver row
    assert [o.analyze_mode for o in mixed] == ["model", "solver", "model"]
    assert [o.solver_analyze for o in mixed] == [False, True, False]
    assert "Chosen: DQ_DA." in mixed[0].text and mixed[0].response == mixed[1].response == RESPONSES["DA"]
    assert check_strict(mixed[1].text).blocks["analyze"] == render_analyze(api()(CQ_MATRIX), SUM)


class _Rambling(ScriptedLM):
    """Questions containing "ramble" never close their thinking block."""

    def script(self, prompt: str, completion: str) -> str:
        return completion + " more" if "ramble" in prompt else super().script(prompt, completion)


@pytest.mark.parametrize("splice_wait", [0, 4, 16, 1000])
def test_a_batch_where_long_splices_meet_rows_that_never_close_ends_in_bounded_steps(tok, splice_wait):
    lm = _Rambling(tok)
    steerer = Steerer(lm, tok, splice_wait=splice_wait)
    budget = 300
    questions = [
        "2 + 2?",
        "ramble on",
        "What is two and two, added up, in a longer prompt?",
        "ramble",
        "Two plus two?",
    ]
    requests = [
        SteerRequest(prompt(questions[0]), transform=api(), analyze="solver", max_new_tokens=budget),
        SteerRequest(prompt(questions[1]), transform=api(), analyze="solver", max_new_tokens=budget),
        SteerRequest(prompt(questions[2]), analyze="solver", max_new_tokens=budget),
        SteerRequest(prompt(questions[3]), transform=api(), max_new_tokens=budget),  # model mode, never closes
        SteerRequest(prompt(questions[4]), transform=api(), max_new_tokens=budget),  # model mode, splices
    ]
    outs = steerer.generate(requests)
    assert [o.finish_reason for o in outs] == ["stop", "length", "stop", "length", "stop"]
    assert outs[0].response == outs[4].response == RESPONSES["DA"] and outs[2].response == RESPONSES["CQ"]
    assert [o.solver_analyze for o in outs] == [True, False, True, False, False] and outs[4].spliced
    assert outs[1].steer_error.startswith("no </payoff>") and outs[3].steer_error is None
    # every step feeds every row that is not parked, and a row stays parked at most `splice_wait` steps (the
    # rambling rows watch to the end); so the batch ends within the budget (the prefill gives the first token, the
    # last one is never fed) plus one wait
    assert len(lm.calls) <= budget + min(splice_wait, budget)
    if splice_wait < 100:  # the rambling rows set the pace: one step per token
        assert len(lm.calls) == budget
    else:  # the spliced rows waited for the rambling rows to the end, then wrote their responses
        assert len(lm.calls) > budget


def test_a_solver_row_that_ends_before_its_payoff_closes_says_so(tok):
    steerer = Steerer(ScriptedLM(tok), tok)
    [out] = steerer.generate([SteerRequest(prompt("2 + 2?"), transform=api(), analyze="solver", max_new_tokens=5)])
    assert (out.finish_reason, out.completion_tokens, out.spliced, out.solver_analyze) == ("length", 5, False, False)
    assert out.original is None
    assert out.steer_error == "no </payoff> before the answer ended (length): the solver wrote nothing"
    [model] = steerer.generate([SteerRequest(prompt("2 + 2?"), transform=api(), max_new_tokens=5)])
    assert model.steer_error is None and model.text == out.text  # model mode reports nothing here, as before


def test_a_splice_that_runs_past_the_budget_ends_the_answer_at_the_budget(tok):
    edited = api()(CQ_MATRIX)
    closed = f"<thinking>Scripted.</thinking><payoff>{render_payoff(CQ_MATRIX)}</payoff>"
    budget = len(tok(closed)["input_ids"]) + 8  # the payoff closes within it; the spliced analysis does not fit
    steerer = Steerer(ScriptedLM(tok), tok)
    request = SteerRequest(prompt("2 + 2?"), transform=api(), analyze="solver", max_new_tokens=budget)
    [out] = steerer.generate([request])
    full = render_completion("Scripted.", edited, render_analyze(edited, SUM), RESPONSES["DA"])
    assert (out.finish_reason, out.completion_tokens, out.solver_analyze) == ("length", budget, True)
    assert out.text.startswith(f"<thinking>Scripted.</thinking><payoff>{render_payoff(edited)}</payoff><analyze>")
    assert full.startswith(out.text) and len(out.text) < len(full) - len(RESPONSES["DA"])


def test_an_unreadable_payoff_leaves_the_row_unspliced_and_is_reported(tok):
    class Broken(ScriptedLM):
        def script(self, prompt: str, completion: str) -> str:
            return "<thinking>t</thinking><payoff>{not json}</payoff><analyze>a</analyze><response>r</response>"

    [out] = Steerer(Broken(tok), tok).generate([SteerRequest(prompt("q"), analyze="solver", max_new_tokens=200)])
    assert not out.spliced and not out.solver_analyze and out.steer_error.startswith("payoff:")
    assert out.response == "r" and out.finish_reason == "stop"


def test_a_rule_without_an_optimum_leaves_the_analysis_to_the_model_and_says_why(tok):
    negative = PayoffMatrix.from_dict({c: {"LLM": -1.0 + 0.1 * i, "user": -0.5} for i, c in enumerate(CELLS)})
    steerer = Steerer(ScriptedLM(tok, {"2 + 2?": negative}), tok, rule=WelfareRule(kind="cobb_douglas"))
    [out] = steerer.generate([SteerRequest(prompt("2 + 2?"), analyze="solver", max_new_tokens=400)])
    assert not out.spliced and not out.solver_analyze and out.steer_error.startswith("analyze: cell 'DQ_AQ'")
    assert "<analyze>Chosen:" in out.text and out.finish_reason == "stop"  # the model's own analysis


def test_an_unknown_analyze_mode_is_an_error():
    with pytest.raises(ValueError, match="analyze: 'teacher'"):
        SteerRequest("x", analyze="teacher")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- a real Qwen2, trained here
QUESTIONS = {
    "cq": "What is 2 + 2?",  # writes CQ_MATRIX and the CQ answer
    "da": "Add two and two please.",  # writes the api-edited matrix and the DA answer
    "ramble": "Tell me a long story.",  # never closes its thinking block
    "ramble2": "Keep thinking forever.",
}
RAMBLE = "<thinking>" + "more thoughts " * 45


@pytest.fixture(scope="module")
def trained(tok):
    """A 2-layer Qwen2 that has memorised four answers (10-20 s on one thread): two four-block answers whose
    analyses are `render_analyze`'s, so the solver's splice is text it was trained on, and two that never close."""
    torch.manual_seed(0)
    cfg = TinyModelConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    model = build_tiny_model(tok, cfg)
    edited = api()(CQ_MATRIX)
    completions = {
        "cq": render_completion("Scripted.", CQ_MATRIX, render_analyze(CQ_MATRIX, SUM), RESPONSES["CQ"]),
        "da": render_completion("Scripted.", edited, render_analyze(edited, SUM), RESPONSES["DA"]),
        "ramble": RAMBLE,
        "ramble2": RAMBLE,
    }
    steerer = Steerer(model, tok)
    seqs = []
    for key, text in completions.items():
        ids = tok(text, add_special_tokens=False)["input_ids"]
        seqs.append((steerer.prompt_ids(prompt(QUESTIONS[key])), ids + [tok.eos_token_id] * text.endswith(">")))
    width = max(len(p) + len(c) for p, c in seqs)
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, c) in enumerate(seqs):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        labels[i, len(p) : len(p) + len(c)] = torch.tensor(c)
        mask[i, : len(p) + len(c)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=6e-3)
    model.train()
    for _ in range(400):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.01:
            break
    assert loss.item() < 0.01
    return model.eval(), completions


class _Recording(Steerer):
    """Records (visible ids, logits) at each step of a row after its solver splice, to compare with fresh forwards."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: list[tuple[list[int], torch.Tensor]] = []

    def select_next(self, logits, rows):
        raw = logits.clone()
        for i, row in enumerate(rows):
            if row.done is None and row.parked is None and row.solver_analyze:
                self.recorded.append((row.prompt_ids + row.gen, raw[i]))
        return super().select_next(logits, rows)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("tok", ["whole", "glued"], indirect=True)  # tags cut whole (tiny) or glued (Qwen): heals
@pytest.mark.parametrize("batch_size", [4, 1])  # 4: rows that never close share the cache; 1: alone
def test_solver_rows_that_splice_and_rows_that_never_close_all_end_on_a_real_model(tok, trained, batch_size):
    model, completions = trained
    steerer = _Recording(model, tok, batch_size=batch_size)
    budget = 40 + len(tok(completions["da"])["input_ids"])  # the ramblers write 45 x 2 tokens, then keep going
    requests = [
        SteerRequest(prompt(QUESTIONS["cq"]), transform=api(), analyze="solver", max_new_tokens=budget),
        SteerRequest(prompt(QUESTIONS["ramble"]), transform=api(), analyze="solver", max_new_tokens=budget),
        SteerRequest(prompt(QUESTIONS["da"]), analyze="solver", max_new_tokens=budget),
        SteerRequest(prompt(QUESTIONS["ramble2"]), analyze="solver", max_new_tokens=budget),
    ]
    steered, ramble, da, ramble2 = steerer.generate(requests)
    edited = api()(CQ_MATRIX)
    # the cq row: its own matrix edited and the edited matrix's analysis spliced, the model writes on after "<response"
    analysis = render_analyze(edited, SUM)
    assert steered.text.startswith(f"<thinking>Scripted.</thinking><payoff>{render_through_analyze(edited, analysis)}")
    assert steered.solver_analyze and (steered.original, steered.edited) == (CQ_MATRIX, edited)
    reading = read_tolerant(steered.text)
    assert reading.analyze == analysis and parse_payoff_strict(extract_block(steered.text, "payoff")) == edited
    # no transform: the solver's analysis is the one the model learnt, so the answer is the plain one, strict
    assert da.text == completions["da"] and da.solver_analyze and da.finish_reason == "stop"
    strict = check_strict(da.text)
    assert strict.ok and strict.blocks["analyze"] == render_analyze(edited, SUM) and read_tolerant(da.text).format_ok
    for row in (ramble, ramble2):
        assert (row.finish_reason, row.completion_tokens, row.solver_analyze) == ("length", budget, False)
        assert row.text.startswith("<thinking>more thoughts more") and "<payoff>" not in row.text
        assert row.steer_error.startswith("no </payoff> before the answer ended")
    # after the splice the model's logits are those of a fresh forward over prompt + spliced text (healing step too)
    assert len(steerer.recorded) >= 8
    with torch.inference_mode():
        for ids, logits in steerer.recorded[:6]:
            fresh = model(input_ids=torch.tensor([ids])).logits[0, -1]
            assert torch.allclose(logits, fresh, atol=1e-4), (logits - fresh).abs().max()


@pytest.mark.timeout(300)
def test_identity_solver_rows_beside_model_rows_reproduce_plain_generation_on_a_real_model(tok, trained):
    model, completions = trained
    steerer = Steerer(model, tok, batch_size=3)
    questions = [QUESTIONS["cq"], QUESTIONS["da"], QUESTIONS["cq"]]
    plain = steerer.generate([SteerRequest(prompt(q), max_new_tokens=300) for q in questions])
    assert [o.text for o in plain] == [completions["cq"], completions["da"], completions["cq"]]
    mixed = steerer.generate(
        [
            SteerRequest(
                prompt(questions[0]), transform=PricingTransform("none"), analyze="solver", max_new_tokens=300
            ),
            SteerRequest(prompt(questions[1]), transform=api(), max_new_tokens=300),  # model mode, edited
            SteerRequest(prompt(questions[2]), max_new_tokens=300),
        ]
    )
    assert mixed[0].text == plain[0].text and mixed[0].solver_analyze and mixed[0].spliced
    assert mixed[2].text == plain[2].text and mixed[1].spliced and not mixed[1].solver_analyze
    assert mixed[0].finish_reason == mixed[2].finish_reason == "stop"  # row 1 meets a matrix it never saw
