"""What the tests share: the repo's paths, the real data (pulled with DVC when the workspace lacks it, never
skipped), a small trained tokenizer, and, for the slow tests that need a whole project, a committed copy of the
working tree with `../shared` (the DVC remote) beside it and the demo run once per session in such a copy.

The demo fixture is the product's main job exactly as `make demo` runs it (`gtalign demo`, the repo's own
params.yaml, a real `dvc pull`): `tests/test_demo.py` asserts the paper's directions from its outputs and
`tests/test_train_slow.py` reuses its trained models instead of training them again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from filelock import FileLock
from xdist.scheduler import LoadFileScheduling

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's console scripts: gtalign, dvc, dagster, accelerate

# Under xdist two workers share the box's cores: torch (OpenMP) in a worker and in the subprocesses its tests start
# keeps to one thread, so that the workers do not oversubscribe the cores (OpenMP threads spin while they wait for
# each other). The demo keeps the thread count it has outside the tests, as `make demo` runs it (`demo_run`).
OMP_OUTSIDE = os.environ.get("OMP_NUM_THREADS")
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"


# The modules whose tests read the demo run. Under xdist (`make test`: -n 2) the demo runs once per session, shared by
# the workers through a file lock (`demo_run`): DEMO_FIRST is one unit of work at the head of the queue, so the demo
# starts at once on one worker while the other modules, each a unit (module fixtures built once), go to the other;
# DEMO_LAST (which trains a baseline from the demo's SFT model) comes last, so whichever worker is free by then takes
# it, waiting for the demo if it is still running, instead of lengthening the demo worker's queue.
DEMO_FIRST = ("tests/test_demo.py", "tests/test_train_slow.py")
DEMO_LAST = ("tests/test_paper.py",)
DEMO_MODULES = DEMO_FIRST + DEMO_LAST


class DemoFirstScheduling(LoadFileScheduling):
    """`--dist loadfile`, with DEMO_FIRST as one unit at the head of the queue and DEMO_LAST at its end: the demo and
    its readers are about 20 of the suite's 27 minutes in one process on a 2-core box."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        config.option.loadscopereorder = False  # keep the collection order (below)
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        module = super()._split_scope(nodeid)
        return "demo" if module in DEMO_FIRST else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> DemoFirstScheduling:
    return DemoFirstScheduling(config, log)


def _module_rank(item: pytest.Item) -> int:
    module = item.nodeid.split("::")[0]
    return 0 if module in DEMO_FIRST else 2 if module in DEMO_LAST else 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """DEMO_FIRST first, DEMO_LAST last; a test elsewhere that needs the demo run is an error (scheduled in the
    middle, it would hold its worker idle until the demo ends)."""
    for item in items:
        if "demo_run" in item.fixturenames and item.nodeid.split("::")[0] not in DEMO_MODULES:
            raise pytest.UsageError(f"{item.nodeid} uses demo_run: list its module in conftest.DEMO_MODULES")
    items.sort(key=_module_rank)  # stable: the rest keeps its order


def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder all workers of this session share (the xdist workers' common temp root; the basetemp without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's `data/` with the ten published sets, pulled with DVC when missing (one xdist worker at a time)."""
    from gtalign.data import RawDataMissingError, check_raw_data, pull_data  # local: a light conftest for every test

    with FileLock(session_dir(tmp_path_factory) / "data-pull.lock"):
        try:
            check_raw_data(REPO_ROOT / "data")
        except RawDataMissingError:
            pull_data(REPO_ROOT)
    return REPO_ROOT / "data"


@pytest.fixture(scope="session")
def raw_df(data_dir: Path) -> Any:
    """All published sets as one table (`gtalign.data.load_raw`); tests copy before changing it."""
    from gtalign.data import load_raw

    return load_raw(data_dir)


@pytest.fixture(scope="session")
def tiny_curated(raw_df: Any) -> Any:
    """(table, CurationReport) of the tiny preset over the real data."""
    from gtalign.data import CurateConfig, curate

    return curate(raw_df, CurateConfig(preset="tiny"))


@pytest.fixture(scope="session")
def tiny(tiny_curated: Any) -> Any:
    """The tiny curated table; tests copy before changing it."""
    return tiny_curated[0]


@pytest.fixture(scope="session")
def tok(request: pytest.FixtureRequest) -> Any:
    """A byte-level BPE trained on protocol-like text (tests/steering_support.py), for the scripted model's tests;
    `@pytest.mark.parametrize("tok", ["whole", "glued"], indirect=True)` runs a test with both ways of cutting the
    format (the tiny tokenizer's whole tags, and tags glued to their neighbours as a Qwen tokenizer has them)."""
    from steering_support import make_tokenizer  # local: torch, only for the tests that use it

    return make_tokenizer(glued=getattr(request, "param", "whole") == "glued")


def project_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh shell in `root`: no tracking or Dagster settings inherited from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        GTALIGN_ROOT=str(root),
        DAGSTER_HOME=str(root / ".dagster"),
        GX_ANALYTICS_ENABLED="false",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
        **extra,
    )
    (root / ".dagster").mkdir(exist_ok=True)
    return env


def run_in(cmd: list[str], root: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=root, env=project_env(root, **env), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def copy_project(base: Path, params_update: dict[str, dict[str, Any]] | None = None) -> Path:
    """`base/repo`: the tracked and untracked-but-not-ignored files (tests excluded), committed in a new git repo,
    with `base/shared` linking to the real `../shared` so the DVC remote resolves as in a fresh clone."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    root = base / "repo"
    for rel in out.splitlines():
        if (REPO_ROOT / rel).is_file() and not rel.startswith("tests/"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / rel, root / rel)
    (base / "shared").symlink_to(REPO_ROOT.parent / "shared")
    if params_update:
        params = yaml.safe_load((root / "params.yaml").read_text())
        for name, values in params_update.items():
            params[name].update(values)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "dvc.lock").unlink(missing_ok=True)
    run_in(["git", "init", "-q", "-b", "main"], root)
    run_in(["git", "add", "-A"], root)
    run_in(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], root)
    return root


@dataclass(frozen=True)
class DemoRun:
    root: Path
    output: str  # what `gtalign demo` printed (stdout + stderr)
    seconds: float

    def guard(self) -> FileLock:
        """Held by a test while it writes in the demo project (git, DVC) and by one that copies it, so that a copy
        made on the other worker never sees half a write."""
        return FileLock(self.root.parent / "demo-writes.lock")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """`gtalign demo` in a fresh copy of the project: pull, curate, demonstrations, base, SFT, RL, steering,
    evaluation + report, registration and promotion, tracked in the copy's own mlflow.db. Run once per session: the
    first worker to ask runs it under a file lock and records how it ended; the others wait and read that record
    (a failed demo fails their tests with the same output, it is not run again).

    For a fast inner loop, `GTALIGN_TEST_DEMO_ROOT=<a clone where make demo ran, its output in demo.log>` reuses
    that run instead (read-only: the tests copy what they train from). CI never sets it."""
    reuse = os.environ.get("GTALIGN_TEST_DEMO_ROOT")
    if reuse:
        root = Path(reuse).resolve()
        return DemoRun(root, (root / "demo.log").read_text(encoding="utf-8", errors="replace"), 0.0)
    shared = session_dir(tmp_path_factory)
    base, record = shared / "demo", shared / "demo" / "demo-run.json"
    with FileLock(shared / "demo-run.lock"):
        if not record.exists():
            if base.exists():  # a worker started it and died or timed out before it wrote the record
                pytest.fail(f"{base}: the session's demo run never finished (see the first worker's error)")
            base.mkdir()
            root = copy_project(base)
            t0 = time.perf_counter()
            env = {k: v for k, v in project_env(root).items() if k != "OMP_NUM_THREADS"}
            env |= {"OMP_NUM_THREADS": OMP_OUTSIDE} if OMP_OUTSIDE else {}  # the thread count of `make demo`
            proc = subprocess.run(
                [str(BIN / "gtalign"), "demo"],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            done = {"root": str(root), "output": proc.stdout + proc.stderr, "seconds": time.perf_counter() - t0}
            record.write_text(json.dumps({**done, "returncode": proc.returncode}), encoding="utf-8")
        ran = json.loads(record.read_text(encoding="utf-8"))
    assert ran["returncode"] == 0, f"gtalign demo failed:\n{ran['output'][-6000:]}"
    return DemoRun(Path(ran["root"]), ran["output"], ran["seconds"])
