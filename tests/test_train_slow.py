"""End-to-end training on the tiny preset: SFT lifts strict validity, RL optimises exactly `score_batch`, a killed
run resumes, `accelerate launch` runs SFT and GRPO data-parallel on two CPU processes, Dagster runs the step
through Pipes.

They start from what the session's demo run (tests/conftest.py `demo_run`) curated and trained with the repo's
params, copied into a private root.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import BIN, REPO_ROOT

from gtalign.config import load_params, parse_params
from gtalign.reward import RewardInput, score_batch
from gtalign.train.common import last_checkpoint

pytestmark = pytest.mark.slow

PARAMS = str(REPO_ROOT / "params.yaml")
CPU_DDP = str(REPO_ROOT / "configs" / "accelerate" / "cpu_ddp.yaml")


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_"))}
    env.update(TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", MLFLOW_TRACKING_URI=f"sqlite:///{root}/m.db")
    return env


@pytest.fixture(scope="module")
def project(demo_run, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """The demo's curated data, demonstrations, base and SFT models (tests/conftest.py `demo_run`: trained once per
    session with the repo's tiny-preset params), copied into a private root: the tests here train again."""
    src = demo_run.root / "artifacts"
    root = tmp_path_factory.mktemp("train")
    (root / "data").symlink_to(demo_run.root / "data")
    for part in ("curated", "demonstrations", "models/base", "models/sft"):
        shutil.copytree(src / part, root / "artifacts" / part)
    params = load_params(demo_run.root / "params.yaml")
    return root, params, json.loads((src / "metrics" / "sft.json").read_text())


def test_sft_lifts_strict_format_validity(demo_run, project):
    root, params, m = project
    print(json.dumps({k: v for k, v in m.items() if "/" not in k}, indent=1))
    assert m["init_strict_valid"] <= 0.05  # the untrained model never writes the four blocks
    assert m["heldout_strict_valid"] >= 0.9  # the target, on curated dev prompts never trained on
    assert m["heldout_welfare"] > m["init_welfare"] + 0.3
    assert m["loss_finite"] == 1.0 and m["loss_final"] < m["loss_first"] / 4
    assert m["global_step"] == params["sft"]["args"]["max_steps"]
    assert (root / "artifacts" / "models" / "sft" / "model.safetensors").is_file()
    curve = (demo_run.root / "artifacts" / "plots" / "sft_loss.csv").read_text().splitlines()
    steps = [int(line.split(",")[0]) for line in curve[1:]]
    assert (
        curve[0].startswith("step,loss") and steps == sorted(steps) and steps[-1] == params["sft"]["args"]["max_steps"]
    )


def test_rl_optimises_exactly_score_batch_and_tracks_it(project):
    """The reward TRL logged per step is the mean of `score_batch` over that step's completions; MLflow has it."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from gtalign.train.stages import rl_stage

    root, params, _ = project
    p = json.loads(json.dumps(params))
    # one update per rollout batch, so that each logged step is exactly one batch of fresh completions
    p["rl"]["args"].update(
        {"max_steps": 3, "max_completion_length": 160, "save_steps": 100, "logging_steps": 1, "num_iterations": 1}
    )
    p["rl"]["eval"].update({"per_source": 4})
    uri = f"sqlite:///{root}/mlflow-rl.db"
    result = rl_stage(root, parse_params(p), "cobb_douglas", tracking_uri=uri, record_rewards=True)
    reward = result.reward
    per_step = p["rl"]["args"]["per_device_train_batch_size"]
    assert len(reward.history) == 3 * per_step
    rescored = score_batch(
        [RewardInput(h["completion"], h["data_source"], h["ground_truth"], h["extra_info"]) for h in reward.history],
        reward.judge,
        reward.cfg,
    )
    assert [r.score for r in rescored] == [h["score"] for h in reward.history]
    logged = [h for h in result.curve if "reward" in h]
    assert len(logged) == 3
    for step, entry in enumerate(logged):
        batch = [h["score"] for h in reward.history[step * per_step : (step + 1) * per_step] if h["score"] is not None]
        assert entry["reward"] == pytest.approx(sum(batch) / len(batch), abs=1e-6)
    mlflow.set_tracking_uri(uri)
    run = MlflowClient().get_run(result.run_id)
    assert run.data.tags["gtalign.rl_algorithm"].startswith("grpo (paper: PPO/GAE on verl; TRL 1.x has no PPO)")
    assert run.data.tags["gtalign.variant"] == "cobb_douglas" and "gtalign.data_version" in run.data.tags
    assert run.data.params["rl.args.num_generations"] == str(p["rl"]["args"]["num_generations"])
    assert {"reward", "welfare/U/all", "welfare/L/all", "welfare/judge_failures/all", "heldout_welfare"} <= set(
        run.data.metrics
    )
    assert any(a.path == "model" for a in MlflowClient().list_artifacts(result.run_id))


def test_killed_sft_resumes_from_its_last_checkpoint(project, tmp_path):
    root, _, _ = project
    work = tmp_path / "resume"
    shutil.copytree(root / "artifacts", work / "artifacts", ignore=shutil.ignore_patterns("checkpoints", "sft"))
    cmd = [
        sys.executable, "-m", "gtalign.cli", "train", "sft", "--root", str(work), "--params", PARAMS,
        "--no-eval", "--set", "sft.args.max_steps=8", "--set", "sft.args.save_steps=2", "--set",
        "sft.args.logging_steps=1", "--set", "sft.args.warmup_steps=0", "--set", "sft.args.save_total_limit=null",
    ]  # fmt: skip
    ckpts = work / "artifacts" / "checkpoints" / "sft"
    proc = subprocess.Popen(cmd, cwd=work, env=_env(work), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while (last_checkpoint(ckpts) is None or last_checkpoint(ckpts).name == "checkpoint-2") and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint-4 within 300 s"
        time.sleep(0.05)  # steps take ~1 s on CPU: the kill lands long before checkpoint-8
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = last_checkpoint(ckpts)
    assert killed_at is not None and 4 <= int(killed_at.name.split("-")[1]) < 8, f"killed at {killed_at}"
    done = subprocess.run(cmd, cwd=work, env=_env(work), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((last_checkpoint(ckpts) / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == list(range(1, 9))  # one continuous history: the resumed run continued, it did not restart
    metrics = json.loads((work / "artifacts" / "metrics" / "sft.json").read_text())
    assert metrics["global_step"] == 8
    # one training, one MLflow run: the resumed process continued the killed one's run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work}/m.db")
    runs = client.search_runs([client.get_experiment_by_name("gtalign").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == (ckpts / "gtalign_mlflow_run_id").read_text().strip()
    assert runs[0].data.tags["gtalign.resumed_from"] == killed_at.name
    assert {m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")} == set(range(1, 9))


def _ddp(project, tmp_path: Path, stage: str, *sets: str) -> tuple[Path, dict, list]:
    """`accelerate launch` with configs/accelerate/cpu_ddp.yaml (two CPU processes, DDP over gloo) running
    `gtalign train <stage>` with the repo's params and `sets`; returns the root, the stage's metrics and the MLflow
    runs it logged."""
    from mlflow.tracking import MlflowClient

    root, _, _ = project
    work = tmp_path / "ddp"
    shutil.copytree(root / "artifacts", work / "artifacts", ignore=shutil.ignore_patterns("checkpoints", "rl-*"))
    if stage == "sft":
        shutil.rmtree(work / "artifacts" / "models" / "sft")
    cmd = [
        str(BIN / "accelerate"), "launch", "--config_file", CPU_DDP, "--main_process_port", str(_free_port()),
        "-m", "gtalign.cli", "train", *stage.split(), "--root", str(work), "--params", PARAMS, "--no-eval",
    ]  # fmt: skip
    for assignment in sets:
        cmd += ["--set", assignment]
    env = _env(work) | {"OMP_NUM_THREADS": "1"}  # two ranks on a 2-core box: one thread each
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    name = "sft" if stage == "sft" else "rl-cobb_douglas"
    metrics = json.loads((work / "artifacts" / "metrics" / f"{name}.json").read_text())
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return work / "artifacts" / "models" / name, metrics, runs


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sft_runs_data_parallel_on_two_cpu_processes(project, tmp_path):
    """Same code and params as one process; the global batch is 2 x the per-device batch, one MLflow run and one
    model (rank 0), and the loss really moved."""
    params = project[1]
    model, metrics, runs = _ddp(
        project, tmp_path, "sft", "sft.args.max_steps=2", "sft.args.save_steps=2", "sft.args.logging_steps=1"
    )
    per_device = params["sft"]["args"]["per_device_train_batch_size"]
    assert (metrics["world_size"], metrics["global_batch_size"]) == (2, 2 * per_device)
    assert metrics["global_step"] == 2 and metrics["loss_finite"] == 1.0
    assert (model / "model.safetensors").is_file() and not list(model.parent.glob("sft-*"))
    [run] = runs  # rank 1 logs nothing
    assert run.data.tags["gtalign.world_size"] == "2" and run.data.metrics["global_batch_size"] == 2 * per_device
    assert yaml.safe_load(Path(CPU_DDP).read_text())["num_processes"] == 2


def test_grpo_runs_data_parallel_on_two_cpu_processes(project, tmp_path):
    params = project[1]
    model, metrics, runs = _ddp(
        project,
        tmp_path,
        "rl",
        "rl.args.max_steps=1",
        "rl.args.save_steps=1",
        "rl.args.max_completion_length=32",
        "rl.args.num_iterations=1",
    )
    per_device = params["rl"]["args"]["per_device_train_batch_size"]
    assert (metrics["world_size"], metrics["global_batch_size"]) == (2, 2 * per_device)
    assert metrics["global_step"] == 1 and metrics["reward_judge_failures"] == 0
    assert (model / "model.safetensors").is_file()
    [run] = runs
    assert run.data.tags["gtalign.world_size"] == "2" and run.info.run_name == "rl-cobb_douglas"


def test_dagster_sft_asset_runs_the_step_through_pipes(project, tmp_path):
    """`sft_model` launches `python -m gtalign.train.pipes_entry sft`; metadata and both checks come back."""
    import dagster as dg

    from pipelines.defs import training
    from pipelines.defs.resources import MlflowResource, ProjectResource

    root, params, _ = project
    work = tmp_path / "dg"
    shutil.copytree(root / "artifacts", work / "artifacts", ignore=shutil.ignore_patterns("checkpoints", "sft"))
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = dg.materialize(
        [training.sft_model],
        resources={
            "project": ProjectResource(root=str(work)),
            "mlflow": MlflowResource(tracking_uri=f"sqlite:///{work}/m.db"),
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
        },
        run_config=dg.RunConfig(ops={"sft_model": training.SFTRunConfig(max_steps=2, evaluate=False)}),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["global_step"].value == 2 and metadata["mlflow_run_id"].value
    assert "loss" in metadata["loss_curve"].value
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"sft_loss_finite": True, "sft_format_validity": False}  # not evaluated: not passed
