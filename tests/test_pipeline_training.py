"""The Dagster training wiring without training: what `run_training` hands the Pipes subprocess, and the `paper`
job's variants (its preset's, besides GTAlign) going through the same Pipes path as `rl_model` (a stand-in
subprocess reports as pipes_entry does).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dagster as dg
import yaml

from pipelines.defs.resources import MlflowResource, ProjectResource
from pipelines.defs.variants import PAPER_RUN_CONFIG, rl_variants

# Stands in for `python -m gtalign.train.pipes_entry rl ...`: records its arguments and params, reports like rank 0.
FAKE_ENTRY = """
import json, sys
from pathlib import Path
from dagster_pipes import open_dagster_pipes

args = sys.argv[1:]
variant = args[args.index("--variant") + 1]
params = json.loads(Path(args[args.index("--params-json") + 1]).read_text())
with open(Path(__file__).with_name(f"call-{variant}.json"), "w") as f:
    json.dump({"args": args, "params": params}, f)
with open_dagster_pipes() as pipes:
    pipes.report_asset_materialization(
        metadata={"path": f"artifacts/models/rl-{variant}", "mlflow_run_id": f"run-{variant}", "heldout_welfare": 0.5,
                  "loss_final": 1.0, "heldout_by_source": {"raw_value": "| source |", "type": "md"}}
    )
    pipes.report_asset_check(check_name="rl_loss_finite", passed=variant != "llm", severity="ERROR", metadata={})
"""


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "configs").mkdir(parents=True)
    params = {
        "rl": {"variant": "cobb_douglas", "args": {"max_steps": 60, "seed": 0}},
        "sft": {"args": {"max_steps": 10}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "configs" / "big.yaml").write_text(yaml.safe_dump({"rl": {"args": {"max_steps": 500, "seed": 3}}}))
    return root


PAPER_VARIANTS = ("user", "llm", "linear", "cobb_douglas-seed1")


def _paper_project(tmp_path: Path) -> Path:
    """A project whose paper preset trains three reward baselines and one more GTAlign seed."""
    root = _project(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["rl"]["variants"] = {"cobb_douglas-seed1": {"replicate_of": "cobb_douglas", "args": {"seed": 1}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "configs" / "presets").mkdir()
    preset = {"pipeline": {"variants": ["cobb_douglas", *PAPER_VARIANTS]}}
    (root / "configs" / "presets" / "paper.yaml").write_text(yaml.safe_dump(preset))
    return root


def test_project_params_overlay_presets_then_run_config_overrides(tmp_path):
    project = ProjectResource(root=str(_project(tmp_path)))
    params = project.params({"rl": {"args": {"seed": 7, "learning_rate": None}}}, presets=["configs/big.yaml"])
    assert params["rl"] == {"variant": "cobb_douglas", "args": {"max_steps": 500, "seed": 7}}  # None: keep params
    assert params["sft"] == {"args": {"max_steps": 10}}


def test_paper_variants_train_each_through_the_rl_pipes_path(tmp_path, monkeypatch):
    root = _paper_project(tmp_path)
    entry = tmp_path / "fake_entry.py"
    entry.write_text(FAKE_ENTRY)
    python = tmp_path / "python"  # `<sys.executable> -m gtalign.train.pipes_entry ...` runs the stand-in instead
    python.write_text(f'#!/bin/sh\nshift 2\nexec "{sys.executable}" "{entry}" "$@"\n')
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    resources = {
        "project": ProjectResource(root=str(root)),
        "mlflow": MlflowResource(tracking_uri="sqlite:///m.db"),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    }
    # the default job: params.yaml's own variants (here none besides GTAlign, which rl_model trains)
    assert dg.materialize([rl_variants], resources=resources, instance=dg.DagsterInstance.ephemeral()).success
    assert not list(tmp_path.glob("call-*.json"))
    paper_config = {"ops": {"rl_variants": PAPER_RUN_CONFIG["ops"]["rl_variants"]}}  # the `paper` job's
    result = dg.materialize(
        [rl_variants], resources=resources, run_config=paper_config, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    assert not (tmp_path / "call-cobb_douglas.json").exists()  # rl_model trains GTAlign itself
    for variant in PAPER_VARIANTS:
        call = json.loads((tmp_path / f"call-{variant}.json").read_text())
        assert call["args"][:1] == ["rl"] and call["args"][-4:] == [
            "--variant",
            variant,
            "--tracking-uri",
            "sqlite:///m.db",
        ]
        assert call["params"]["rl"]["variant"] == variant
        assert call["params"]["rl"]["args"] == {"max_steps": 60, "seed": 0}  # a seed replicate's own seed: its variant
    [event] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["user/path"] == "artifacts/models/rl-user" and metadata["linear/mlflow_run_id"] == "run-linear"
    assert metadata["llm/heldout_welfare"] == 0.5 and "llm/loss_final" not in metadata
    assert metadata["user/heldout_by_source"] == "| source |"
    assert (metadata["user/rl_loss_finite"], metadata["llm/rl_loss_finite"]) == (True, False)
    assert result.get_asset_check_evaluations() == []  # reported as metadata: the baselines are not gated


def test_the_training_launcher_comes_from_params_and_the_run_config_overrides_it(tmp_path):
    """params.yaml `rl.launcher` (e.g. `accelerate launch --config_file ...`) starts the Pipes step; `-m
    gtalign.train.pipes_entry rl ...` follows it. A run config's `launcher` wins over params."""
    import dagster as dg

    from pipelines.defs.training import RLRunConfig, rl_model

    root = _project(tmp_path)
    (tmp_path / "fake_entry.py").write_text(FAKE_ENTRY)
    for name in ("from-params", "from-run-config"):
        script = tmp_path / name  # records how it was called, then runs the stand-in entry as the launcher would
        script.write_text(
            f'#!/bin/sh\necho "$@" > "{tmp_path}/{name}.args"\nwhile [ "$1" != "-m" ]; do shift; done\nshift 2\n'
            f'exec "{sys.executable}" "{tmp_path}/fake_entry.py" "$@"\n'
        )
        script.chmod(0o755)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["rl"]["launcher"] = f"{tmp_path}/from-params --num_processes 2"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    resources = {
        "project": ProjectResource(root=str(root)),
        "mlflow": MlflowResource(tracking_uri="sqlite:///m.db"),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    }
    for config in (RLRunConfig(), RLRunConfig(launcher=f"{tmp_path}/from-run-config")):
        result = dg.materialize(
            [rl_model],
            resources=resources,
            run_config=dg.RunConfig(ops={"rl_model": config}),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        assert result.get_asset_materialization_events(), "the stand-in entry reported nothing"
    called = (tmp_path / "from-params.args").read_text().split()
    assert called[:4] == ["--num_processes", "2", "-m", "gtalign.train.pipes_entry"] and called[4] == "rl"
    assert (tmp_path / "from-run-config.args").read_text().split()[:2] == ["-m", "gtalign.train.pipes_entry"]
