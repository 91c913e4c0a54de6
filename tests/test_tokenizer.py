"""The tiny tokenizer (`gtalign.modeling.train_tokenizer`): the format's fixed strings are whole tokens."""

from pathlib import Path

from steering_support import CQ_MATRIX, RESPONSES, make_tokenizer

from gtalign.game import WelfareRule
from gtalign.protocol import fixed_strings, render_analyze, render_completion, render_messages


def test_the_format_s_fixed_strings_are_whole_tokens_and_the_text_survives(tok, tmp_path: Path):
    from transformers import AutoTokenizer

    completion = render_completion("Scripted.", CQ_MATRIX, render_analyze(CQ_MATRIX, WelfareRule()), RESPONSES["CQ"])
    ids = tok(completion, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == completion
    pieces = [tok.decode([i]) for i in ids]
    for whole in ("<payoff>", '"DQ_AQ": {"LLM": ', ', "user": ', "}}", "</payoff>", " Chosen: ", "<response>"):
        assert whole in pieces, whole
    prompt = render_messages("What is 2 + 2?", style="compact")[1]["content"]
    assert tok.decode(tok(prompt)["input_ids"][:1]) in fixed_strings()  # the whole instruction is one token
    # glued to their neighbours (Qwen's cut), the same text takes far more tokens
    glued = make_tokenizer(glued=True)
    assert len(ids) < 0.7 * len(glued(completion, add_special_tokens=False)["input_ids"])
    # a saved tokenizer reloads with the same ids (the added tokens travel in tokenizer.json)
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)(completion, add_special_tokens=False)["input_ids"] == ids
