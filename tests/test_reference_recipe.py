"""The reference script's recipe differs from the paper's in exactly the documented choices, and builds."""

from pathlib import Path

from stable_reinforce_trl.scripts import rl

QWEN_7B = Path(__file__).parent.parent / "recipes" / "qwen2.5-vl-7b"


def parse(name):
    # GPU recipes ask for bf16, which TrainingArguments refuses on a machine without a GPU unless use_cpu.
    return rl.make_parser().parse_args_and_config(["--config", str(QWEN_7B / name), "--use_cpu", "true"])


def test_reference_recipe_differs_from_the_papers_only_where_the_reference_script_does(monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "unset")  # the YAMLs' `env:` sets it; restored after the test
    _, paper, _ = parse("stable_reinforce.yaml")
    _, reference, _ = parse("stable_reinforce_reference.yaml")
    expected = {
        "learning_rate": 3e-7, "num_train_epochs": 1, "beta": 0.001, "kl_in_reward": True,
        "advantage_statistics": "token", "consistency_mode": "reference", "referee_reasoning_lines": 3,
        "format_mode": "strict", "position_balanced": False,
    }  # fmt: skip
    naming = {"output_dir", "run_name", "logging_dir"}
    paper_fields, reference_fields = paper.to_dict(), reference.to_dict()
    differing = {k for k in paper_fields if paper_fields[k] != reference_fields[k]} - naming
    assert differing == set(expected) - {"format_mode"}  # the paper's recipe is strict too: the default
    for key, value in expected.items():
        assert getattr(reference, key) == value, key
    assert reference.advantage_baseline == "batch" and reference.advantage_filter_sigma == 3.0
