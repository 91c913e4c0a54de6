"""Pricing steering: the transforms' arithmetic, the splice (one prefill, the edited matrix is what the model sees),
equality with plain generation when nothing is edited, and the numerics of a masked splice on a real Qwen2 model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from paper_tables import TABLE1
from steering_support import CQ_MATRIX, RESPONSES, TEST_WORDS, ScriptedLM

from gtalign.config import ParamsError, parse_params
from gtalign.evaluate.steering import _interleaved
from gtalign.game import Payoff, PayoffMatrix, WelfareRule, optimal_cell
from gtalign.modeling import TinyModelConfig, build_tiny_model, generate
from gtalign.protocol import check_strict, extract_block, parse_payoff_strict, read_tolerant, render_messages
from gtalign.registry import ResolvedModel
from gtalign.reward.consistency import matrix_consistency
from gtalign.steering import (
    PricingTransform,
    Steerer,
    SteeringConfig,
    SteerRequest,
    expected_words_from_completions,
    published_transform,
    transform_for,
)
from gtalign.steering.decoder import _closing_run_start


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny forwards are faster on one thread than on two contended ones (and this machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def api(price: float = 2.0, **kw) -> PricingTransform:
    return PricingTransform("subscription->api", price_per_100_words=price, expected_words=TEST_WORDS, **kw)


# ------------------------------------------------------------------------------------------------ transform math
def test_cost_transform_charges_the_user_for_the_words_above_the_cheapest_action():
    # costs: DA 2 * 10 / 100 = 0.2, CQ 2 * 50 / 100 = 1.0, AQ 2 * 60 / 100 = 1.2; charged above DA's: 0, 0.8, 1.0
    edited = api()(TABLE1).to_dict()
    assert edited == {
        "DQ_AQ": {"LLM": 3.0, "user": 2.0},
        "DQ_CQ": {"LLM": 1.0, "user": 1.2},
        "DQ_DA": {"LLM": 1.0, "user": 0.0},
        "VQ_AQ": {"LLM": 0.0, "user": 3.0},
        "VQ_CQ": {"LLM": 0.0, "user": 0.2},
        "VQ_DA": {"LLM": 1.0, "user": 1.0},
    }
    assert api().cost("AQ") == pytest.approx(1.2) and api().charge("AQ") == pytest.approx(1.0)
    assert api().charge("DA") == 0.0


def test_charging_above_the_cheapest_action_picks_what_charging_every_word_picks_under_the_sum_rule():
    """The cheapest action's cost is a constant on every cell: no sum-rule choice depends on it."""
    rule = WelfareRule(kind="sum")
    for price in (0.5, 2.0, 4.0, 7.0):
        transform = api(price)
        full = TABLE1.map(lambda c, p, t=transform: Payoff(p.llm, p.user - t.cost(c.split("_")[1])))
        assert optimal_cell(transform(TABLE1), rule) == optimal_cell(full, rule)


def test_api_to_subscription_moves_the_cost_to_the_llm_and_revenue_share_credits_it():
    edited = PricingTransform("api->subscription", price_per_100_words=2.0, expected_words=TEST_WORDS)(TABLE1)
    assert edited["DQ_AQ"].llm == 2.0 and edited["DQ_AQ"].user == 3.0
    assert edited["VQ_DA"].llm == 1.0 and edited["VQ_DA"].user == 1.0
    assert edited["DQ_CQ"].llm == 0.2 and edited["DQ_CQ"].user == 2.0
    shared = api(revenue_share=0.5)(TABLE1)  # the provider earns half of what the user pays
    assert (shared["DQ_AQ"].llm, shared["DQ_AQ"].user) == (3.5, 2.0)


def test_edited_values_are_rounded_to_one_decimal_and_a_charge_stops_at_zero():
    m = PayoffMatrix.from_dict({c: {"LLM": 0.1, "user": 0.3} for c in TABLE1})
    edited = PricingTransform("subscription->api", price_per_100_words=0.7, expected_words=TEST_WORDS)(m)
    # charges: DA 0, CQ 0.28, AQ 0.35; user 0.3 - 0.28 = 0.02 -> 0.0; 0.3 - 0.35 = -0.05 -> floored at 0.0
    assert edited["DQ_DA"].user == 0.3 and edited["DQ_CQ"].user == 0.0 and edited["DQ_AQ"].user == 0.0
    assert all(str(v)[::-1].find(".") <= 1 for p in edited.values() for v in (p.llm, p.user))
    steep = PricingTransform("api->subscription", price_per_100_words=50.0, expected_words=TEST_WORDS)(TABLE1)
    assert steep["DQ_AQ"].llm == 0.0 and steep["DQ_DA"].llm == 1.0  # 3 - 25 stops at 0; DA is not charged
    below = PayoffMatrix.from_dict({c: {"LLM": -1.0, "user": -2.0} for c in TABLE1})
    assert api()(below)["DQ_AQ"].user == -3.0  # a payoff the model wrote below 0 is edited, not floored


def test_published_transform_exactly():
    user_pays = published_transform(scale_llm=0.0, scale_user=-0.5)(TABLE1)  # its main(): LLM +1 / +0.5 / 0
    assert user_pays.to_dict() == {
        "DQ_AQ": {"LLM": 3.5, "user": 2.5},
        "DQ_CQ": {"LLM": 1.0, "user": 1.5},
        "DQ_DA": {"LLM": 2.0, "user": -0.5},
        "VQ_AQ": {"LLM": 0.5, "user": 3.5},
        "VQ_CQ": {"LLM": 0.0, "user": 0.5},
        "VQ_DA": {"LLM": 2.0, "user": 0.5},
    }
    llm_pays = published_transform(scale_llm=-2.0, scale_user=-2.0)(TABLE1)  # its run(): scale_llm wins
    assert llm_pays.to_dict() == {
        "DQ_AQ": {"LLM": 1.0, "user": 4.0},
        "DQ_CQ": {"LLM": -1.0, "user": 2.5},
        "DQ_DA": {"LLM": -1.0, "user": 0.0},
        "VQ_AQ": {"LLM": -2.0, "user": 5.0},
        "VQ_CQ": {"LLM": -2.0, "user": 1.5},
        "VQ_DA": {"LLM": -1.0, "user": 1.0},
    }
    assert published_transform(0.0, 0.0)(TABLE1) == TABLE1


def test_the_test_matrix_flips_cq_to_da_under_api_pricing():
    assert optimal_cell(CQ_MATRIX) == "DQ_CQ"
    assert optimal_cell(api()(CQ_MATRIX)) == "DQ_DA"


def test_transform_for_maps_requested_pricing_from_the_native_one():
    cfg = SteeringConfig(expected_words=TEST_WORDS)
    assert transform_for(None, cfg) is None and transform_for("subscription", cfg) is None
    assert transform_for("api", cfg).mode == "subscription->api"
    assert transform_for("subscription", cfg.model_copy(update={"native_pricing": "api"})).mode == "api->subscription"
    published = transform_for("api", cfg.model_copy(update={"transform": "published"}))
    assert (published.mode, published.scale_llm, published.scale_user) == ("published", 0.0, -0.5)
    with pytest.raises(ValueError):
        transform_for("free", cfg)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PricingTransform("subscription->api", expected_words={"DA": 1.0})


def test_params_yaml_steering_section_loads():
    from gtalign.config import load_typed_params

    cfg = load_typed_params(REPO_ROOT / "params.yaml").steering
    assert cfg.native_pricing == "subscription" and set(cfg.expected_words) == {"DA", "CQ", "AQ"}


@pytest.mark.parametrize(
    ("section", "where"),
    [({"price_per_100_word": 2.0}, "price_per_100_word"), ({"eval": {"per_sorce": 5}}, "eval.per_sorce")],
)
def test_a_misspelt_steering_key_is_an_error_naming_section_and_key(section, where):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"params\.yaml steering") as err:
        SteeringConfig.model_validate(section)
    assert where in str(err.value) and "Extra inputs are not permitted" in str(err.value)
    with pytest.raises(ValidationError, match="scale_usr"):
        SteeringConfig.model_validate({"published": {"subscription->api": {"scale_usr": 1.0}}})


def test_expected_words_from_completions():
    def completion(response: str) -> str:
        return f"<thinking>t</thinking><payoff>{{}}</payoff><analyze>a</analyze><response>{response}</response>"

    table = expected_words_from_completions(
        [completion("one two three four"), completion("a b"), completion("Which one do you mean?")]
    )
    assert table["response"] == {"DA": 3.0, "CQ": 5.0, "AQ": 0.0}
    assert table["billed"] == {"DA": 3.0, "CQ": 8.0, "AQ": 0.0}  # CQ pays for the answer it defers
    assert table["count"]["DA"] == 2.0


def test_closing_run_start_keeps_the_punctuation_run_together():
    text = '{"VQ_DA": {"LLM": 0.4, "user": -0.2}}</payoff>'
    assert text[_closing_run_start(text, len(text) - len("</payoff>")) :] == "}}</payoff>"
    assert _closing_run_start("x }</payoff>", 3) == 1  # one leading space travels with the run


# ------------------------------------------------------------------------------------------ the splice, scripted
def _prompts(*questions: str) -> list[list[dict[str, str]]]:
    return [render_messages(q, style="compact") for q in questions]


@pytest.mark.parametrize("tok", ["whole", "glued"], indirect=True)  # tags cut whole (tiny) or glued (Qwen): heals
def test_steering_changes_the_action_as_the_edited_matrix_says(tok):
    lm = ScriptedLM(tok)
    steerer = Steerer(lm, tok)
    prompts = _prompts("What is 2 + 2?", "Add two and two, then tell me the result please.")
    plain = steerer.generate([SteerRequest(p, max_new_tokens=400) for p in prompts])
    steered = steerer.generate([SteerRequest(p, transform=api(), max_new_tokens=400) for p in prompts])
    for p, s in zip(plain, steered, strict=True):
        assert p.response == RESPONSES["CQ"] and s.response == RESPONSES["DA"]
        assert s.spliced and s.original == CQ_MATRIX and s.edited == api()(CQ_MATRIX)
        assert (s.original_cell, s.edited_cell) == ("DQ_CQ", "DQ_DA")
        strict = check_strict(s.text)
        assert strict.ok, strict.reason
        assert strict.matrix == api()(CQ_MATRIX)  # the answer carries the edited matrix
        cons = matrix_consistency(read_tolerant(s.text), steerer.rule)
        assert cons.analyze_ok and cons.response_ok
        assert s.finish_reason == "stop" and p.steer_error is None and s.steer_error is None


@pytest.mark.parametrize("tok", ["whole", "glued"], indirect=True)  # tags cut whole (tiny) or glued (Qwen): heals
def test_splice_keeps_one_prefill_and_the_cache_holds_exactly_the_final_text(tok):
    lm = ScriptedLM(tok)
    steerer = Steerer(lm, tok)
    prompts = _prompts("What is 2 + 2?", "A much longer question, so that the two prompts differ in length: 2 + 2?")
    outs = steerer.generate([SteerRequest(p, transform=api(), max_new_tokens=400) for p in prompts])
    prompt_ids = [steerer.prompt_ids(p) for p in prompts]
    width = max(map(len, prompt_ids))
    assert lm.calls[0] == (2, width)  # the one prefill
    multi = [k for _, k in lm.calls[1:] if k > 1]
    assert 1 <= len(multi) <= 2 and all(k < 120 for k in multi)  # one replacement feed per splice step, no re-prefill
    for i, out in enumerate(outs):
        final_ids = steerer.prompt_ids(prompts[i]) + steerer.tokenizer(out.text, add_special_tokens=False)["input_ids"]
        seen = tok.decode(lm.visible(i))
        # what the model attends to is the prompt once, then the final completion (its own payoff masked out)
        assert seen == tok.decode(final_ids[: len(lm.visible(i))])
        completion = seen.rpartition("<|im_start|>assistant\n")[2]
        assert seen.count("Question:") == 1 and completion.count("<payoff>") == 1 and completion == out.text
        assert out.fed_tokens > out.completion_tokens  # the masked payoff tokens were decoded once, then replaced


def test_identity_and_unchanged_matrices_are_not_spliced(tok):
    lm = ScriptedLM(tok)
    steerer = Steerer(lm, tok)
    [p] = _prompts("What is 2 + 2?")
    plain = steerer.generate([SteerRequest(p, max_new_tokens=400)])[0]
    zero = PricingTransform("subscription->api", price_per_100_words=0.0, expected_words=TEST_WORDS)
    for transform in (PricingTransform("none"), zero):
        out = steerer.generate([SteerRequest(p, transform=transform, max_new_tokens=400)])[0]
        assert out.text == plain.text and not out.spliced
    assert steerer.generate([SteerRequest(p, transform=zero, max_new_tokens=400)])[0].original == CQ_MATRIX


def test_unreadable_payoff_is_reported_and_generation_goes_on(tok):
    class Broken(ScriptedLM):
        def script(self, prompt: str, completion: str) -> str:
            return "<thinking>t</thinking><payoff>{not json}</payoff><analyze>a</analyze><response>r</response>"

    steerer = Steerer(Broken(tok), tok)
    out = steerer.generate([SteerRequest(_prompts("q")[0], transform=api(), max_new_tokens=200)])[0]
    assert not out.spliced and out.steer_error.startswith("payoff:") and out.response == "r"


def test_budget_and_cancellation_end_a_row(tok):
    steerer = Steerer(ScriptedLM(tok), tok)
    [p] = _prompts("What is 2 + 2?")
    short = steerer.generate([SteerRequest(p, transform=api(), max_new_tokens=5)])[0]
    assert short.finish_reason == "length" and short.completion_tokens == 5
    calls = iter(range(100))
    stopped = steerer.generate([SteerRequest(p, max_new_tokens=400, should_stop=lambda: next(calls) >= 3)])[0]
    assert stopped.finish_reason == "cancelled" and stopped.completion_tokens == 4


def test_sampling_is_seeded_per_request(tok):
    steerer = Steerer(ScriptedLM(tok), tok)
    [p] = _prompts("What is 2 + 2?")
    a = steerer.generate([SteerRequest(p, transform=api(), temperature=1.0, top_p=0.9, seed=3, max_new_tokens=400)])
    b = steerer.generate([SteerRequest(p, transform=api(), temperature=1.0, top_p=0.9, seed=3, max_new_tokens=400)])
    assert a[0].text == b[0].text and a[0].response == RESPONSES["DA"]  # one-hot logits: sampling follows the script


# ------------------------------------------------------------------------------------------- a real Qwen2 model
@pytest.fixture(scope="module")
def qwen(tok):
    torch.manual_seed(0)
    cfg = TinyModelConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    return build_tiny_model(tok, cfg).eval()


def test_batched_steering_equals_plain_greedy_generation_when_nothing_is_edited(tok, qwen):
    prompts = _prompts("What is 2 + 2?", "Who wrote Hamlet, and in which year was it first performed?", "Hi")
    reference = generate(qwen, tok, prompts, max_new_tokens=24)
    steerer = Steerer(qwen, tok, batch_size=3)
    for transform in (None, PricingTransform("none"), api()):  # a random model never closes a payoff
        outs = steerer.generate([SteerRequest(p, transform=transform, max_new_tokens=24) for p in prompts])
        assert [o.text for o in outs] == reference
        assert not any(o.spliced for o in outs)


class _Forced(Steerer):
    """Forces each request's `script` tokens until its payoff closes, then decodes freely; records the logits, and
    the attention mask and tokens of every forward."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: list[tuple[list[int], torch.Tensor]] = []
        self.forwards: list[tuple[torch.Tensor, int]] = []  # after the prefill: (attention mask, tokens fed per row)

    def _forward(self, input_ids, mask, positions, cache):
        if cache is not None:
            self.forwards.append((mask.clone(), input_ids.shape[1]))
        return super()._forward(input_ids, mask, positions, cache)

    def select_next(self, logits, rows):
        raw = logits.clone()
        chosen = super().select_next(logits, rows)
        for i, row in enumerate(rows):
            if row.done is not None or row.parked is not None:
                continue
            if row.watch and len(row.gen) < len(row.req.script):
                chosen[i] = row.req.script[len(row.gen)]
            elif row.spliced:
                self.recorded.append((row.prompt_ids + row.gen, raw[i]))
        return chosen


@pytest.mark.parametrize("tok", ["whole", "glued"], indirect=True)  # tags cut whole (tiny) or glued (Qwen): heals
@pytest.mark.parametrize("batch_size", [2, 1])  # 2: rows of different lengths share the cache; 1: alone
def test_masked_splice_matches_a_fresh_forward_of_the_visible_text(tok, qwen, batch_size):
    """After the splice the model's next-token logits equal those of a fresh forward over prompt + edited text, and
    the cache the replacements go into holds no dead payoff: each row's masked columns were moved first and those
    every row had masked were cut, so the cache is as wide as the row with the most visible tokens."""
    prompts = _prompts("What is 2 + 2?", "A longer question about arithmetic, to offset the rows: what is 2 + 2?")
    matrices = [CQ_MATRIX, api(5.0)(CQ_MATRIX)]
    texts = [
        f"<thinking>{'x ' * (3 + 5 * i)}</thinking><payoff>{json.dumps(m.to_dict())}</payoff>"
        for i, m in enumerate(matrices)
    ]
    scripts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    steerer = _Forced(qwen, tok, batch_size=batch_size)
    requests = [
        SteerRequest(p, transform=api(), max_new_tokens=len(s) + 12) for p, s in zip(prompts, scripts, strict=True)
    ]
    for request, script in zip(requests, scripts, strict=True):
        request.script = script  # what _Forced writes until the payoff closes
    outs = steerer.generate(requests)
    assert all(o.spliced for o in outs)
    for o, m in zip(outs, matrices, strict=True):
        assert parse_payoff_strict(extract_block(o.text, "payoff")) == api()(m)
    feeds = [(m, k) for m, k in steerer.forwards if k > 1]  # the steps that feed replacements: one per batch
    assert len(feeds) == 2 // batch_size
    for mask, k in feeds:
        before = mask[:, :-k]  # the cache this step attends over
        assert before.shape[1] == int(before.sum(dim=1).max())  # no column that every row has masked
        for row in before.tolist():  # left-padded again: masked columns first, no hole among the visible ones
            assert row == sorted(row)
    assert len(steerer.recorded) >= 10
    with torch.inference_mode():
        for ids, logits in steerer.recorded[:8]:  # the healing steps and the first free ones, in both rows
            fresh = qwen(input_ids=torch.tensor([ids])).logits[0, -1]
            assert torch.allclose(logits, fresh, atol=1e-4), (logits - fresh).abs().max()


# ---------------------------------------------------------------------------------------------- the eval stage
def _steering_eval(tok, tmp_path, monkeypatch, **eval_params):
    """The steering eval stage over four curated test rows, with the scripted model."""
    import pandas as pd

    import gtalign.evaluate.steering as stage

    rows = [
        {
            "uid": f"math-hard:test:{i}",
            "source": "math-hard",
            "split": "test",
            "question": f"What is {i} + 2?",
            "ground_truth": "4",
            "extra_info": "{}",
            "label": "answer",
        }
        for i in range(3)
    ] + [
        {
            "uid": "ambig_qa:test:0",
            "source": "ambig_qa",
            "split": "test",
            "question": "Who won?",
            "ground_truth": "singleAnswer###x",
            "extra_info": "{}",
            "label": "unambiguous",
        }
    ]
    (tmp_path / "artifacts" / "curated").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(tmp_path / "artifacts" / "curated" / "curated.parquet")
    monkeypatch.setattr(stage, "resolve_model", lambda model, **_: ResolvedModel(Path(model)))
    monkeypatch.setattr(stage, "load_model", lambda path, **_: (ScriptedLM(tok), tok))
    params = {"steering": {"expected_words": TEST_WORDS, "eval": {"per_source": 5, **eval_params}}}
    return stage.steering_eval_stage(
        tmp_path, parse_params(params), model="scripted", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )


def test_steering_eval_stage_reports_action_changes(tok, tmp_path, monkeypatch):
    result = _steering_eval(tok, tmp_path, monkeypatch, modes=["subscription->api", "published"], prices=[2.0])
    m = result.metrics
    assert m["subscription->api @2/all/n"] == 4.0
    assert m["subscription->api @2/all/intended_change"] == 1.0 == m["subscription->api @2/all/realised_change"]
    assert m["subscription->api @2/all/move/CQ->DA"] == 4.0 and m["subscription->api @2/all/follows"] == 1.0
    # every optimum moved CQ -> DA and every unsteered response asked: all four had to change, and did
    assert m["subscription->api @2/all/moved"] == 4.0 == m["subscription->api @2/all/flip_needed"]
    assert m["subscription->api @2/all/follows_moved"] == 1.0 == m["subscription->api @2/all/flipped"]
    assert "| CQ->DA 4 | 4/4 | 4/4 | 100% |" in result.markdown
    assert m["subscription->api @2/math-hard/delta_words"] == pytest.approx(-4.0)  # 8-word CQ -> 4-word DA
    # the published shifts (user -0.5, LLM +1 / +0.5 / 0) also make DQ_DA (3.8, 2.3) beat DQ_CQ (3.0, 2.5)
    assert m["published/all/move/CQ->DA"] == 4.0
    assert m["subscription->api @2/time/prompts"] == 4.0 and result.run_id  # the whole run is timed
    assert m["subscription->api @2/time/ratio"] == pytest.approx(
        m["subscription->api @2/time/steered_s"] / m["subscription->api @2/time/unsteered_s"]
    )
    assert "| subscription->api @2 | math-hard | 3 |" in result.markdown and "CQ->DA 3" in result.markdown
    assert (tmp_path / "artifacts" / "metrics" / "steering.json").exists()
    assert len(result.paths["records"].read_text().splitlines()) == 8
    assert not any(k.startswith("solver/") for k in m) and "solver/" not in result.markdown


def test_timed_runs_take_turns_batch_by_batch_and_give_the_whole_runs_outputs(tok):
    """The evaluation's runs alternate batch by batch (a slow spell of the machine hits them all), and each run's
    outputs are those `generate` gives for its whole list."""
    calls: list[tuple[str, int]] = []

    class Recording(Steerer):
        def generate(self, requests):
            calls.append(("steered" if requests[0].transform else "plain", len(requests)))
            return super().generate(requests)

    steerer = Recording(ScriptedLM(tok), tok, batch_size=2)
    prompts = _prompts(*(f"What is {i} + 2?" for i in range(5)))
    runs = {
        "plain": [SteerRequest(p, max_new_tokens=400) for p in prompts],
        "steered": [SteerRequest(p, transform=api(), max_new_tokens=400) for p in prompts],
    }
    done = _interleaved(steerer, runs)
    assert calls == [("plain", 2), ("steered", 2), ("plain", 2), ("steered", 2), ("plain", 1), ("steered", 1)]
    for name, requests in runs.items():
        outs, secs = done[name]
        assert [o.text for o in outs] == [o.text for o in steerer.generate(requests)] and secs > 0
    assert {o.response for o in done["plain"][0]} == {RESPONSES["CQ"]}
    assert {o.response for o in done["steered"][0]} == {RESPONSES["DA"]}


def test_steering_eval_reports_the_solver_mode_beside_the_model_mode(tok, tmp_path, monkeypatch):
    result = _steering_eval(
        tok, tmp_path, monkeypatch, modes=["subscription->api"], prices=[2.0], analyze_modes=["model", "solver"]
    )
    m = result.metrics
    for label in ("subscription->api @2", "solver/subscription->api @2"):
        assert m[f"{label}/all/n"] == 4.0 and m[f"{label}/all/move/CQ->DA"] == 4.0 and m[f"{label}/all/follows"] == 1.0
        assert m[f"{label}/time/ratio"] > 0 and m[f"{label}/time/steered_s"] > 0
    assert m["solver/subscription->api @2/all/solver"] == 1.0 and "subscription->api @2/all/solver" not in m
    assert "| solver/subscription->api @2 | math-hard | 3 | 100% | 100% (solver 100%) |" in result.markdown
    records = [json.loads(line) for line in result.paths["records"].read_text().splitlines()]
    solver = [r for r in records if r["mode"].startswith("solver/")]
    assert len(records) == 8 and len(solver) == 4
    assert all(r["analyze"] == "solver" and r["solver_analyze"] for r in solver)


def test_steering_eval_steers_the_configured_split_and_names_it_when_empty(tok, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"no dev rows to steer \(steering\.eval\.split\)"):
        _steering_eval(tok, tmp_path, monkeypatch, modes=["published"], split="dev")
    with pytest.raises(ParamsError, match=r"steering\.eval\.split: Input should be 'train', 'dev' or 'test'"):
        parse_params({"steering": {"eval": {"split": "valid"}}})


def test_analyze_modes_are_checked_in_params_and_in_the_eval_override(tmp_path):
    from pydantic import ValidationError

    from gtalign.evaluate.steering import steering_eval_stage
    from gtalign.steering import SteeringEvalConfig

    assert SteeringConfig().analyze == "model" and SteeringEvalConfig().analyze_modes == ["model"]
    for bad in (["model", "model"], ["teacher"], []):
        with pytest.raises(ValidationError, match="analyze_modes"):
            SteeringEvalConfig(analyze_modes=bad)
    with pytest.raises(ValidationError, match="analyze"):
        SteeringConfig(analyze="teacher")
    with pytest.raises(ValueError, match=r"analyze modes \['teacher'\]"):
        steering_eval_stage(tmp_path, parse_params({}), model="x", analyze_modes=["teacher"], track=False)


def test_cli_commands_mount_and_show_help():
    import typer
    from typer.testing import CliRunner

    from gtalign.cli.serve import serve
    from gtalign.cli.steer import steer_app

    app = typer.Typer()
    app.add_typer(steer_app, name="steer")
    app.command("serve")(serve)
    runner = CliRunner()
    for args in (["steer", "eval", "--help"], ["steer", "words", "--help"], ["serve", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert "pricing" in runner.invoke(app, ["serve", "--help"]).output


def test_a_row_is_handed_over_when_it_ends_not_when_its_batch_does(tok):
    lm = ScriptedLM(tok)
    steerer = Steerer(lm, tok)
    seen: dict[str, tuple[int, str]] = {}
    [p] = _prompts("What is 2 + 2?")
    requests = [
        SteerRequest(p, max_new_tokens=5, on_finish=lambda o: seen.setdefault("short", (len(lm.calls), o.text))),
        SteerRequest(p, transform=api(), max_new_tokens=400, on_finish=lambda o: seen.setdefault("long", (0, ""))),
    ]
    outs = steerer.generate(requests)
    assert seen["short"] == (5, outs[0].text) and len(lm.calls) > 50 and "long" in seen
