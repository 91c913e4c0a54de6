"""Shared helpers for the steering and serving tests (no tests here): a scripted causal LM and a threaded server.

`ScriptedLM` implements the slice of the Hugging Face causal-LM interface that `gtalign.steering.Steerer` uses
(`forward(input_ids, attention_mask, position_ids, cache, use_cache, logits_to_keep)` -> `.logits`, `.cache`), and
decides its next token from the text it can *see*: it keeps every token fed to it (its "cache") and reads only those
the attention mask keeps. So it behaves like a model that was trained on the four-block format: it writes a thinking
block and the matrix scripted for the question, and after `</payoff>` it acts on the optimum of the payoff visible
in its context (after an `<analyze>` someone else spliced in, too: the solver mode). If the splice left the model's
own payoff visible (a wrong mask) or re-fed the prompt, the tests see it: the action would not follow the edited
matrix, or the counted prefill would grow.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import torch

from gtalign.game import PayoffMatrix, optimal_cell, split_cell
from gtalign.modeling import train_tokenizer
from gtalign.protocol import COMPACT_SYSTEM, extract_block, parse_payoff_strict, render_messages, render_payoff

ASSISTANT = "<|im_start|>assistant\n"
CLOSE = "</payoff>"
RESPONSES = {
    "DA": "The answer is 4.",
    "CQ": "Do you mean the sum or the product?",
    "AQ": "The answer is 4, because two plus two makes four when you count both pairs together. "
    "Do you want more examples?",
}
# Under subscription DQ_CQ is optimal (sum 6.0); with the test pricing (DA 10 words, CQ 50, AQ 60 at 2 per 100
# words) the user pays 0.2 / 1.0 / 1.2, so DQ_DA (5.6 - 0.2 = 5.4) beats DQ_CQ (6.0 - 1.0 = 5.0): CQ -> DA.
CQ_MATRIX = PayoffMatrix.from_dict(
    {
        "DQ_AQ": {"LLM": 2.0, "user": 2.0},
        "DQ_CQ": {"LLM": 3.0, "user": 3.0},
        "DQ_DA": {"LLM": 2.8, "user": 2.8},
        "VQ_AQ": {"LLM": 1.0, "user": 0.5},
        "VQ_CQ": {"LLM": 0.5, "user": 1.0},
        "VQ_DA": {"LLM": 0.4, "user": 0.2},
    }
)
TEST_WORDS = {"DA": 10.0, "CQ": 50.0, "AQ": 60.0}


def make_tokenizer(vocab_size: int = 1024, *, glued: bool = False) -> Any:
    """A byte-level BPE with the project's settings, trained in about a second on protocol-like text; `glued`: without
    the format's strings as whole tokens, so tags glue to their neighbours as in Qwen's tokenizer (splices heal)."""
    corpus = [
        COMPACT_SYSTEM,
        render_messages("What is 2 + 2?", style="compact")[1]["content"],
        *RESPONSES.values(),
        f"<thinking>Scripted.</thinking><payoff>{render_payoff(CQ_MATRIX)}</payoff><analyze>Chosen: DQ_CQ.</analyze>",
        "Please reply with \\boxed{1} or \\boxed{0}. I cannot decide.",
    ]
    return train_tokenizer(corpus * 20, vocab_size=vocab_size, model_max_length=4096, whole=() if glued else None)


class ScriptedLM(torch.nn.Module):
    """A causal LM whose greedy next token is scripted from its visible context (see the module docstring).

    Prompts that are not the compact GTAlign prompt (a judge's prompt, say) get a four-block answer whose response
    is `\\boxed{1}`, or `I cannot decide.` when the prompt contains NOVERDICT. A prompt containing CRASH raises.
    `delay_s` sleeps in every forward (to make a queue fill up).
    """

    def __init__(
        self,
        tokenizer: Any,
        matrices: Mapping[str, PayoffMatrix] | None = None,
        *,
        delay_s: float = 0.0,
        max_position_embeddings: int = 4096,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.matrices = dict(matrices or {})
        self.delay_s = delay_s
        self.config = SimpleNamespace(max_position_embeddings=max_position_embeddings)
        self.generation_config = SimpleNamespace(eos_token_id=tokenizer.eos_token_id)
        self.calls: list[tuple[int, int]] = []  # (batch, tokens fed) per forward
        self.fed: list[list[int]] = []
        self.mask: list[list[int]] = []
        self._lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def visible(self, row: int) -> list[int]:
        """The tokens of `row` its attention can see after the last forward."""
        return [t for t, m in zip(self.fed[row], self.mask[row], strict=True) if m]

    def script(self, prompt: str, completion: str) -> str:
        if "CRASH" in prompt:
            raise RuntimeError("scripted crash")
        compact = COMPACT_SYSTEM in prompt
        question = prompt.rsplit("Question: ", 1)[-1].split("<|im_end|>", 1)[0] if compact else ""
        matrix = self.matrices.get(question, CQ_MATRIX)
        head = f"<thinking>Scripted.</thinking><payoff>{render_payoff(matrix)}</payoff>"
        if CLOSE not in completion:
            if head.startswith(completion):
                return head
            # inside an edited payoff, before its close was spelled: finish the JSON and the tag
            tail = "}}" + CLOSE
            k = max((n for n in range(len(tail) + 1) if completion.endswith(tail[:n])), default=0)
            return completion + tail[k:]
        head = completion[: completion.index(CLOSE) + len(CLOSE)]
        visible = parse_payoff_strict(extract_block(head, "payoff"))
        cell = optimal_cell(visible)
        if compact:
            response = RESPONSES[split_cell(cell)[1]]
        else:
            response = "I cannot decide." if "NOVERDICT" in prompt else "\\boxed{1}"
        analyze = f"<analyze>Chosen: {cell}.</analyze>"
        rest = completion[len(head) :]
        if rest.startswith("<analyze>") and "</analyze>" in rest:  # the solver wrote the analysis: go on from it
            analyze = rest[: rest.index("</analyze>") + len("</analyze>")]
        return head + analyze + f"<response>{response}</response>"

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = True,
        logits_to_keep: int = 0,
    ) -> SimpleNamespace:
        if self.delay_s:
            time.sleep(self.delay_s)
        batch, width = input_ids.shape
        with self._lock:
            if cache is None:
                cache = SimpleNamespace(id=len(self.calls))
                self.fed = [[] for _ in range(batch)]
            self.calls.append((batch, width))
            for i in range(batch):
                self.fed[i].extend(input_ids[i].tolist())
            self.mask = attention_mask.tolist()
            assert all(len(f) == len(m) for f, m in zip(self.fed, self.mask, strict=True))
            logits = torch.full((batch, 1, len(self.tokenizer)), -1e9)
            for i in range(batch):
                text = self.tokenizer.decode(self.visible(i), skip_special_tokens=False)
                prompt, _, completion = text.rpartition(ASSISTANT)
                target = self.script(prompt, completion)
                assert target.startswith(completion), (completion, target)
                rest = target[len(completion) :]
                ids = self.tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else []
                logits[i, 0, ids[0] if ids else self.tokenizer.eos_token_id] = 0.0
        return SimpleNamespace(logits=logits, cache=cache)


@contextlib.contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 and an ephemeral port in a thread; yields the base URL (…/v1)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
