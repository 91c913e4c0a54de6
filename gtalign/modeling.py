"""Models: the embedded tiny Qwen2-style model built from scratch, or any Hugging Face causal LM.

No hub is reachable here, so the default policy is built locally: a byte-level BPE tokenizer trained on the curated
corpus (with Qwen's normaliser and pre-tokenizer, so that transformers' `Qwen2Tokenizer` reloads it with identical
ids) and a small Qwen2 config, seeded. The same functions take a real model path or name (e.g.
Qwen/Qwen2.5-3B-Instruct) with its own tokenizer and chat template, and optionally wrap it with LoRA (peft).

The chat template is ChatML with `{% generation %}` markers, so TRL can compute assistant-only losses on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from gtalign.layout import HELDOUT_EVAL_FILE, HELDOUT_GENERATIONS_FILE
from gtalign.protocol import fixed_strings

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")
QWEN_PRETOKENIZE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""  # noqa: E501 (Qwen2 pre-tokenizer regex, verbatim)
CHAT_TEMPLATE = (
    "{%- for message in messages %}{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\n' }}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


class TinyModelConfig(BaseModel):
    """The embedded default: small enough to learn the four-block format on 2 CPU cores in minutes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vocab_size: int = 4096
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 768
    max_position_embeddings: int = 1024
    seed: int = 0


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 4096, model_max_length: int = 1024, whole: Sequence[str] | None = None
) -> Any:
    """A byte-level BPE with the Qwen regex and NFC (ids survive a reload as `Qwen2Tokenizer`), ChatML template, and
    `whole` as added tokens: by default the four-block format's fixed strings (`gtalign.protocol.fixed_strings`, 44%
    fewer tokens per demonstration); `()` cuts the format as Qwen's own tokenizer does (tags glued to their
    neighbours, `>The`)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # The format's fixed strings become whole tokens (a merge cannot cross the pre-tokenizer's splits, so
    # `"DQ_AQ": {"LLM": ` would stay 7 tokens however often the corpus repeats it). The merges are learnt on the text
    # between them, as it will be cut: "Did" after `<response>`, not ">Did".
    whole = fixed_strings() if whole is None else tuple(whole)
    if whole:
        cut = re.compile("|".join(re.escape(s) for s in sorted(whole, key=len, reverse=True)))
        texts = (piece for text in texts for piece in cut.split(text) if piece)
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(s, normalized=False) for s in whole])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
    )


def build_tiny_model(tokenizer: Any, cfg: TinyModelConfig | None = None) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = cfg or TinyModelConfig()

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_base_model(out_dir: Path, corpus: Iterable[str], cfg: TinyModelConfig | None = None) -> Path:
    """Train the tokenizer on `corpus`, build the seeded tiny model, save both (a standard HF folder)."""
    cfg = cfg or TinyModelConfig()
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(corpus, cfg.vocab_size, cfg.max_position_embeddings)
    model = build_tiny_model(tokenizer, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    (out_dir / "gtalign_model.json").write_text(json.dumps({"kind": "tiny", **cfg.model_dump()}, indent=2) + "\n")
    return out_dir


def load_model(
    path_or_name: str | Path, *, dtype: str = "auto", device: str | None = None, lora: dict[str, Any] | None = None
) -> tuple[Any, Any]:
    """Any causal LM (a local folder or a hub name where a hub is reachable) with its tokenizer.

    `lora` (peft LoraConfig kwargs, e.g. {"r": 16, "target_modules": "all-linear"}) wraps the model for training.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path_or_name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch_dtype = getattr(torch, dtype) if dtype not in ("auto", None) else "auto"
    model = AutoModelForCausalLM.from_pretrained(str(path_or_name), dtype=torch_dtype)
    if device:
        model.to(device)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))
    return model, tokenizer


def chat_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The text the model continues: the chat template with the assistant turn opened."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[dict[str, str]]],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
) -> list[str]:
    """Batched chat generation (left padding); greedy when temperature is 0. Returns the new text only."""
    import torch

    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    out: list[str] = []
    model.eval()
    for start in range(0, len(prompts), batch_size):
        texts = [chat_prompt(tokenizer, p) for p in prompts[start : start + batch_size]]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
        kwargs |= (
            {"do_sample": True, "temperature": temperature, "top_p": top_p}
            if temperature > 0
            else {"do_sample": False}
        )
        with torch.no_grad():
            ids = model.generate(**batch, **kwargs)
        new = ids[:, batch["input_ids"].shape[1] :]
        out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The base model of the pipeline: built from the project's own text, or a pointer to a pretrained model
# ---------------------------------------------------------------------------------------------------------------
POINTER_FILE = "gtalign_model.json"


def base_corpus(
    curated_parquet: Path | None, demonstrations_jsonl: Path | None, splits: Sequence[str] = ("train", "dev")
) -> list[str]:
    """Texts the tiny tokenizer is trained on: curated questions and chat turns, plus the demonstrations.

    The demonstrations put the four tags, the payoff JSON and the compact instruction into the vocabulary; the
    curated turns give it varied natural text (a repetitive corpus stops far short of 4,096 merges). Test rows are
    left out so that nothing of the test sets shapes the model, not even its vocabulary.
    """
    texts: list[str] = []
    if curated_parquet is not None and Path(curated_parquet).is_file():
        import pandas as pd

        table = pd.read_parquet(curated_parquet, columns=["split", "question", "messages"])
        table = table[table["split"].isin(list(splits))]
        texts.extend(str(q) for q in table["question"].dropna())
        for messages in table["messages"]:
            for m in _as_messages(messages):
                texts.append(str(m.get("content") or ""))
    if demonstrations_jsonl is not None and Path(demonstrations_jsonl).is_file():
        with Path(demonstrations_jsonl).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    texts.extend(str(m.get("content") or "") for m in [*row["prompt"], *row["completion"]])
    return [t for t in texts if t.strip()]


def _as_messages(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [{"content": value}]
    if value is None:
        return []
    return [dict(m) for m in value if isinstance(m, dict)] if not isinstance(value, dict) else [value]


def write_pretrained_pointer(out_dir: Path, name_or_path: str) -> Path:
    """A base model that is a pretrained one (e.g. Qwen/Qwen2.5-3B-Instruct): a pointer, not a copy of its weights."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / POINTER_FILE).write_text(json.dumps({"kind": "pretrained", "path": str(name_or_path)}, indent=2) + "\n")
    return out_dir


def resolve_model_path(path_or_name: str | Path) -> str:
    """What `load_model` should open: a folder with weights as is, a pretrained pointer followed, a hub name as is."""
    path = Path(path_or_name)
    pointer = path / POINTER_FILE
    if pointer.is_file() and not (path / "config.json").is_file():
        info = json.loads(pointer.read_text())
        if info.get("kind") == "pretrained":
            return str(info["path"])
    return str(path_or_name)


_IDENTITY_SPAN = 1 << 20  # bytes hashed at each end of a file
# Records of how a model was made, saved beside it: rewriting them (a resumed stage re-saving its arguments or
# re-running its held-out evaluation) leaves the model what it was.
_NOT_THE_MODEL = frozenset({"training_args.bin", "README.md", HELDOUT_EVAL_FILE, HELDOUT_GENERATIONS_FILE})


def model_identity(path_or_name: str | Path) -> str:
    """A content identity of a model folder that survives copying and moving it: every file's name, size and a hash
    of its first and last MiB (retraining changes the weights everywhere, so the ends differ; hashing 6 GB of weights
    each time would not be cheap), training records beside it left out. A hub name is its own identity. Saved
    evaluations and caches are keyed by it."""
    import hashlib

    folder = Path(path_or_name)
    if not folder.is_dir():
        return str(path_or_name)
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file() and p.name not in _NOT_THE_MODEL):
        size = file.stat().st_size
        digest.update(f"{file.name}\0{size}\0".encode())
        with file.open("rb") as f:
            digest.update(f.read(_IDENTITY_SPAN))
            if size > 2 * _IDENTITY_SPAN:
                f.seek(-_IDENTITY_SPAN, 2)
                digest.update(f.read())
    return digest.hexdigest()[:16]


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
