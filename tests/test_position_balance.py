"""Position-balanced rollouts: every pair of a rollout batch in both orders, through the real trainer."""

import collections

import pytest
from datasets import Dataset
from PIL import Image

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer
from stable_reinforce_trl.data.loaders import load_judge_dataset
from stable_reinforce_trl.position_balance import (
    PositionBalancedSampler,
    PositionBalanceError,
    both_orders,
    flip_label,
    swapped_row,
    unmark,
)
from stable_reinforce_trl.prompts import judge_messages, judge_text, swap_responses

from .test_video_training import FRAMES, mixed_pairs  # noqa: F401  (a fixture)
from .trl_helpers import colour_judge_dataset, one_order_dataset, red_reading_judge, verdict_reward, zero_reward


def test_swap_exchanges_the_responses_and_keeps_media_and_surrounding_text():
    prompt = judge_messages("What {colour}?", "Red.\nSure.", "Blue.  ", num_images=2)
    swapped = swap_responses(prompt)
    assert swapped[0]["content"][:2] == prompt[0]["content"][:2]  # the image placeholders
    assert swapped[0]["content"][2]["text"] == judge_text("What {colour}?", "Blue.  ", "Red.\nSure.")
    assert swap_responses(swapped) == prompt
    assert swap_responses("System says hi. " + judge_text("Q", "a", "b")) == "System says hi. " + judge_text("Q", "b", "a")
    assert swap_responses([{"role": "user", "content": "Rate this."}]) is None
    assert swap_responses("no judge prompt here") is None


def test_flip_label_keeps_the_labels_type():
    assert (flip_label("1"), flip_label("2"), flip_label(1), flip_label("<answer>2</answer>")) == ("2", "1", 2, "1")


def test_sampler_puts_both_orders_of_each_pair_in_every_rollout_batch():
    dataset = both_orders(colour_judge_dataset(10))
    sampler = PositionBalancedSampler(dataset, mini_repeat_count=3, batch_size=4, repeat_count=2, seed=1)
    indices = list(sampler)
    assert len(indices) == len(sampler) == (10 // 2) * 4 * 3 * 2  # 10 pairs, 2 per batch of 4 prompts
    batches = [indices[i : i + 4 * 3 * 2] for i in range(0, len(indices), 24)]
    for batch in batches:
        counts = collections.Counter(batch)
        assert set(counts.values()) == {6}  # num_generations x repeat_count, as RepeatSampler
        assert {i % 10 for i in counts} == {i for i in counts if i < 10} == {i - 10 for i in counts if i >= 10}
    assert indices == list(PositionBalancedSampler(dataset, 3, 4, 2, seed=1))  # seeded: resume replays it
    with pytest.raises(PositionBalanceError, match="even number of prompts"):
        PositionBalancedSampler(dataset, mini_repeat_count=2, batch_size=3)


def test_the_marked_copy_is_the_other_order_with_the_same_image():
    source = colour_judge_dataset(4)
    dataset = both_orders(source)
    assert len(dataset) == 8 and dataset.column_names[-2:] == ["_position_swapped", "_position_pair"]
    assert dataset[1]["_position_pair"] == dataset[5]["_position_pair"] == 1  # the two orders of pair 1
    original, copy = unmark([dataset[1], dataset[5]], "label")
    assert original == {**source[1]}  # the internal columns are gone
    assert copy == swapped_row(source[1], "label") and copy["label"] == "1" and source[1]["label"] == "2"
    assert copy["images"][0].tobytes() == original["images"][0].tobytes()


class RecordingReward:
    """A reward function that keeps what each rollout batch showed it (prompt text, label, media)."""

    __name__ = "recording_reward"

    def __init__(self):
        self.batches = []

    def __call__(self, prompts, completions, label, **columns):
        media = columns.get("images") or [None] * len(prompts)
        texts = [p[-1]["content"][-1]["text"] if isinstance(p, list) else p for p in prompts]
        self.batches.append(list(zip(texts, label, [_media_key(m) for m in media])))
        return verdict_reward(completions, label)


def _media_key(images):
    return None if not images else tuple(image.tobytes()[:64] for image in images)


def _config(tmp_path, **overrides):
    return StableReinforceConfig(**{
        "output_dir": str(tmp_path / "out"), "per_device_train_batch_size": 4, "num_generations": 2,
        "max_completion_length": 8, "num_iterations": 2, "steps_per_generation": 2, "learning_rate": 1e-3,
        "max_steps": 4, "logging_steps": 1, "report_to": "none", "save_strategy": "no", "use_cpu": True, "seed": 0,
        "log_completions": False, **overrides,
    })  # fmt: skip


def text_dataset(n: int) -> Dataset:
    rows = [{"prompt": judge_messages(f"Is {i} even?", "Yes." if i % 2 == 0 else "No.", "Maybe.", num_images=0),
             "label": "1"} for i in range(n)]  # fmt: skip
    return Dataset.from_list(rows)


def check_balanced(batches, num_generations: int | None):
    assert batches
    for batch in batches:
        by_prompt = collections.Counter(batch)
        if num_generations is not None:  # (None: rows repeat across pairs)
            assert set(by_prompt.values()) == {num_generations}  # every order sampled num_generations times
        seen = {text: (label, media) for text, label, media in by_prompt}
        for text, (label, media) in seen.items():
            other = swap_responses(text)
            assert other in seen, "a pair reached the batch in one order only"
            assert seen[other] == (flip_label(label), media)  # the label flipped, the same image
        assert [label for _, label, _ in batch].count("1") * 2 == len(batch)


@pytest.mark.parametrize("kind", ["image", "text"])
def test_trainer_rollouts_hold_both_orders_and_log_their_positions(kind, tiny_model_dir, tmp_path):
    reward = RecordingReward()
    dataset = one_order_dataset(8) if kind == "image" else text_dataset(8)
    trainer = StableReinforceTrainer(tiny_model_dir, reward, args=_config(tmp_path, max_steps=8), train_dataset=dataset)
    trainer.train()
    assert len(reward.batches) == 2  # a generation feeds steps_per_generation 2 x num_iterations 2 steps
    check_balanced(reward.batches, num_generations=2)
    logs = [e for e in trainer.state.log_history if "stable_reinforce/p_label_1" in e]
    assert len(logs) == 2 and all(e["stable_reinforce/p_label_1"] == 0.5 for e in logs)
    assert all(0.0 <= e.get("stable_reinforce/p_verdict_1", 0.5) <= 1.0 for e in logs)
    # The verdict diagnostics ride along: every rollout group is judged (groups_sampling_right is always defined).
    assert all(0.0 <= e["stable_reinforce/groups_sampling_right"] <= 1.0 for e in logs)


def test_unbalanced_run_keeps_the_datasets_order(tiny_model_dir, tmp_path):
    reward = RecordingReward()
    config = _config(tmp_path, position_balanced=False, max_steps=2)
    trainer = StableReinforceTrainer(tiny_model_dir, reward, args=config, train_dataset=one_order_dataset(8))
    trainer.train()
    assert all(label == "1" for batch in reward.batches for _, label, _ in batch)
    assert [e["stable_reinforce/p_label_1"] for e in trainer.state.log_history if "stable_reinforce/p_label_1" in e] == [1.0]


def test_mixed_image_and_video_rows_are_balanced(mixed_pairs, tiny_model_dir, tmp_path):  # noqa: F811
    reward = RecordingReward()
    dataset = load_judge_dataset(mixed_pairs, num_frames=FRAMES)
    assert "videos" in dataset.column_names
    trainer = StableReinforceTrainer(tiny_model_dir, reward, args=_config(tmp_path, max_steps=2), train_dataset=dataset)
    trainer.train()
    check_balanced(reward.batches, num_generations=None)  # the fixture's image rows are copies of one pair


def test_datasets_that_cannot_be_balanced_fail_before_training_or_warn(tiny_model_dir, tmp_path, caplog):
    custom = Dataset.from_list([{"prompt": [{"role": "user", "content": "Which is better, A or B?"}], "label": "1"}] * 4)
    with pytest.raises(PositionBalanceError, match=r"row 0, field 'prompt'.*position_balanced=False"):
        StableReinforceTrainer(tiny_model_dir, verdict_reward, args=_config(tmp_path), train_dataset=custom)
    bad_label = text_dataset(4).map(lambda row, i: {"label": "3" if i == 2 else row["label"]}, with_indices=True)
    with pytest.raises(PositionBalanceError, match=r"row 2, field 'label'"):
        StableReinforceTrainer(tiny_model_dir, verdict_reward, args=_config(tmp_path), train_dataset=bad_label)
    with pytest.raises(PositionBalanceError, match="even number of prompts.*got 3"):
        config = _config(tmp_path, per_device_train_batch_size=3, steps_per_generation=2)
        StableReinforceTrainer(tiny_model_dir, verdict_reward, args=config, train_dataset=text_dataset(4))
    with pytest.raises(PositionBalanceError, match="IterableDataset"):
        StableReinforceTrainer(tiny_model_dir, verdict_reward, args=_config(tmp_path, max_steps=1),
                               train_dataset=text_dataset(4).to_iterable_dataset())  # fmt: skip
    # A dataset with no label column (TRL's own GRPO data) is not a judge set: it trains as given, with a warning.
    plain = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Say {i}."}]} for i in range(4)])
    with caplog.at_level("WARNING", logger="stable_reinforce_trl.trainer"):
        trainer = StableReinforceTrainer(tiny_model_dir, lambda completions, **_: [0.0] * len(completions),
                                         args=_config(tmp_path), train_dataset=plain)  # fmt: skip
    assert not trainer.position_balanced and len(trainer.train_dataset) == 4
    assert any("no 'label' column" in r.message for r in caplog.records)


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_order_consistency_rewards_a_verdict_that_holds_in_both_orders(weight, tiny_model_dir, tmp_path):
    """Red pairs are judged right in both orders (order consistency 1), blue ones only where Response 1 is
    right (0): with the other rewards flat, the order-consistency term alone sets the advantages."""
    config = _config(tmp_path, max_steps=8, order_consistency_weight=weight, advantage_filter=False,
                     shuffle_dataset=False)  # each rollout batch: a red pair and a blue pair
    trainer = StableReinforceTrainer(tiny_model_dir, zero_reward, args=config, train_dataset=one_order_dataset(8),
                                     rollout_func=red_reading_judge)  # fmt: skip
    trainer.train()
    logs = [e for e in trainer.state.log_history if "stable_reinforce/p_label_1" in e]
    assert len(logs) == 2
    consistency = [e.get("stable_reinforce/order_consistency") for e in logs]
    advantages = list(trainer._logs["advantages"])
    if weight:
        assert consistency == [0.5, 0.5]  # the red pair's rollouts earn 1, the blue pair's 0
        assert sum(a > 0 for a in advantages) == sum(a < 0 for a in advantages) == 4  # red up, blue down
    else:
        assert consistency == [None, None] and not any(advantages)


def test_order_consistency_needs_both_orders(tmp_path):
    with pytest.raises(ValueError, match="order_consistency_weight=1.0 needs position_balanced=True"):
        _config(tmp_path, position_balanced=False, order_consistency_weight=1.0)
