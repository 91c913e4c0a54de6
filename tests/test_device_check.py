"""benchmarks/device_check.py: the prepared GPU check, exercised on the CPU (its smoke run) and its device logic.

The precision and MFU peak chosen for CUDA are unit-tested here without a GPU; the script itself has not run on a
GPU in this project (docs/scale_out.md, "What ran where").
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.py"


@functools.cache
def _module():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cuda_selects_bf16_and_the_h100_h200_peak() -> None:
    dc = _module()
    assert dc.device_settings("cuda") == dc.DeviceSettings("cuda", "bfloat16", 989.0)
    assert dc.device_settings("cuda", peak_tflops=312.0) == dc.DeviceSettings("cuda", "bfloat16", 312.0)


def test_cpu_selects_float32_and_no_peak() -> None:
    dc = _module()
    assert dc.device_settings("cpu") == dc.DeviceSettings("cpu", "float32", None)
    assert dc.mfu(1_000_000, 5_000.0, None) is None
    with pytest.raises(ValueError, match="--device 'tpu'"):
        dc.device_settings("tpu")


def test_mfu_is_six_flops_per_parameter_per_token_over_the_peak() -> None:
    dc = _module()
    # 80 M parameters at 1 M tokens/s = 4.8e14 FLOP/s, against 989 TFLOP/s
    assert dc.mfu(80_000_000, 1_000_000.0, 989.0) == pytest.approx(4.8e14 / 989e12)


def test_smoke_sizes_and_the_derived_head_counts() -> None:
    dc = _module()
    smoke = dc.parse_args(["--smoke"])
    assert (smoke.hidden_size, smoke.layers, smoke.heads, smoke.kv_heads, smoke.steps) == (64, 2, 4, 2, 2)
    default = dc.parse_args([])
    assert (default.hidden_size, default.layers, default.heads, default.kv_heads, default.intermediate_size) == (
        768,
        12,
        12,
        3,
        2304,
    )
    sized = dc.parse_args(["--hidden-size", "512", "--layers", "8"])
    assert (sized.heads, sized.kv_heads, sized.intermediate_size) == (8, 2, 1536)


def _numbers(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, value


@pytest.mark.slow
def test_smoke_run_on_cpu_writes_every_field(tmp_path: Path) -> None:
    out = tmp_path / "device_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"]["device"] == "cpu" and result["device"]["dtype"] == "float32"
    assert result["device"]["peak_tflops"] is None and result["sft"]["mfu"] is None
    sft_keys = {"steps", "batch_size", "tokens", "seconds", "tokens_per_s", "steady_tokens_per_s", "parameters", "mfu"}
    assert set(result["sft"]) == sft_keys
    assert result["sft"]["steps"] == 2 and result["model"]["layers"] == 2
    assert [g["batch_size"] for g in result["generation"]] == [1, 8]
    assert [g["new_tokens"] for g in result["generation"]] == [8, 64]
    assert set(result["generation"][0]) == {"batch_size", "new_tokens", "seconds", "tokens_per_s"}
    assert [s["batch_size"] for s in result["steering"]] == [1, 8]
    assert set(result["steering"][0]) == {
        "batch_size",
        "completion_tokens",
        "unsteered_s",
        "steered_s",
        "ratio",
        "ratio_per_token",
        "unsteered_tokens_per_s",
        "spliced",
    }
    assert all(s["spliced"] == 1.0 for s in result["steering"])  # the steered runs really edited every payoff
    numbers = dict(_numbers(result))
    assert len(numbers) >= 30
    bad = {k: v for k, v in numbers.items() if not (math.isfinite(v) and v > 0)}
    assert not bad, f"not finite and positive: {bad}"
    assert "| SFT MFU" in done.stdout and "null (no peak on CPU)" in done.stdout
