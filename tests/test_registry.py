"""The model registry on a real sqlite MLflow store: metric mapping, the promotion gate both ways (exact reasons),
the pyfunc loaded by alias in a fresh process, the `gtalign registry` CLI and the Dagster assets + blocking check.

The server end-to-end test is in test_registry_server.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

import gtalign
from gtalign import registry
from gtalign.registry import (
    CHALLENGER,
    CHAMPION,
    DECISION_TAG,
    DEFAULT_METRIC_KEYS,
    MODEL_NAME,
    REASONS_TAG,
    MetricKeys,
    RegistryConfig,
    RegistryError,
    gate,
    promote,
    register,
)

DATA_MD5 = "0123456789abcdef0123456789abcdef.dir"


def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny HF model per session (shared through the session's base temp dir with the server test file)."""
    from gtalign.modeling import build_base_model

    path = tmp_path_factory.getbasetemp() / "registry-tiny-model"
    if not (path / "config.json").exists():
        corpus = [p.read_text(encoding="utf-8") for p in sorted(Path(gtalign.__file__).parent.rglob("*.py"))]
        build_base_model(path, corpus)
    return path


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(autouse=True)
def _hermetic_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project root with a DVC data pointer, so registrations carry a data version."""
    (tmp_path / "data.dvc").write_text(f"outs:\n- md5: {DATA_MD5}\n  path: data\n")
    return tmp_path


@pytest.fixture
def uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def metrics(welfare: float, **answers: float) -> dict[str, float]:
    return {"welfare_mean": welfare, **{f"answer/{k.replace('_', '-')}": v for k, v in answers.items()}}


def tags_of(uri: str, version: str) -> dict[str, str]:
    return dict(registry.client_for(uri).get_model_version(MODEL_NAME, version).tags)


def alias_version(uri: str, alias: str) -> str | None:
    client = registry.client_for(uri)
    try:
        return str(client.get_model_version_by_alias(MODEL_NAME, alias).version)
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------------------------
# Metric mapping
# ---------------------------------------------------------------------------------------------------------------
EVALUATION = {
    "cobb_douglas/welfare_mean": 0.41,
    "cobb_douglas/answer/math-hard": 0.5,
    "cobb_douglas/answer/wildguard": 0.9,
    "cobb_douglas/format_rate": 1.0,
    "sft/welfare_mean": 0.2,
    "sft/answer/math-hard": 0.7,
}


def test_default_mapping_selects_the_models_welfare_and_answers() -> None:
    assert MetricKeys().select(EVALUATION, "cobb_douglas") == {
        "welfare_mean": 0.41,
        "answer/math-hard": 0.5,
        "answer/wildguard": 0.9,
    }
    assert MetricKeys().select(EVALUATION, "sft") == {"welfare_mean": 0.2, "answer/math-hard": 0.7}


def test_custom_mapping_from_params() -> None:
    section = {
        "metric_keys": {"welfare_mean": "{model}/welfare_mean", "format": "{model}/format_rate"},
        "metric_prefixes": {"answer/": "{model}/answer/"},
    }
    keys = RegistryConfig.model_validate(section).metric_mapping
    assert keys.select(EVALUATION, "cobb_douglas")["format"] == 1.0
    everything = MetricKeys(keys={}, prefixes={"": "{model}/"}).select(EVALUATION, "cobb_douglas")
    assert set(everything) == {"welfare_mean", "answer/math-hard", "answer/wildguard", "format_rate"}


def test_mapping_fails_loudly() -> None:
    with pytest.raises(RegistryError, match=r"no key 'grpo/welfare_mean' \(for 'welfare_mean'\)"):
        MetricKeys().select(EVALUATION, "grpo")
    with pytest.raises(RegistryError, match=r"no keys under 'x/answer/'"):
        MetricKeys().select({"x/welfare_mean": 0.1}, "x")
    with pytest.raises(RegistryError, match="must be a finite number, got nan"):
        MetricKeys().select({"x/welfare_mean": math.nan, "x/answer/a": 0.1}, "x")
    with pytest.raises(RegistryError, match="got 'high'"):
        MetricKeys().select({"x/welfare_mean": 0.1, "x/answer/a": "high"}, "x")


def test_read_metrics_file(tmp_path: Path) -> None:
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(EVALUATION))
    assert registry.read_metrics(path, "sft") == {"welfare_mean": 0.2, "answer/math-hard": 0.7}
    with pytest.raises(RegistryError, match="no such metrics file"):
        registry.read_metrics(tmp_path / "missing.json", "sft")


def test_registry_config_reads_the_repo_params() -> None:
    from gtalign.config import load_typed_params

    cfg = load_typed_params(REPO_ROOT / "params.yaml").registry
    assert cfg.model_name == MODEL_NAME
    assert cfg.gate.metric == "welfare_mean" and cfg.gate.answer_prefix == "answer/"
    evaluation = {"m/welfare_mean": 1.0, "m/matrix_analyze_mean": 0.95, "m/answer/a": 0.5, "m/welfare/a": 0.7}
    assert cfg.metric_mapping.select(evaluation, "m") == {
        "welfare_mean": 1.0,
        "matrix_analyze_mean": 0.95,
        "answer/a": 0.5,
        "welfare/a": 0.7,
    }
    # the demo trains GTAlign and its consistency variant, and the gate picks by the model's own matrix reasoning first
    assert cfg.candidates == ["cobb_douglas", "consistency"] and cfg.gate.floors == {"matrix_analyze_mean": 0.9}
    assert RegistryConfig.model_validate({}) == RegistryConfig()


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"model_nme": "x"}, "model_nme"),
        ({"gate": {"tolerence": 0.1}}, "gate.tolerence"),
        ({"serving": {"temp": 0}}, "serving.temp"),
    ],
)
def test_a_misspelt_registry_key_is_an_error_naming_section_and_key(section: dict, where: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"params\.yaml registry") as err:
        RegistryConfig.model_validate(section)
    assert where in str(err.value) and "Extra inputs are not permitted" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# The gate as a pure function
# ---------------------------------------------------------------------------------------------------------------
def test_gate_reasons() -> None:
    champ = metrics(0.40, math_hard=0.60, wildguard=0.90)

    first = gate(metrics(0.3), None, tolerance=0.05, challenger_version="1")
    assert first.passed and first.reasons == ("no champion yet; v1 is the first (welfare_mean 0.3000)",)

    better = gate(metrics(0.45, math_hard=0.58, wildguard=0.95), champ, tolerance=0.05, challenger_version="2",
                  champion_version="1")  # fmt: skip
    assert better.passed
    assert better.reasons == (
        "welfare_mean 0.4500 > champion v1 0.4000",
        "no source's answer quality dropped more than 0.0500 (2 compared)",
    )

    worse = gate(metrics(0.40, math_hard=0.60, wildguard=0.90), champ, tolerance=0.05, challenger_version="2",
                 champion_version="1")  # fmt: skip
    assert not worse.passed and worse.reasons == ("welfare_mean 0.4000 <= champion v1 0.4000",)

    drop = gate(metrics(0.50, math_hard=0.50, wildguard=0.95), champ, tolerance=0.05, challenger_version="2",
                champion_version="1")  # fmt: skip
    assert not drop.passed
    assert drop.reasons == ("answer/math-hard dropped 0.1000 (0.6000 -> 0.5000) > tolerance 0.0500",)

    both = gate(metrics(0.30, wildguard=0.80), champ, tolerance=0.05, challenger_version="2", champion_version="1")
    assert both.reasons == (
        "welfare_mean 0.3000 <= champion v1 0.4000",
        "answer/math-hard missing for challenger (champion v1 0.6000)",
        "answer/wildguard dropped 0.1000 (0.9000 -> 0.8000) > tolerance 0.0500",
    )


def test_gate_edges() -> None:
    champ = metrics(0.40, math_hard=0.60)
    exactly = gate(metrics(0.41, math_hard=0.55), champ, tolerance=0.05, champion_version="1")
    assert exactly.passed  # a drop of exactly the tolerance is allowed
    assert not gate(metrics(0.41, math_hard=0.55), champ, tolerance=0.0, champion_version="1").passed
    assert gate({}, None, tolerance=0.0, challenger_version="3").reasons == (
        "challenger v3 has no 'welfare_mean' metric",
    )
    assert gate(metrics(0.5), {"answer/a": 1.0}, tolerance=0.1, champion_version="1").reasons == (
        "champion v1 has no 'welfare_mean' metric to compare against",
    )
    custom = gate({"reward": 2.0, "q/a": 1.0}, {"reward": 1.0, "q/a": 1.0}, tolerance=0.0, metric="reward",
                  per_source_answer_prefix="q/", champion_version="1")  # fmt: skip
    assert custom.passed and custom.reasons[0] == "reward 2.0000 > champion v1 1.0000"
    with pytest.raises(ValueError, match="tolerance must be"):
        gate(metrics(0.5), None, tolerance=-0.1)


# ---------------------------------------------------------------------------------------------------------------
# register + promote on a real sqlite store
# ---------------------------------------------------------------------------------------------------------------
def test_register_logs_tags_and_aliases(root: Path, uri: str, hf_dir: Path) -> None:
    import mlflow

    reg = register(root, hf_dir, metrics(0.4, math_hard=0.6), tracking_uri=uri, evaluated_model="cobb_douglas")
    assert (reg.name, reg.version, reg.alias, reg.data_version) == (MODEL_NAME, "1", CHALLENGER, DATA_MD5)
    assert alias_version(uri, CHALLENGER) == "1" and alias_version(uri, CHAMPION) is None
    tags = tags_of(uri, "1")
    assert tags["gtalign.metric.welfare_mean"] == "0.4"
    assert tags["gtalign.metric.answer/math-hard"] == "0.6"
    assert tags["gtalign.data_version"] == DATA_MD5
    assert tags["gtalign.evaluated_model"] == "cobb_douglas"
    assert DECISION_TAG not in tags

    client = registry.client_for(uri)
    run = client.get_run(reg.run_id)
    assert run.data.metrics["welfare_mean"] == 0.4
    assert run.data.tags["gtalign.data_version"] == DATA_MD5
    assert (root / "mlruns").is_dir()  # artifacts pinned under the project root, not the CWD

    info = mlflow.models.get_model_info(f"models:/{MODEL_NAME}/1")
    params = {p.name: p.default for p in info.signature.params.params}
    assert params == {"max_new_tokens": 256, "temperature": 0.0, "return": "full", "pricing": "", "analyze": ""}
    assert info.signature.inputs.input_names() == ["messages"]

    second = register(root, hf_dir, metrics(0.5, math_hard=0.6), tracking_uri=uri)
    assert second.version == "2" and alias_version(uri, CHALLENGER) == "2"


def test_register_rejects_a_non_model_folder(root: Path, uri: str) -> None:
    with pytest.raises(RegistryError, match="not a Hugging Face model folder"):
        register(root, root, metrics(0.4), tracking_uri=uri)


def test_first_version_is_promoted(root: Path, uri: str, hf_dir: Path) -> None:
    register(root, hf_dir, metrics(0.3, math_hard=0.6), tracking_uri=uri)
    decision = promote(uri, MODEL_NAME, tolerance=0.05)
    assert decision.promoted and decision.decision == "promoted"
    assert (decision.version, decision.previous_champion, decision.champion) == ("1", None, "1")
    assert decision.reasons == ("no champion yet; v1 is the first (welfare_mean 0.3000)",)
    assert alias_version(uri, CHAMPION) == "1"
    tags = tags_of(uri, "1")
    assert tags[DECISION_TAG] == "promoted"
    assert tags[REASONS_TAG] == "no champion yet; v1 is the first (welfare_mean 0.3000)"
    assert tags["gtalign.promotion.compared_to"] == "none"
    assert tags["gtalign.promotion.tolerance"] == "0.05"

    again = promote(uri, MODEL_NAME, tolerance=0.05)  # idempotent: nothing changes
    assert again.promoted and again.reasons == ("v1 is already the champion",)
    assert tags_of(uri, "1")[REASONS_TAG] == tags[REASONS_TAG]


def test_better_challenger_is_promoted(root: Path, uri: str, hf_dir: Path) -> None:
    register(root, hf_dir, metrics(0.40, math_hard=0.60, wildguard=0.90), tracking_uri=uri)
    promote(uri, tolerance=0.05)
    register(root, hf_dir, metrics(0.45, math_hard=0.57, wildguard=0.95), tracking_uri=uri)
    decision = promote(uri, tolerance=0.05)
    assert decision.promoted and (decision.previous_champion, decision.champion) == ("1", "2")
    assert (decision.challenger_value, decision.champion_value) == (0.45, 0.40)
    assert decision.reasons == (
        "welfare_mean 0.4500 > champion v1 0.4000",
        "no source's answer quality dropped more than 0.0500 (2 compared)",
    )
    assert alias_version(uri, CHAMPION) == "2"
    assert tags_of(uri, "2")[DECISION_TAG] == "promoted"
    assert tags_of(uri, "2")["gtalign.promotion.compared_to"] == "1"
    assert tags_of(uri, "1")["gtalign.promotion.superseded_by"] == "2"


def test_worse_welfare_is_rejected(root: Path, uri: str, hf_dir: Path) -> None:
    register(root, hf_dir, metrics(0.40, math_hard=0.60), tracking_uri=uri)
    promote(uri, tolerance=0.05)
    register(root, hf_dir, metrics(0.35, math_hard=0.70), tracking_uri=uri)
    decision = promote(uri, tolerance=0.05)
    assert not decision.promoted and decision.decision == "rejected"
    assert (decision.previous_champion, decision.champion) == ("1", "1")
    assert decision.reasons == ("welfare_mean 0.3500 <= champion v1 0.4000",)
    assert alias_version(uri, CHAMPION) == "1" and alias_version(uri, CHALLENGER) == "2"
    tags = tags_of(uri, "2")
    assert (tags[DECISION_TAG], tags[REASONS_TAG]) == ("rejected", "welfare_mean 0.3500 <= champion v1 0.4000")
    assert "gtalign.promotion.superseded_by" not in tags_of(uri, "1")
    assert decision.to_dict()["decision"] == "rejected"


def test_source_drop_beyond_tolerance_is_rejected(root: Path, uri: str, hf_dir: Path) -> None:
    register(root, hf_dir, metrics(0.40, math_hard=0.60, wildguard=0.90), tracking_uri=uri)
    promote(uri, tolerance=0.05)
    register(root, hf_dir, metrics(0.55, math_hard=0.52, wildguard=0.99), tracking_uri=uri)
    decision = promote(uri, tolerance=0.05)
    assert not decision.promoted
    assert decision.reasons == ("answer/math-hard dropped 0.0800 (0.6000 -> 0.5200) > tolerance 0.0500",)
    assert alias_version(uri, CHAMPION) == "1"
    assert tags_of(uri, "2")[REASONS_TAG] == decision.reasons[0]

    # the same drop is within a looser tolerance: the gate is configurable
    loose = promote(uri, tolerance=0.1)
    assert loose.promoted and alias_version(uri, CHAMPION) == "2"
    assert tags_of(uri, "2")[DECISION_TAG] == "promoted"


def test_promote_needs_a_model_and_a_challenger(uri: str, root: Path, hf_dir: Path) -> None:
    with pytest.raises(RegistryError, match="no registered model 'gtalign-assistant'"):
        promote(uri, tolerance=0.05)
    register(root, hf_dir, metrics(0.4), tracking_uri=uri)
    registry.client_for(uri).delete_registered_model_alias(MODEL_NAME, CHALLENGER)
    with pytest.raises(RegistryError, match="has no 'challenger' version"):
        promote(uri, tolerance=0.05)


# ---------------------------------------------------------------------------------------------------------------
# The pyfunc, loaded by alias in a fresh process
# ---------------------------------------------------------------------------------------------------------------
LOAD_AND_PREDICT = textwrap.dedent(
    """
    import json, sys
    import mlflow
    model = mlflow.pyfunc.load_model("models:/gtalign-assistant@champion")
    chats = [{"messages": [{"role": "user", "content": "What is 2+2?"}]},
             {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}]
    full = model.predict(chats, params={"max_new_tokens": 6, "pricing": "api"})
    short = model.predict(chats[:1], params={"max_new_tokens": 6, "return": "response"})
    print(json.dumps({
        "model_id": model.metadata.model_id,
        "full": full.to_dict("records"),
        "short_columns": list(short.columns),
        "gtalign_from": sys.modules["gtalign"].__file__,
    }))
    """
)


def predict_in_fresh_process(tracking_uri: str, cwd: Path) -> dict[str, Any]:
    """`load_model("models:/gtalign-assistant@champion").predict(...)` in a new interpreter that never imported
    gtalign itself (cwd outside the repo), so the model must bring everything it needs."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    out = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_prediction(result: dict[str, Any]) -> None:
    assert len(result["full"]) == 2
    for row in result["full"]:
        assert list(row) == [
            "completion", "response", "format_ok", "format_error", "pricing", "payoff", "original_payoff",
            "optimal_cell", "chosen_cell", "action", "steered", "analyze", "solver_analyze", "steer_error",
        ]  # fmt: skip
        assert isinstance(row["completion"], str)
        assert row["pricing"] == "api"
        # an untrained model cannot write the four blocks: the strict check says why, response stays None, and
        # there is no matrix to steer
        assert row["format_ok"] is False and row["format_error"] and row["response"] is None
        assert (row["payoff"], row["original_payoff"], row["steered"]) == (None, None, False)
    assert result["short_columns"] == ["response"]
    assert Path(result["gtalign_from"]).parts[-3:] == ("code", "gtalign", "__init__.py")  # the bundled copy


def test_champion_loads_and_predicts_in_a_fresh_process(root: Path, uri: str, hf_dir: Path) -> None:
    first = register(root, hf_dir, metrics(0.4, math_hard=0.6), tracking_uri=uri, max_new_tokens=6)
    promote(uri, tolerance=0.05)
    register(root, hf_dir, metrics(0.3, math_hard=0.6), tracking_uri=uri)  # rejected: champion stays v1
    assert not promote(uri, tolerance=0.05).promoted
    result = predict_in_fresh_process(uri, root)
    assert result["model_id"] == first.model_id
    check_prediction(result)


def test_pyfunc_prompt_style_and_inputs() -> None:
    from gtalign.protocol import apply_prompt_style
    from gtalign.pyfunc_model import conversations

    chat = [{"role": "user", "content": "What is 2+2?"}]
    assert conversations(["hi"]) == [[{"role": "user", "content": "hi"}]]
    assert conversations([{"messages": chat}]) == [chat]
    with pytest.raises(ValueError, match="no messages"):
        conversations([{"messages": []}])
    wrapped = apply_prompt_style(chat, "compact")
    assert [t["role"] for t in wrapped] == ["system", "user"]
    assert wrapped[1]["content"].endswith("Question: What is 2+2?")
    assert apply_prompt_style(chat, "none") == chat
    own = [{"role": "system", "content": "x"}, *chat]
    assert apply_prompt_style(own, "compact") == own


# ---------------------------------------------------------------------------------------------------------------
# The CLI (as `gtalign registry ...` will mount it)
# ---------------------------------------------------------------------------------------------------------------
def write_project(root: Path, hf_dir: Path, evaluation: dict[str, float], tolerance: float = 0.05) -> None:
    (root / "artifacts" / "metrics").mkdir(parents=True, exist_ok=True)
    (root / "artifacts" / "metrics" / "evaluation.json").write_text(json.dumps(evaluation))
    (root / "params.yaml").write_text(
        textwrap.dedent(
            f"""
            registry:
              model_dir: {hf_dir}
              evaluated_model: gtalign
              gate: {{tolerance: {tolerance}}}
              serving: {{max_new_tokens: 6}}
            steering:
              native_pricing: api
            """
        )
    )


def test_cli_register_promote_show(root: Path, uri: str, hf_dir: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from gtalign.cli.registry import registry_app

    app = typer.Typer()
    app.add_typer(registry_app, name="registry")
    runner = CliRunner()
    common = ["--root", str(root), "--tracking-uri", uri]

    write_project(root, hf_dir, {"gtalign/welfare_mean": 0.4, "gtalign/answer/math-hard": 0.6})
    out = runner.invoke(app, ["registry", "release", *common])
    assert out.exit_code == 0, out.output
    assert "registered gtalign-assistant v1 as @challenger" in out.output
    assert "gtalign-assistant v1: PROMOTED (champion: v1)" in out.output
    decision = json.loads((root / "artifacts/metrics/promotion.json").read_text())
    assert decision["decision"] == "promoted" and decision["champion"] == "1"

    write_project(root, hf_dir, {"gtalign/welfare_mean": 0.5, "gtalign/answer/math-hard": 0.4})
    assert runner.invoke(app, ["registry", "register", *common]).exit_code == 0
    out = runner.invoke(app, ["registry", "promote", *common, "--fail-on-reject"])
    assert out.exit_code == 3, out.output
    assert "v2: REJECTED (champion: v1)" in out.output
    assert "answer/math-hard dropped 0.2000 (0.6000 -> 0.4000) > tolerance 0.0500" in out.output

    out = runner.invoke(app, ["registry", "promote", *common, "--tolerance", "0.25"])
    assert out.exit_code == 0 and "v2: PROMOTED (champion: v2)" in out.output

    shown = json.loads(runner.invoke(app, ["registry", "show", *common]).output)
    assert shown["aliases"]["champion"]["version"] == "2"
    assert shown["aliases"]["champion"]["metrics"] == {"welfare_mean": 0.5, "answer/math-hard": 0.4}

    out = runner.invoke(app, ["registry", "register", *common, "--model", "nobody"])
    assert out.exit_code == 1 and "evaluation has no key 'nobody/welfare_mean'" in out.output

    # predict: the champion steers with the params.yaml `steering:` it was registered with (native pricing: api)
    def predicted(*args: str) -> dict[str, Any]:
        out = runner.invoke(app, ["registry", "predict", "Hi", *common, "--max-new-tokens", "4", *args])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)  # one chat, one JSON line (MLflow logs and progress go to stderr)

    assert predicted()["pricing"] == "api"
    assert predicted("--pricing", "subscription")["pricing"] == "subscription"
    out = runner.invoke(app, ["registry", "predict", "Hi", *common, "--pricing", "per_token"])
    assert out.exit_code == 1
    assert "unknown pricing 'per_token': expected one of subscription, api" in out.output


# ---------------------------------------------------------------------------------------------------------------
# Dagster: registered_model -> promotion_gate (blocking) -> champion
# ---------------------------------------------------------------------------------------------------------------
def write_ablation_candidates(root: Path, hf_dir: Path) -> None:
    """The ablation as measured (stop 17): GTAlign with higher welfare and broken reasoning, consistency with both."""
    evaluation = {}
    for variant, welfare, reasoning in (("cobb_douglas", 0.418, 0.321), ("consistency", 0.399, 0.957)):
        evaluation |= {f"{variant}/welfare_mean": welfare, f"{variant}/matrix_analyze_mean": reasoning}
        shutil.copytree(hf_dir, root / "artifacts" / "models" / f"rl-{variant}")
    (root / "artifacts" / "metrics").mkdir(parents=True)
    (root / "artifacts" / "metrics" / "evaluation.json").write_text(json.dumps(evaluation))


def dagster_registry(root: Path, uri: str) -> tuple[list[Any], dict[str, Any]]:
    """The registry assets and check behind a stand-in `evaluation` asset (the test writes its metrics file)."""
    import dagster as dg

    from pipelines.defs import registry as reg_defs
    from pipelines.defs.resources import MlflowResource, ProjectResource

    @dg.asset(name="evaluation")
    def evaluation() -> None:
        """Stands in for the evaluation asset (another module)."""

    resources = {"project": ProjectResource(root=str(root)), "mlflow": MlflowResource(tracking_uri=uri)}
    defs = dg.Definitions(
        assets=[evaluation, *reg_defs.ASSETS], asset_checks=reg_defs.ASSET_CHECKS, resources=resources
    )
    dg.Definitions.validate_loadable(defs)
    return [evaluation, *reg_defs.ASSETS, *reg_defs.ASSET_CHECKS], resources


def materialized(result: Any) -> set[str]:
    return {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}


def test_dagster_gate_blocks_champion(root: Path, uri: str, hf_dir: Path) -> None:
    import dagster as dg

    selection, resources = dagster_registry(root, uri)
    instance = dg.DagsterInstance.ephemeral()
    write_project(root, hf_dir, {"gtalign/welfare_mean": 0.4, "gtalign/answer/math-hard": 0.6})
    first = dg.materialize(selection, resources=resources, instance=instance)
    assert first.success
    [check] = first.get_asset_check_evaluations()
    assert check.passed and check.metadata["decision"].value == "promoted"
    champion = [m for m in first.get_asset_materialization_events() if m.asset_key == dg.AssetKey("champion")]
    assert champion and champion[0].materialization.metadata["version"].value == "1"

    write_project(root, hf_dir, {"gtalign/welfare_mean": 0.3, "gtalign/answer/math-hard": 0.6})
    second = dg.materialize(selection, resources=resources, instance=instance, raise_on_error=False)
    [check] = second.get_asset_check_evaluations()
    assert not check.passed and check.metadata["decision"].value == "rejected"
    assert check.description == "welfare_mean 0.3000 <= champion v1 0.4000"
    assert materialized(second) == {"evaluation", "registered_model"}  # champion blocked
    assert alias_version(uri, CHAMPION) == "1" and alias_version(uri, CHALLENGER) == "2"


def test_dagster_release_judges_each_candidate_like_the_cli(root: Path, uri: str, hf_dir: Path) -> None:
    """The `paper` job's registry step is `registry.release` over the preset: each of `registry.candidates` is
    registered and gated in turn, floors included; the check passes when one of them became champion, and picking
    one checkpoint by run config while candidates are set fails the asset."""
    import dagster as dg

    selection, resources = dagster_registry(root, uri)
    instance = dg.DagsterInstance.ephemeral()
    write_ablation_candidates(root, hf_dir)
    (root / "params.yaml").write_text(
        "registry:\n  serving: {max_new_tokens: 6}\n  metric_keys: {welfare_mean: '{model}/welfare_mean'}\n"
        "  metric_prefixes: {}\n"
    )
    (root / "paper.yaml").write_text(  # as configs/presets/paper.yaml, which the `paper` job gives this asset
        "registry:\n  candidates: [cobb_douglas, consistency]\n"
        "  metric_keys: {matrix_analyze_mean: '{model}/matrix_analyze_mean'}\n"
        "  gate: {floors: {matrix_analyze_mean: 0.9}}\n"
    )
    preset = {"presets": ["paper.yaml"]}
    run_config = {"ops": {"registered_model": {"config": preset}}}
    result = dg.materialize(selection, resources=resources, instance=instance, run_config=run_config)
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["champion"].value == "2"
    assert check.description == (
        "cobb_douglas: v1 rejected: matrix_analyze_mean 0.3210 < floor 0.9000 | "
        "consistency: v2 promoted: no champion yet; v2 is the first (welfare_mean 0.3990); "
        "matrix_analyze_mean 0.9570 >= floor 0.9000"
    )
    assert "champion" in materialized(result) and alias_version(uri, CHAMPION) == "2"
    assert json.loads((root / "artifacts" / "metrics" / "promotion.json").read_text())["champion"] == "2"

    picked = {"ops": {"registered_model": {"config": {**preset, "model_dir": str(hf_dir)}}}}
    refused = dg.materialize(
        selection, resources=resources, instance=instance, run_config=picked, raise_on_error=False
    )
    assert not refused.success and materialized(refused) == {"evaluation"}
    [failure] = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "model_dir registers one checkpoint, but registry.candidates names" in str(failure.event_specific_data)


def test_release_lets_the_gate_pick_among_candidate_variants(root: Path, uri: str, hf_dir: Path) -> None:
    """`registry.candidates`: GTAlign and its consistency variant are registered in turn; the gate, not a person,
    decides which serves. Here the variant's welfare is higher, so it becomes champion; the file lists both."""
    evaluation = {
        "cobb_douglas/welfare_mean": 0.40,
        "cobb_douglas/answer/math-hard": 0.5,
        "consistency/welfare_mean": 0.43,
        "consistency/answer/math-hard": 0.5,
    }
    (root / "artifacts" / "metrics").mkdir(parents=True)
    (root / "artifacts" / "metrics" / "evaluation.json").write_text(json.dumps(evaluation))
    for variant in ("cobb_douglas", "consistency"):
        shutil.copytree(hf_dir, root / "artifacts" / "models" / f"rl-{variant}")
    cfg = RegistryConfig(candidates=["cobb_douglas", "consistency"])
    done = registry.release(root, cfg, tracking_uri=uri)
    assert (done.registration.version, done.decision.version, done.decision.champion) == ("2", "2", "2")
    assert [(v, d.decision) for v, _, d in done.steps] == [("cobb_douglas", "promoted"), ("consistency", "promoted")]
    assert tags_of(uri, "1")[registry.EVALUATED_MODEL_TAG] == "cobb_douglas"
    assert tags_of(uri, "2")[registry.EVALUATED_MODEL_TAG] == "consistency"
    written = json.loads((root / cfg.decision_file).read_text())
    assert written["champion"] == "2" and written["decision"] == "promoted"
    assert {v: d["decision"] for v, d in written["candidates"].items()} == {
        "cobb_douglas": "promoted",  # the first version has no champion to beat
        "consistency": "promoted",
    }
    assert written["candidates"]["consistency"]["reasons"][0] == "welfare_mean 0.4300 > champion v1 0.4000"


def test_gate_floors_hold_whoever_the_champion_is() -> None:
    """`registry.gate.floors`: absolute minimums (a champion keeps its matrix reasoning), checked before welfare and
    also for a first version, which then leaves no champion."""
    floors = {"matrix_analyze_mean": 0.9}
    broken = {**metrics(0.42), "matrix_analyze_mean": 0.32}
    first = gate(broken, None, tolerance=0.02, challenger_version="1", floors=floors)
    assert not first.passed and first.reasons == ("matrix_analyze_mean 0.3200 < floor 0.9000",)
    kept = {**metrics(0.40), "matrix_analyze_mean": 0.9}  # exactly the floor passes
    assert gate(kept, None, tolerance=0.02, challenger_version="2", floors=floors).reasons == (
        "no champion yet; v2 is the first (welfare_mean 0.4000)",
        "matrix_analyze_mean 0.9000 >= floor 0.9000",
    )
    better_but_broken = gate(broken, kept, tolerance=0.02, champion_version="2", floors=floors)
    assert not better_but_broken.passed  # higher welfare does not buy the reasoning back
    missing = gate(metrics(0.5), None, tolerance=0.02, floors=floors)
    assert missing.reasons == ("matrix_analyze_mean missing for challenger (floor 0.9000)",)


def test_a_floor_must_name_a_registered_metric() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"gate.floors \['matrix_analyze_mean'\]: not registered metrics"):
        RegistryConfig.model_validate({"gate": {"floors": {"matrix_analyze_mean": 0.9}}})
    cfg = RegistryConfig.model_validate(
        {"metric_keys": {**DEFAULT_METRIC_KEYS, "matrix_analyze_mean": "{model}/matrix_analyze_mean"},
         "gate": {"floors": {"matrix_analyze_mean": 0.9}}}
    )  # fmt: skip
    assert cfg.gate.floors == {"matrix_analyze_mean": 0.9}


def test_paper_preset_lets_the_gate_pick_the_variant_that_keeps_its_reasoning(root: Path, uri: str, hf_dir: Path):
    """`make paper` (as `make demo`): GTAlign and its consistency variant are candidates, and the floor on the
    model's own matrix reasoning decides, whatever the welfare order (here GTAlign has the higher welfare and broken
    reasoning, as the published reward left it in the demo the README reports)."""
    from gtalign.config import load_typed_params

    paper = [REPO_ROOT / "configs" / "presets" / "paper.yaml"]
    cfg = load_typed_params(REPO_ROOT / "params.yaml", presets=paper).registry
    assert cfg.candidates == ["cobb_douglas", "consistency"] and cfg.gate.floors == {"matrix_analyze_mean": 0.9}
    evaluation = {
        "cobb_douglas/welfare_mean": 0.418,
        "cobb_douglas/matrix_analyze_mean": 0.321,
        "consistency/welfare_mean": 0.399,
        "consistency/matrix_analyze_mean": 0.957,
    }
    for variant in ("cobb_douglas", "consistency"):
        evaluation |= {f"{variant}/answer/math-hard": 0.5, f"{variant}/welfare/math-hard": 0.4}
        shutil.copytree(hf_dir, root / "artifacts" / "models" / f"rl-{variant}")
    (root / "artifacts" / "metrics").mkdir(parents=True)
    (root / "artifacts" / "metrics" / "evaluation.json").write_text(json.dumps(evaluation))
    done = registry.release(root, cfg, tracking_uri=uri)
    assert (done.registration.version, done.decision.champion, done.crowned) == ("2", "2", True)
    written = json.loads((root / cfg.decision_file).read_text())["candidates"]
    assert written["cobb_douglas"]["decision"] == "rejected" and written["cobb_douglas"]["champion"] is None
    assert written["cobb_douglas"]["reasons"] == ["matrix_analyze_mean 0.3210 < floor 0.9000"]
    assert written["consistency"]["decision"] == "promoted"
    assert registry.metrics_of(registry.client_for(uri).get_model_version(MODEL_NAME, "2"))[
        "matrix_analyze_mean"
    ] == pytest.approx(0.957)


def test_cli_release_judges_each_candidate_like_the_demo(root: Path, uri: str, hf_dir: Path) -> None:
    """`gtalign registry release` (the DVC stage) is `registry.release`: with `registry.candidates` it registers and
    judges each in turn, floors included, as `gtalign demo` does; `--model-dir` cannot pick one of several."""
    import typer
    from typer.testing import CliRunner

    from gtalign.cli.registry import registry_app

    app = typer.Typer()
    app.add_typer(registry_app, name="registry")
    write_ablation_candidates(root, hf_dir)
    (root / "params.yaml").write_text(
        "registry:\n  candidates: [cobb_douglas, consistency]\n"
        "  metric_keys: {welfare_mean: '{model}/welfare_mean', matrix_analyze_mean: '{model}/matrix_analyze_mean'}\n"
        "  metric_prefixes: {}\n  gate: {floors: {matrix_analyze_mean: 0.9}}\n"
    )
    common = ["--root", str(root), "--tracking-uri", uri]
    out = CliRunner().invoke(app, ["registry", "release", *common])
    assert out.exit_code == 0, out.output
    assert "candidate cobb_douglas: v1 rejected: matrix_analyze_mean 0.3210 < floor 0.9000" in out.output
    assert "gtalign-assistant v2: PROMOTED (champion: v2)" in out.output
    refused = CliRunner().invoke(app, ["registry", "release", *common, "--model-dir", str(hf_dir)])
    assert refused.exit_code == 2 and "registry.candidates" in refused.output
