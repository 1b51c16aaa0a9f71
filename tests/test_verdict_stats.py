"""`verdict_stats`: what a rollout batch says about a judge that reads the pair, and one locked on a position."""

import math

import pytest
import torch

from stable_reinforce_trl.verdict_stats import verdict_stats


def test_a_reading_judge_and_a_locked_one_are_told_apart():
    labels = torch.tensor([1, 1, 2, 2, 2, 2, 1, 1])  # four prompts, two rollouts each, both orders of two pairs
    reading = verdict_stats(labels.clone(), labels, torch.zeros(8), group_size=2)
    assert (reading["p_verdict_1_label_1"], reading["p_verdict_1_label_2"]) == (1.0, 0.0)
    assert reading["groups_sampling_right"] == 1.0 and math.isnan(reading["wrong_groups_sampling_right"])
    locked = verdict_stats(torch.full((8,), 2), labels, torch.zeros(8), group_size=2)
    assert (locked["p_verdict_1"], locked["p_verdict_1_label_1"], locked["p_verdict_1_label_2"]) == (0.0, 0.0, 0.0)
    assert locked["groups_sampling_right"] == 0.5 and locked["wrong_groups_sampling_right"] == 0.0
    assert locked["p_label_1"] == 0.5


def test_advantages_by_verdict_and_unparsed_rollouts():
    verdicts = torch.tensor([1, 0, 2, 2])  # 0: no parseable verdict, left out of the verdict shares
    labels = torch.tensor([1, 1, 1, 1])
    stats = verdict_stats(verdicts, labels, torch.tensor([1.0, -3.0, -0.5, -1.5]), group_size=2)
    assert stats["p_verdict_1"] == pytest.approx(1 / 3) and stats["p_verdict_1_label_1"] == pytest.approx(1 / 3)
    assert math.isnan(stats["p_verdict_1_label_2"])  # no label-2 rows
    assert stats["advantage_verdict_1"] == 1.0 and stats["advantage_verdict_2"] == -1.0
    # group 1 (1, none): half right, not a wrong group; group 2 (2, 2): wrong, and never samples the right verdict
    assert stats["groups_sampling_right"] == 0.5 and stats["wrong_groups_sampling_right"] == 0.0
