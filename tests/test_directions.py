"""The paper's directions as verdicts on flat evaluation metrics: exact comparisons; unchecked claims stay so."""

from __future__ import annotations

import pytest

from gtalign.evaluate.directions import directions_markdown, directions_metrics, paper_directions
from gtalign.sources import IN_DOMAIN_SOURCES

IN_DOMAIN = list(IN_DOMAIN_SOURCES)


def _metrics(format_strict: list[float], welfare: dict[str, float]) -> dict[str, float]:
    m = {f"sft/{s}/format_strict": v for s, v in zip(IN_DOMAIN, format_strict, strict=True)}
    m |= {f"{model}/welfare_mean": w for model, w in welfare.items()}
    return m


def test_every_direction_checked_and_holding():
    m = _metrics([1.0, 0.9, 0.95, 0.85], {"sft": 0.37, "cobb_douglas": 0.38, "user": 0.38, "llm": 0.33})
    m |= {"paired/sft-cobb_douglas/welfare_diff_lo": -0.02, "paired/sft-cobb_douglas/welfare_diff_hi": 0.005}
    m |= {"paired/cobb_douglas-llm/welfare_diff_lo": 0.01, "paired/cobb_douglas-llm/welfare_diff_hi": 0.09}
    d = {x.name: x for x in paper_directions(m)}
    assert list(d) == ["sft_format_validity", "cobb_douglas_beats_sft", "cobb_douglas_vs_user", "cobb_douglas_vs_llm"]
    assert d["sft_format_validity"].value == pytest.approx(0.925) and d["sft_format_validity"].holds
    assert (d["cobb_douglas_beats_sft"].value, d["cobb_douglas_beats_sft"].reference) == (0.38, 0.37)
    assert d["cobb_douglas_vs_user"].holds  # a tie counts for the >= claims
    # paired intervals of value - reference, whichever order the evaluation stored the pair in
    assert d["cobb_douglas_beats_sft"].interval == (-0.005, 0.02) and d["cobb_douglas_vs_llm"].interval == (0.01, 0.09)
    assert d["cobb_douglas_vs_user"].interval is None
    md = directions_markdown(list(d.values()))
    assert "| +0.0100 [-0.0050, +0.0200] | holds |" in md and "| +0.0500 [+0.0100, +0.0900] | holds |" in md
    assert directions_metrics(d.values()) == {f"directions/{k}": 1.0 for k in d}


def test_a_tie_with_sft_is_not_a_gain_and_low_validity_fails():
    m = _metrics([0.9, 0.9, 0.8, 0.9], {"sft": 0.3745, "cobb_douglas": 0.3745, "user": 0.38, "llm": 0.33})
    d = {x.name: x for x in paper_directions(m)}
    assert d["sft_format_validity"].value == pytest.approx(0.875) and d["sft_format_validity"].holds is False
    assert d["cobb_douglas_beats_sft"].holds is False  # strictly greater: a tie is not the paper's gain
    assert d["cobb_douglas_vs_user"].holds is False and d["cobb_douglas_vs_llm"].holds is True
    m |= {"sft/welfare_mean_in_domain": 0.4, "sft/welfare_mean_ood": 0.34}
    md = directions_markdown(list(d.values()), m)
    assert "| sft | 0.3745 | 0.4000 | 0.3400 |" in md and "| llm | 0.3300 | n/a | n/a |" in md
    assert md.count("**does not hold**") == 3 and md.count("| holds |") == 1


SEEDS = {"cobb_douglas": ["cobb_douglas", "cobb_douglas-seed1", "cobb_douglas-seed2"]}


def _seed_metrics(lows: list[float]) -> dict[str, float]:
    welfare = {"sft": 0.37, **{s: 0.37 + 0.01 * (i + 1) for i, s in enumerate(SEEDS["cobb_douglas"])}}
    m = _metrics([1.0] * 4, welfare)
    for seed, lo in zip(SEEDS["cobb_douglas"], lows, strict=True):
        m |= {f"paired/sft-{seed}/welfare_diff_lo": -0.05, f"paired/sft-{seed}/welfare_diff_hi": -lo}
    return m


@pytest.mark.parametrize(
    ("lows", "wins", "holds"), [([0.01, 0.002, -0.01], 2, True), ([0.01, -0.002, -0.01], 1, False)]
)
def test_the_seed_spread_needs_most_seeds_significantly_above_sft(lows, wins, holds):
    m = _seed_metrics(lows)
    d = {x.name: x for x in paper_directions(m, replicates=SEEDS)}
    spread = d["cobb_douglas_beats_sft_across_seeds"]
    assert (spread.value, spread.reference, spread.holds) == (wins, 2, holds)
    assert directions_metrics([spread]) == {"directions/cobb_douglas_beats_sft_across_seeds": float(holds)}
    md = directions_markdown([spread], m, SEEDS)
    assert f"| {wins} seeds | 2 seeds | n/a |" in md
    assert "Seed spread of cobb_douglas (3 RL seeds): welfare 0.3800 to 0.4000 (range 0.0200)." in md
    assert f"| cobb_douglas-seed1 | 0.3900 | +0.0200 [{lows[1]:+.4f}, +0.0500] |" in md


def test_the_seed_spread_is_not_checked_until_every_seed_is_evaluated():
    m = _seed_metrics([0.01, 0.01, 0.01])
    del m["paired/sft-cobb_douglas-seed2/welfare_diff_lo"]
    [spread] = [x for x in paper_directions(m, replicates=SEEDS) if x.name.endswith("_across_seeds")]
    assert spread.holds is None and spread.value is None
    assert [x.name for x in paper_directions(m)][-1] == "cobb_douglas_vs_llm"  # no replicates: no seed claim
    for seed in SEEDS["cobb_douglas"][1:]:
        del m[f"{seed}/welfare_mean"]
    assert [x.name for x in paper_directions(m, replicates=SEEDS)][-1] == "cobb_douglas_vs_llm"  # the demo's case


def test_claims_about_models_not_evaluated_are_not_checked():
    m = _metrics([1.0, 1.0, 1.0, 1.0], {"sft": 0.3, "cobb_douglas": 0.4})
    del m[f"sft/{IN_DOMAIN[0]}/format_strict"]  # one source missing: the mean is not taken over the others
    d = {x.name: x for x in paper_directions(m)}
    assert d["sft_format_validity"].holds is None and d["sft_format_validity"].value is None
    assert d["cobb_douglas_vs_user"].holds is None and d["cobb_douglas_vs_llm"].reference is None
    assert directions_metrics(d.values()) == {"directions/cobb_douglas_beats_sft": 1.0}
    assert directions_markdown(list(d.values())).count("not checked (model not evaluated)") == 3


def test_dagster_check_warns_when_a_direction_does_not_hold(tmp_path):
    import json

    import dagster as dg

    from gtalign.layout import Layout
    from pipelines.defs.evaluation import ASSET_CHECKS
    from pipelines.defs.resources import ProjectResource

    metrics = Layout(tmp_path).metrics("evaluation")
    (tmp_path / "params.yaml").write_text("{}\n")  # the check reads the seed replicates from params (none here)

    @dg.asset(name="evaluation")
    def evaluation() -> None:
        """Stands in for the evaluation asset; the test writes its metrics file."""

    resources = {"project": ProjectResource(root=str(tmp_path))}
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps(_metrics([1.0] * 4, {"sft": 0.37, "cobb_douglas": 0.36})))
    result = dg.materialize([evaluation, *ASSET_CHECKS], resources=resources)
    [check] = result.get_asset_check_evaluations()
    assert result.success  # a warning does not fail the run or block anything downstream
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description == "1 of 2 checked directions hold; not holding: cobb_douglas_beats_sft"
    assert check.metadata["sft_format_validity"].value == 1.0
