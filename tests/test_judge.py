"""The judge on the real tiny Qwen2.5-VL: comparisons in both orders, k samples, forced outputs through a
real LogitsProcessor, the TRL reward function and best-of-n, and both inside a GRPO run on CPU."""

import importlib.util

import pytest
from datasets import Dataset
from PIL import Image

from stable_reinforce_trl.judge import Judge, JudgeRequest, JudgeReward, best_of_n

ALWAYS_ONE = "<think>ok</think><answer>1</answer>"  # 7 tokens: the tags are single tokens
RED = Image.new("RGB", (56, 56), "red")


@pytest.fixture(scope="module")
def always_one(tiny_model_dir):
    return Judge.from_pretrained(tiny_model_dir, backend="transformers", max_new_tokens=10, force_output=ALWAYS_ONE)


@pytest.fixture(scope="module")
def free_judge(tiny_model_dir):
    return Judge.from_pretrained(tiny_model_dir, backend="transformers", max_new_tokens=4, batch_size=2)


def test_compare_both_orders_maps_verdicts_to_the_callers_numbering(always_one):
    result = always_one.compare("What colour is it?", "Red.", "Blue.", images=[RED], k=2)
    assert [s.text for s in result.samples] == [ALWAYS_ONE] * 4
    assert [s.swapped for s in result.samples] == [False, False, True, True]
    # "1" in the swapped prompt means the caller's response 2
    assert result.verdicts == [1, 1, 2, 2]
    assert result.share == (0.5, 0.5) and result.winner is None and result.invalid == 0
    assert result.reasoning == ["ok"] * 4
    one_order = always_one.compare("What colour is it?", "Red.", "Blue.", images=[RED], k=3, both_orders=False)
    assert one_order.verdicts == [1, 1, 1] and one_order.share == (1.0, 0.0) and one_order.winner == 1


def test_free_generation_batches_and_decoding(free_judge):
    requests = [JudgeRequest(f"Question {i}?", "One.", f"Another {i}.", (RED,) * (i % 2)) for i in range(5)]
    greedy = free_judge.generate(requests)  # batch_size 2: three generate calls
    assert len(greedy) == 5 and all(len(texts) == 1 for texts in greedy)
    assert free_judge.generate(requests[:1]) == greedy[:1]  # greedy is deterministic
    sampled = free_judge.generate(requests[:2], k=3)
    assert [len(texts) for texts in sampled] == [3, 3]
    assert free_judge.settings(1) == {"model": free_judge.name, "do_sample": False, "max_new_tokens": 4}
    assert free_judge.settings(3)["temperature"] == 1.0 and free_judge.settings(3)["do_sample"]
    # whatever the random model says, unparseable output is a verdict of None, never a vote
    result = free_judge.compare("Q?", "a", "b", images=[RED])
    assert result.votes[0] + result.votes[1] + result.invalid == 2


def test_video_frames_and_image_dicts(always_one, tmp_path):
    frames = [Image.new("RGB", (56, 56), (i * 60, 0, 0)) for i in range(4)]
    RED.save(tmp_path / "red.png")
    path = str(tmp_path / "red.png")
    requests = [
        JudgeRequest("What happens in the video?", "It turns red.", "Nothing.", video=frames),
        JudgeRequest("What colour?", "Red.", "Blue.", images=(path, {"bytes": None, "path": path})),
    ]
    assert always_one.generate(requests) == [[ALWAYS_ONE], [ALWAYS_ONE]]


def test_forced_output_longer_than_max_new_tokens_is_refused(tiny_model_dir):
    judge = Judge.from_pretrained(tiny_model_dir, backend="transformers", max_new_tokens=3, force_output=ALWAYS_ONE)
    with pytest.raises(ValueError, match="raise max_new_tokens"):
        judge.compare("Q?", "a", "b")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_backend_is_optional(tiny_model_dir):
    with pytest.raises(ImportError, match=r"stable-reinforce-trl\[vllm\]"):
        Judge.from_pretrained(tiny_model_dir, backend="vllm")


def test_best_of_n_round_robin(always_one):
    # Always "1", one order: the earlier candidate of every pair wins, so the order is 0 > 1 > 2.
    result = best_of_n(always_one, "Which is best?", ["first", "second", "third"], images=[RED], both_orders=False)
    assert result.scores == [1.0, 0.5, 0.0] and result.index == 0 and result.best == "first"
    assert sorted(result.comparisons) == [(0, 1), (0, 2), (1, 2)]
    # Both orders cancel the bias: every candidate ties.
    assert best_of_n(always_one, "Which is best?", ["a", "b", "c"]).scores == [0.5, 0.5, 0.5]


def test_judge_reward_against_reference_and_group(always_one):
    prompts = [[{"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}]] * 3 + ["Count to two."]
    completions = [[{"role": "assistant", "content": "Red."}], [{"role": "assistant", "content": "Blue."}],
                   [{"role": "assistant", "content": "Green."}], [{"role": "assistant", "content": "One two."}]]
    logged = {}
    one_order = JudgeReward(always_one, both_orders=False)
    rewards = one_order(prompts, completions, reference=["Red."] * 4, images=[[RED]] * 4,
                        log_metric=logged.__setitem__)
    assert rewards == [1.0] * 4  # the completion is shown first, and the judge always says "1"
    assert logged == {"judge_reward/invalid_frac": 0.0}
    assert JudgeReward(always_one)(prompts, completions, reference=["Red."] * 4) == [0.5] * 4
    group = JudgeReward(always_one, against="group", both_orders=False)
    # three completions of one prompt (0 > 1 > 2, as above) and a lone one (no evidence: 0.5)
    assert group(prompts, completions) == [1.0, 0.5, 0.0, 0.5]
    pairs_of_two = JudgeReward(always_one, against="group", both_orders=False, group_size=2)
    assert pairs_of_two(prompts, completions) == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="needs a 'reference' column"):
        JudgeReward(always_one)(prompts, completions, answer=["x"] * 4)


def test_reward_and_best_of_n_in_a_grpo_run(always_one, tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    from stable_reinforce_trl.tiny import make_tiny_model

    policy = make_tiny_model(tmp_path / "policy", seed=1)
    questions = ["Name a colour.", "Name a shape.", "Count to two.", "Say yes."]
    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": q}], "reference": "A short answer."} for q in questions
    ])
    picks = []

    def best_of_group(prompts, completions, **columns):
        """1.0 for the completion best_of_n picks among its prompt's generations, else 0.0."""
        rewards = [0.0] * len(completions)
        for start in range(0, len(completions), 2):  # num_generations consecutive samples per prompt
            group = [c[0]["content"] for c in completions[start : start + 2]]
            pick = best_of_n(always_one, prompts[start][-1]["content"], group)
            picks.append(pick)
            rewards[start + pick.index] = 1.0
        return rewards

    config = GRPOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, num_generations=2, max_completion_length=8,
        max_steps=2, learning_rate=1e-4, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, seed=0,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=str(policy),
        reward_funcs=[
            JudgeReward(always_one), JudgeReward(always_one, against="group", name="judge_group"), best_of_group,
        ],
        args=config,
        train_dataset=dataset,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "rewards/judge_reward/mean" in entry]
    assert len(logs) == 2
    for entry in logs:
        # both orders, always "1": every completion ties with the reference and with its group
        assert entry["rewards/judge_reward/mean"] == pytest.approx(0.5)
        assert entry["rewards/judge_group/mean"] == pytest.approx(0.5)
        assert entry["rewards/best_of_group/mean"] == pytest.approx(0.5)  # one pick per pair of completions
        assert entry["judge_reward/invalid_frac"] == 0.0
    assert len(picks) == 2 and all(len(p.comparisons) == 1 for p in picks)


def test_printed_comparison_names_the_winner_shares_and_each_order(always_one, tmp_path):
    RED.save(tmp_path / "red.png")
    # A path string is one image, not a sequence of characters.
    result = always_one.compare("What colour is it?", "Red.", "Blue.", images=str(tmp_path / "red.png"), k=2,
                                both_orders=False)  # fmt: skip
    assert str(result).splitlines() == ["winner: response 1 (votes 100% for 1, 0% for 2, 0 unparseable)",
                                        "  as given (2 samples): 1 1"]  # fmt: skip
    both = always_one.compare("What colour is it?", "Red.", "Blue.", images=RED)
    assert str(both).splitlines() == ["winner: tie (votes 50% for 1, 50% for 2, 0 unparseable)",
                                      "  as given (1 samples): 1", "  swapped  (1 samples): 2"]  # fmt: skip


def test_judge_tools_import_from_the_package():
    import stable_reinforce_trl

    assert stable_reinforce_trl.JudgeReward is JudgeReward and stable_reinforce_trl.best_of_n is best_of_n
    assert {"Judge", "JudgeReward", "best_of_n"} <= set(stable_reinforce_trl.__all__)
