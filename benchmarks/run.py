"""`make bench`: measure, then write BENCHMARKS.md (method, machine, numbers).

Sections are small functions returning markdown; each states what it measures and how. Run from the repo root
after `dvc pull` (the completions are built from the real test sets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from completions import generate
from training import SECTIONS as TRAINING_SECTIONS

from gtalign.sources import IN_DOMAIN_SOURCES

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
GTALIGN = str(Path(sys.executable).with_name("gtalign"))
ONE_CORE = ["taskset", "-c", "0"] if shutil.which("taskset") else []


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pkgs = ", ".join(f"{p} {version(p)}" for p in ("numpy", "math-verify", "transformers", "trl", "torch"))
    return (
        f"- CPU: {cpu}, {os.cpu_count()} cores visible; one core pinned with taskset where noted\n"
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}\n- {pkgs}"
    )


def bench_reward_column(tmp: Path, n: int = 12_000, repeats: int = 3) -> str:
    src = tmp / "completions.jsonl"
    with src.open("w") as f:
        for row in generate(DATA, n, seed=0):
            f.write(json.dumps(row) + "\n")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(
            [*ONE_CORE, GTALIGN, "reward", "score", str(src), "--output", str(tmp / "out.jsonl"), "--judge", "column"],
            check=True,
            capture_output=True,
            cwd=tmp,
        )
        times.append(time.perf_counter() - t0)
    lines = sum(1 for _ in (tmp / "out.jsonl").open())
    assert lines == n, f"expected {n} output lines, got {lines}"
    best, med = min(times), statistics.median(times)
    size = src.stat().st_size / 1e6
    return (
        "## Reward scoring, recorded verdicts (`gtalign reward score --judge column`)\n\n"
        f"{n:,} realistic completions ({size:.1f} MB JSONL, the four training sources in equal parts, built by "
        "`benchmarks/completions.py` from the test sets), the whole process timed (start-up, reading, scoring, "
        f"writing), pinned to one core, {repeats} runs.\n\n"
        "| metric | value |\n|---|---|\n"
        f"| best wall time | {best:.2f} s |\n| median wall time | {med:.2f} s |\n"
        f"| throughput (best) | **{n / best:,.0f} rows/s** |\n| throughput (median) | {n / med:,.0f} rows/s |\n"
        "| target | >= 4,200 rows/s (3x the published implementation's ~1,400 rows/s with stubbed verdicts) |\n"
    )


def bench_rule_judges(tmp: Path, per_source: int = 400) -> str:
    from gtalign.protocol import read_tolerant
    from gtalign.reward.judges import make_judge
    from gtalign.reward.judges.base import JudgeRequest

    rows = list(generate(DATA, per_source * len(IN_DOMAIN_SOURCES), seed=1))
    out = [
        "## Rule judges (offline), per source\n",
        f"{per_source} completions per source, in-process, verdicts only (`RuleJudge.judge`), one batch; "
        "a fresh judge per source so that no cache is warm.\n",
        "| source | rows/s | ms/row |",
        "|---|---|---|",
    ]
    for source in IN_DOMAIN_SOURCES:
        reqs = [
            JudgeRequest(source, read_tolerant(r["completion"]).response or "", r["ground_truth"], r["extra_info"])
            for r in rows
            if r["data_source"] == source
        ]
        judge = make_judge("rule")
        t0 = time.perf_counter()
        verdicts = judge.judge(reqs)
        dt = time.perf_counter() - t0
        failed = sum(not v.ok for v in verdicts)
        note = f" ({failed} failed verdicts)" if failed else ""
        out.append(f"| {source} | {len(reqs) / dt:,.0f}{note} | {1000 * dt / len(reqs):.2f} |")
    return "\n".join(out) + "\n"


def bench_steering_section(tmp: Path) -> str:
    from steering import bench_steering

    return bench_steering(tmp)


SECTIONS: list[Callable[[Path], str]] = [
    bench_reward_column,
    bench_rule_judges,
    *TRAINING_SECTIONS,
    bench_steering_section,
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--only", help="run only the sections whose function name contains this")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit("data/ is missing: run `make data` (dvc pull) first")
    parts = [
        "# Benchmarks\n",
        "Written by `make bench` (`benchmarks/run.py`); numbers from the last run.\n",
        "## Machine\n",
        _machine() + "\n",
    ]
    with tempfile.TemporaryDirectory() as d:
        for section in SECTIONS:
            if args.only and args.only not in section.__name__:
                continue
            print(f"running {section.__name__} ...", file=sys.stderr)
            parts.append(section(Path(d)))
    parts.append((Path(__file__).parent / "notes.md").read_text(encoding="utf-8"))
    args.output.write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
