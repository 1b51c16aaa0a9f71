"""`stable-reinforce demo --quick`: the whole pipeline runs and its report is complete and finite."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_quick_demo_writes_a_complete_finite_report(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "stable_reinforce_trl.cli", "demo", "--quick", "--output-dir", str(out),
         "--rl-set", "temperature=0.9"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report["evaluation"]) == {"base", "sft", "rl"}
    for stage in report["evaluation"].values():
        assert set(stage) == {"greedy", f"voting@{report['plan']['voting_k']}"}
        for result_ in stage.values():
            assert 0.0 <= result_["overall"] <= 1.0
            assert result_["by_order"]["chosen_first"]["n"] == report["plan"]["eval_pairs"]
    assert report["rl"]["steps"] == report["plan"]["rl_steps"]
    assert report["rl_config"] == {"temperature": 0.9}
    saved = torch.load(out / "rl" / "training_args.bin", weights_only=False)  # what the trainer really ran with
    assert saved.temperature == 0.9 and saved.learning_rate == report["plan"]["rl_learning_rate"]
    for key in ("reward", "stable_reinforce/pre_clip_frac", "stable_reinforce/advantage_filtered_frac", "loss"):
        assert report["rl"]["curves"][key], key
    values = list(numbers(report))
    assert values and all(math.isfinite(v) for v in values)
    for plot in report["plots"]:
        assert Path(plot).stat().st_size > 10_000  # a real PNG with axes and lines, not an empty canvas
    assert "RL - SFT" in result.stdout
    # What a person sees: stages and a summary, no per-step metric dicts; those go to the log file it names.
    terminal = (result.stdout + result.stderr).splitlines()
    assert len(terminal) < 80 and not any(line.lstrip().startswith("{'") for line in terminal), terminal
    assert "too small to learn" in result.stdout and "gemm_4bit" not in result.stderr
    assert str(out / "training_log.jsonl") in result.stdout.replace("\n", "")
    logged = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if e["stage"] == "rl" and "loss" in e] == [1, 2]
    # The saved judge's model card: the paper it implements, the model it started from.
    card = (out / "rl" / "README.md").read_text()
    assert "2505.02835" in card and "R1-Reward" in card and "DeepSeekMath" not in card
    assert f"`{out / 'sft'}`" in card and "[None]" not in card


def test_set_overrides_plan_fields_with_their_types():
    from stable_reinforce_trl.demo import DemoPlan, with_overrides

    plan = with_overrides(DemoPlan(), ["rl_steps=7", "rl_learning_rate=1e-4", "difficulty=medium"])
    assert (plan.rl_steps, plan.rl_learning_rate, plan.difficulty) == (7, 1e-4, "medium")
    assert plan.sft_pairs == DemoPlan().sft_pairs
    with pytest.raises(SystemExit, match="did you mean rl_steps"):
        with_overrides(DemoPlan(), ["rl_step=7"])
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        with_overrides(DemoPlan(), ["rl_steps"])
    # A value the data cannot take is refused with the setting's own message, before any stage runs.
    with pytest.raises(SystemExit, match="terse_verdicts must be one of"):
        with_overrides(DemoPlan(), ["terse_verdicts=2"])
    with pytest.raises(SystemExit, match="difficulty must be one of"):
        with_overrides(DemoPlan(), ["difficulty=impossible"])


def test_rl_set_overrides_trainer_config_fields_with_their_types():
    from stable_reinforce_trl.demo import rl_config_overrides

    given = ["temperature=0.7", "advantage_baseline=group", "advantage_filter=false", "referee_base_url=http://h:1/v1"]
    assert rl_config_overrides(given) == {"temperature": 0.7, "advantage_baseline": "group",
                                          "advantage_filter": False, "referee_base_url": "http://h:1/v1"}  # fmt: skip
    with pytest.raises(SystemExit, match="did you mean temperature"):
        rl_config_overrides(["temprature=0.7"])
    with pytest.raises(SystemExit, match="expected true or false"):
        rl_config_overrides(["advantage_filter=maybe"])
    with pytest.raises(SystemExit, match="temperature=warm"):
        rl_config_overrides(["temperature=warm"])


def test_demo_failures_measures_the_cosine_of_two_values_output_embeddings(tiny_model_dir):
    from benchmarks.demo_failures import embedding_cosines, value_token
    from stable_reinforce_trl.judge import Judge

    judge = Judge.from_pretrained(tiny_model_dir, batch_size=1, max_new_tokens=4)  # its own copy of the weights
    before = embedding_cosines(judge, ["blue/green", "blue/red"])
    assert abs(before["blue/green"]) < 0.5  # random init: nearly orthogonal
    weights = judge.backend.model.get_output_embeddings().weight
    blue, green = (value_token(judge.backend.tokenizer, c) for c in ("blue", "green"))
    with torch.no_grad():
        weights[green] = 2 * weights[blue]  # the collapse the demo's SFT drifts towards, made exact
    after = embedding_cosines(judge, ["blue/green", "blue/red"])
    assert after["blue/green"] == pytest.approx(1.0, abs=1e-3) and after["blue/red"] == before["blue/red"]


def test_demo_failures_names_a_default_verdict_and_shows_a_wrong_pairs_traces(formatted_judge_dir):
    from benchmarks.demo_failures import failures

    result = failures(formatted_judge_dir)  # a judge that learned to answer "1" whatever it sees
    assert result["wrong"] == result["pairs"] == 64
    assert result["wrong_verdicts"] == {"1/1": 64}  # right when the answer comes first, wrong when second
    example = result["example_wrong"]
    assert "<answer>1</answer>" in example["chosen_first"] and "<answer>1</answer>" in example["chosen_second"]
    assert sum(result["wrong_by_values"].values()) == 64


@pytest.mark.parametrize("family", ["qwen3-vl", "qwen3.5"])
def test_quick_demo_runs_on_the_new_families(family, tmp_path):
    """`stable-reinforce demo --family F` runs every stage on the family's tiny judge (the seed-robustness
    figures are the default family's; here it must run, and say which judge it built)."""
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "stable_reinforce_trl.cli", "demo", "--quick", "--family", family, "--output-dir",
         str(out)], capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["family"] == family and f"tiny {family} judge" in result.stdout
    assert set(report["evaluation"]) == {"base", "sft", "rl"} and report["rl"]["steps"] == report["plan"]["rl_steps"]
    assert all(math.isfinite(v) for v in numbers(report))
    saved = torch.load(out / "rl" / "training_args.bin", weights_only=False)
    assert saved.format_mode == ("lenient" if family == "qwen3.5" else "strict")
    assert json.loads((out / "tiny-model" / "tiny_model.json").read_text())["family"] == family
