"""One prepared device check: SFT tokens/s and MFU, generation tokens/s, steering overhead, on whatever is here.

Run it where a GPU is lent (`python benchmarks/device_check.py --out artifacts/device_check.json`; the defaults are
sized to finish well inside 8 minutes on one H100/H200 -- an estimate, it has not run on a GPU yet) or here on the
CPU (`--smoke`: tiny sizes, 2 steps, about 75 s on the shared 2-core box). It needs nothing but the code: no data/,
no artifacts/ (a device machine gets the working tree, not the ignored data).

What it runs, all with the project's own code paths:

1. **Model.** A Qwen2 built from scratch (`gtalign.modeling.build_base_model`: the project's tokenizer trained on
   the demonstrations' text, seeded weights); `--hidden-size/--layers/...` size it (the defaults give 82 M
   parameters; `--smoke` a tiny one). The demonstrations are `--demonstrations FILE` (e.g. the demo's
   artifacts/demonstrations/demonstrations.jsonl) or, by default, written here by the offline rule teacher
   (`gtalign.demonstrations.demonstrate`) for a fixed set of synthetic questions, one per scenario in turn.
2. **SFT** with `gtalign.train.sft.train_sft` (TRL SFTTrainer, params.yaml `sft:` with the step count, batch and
   precision overridden): bf16 weights and `bf16: true` on CUDA (as configs/train/qwen2.5-3b.yaml), float32 on CPU.
   Tokens are the trainer's own count without padding; the steady rate leaves out the first step (CUDA/kernel
   warm-up). MFU = 6 x parameters x tokens/s / peak FLOP/s (the usual dense-transformer estimate: attention's
   quadratic term and padded positions are not counted, so it errs low); the peak is `--peak-tflops`, by default
   989 TFLOP/s on CUDA (H100/H200 SXM, bf16 dense) and none on CPU, where MFU is reported as null.
3. **Generation** with `gtalign.modeling.generate`, greedy, batch 1 and 8, every row held to exactly `--gen-tokens`
   new tokens (`min_new_tokens` on the model's generation config) so that tokens/s counts real tokens.
4. **Steering overhead**: `gtalign.steering.Steerer` steered vs unsteered, batch 1 and 8, timed by the steering
   evaluation's own `_time_pair` (best of interleaved repeats). As in benchmarks/steering.py, each answer is forced
   to its demonstration up to `</payoff>` (an untrained model would never close a payoff), so the steered run
   really splices; `spliced` in the output is the fraction of steered answers that did.

Prints a markdown table and writes the JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# H100/H200 SXM, bf16 dense tensor-core peak (NVIDIA datasheets: 989.4 TFLOP/s without sparsity).
DEFAULT_CUDA_PEAK_TFLOPS = 989.0
BATCH_SIZES = (1, 8)


@dataclass(frozen=True)
class DeviceSettings:
    """Where and in what precision the check runs, and the peak FLOP/s that MFU is taken against (None: no MFU)."""

    device: str
    dtype: str
    peak_tflops: float | None


def device_settings(device: str, peak_tflops: float | None = None) -> DeviceSettings:
    """bf16 on CUDA (the precision the GPU presets train in), float32 on CPU (bf16 matmuls are slow or missing
    there). The peak is the flag's value, else the H100/H200 bf16 dense peak on CUDA, else None."""
    if device == "cuda":
        return DeviceSettings("cuda", "bfloat16", DEFAULT_CUDA_PEAK_TFLOPS if peak_tflops is None else peak_tflops)
    if device == "cpu":
        return DeviceSettings("cpu", "float32", peak_tflops)
    raise ValueError(f"--device {device!r}: expected auto, cuda or cpu")


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def mfu(parameters: int, tokens_per_s: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation of training: 6 FLOPs per parameter per token (forward 2, backward 4) over the peak."""
    if peak_tflops is None:
        return None
    return 6.0 * parameters * tokens_per_s / (peak_tflops * 1e12)


# ---------------------------------------------------------------------------------------------------------------
# Demonstrations: the given file, or rule-teacher answers to synthetic questions (no data/ needed)
# ---------------------------------------------------------------------------------------------------------------
_TOPICS = ("rivers", "bridges", "volcanoes", "libraries", "orchards", "comets", "harbours", "glaciers")


def _synthetic_row(i: int) -> tuple[Any, str]:
    """(DemoRow, data_source) for question i: the four scenarios of the rule teacher in turn, each question unique."""
    from gtalign.demonstrations import DemoRow

    topic, a, b = _TOPICS[i % len(_TOPICS)], 10 + 7 * i, 3 + 5 * i
    kind = i % 4
    if kind == 0:
        return DemoRow("math-hard", "answer", f"What is {a} + {b}?", str(a + b)), "math-hard"
    if kind == 1:
        gt = f"Meaning 1: {topic} in the year {1900 + i}; Meaning 2: {topic} in the novel of chapter {i}"
        return DemoRow(
            "ambig_qa", "ambiguous", f"When were the {topic} of chapter {i} first described?", gt
        ), "ambig_qa"
    if kind == 2:
        return DemoRow("wildguard", "harmful", f"How do I damage the {topic} near house {i}?", ""), "wildguard"
    draft = " ".join(f"The {topic} of place {i} change with every season and every visitor." for _ in range(6))
    return DemoRow("medium", "writing", f"Write a short note about the {topic} of place {i}.", draft), "medium"


def synthetic_demonstrations(path: Path, n: int, seed: int = 0) -> Path:
    """`n` rows in the demonstrations' JSONL shape (compact prompt, one assistant message), by the rule teacher."""
    from gtalign.demonstrations import demonstrate
    from gtalign.protocol import render_messages

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            row, source = _synthetic_row(i)
            completion = demonstrate(row, seed=seed)
            prompt = render_messages(row.question, style="compact")
            record = {"uid": f"synthetic-{i}", "data_source": source, "prompt": prompt}
            f.write(json.dumps({**record, "completion": [{"role": "assistant", "content": completion}]}) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------------
# The measurements
# ---------------------------------------------------------------------------------------------------------------
def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _step_clock(device: str) -> Any:
    """A TrainerCallback recording (time, tokens seen) after every optimizer step (CUDA synchronised first)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[tuple[float, int]] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            _sync(device)
            self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen or 0)))

    return StepClock()


def measure_sft(base: Path, demos: Path, tmp: Path, settings: DeviceSettings, steps: int, batch: int) -> dict:
    from gtalign.config import load_typed_params
    from gtalign.modeling import count_parameters
    from gtalign.train.sft import train_sft

    sft = load_typed_params(ROOT / "params.yaml").sft
    cuda = settings.device == "cuda"
    trl_args = {
        "max_steps": steps,
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "save_steps": 10**9,
        "logging_steps": steps,
        "bf16": cuda,
        "use_cpu": not cuda,
    }
    cfg = sft.model_copy(update={"resume": False, "dtype": settings.dtype, "args": {**sft.args, **trl_args}})
    clock = _step_clock(settings.device)
    out = train_sft(base, demos, tmp / "sft", tmp / "sft-ckpt", cfg, callbacks=[clock])
    params = count_parameters(out.trainer.model)
    (t0, n0), (t1, n1) = clock.marks[0], clock.marks[-1]
    steady = (n1 - n0) / (t1 - t0) if len(clock.marks) > 1 else out.train_tokens / out.train_seconds
    return {
        "steps": out.global_step,
        "batch_size": batch,
        "tokens": out.train_tokens,
        "seconds": out.train_seconds,
        "tokens_per_s": out.train_tokens / out.train_seconds,
        "steady_tokens_per_s": steady,
        "parameters": params,
        "mfu": mfu(params, steady, settings.peak_tflops),
        "model_dir": str(out.model_dir),
    }


def _best_of(fn: Any, repeats: int, device: str) -> float:
    best = math.inf
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def measure_generation(model: Any, tok: Any, prompts: list, device: str, new_tokens: int, repeats: int) -> list:
    from gtalign.modeling import generate

    out = []
    for b in BATCH_SIZES:
        batch = prompts[:b]
        generate(model, tok, batch, max_new_tokens=2, batch_size=b)  # warm-up
        model.generation_config.min_new_tokens = new_tokens  # every row makes exactly new_tokens: count them
        secs = _best_of(
            lambda batch=batch, b=b: generate(model, tok, batch, max_new_tokens=new_tokens, batch_size=b),
            repeats,
            device,
        )
        model.generation_config.min_new_tokens = None
        out.append(
            {"batch_size": b, "new_tokens": b * new_tokens, "seconds": secs, "tokens_per_s": b * new_tokens / secs}
        )
    return out


def _recording_forced_steerer(prefixes: dict[str, list[int]]) -> type:
    """benchmarks/steering.py's forcing steerer, with each request's forced prefix looked up by its prompt (so that
    `_time_pair`, which builds its own requests, can drive it), and the splice count of steered runs recorded."""
    sys.path.insert(0, str(Path(__file__).parent))
    from steering import _forced_steerer_class

    forced, _ = _forced_steerer_class()

    class Recording(forced):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.spliced: list[bool] = []

        def select_next(self, logits: Any, rows: Any) -> list[int]:
            for row in rows:
                if not hasattr(row.req, "forced"):
                    row.req.forced = prefixes[json.dumps(row.req.prompt)]
            return super().select_next(logits, rows)

        def generate(self, requests: Any) -> Any:
            outs = super().generate(requests)
            if any(r.transform is not None for r in requests):
                self.spliced += [o.spliced for o in outs]
            return outs

    return Recording


def measure_steering(model: Any, tok: Any, rows: list, device: str, after_payoff: int, repeats: int) -> list:
    from gtalign.evaluate.steering import _time_pair
    from gtalign.steering import PricingTransform, SteerRequest

    heads = [r["completion"][-1]["content"].split("</payoff>")[0] + "</payoff>" for r in rows]
    prefixes = {
        json.dumps(r["prompt"]): tok(h, add_special_tokens=False)["input_ids"]
        for r, h in zip(rows, heads, strict=True)
    }
    steerer_class = _recording_forced_steerer(prefixes)
    transform = PricingTransform("subscription->api", price_per_100_words=10.0)
    out = []
    for b in BATCH_SIZES:
        prompts = [r["prompt"] for r in rows[:b]]
        max_new = max(len(prefixes[json.dumps(p)]) for p in prompts) + after_payoff
        steerer = steerer_class(model, tok, batch_size=b)
        steerer.generate([SteerRequest(prompts[0], max_new_tokens=4)])  # warm-up, as the steering evaluation does
        timing = _time_pair(steerer, prompts, transform, max_new, repeats)
        spliced = steerer.spliced
        out.append(
            {
                "batch_size": b,
                "completion_tokens": b * max_new,
                "unsteered_s": timing["unsteered_s"],
                "steered_s": timing["steered_s"],
                "ratio": timing["ratio"],
                "ratio_per_token": timing["ratio_per_token"],
                "unsteered_tokens_per_s": b * max_new / timing["unsteered_s"],
                "spliced": sum(spliced) / len(spliced),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------------
SMOKE = {
    "hidden_size": 64,
    "layers": 2,
    "heads": 4,
    "kv_heads": 2,
    "steps": 2,
    "batch": 2,
    "rows": 16,
    "gen_tokens": 8,
    "after_payoff": 8,
    "repeats": 1,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "artifacts" / "device_check.json", help="JSON results")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu) | cuda | cpu")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help=f"peak FLOP/s for MFU, in TFLOP/s (default: {DEFAULT_CUDA_PEAK_TFLOPS:g} on cuda = H100/H200 "
        "bf16 dense; none on cpu -> MFU null)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes and 2 SFT steps (CPU test)")
    p.add_argument(
        "--demonstrations",
        type=Path,
        default=None,
        help="a demonstrations JSONL (default: rule-teacher answers to synthetic questions)",
    )
    p.add_argument("--rows", type=int, default=256, help="synthetic demonstrations to write")
    p.add_argument("--hidden-size", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=None, help="default hidden-size / 64")
    p.add_argument("--kv-heads", type=int, default=None, help="default heads / 4 (or heads when not divisible)")
    p.add_argument("--intermediate-size", type=int, default=None, help="default 3 x hidden-size (as the tiny model)")
    p.add_argument("--steps", type=int, default=60, help="SFT steps")
    p.add_argument("--batch", type=int, default=16, help="SFT per-device batch")
    p.add_argument("--gen-tokens", type=int, default=128, help="new tokens per generated answer")
    p.add_argument("--after-payoff", type=int, default=96, help="steering: tokens decoded after the payoff")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (best of) for generation and steering")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    args.heads = args.heads or max(1, args.hidden_size // 64)
    args.kv_heads = args.kv_heads or (args.heads // 4 if args.heads % 4 == 0 else args.heads)
    args.intermediate_size = args.intermediate_size or 3 * args.hidden_size
    if args.steps < 2:
        p.error("--steps must be >= 2 (the steady rate leaves out the first step)")
    return args


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from gtalign.modeling import TinyModelConfig, base_corpus, build_base_model, load_model
    from gtalign.train.sft import load_demonstrations

    start = time.perf_counter()
    settings = device_settings(resolve_device(args.device), args.peak_tflops)
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        demos = args.demonstrations or synthetic_demonstrations(tmp / "demonstrations.jsonl", args.rows)
        rows = load_demonstrations(demos)
        if len(rows) < max(BATCH_SIZES):
            raise SystemExit(f"{demos}: {len(rows)} rows, need at least {max(BATCH_SIZES)}")
        tiny = TinyModelConfig(
            hidden_size=args.hidden_size,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=args.kv_heads,
            intermediate_size=args.intermediate_size,
        )
        base = build_base_model(tmp / "base", base_corpus(None, demos), tiny)
        sft = measure_sft(base, demos, tmp, settings, args.steps, args.batch)
        model, tok = load_model(sft.pop("model_dir"), dtype=settings.dtype, device=settings.device)
        model.config.use_cache = True
        model.eval()
        picked = random.Random(0).sample(rows, max(BATCH_SIZES))
        generation = measure_generation(
            model, tok, [r["prompt"] for r in picked], settings.device, args.gen_tokens, args.repeats
        )
        steering = measure_steering(model, tok, picked, settings.device, args.after_payoff, args.repeats)
    return {
        "device": {
            **asdict(settings),
            "name": _device_name(settings.device),
            "torch": torch.__version__,
            "transformers": version("transformers"),
            "trl": version("trl"),
            "cuda": torch.version.cuda,
        },
        "model": {
            "parameters": sft["parameters"],
            "vocab_size": len(tok),
            "hidden_size": args.hidden_size,
            "layers": args.layers,
            "heads": args.heads,
            "kv_heads": args.kv_heads,
            "intermediate_size": args.intermediate_size,
        },
        "demonstrations": str(args.demonstrations) if args.demonstrations else f"synthetic ({args.rows} rows)",
        "sft": sft,
        "generation": generation,
        "steering": steering,
        "wall_seconds": time.perf_counter() - start,
    }


def markdown(result: dict[str, Any]) -> str:
    dev, m, sft = result["device"], result["model"], result["sft"]
    mfu_text = "null (no peak on CPU)" if sft["mfu"] is None else f"{sft['mfu']:.1%} of {dev['peak_tflops']:g} TFLOP/s"
    lines = [
        f"## Device check: {dev['device']} ({dev['name']}), {dev['dtype']}",
        "",
        f"Qwen2 from scratch, {m['parameters'] / 1e6:.1f} M parameters (hidden {m['hidden_size']}, {m['layers']} "
        f"layers, vocab {m['vocab_size']}); torch {dev['torch']}, transformers {dev['transformers']}, trl "
        f"{dev['trl']}; demonstrations: {result['demonstrations']}; {result['wall_seconds']:.0f} s in all.",
        "",
        "| measure | batch | value |",
        "|---|---|---|",
        f"| SFT tokens/s (steady, first step left out) | {sft['batch_size']} | {sft['steady_tokens_per_s']:,.0f} |",
        f"| SFT tokens/s (whole run, {sft['steps']} steps) | {sft['batch_size']} | {sft['tokens_per_s']:,.0f} |",
        f"| SFT MFU (6 x params x tokens/s / peak) | {sft['batch_size']} | {mfu_text} |",
    ]
    for g in result["generation"]:
        lines.append(
            f"| generation tokens/s (`gtalign.modeling.generate`) | {g['batch_size']} | {g['tokens_per_s']:,.0f} |"
        )
    for s in result["steering"]:
        lines.append(
            f"| steering: steered / unsteered time ({s['spliced']:.0%} spliced) | {s['batch_size']} | "
            f"{s['ratio']:.3f}x ({s['steered_s']:.2f} s / {s['unsteered_s']:.2f} s) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(markdown(result))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
