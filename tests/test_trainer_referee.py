"""StableReinforceTrainer with the R1 reward built from its config, against a real local referee
endpoint that is slow, fails, times out and answers garbage: every completion gets a reward, the
failures are counted, and training goes on."""

import math

import pytest

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer
from stable_reinforce_trl.data.synthetic import synthetic_judge_dataset
from stable_reinforce_trl.openai_server import Fault, ScriptedOpenAIServer, dead_port_url


def faulty(body: dict):
    faulty.calls += 1
    kind = faulty.calls % 4
    if kind == 0:
        return Fault("http_500")
    if kind == 1:
        return Fault("malformed")
    if kind == 2:
        return Fault("timeout", seconds=2.0)
    return "yes"


def train(model_dir, tmp_path, base_url):
    dataset = synthetic_judge_dataset(16, seed=3)
    dataset = dataset.map(lambda row: {"label": "1"})  # the formatted judge always answers 1: always correct
    args = StableReinforceConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4, max_completion_length=24,
        max_steps=2, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, seed=0, log_completions=False,
        referee="openai", referee_base_url=base_url, referee_model="referee", referee_timeout=0.5, referee_max_retries=1,
        temperature=0.1,
    )  # fmt: skip
    trainer = StableReinforceTrainer(model=model_dir, args=args, train_dataset=dataset)
    trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def test_training_survives_a_faulty_referee(formatted_judge_dir, tmp_path):
    faulty.calls = 0
    with ScriptedOpenAIServer(faulty, latency_s=0.02) as server:
        logs = train(formatted_judge_dir, tmp_path, server.base_url)
    assert len(logs) == 2
    assert len(server.requests) > 0
    # Answers are cached per request and the formatted judge repeats itself, so a step may find every
    # call already answered; over the run, some calls failed for good after their retry.
    assert sum(entry["referee/failures"] for entry in logs) > 0
    for entry in logs:
        assert math.isfinite(entry["loss"]) and math.isfinite(entry["reward"])
        assert entry["r1_reward/result"] > 0  # some answers were right, so the referee was asked
        if "r1_reward/consistency" in entry:
            assert entry["r1_reward/consistency"] == 1.0  # every call that got through was answered "yes"
        if entry["referee/failures"] > 0:
            # A failed call is neutral (0.5 in paper mode), so failures pull the reward below
            # what it would be were every correct answer judged consistent.
            all_consistent = 1.5 * entry["r1_reward/result"] + 0.5 * entry["r1_reward/format"]
            assert entry["reward"] < all_consistent - 1e-6


def test_dead_referee_warns_and_training_goes_on(formatted_judge_dir, tmp_path):
    with pytest.warns(RuntimeWarning, match="referee"):
        logs = train(formatted_judge_dir, tmp_path, dead_port_url())
    assert len(logs) == 2
    for entry in logs:
        assert math.isfinite(entry["loss"])
        assert entry["referee/failures"] > 0
