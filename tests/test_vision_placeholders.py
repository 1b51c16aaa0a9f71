"""Vision placeholders in completions: suppressed in generation, and harmless when one arrives anyway.

The tiny policy is forced to sample a placeholder with transformers' own `sequence_bias` generation option
(+100 on the token's logit), the way a user's `generation_kwargs` reach generation: a real generation path.
"""

import json
import math

import pytest
import torch
from transformers import AutoConfig

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer
from stable_reinforce_trl.data.loaders import load_judge_dataset
from stable_reinforce_trl.vision_tokens import (
    neutralize,
    transformers_generation_kwargs,
    vision_placeholder_ids,
    vllm_generation_kwargs,
)

from .test_recipes import launch, ok, step_logs
from .test_video_training import FRAMES, TINY, mixed_pairs  # noqa: F401  (a fixture)
from .trl_helpers import colour_judge_dataset, verdict_reward

PLACEHOLDERS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
METRIC = "stable_reinforce/vision_placeholders_sampled"


def test_every_placeholder_of_the_config_is_found(tiny_model_dir):
    from transformers import AutoTokenizer

    ids = vision_placeholder_ids(AutoConfig.from_pretrained(tiny_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert ids == sorted(tokenizer.convert_tokens_to_ids(list(PLACEHOLDERS)))
    assert vision_placeholder_ids(AutoConfig.for_model("qwen2", vocab_size=32)) == []  # text-only: none


def test_generation_kwargs_keep_the_users_own():
    assert transformers_generation_kwargs({"suppress_tokens": [5], "top_k": 3}, [9, 5]) == {
        "suppress_tokens": [5, 9], "top_k": 3}  # fmt: skip
    assert vllm_generation_kwargs(None, ["<|a|>"]) == {"bad_words": ["<|a|>"]}
    assert vllm_generation_kwargs({"bad_words": ["x", "<|a|>"], "seed": 1}, ["<|a|>", "<|b|>"]) == {
        "bad_words": ["x", "<|a|>", "<|b|>"], "seed": 1}  # fmt: skip


def test_neutralize_swaps_for_pad_masks_and_counts():
    ids, mask, found = neutralize([torch.tensor([1, 9, 2]), [9, 9]], None, [9], pad_id=0)
    assert (ids, mask, found) == ([[1, 0, 2], [0, 0]], [[1, 0, 1], [0, 0]], 3)
    ids, mask, found = neutralize([[1, 9]], [[0, 1]], [9], pad_id=0)  # a tool-masked token stays masked
    assert (ids, mask, found) == ([[1, 0]], [[0, 0]], 1)
    assert neutralize([[1, 2]], None, [9], pad_id=0) == ([[1, 2]], None, 0)


def forced(*tokens_ids: int) -> dict:
    return {"sequence_bias": [[[token], 100.0] for token in tokens_ids]}


def _dataset(kind: str, mixed_pairs):  # noqa: F811
    if kind == "image":
        return colour_judge_dataset(8)
    dataset = load_judge_dataset(mixed_pairs, num_frames=FRAMES)
    if kind == "video":
        dataset = dataset.filter(lambda row: row["id"].startswith("vid"))
    return dataset


def train(tiny_model_dir, tmp_path, dataset, token_id: int, *, suppress: bool):
    config = StableReinforceConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=2, max_completion_length=8,
        num_iterations=1, steps_per_generation=1, learning_rate=1e-3, max_steps=1, logging_steps=1,
        report_to="none", save_strategy="no", use_cpu=True, seed=0, log_completions=False,
        generation_kwargs=forced(token_id),
    )  # fmt: skip
    trainer = StableReinforceTrainer(tiny_model_dir, verdict_reward, args=config, train_dataset=dataset)
    assert token_id in trainer.generation_config.suppress_tokens
    if not suppress:  # a backend that ignores the request (a vLLM server, a custom rollout_func)
        trainer.generation_config.suppress_tokens = None
        trainer.generation_kwargs["suppress_tokens"] = None
    trainer.train()
    return [e for e in trainer.state.log_history if "loss" in e]


@pytest.mark.parametrize(
    ("kind", "placeholder"),
    [("mixed", p) for p in PLACEHOLDERS] + [("image", "<|image_pad|>"), ("video", "<|video_pad|>")],
)
def test_a_policy_forced_to_a_placeholder_never_samples_it_and_survives_one(
    kind, placeholder, mixed_pairs, tiny_model_dir, tmp_path  # noqa: F811
):
    from transformers import AutoTokenizer

    token_id = AutoTokenizer.from_pretrained(tiny_model_dir).convert_tokens_to_ids(placeholder)
    dataset = _dataset(kind, mixed_pairs)
    logs = train(tiny_model_dir, tmp_path / "suppressed", dataset, token_id, suppress=True)
    assert logs[0][METRIC] == 0 and math.isfinite(logs[0]["loss"])
    # The same forced policy with nothing suppressed: every completion token is the placeholder. Each is
    # swapped for the pad token in the forward (a counted image/video slot would not match the features)
    # and dropped from the loss.
    logs = train(tiny_model_dir, tmp_path / "unsuppressed", dataset, token_id, suppress=False)
    assert logs[0][METRIC] == 4 * 8  # 4 completions (2 prompts x 2 generations) x 8 tokens, every one
    assert math.isfinite(logs[0]["loss"]) and logs[0]["loss"] == 0.0


def test_rl_recipe_under_accelerate_launch_with_every_placeholder_forced(mixed_pairs, tiny_model_dir, tmp_path):  # noqa: F811
    """Two processes, mixed image and video pairs, the policy pushed to every placeholder at once: TRL alone
    suppresses only `<|image_pad|>`, so a `<|video_pad|>` would be sampled and break the log-prob forward."""
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny_model_dir).convert_tokens_to_ids(list(PLACEHOLDERS))
    out = tmp_path / "rl"
    ok(launch(2, "stable_reinforce.py", "--config", str(TINY / "stable_reinforce.yaml"), "--model_name_or_path",
              tiny_model_dir, "--output_dir", str(out), "--dataset_name", str(mixed_pairs), "--max_steps", "2",
              "--save_steps", "2", "--per_device_train_batch_size", "2", "--generation_batch_size", "8",
              "--num_generations", "2", "--max_completion_length", "8", "--reward_funcs",
              "tests.test_recipes.length_reward", "--generation_kwargs", json.dumps(forced(*ids))))  # fmt: skip
    logs = step_logs(out)
    assert [e["step"] for e in logs] == [1, 2]
    assert [e[METRIC] for e in logs if METRIC in e] == [0.0]
