"""The reward functions and R1Reward's formula, metrics and failure handling (real referees, real local server)."""

import asyncio
import functools
import math
import warnings

import pytest

from stable_reinforce_trl.config import StableReinforceConfig
from stable_reinforce_trl.openai_server import ScriptedOpenAIServer, dead_port_url
from stable_reinforce_trl.rewards import (
    OpenAIReferee,
    R1Reward,
    Referee,
    RuleReferee,
    TransformersReferee,
    build_r1_reward,
    format_reward,
    parse_label,
    result_reward,
)
from tests.test_referees import FAST, referee_rule

# name: (completion, label), each with the reward expected under (paper, reference) consistency at weights 0.5 / 0.5.
CASES = {
    "correct_consistent_formatted": ("<think>So Response 2 is better.</think><answer>2</answer>", "2", 2.0, 2.0),
    "correct_inconsistent": ("<think>So Response 1 is better.</think><answer>2</answer>", "2", 1.5, 1.0),
    "wrong": ("<think>So Response 1 is better.</think><answer>1</answer>", "2", 0.5, 0.5),
    "unformatted_correct": ("Response 2 is better. <answer>2</answer>", "2", 1.5, 1.5),
    "invalid_answer": ("<think>So Response 2 is better.</think><answer>3</answer>", "2", 0.5, 0.5),
    "two_answers": ("<think>Response 2 is better.</think><answer>1</answer><answer>2</answer>", "2", 0.0, 0.0),
    # The rule referee finds no stated verdict: a failure, so consistency is neutral (0.5 paper, 0 reference).
    "referee_fails": ("<think>Hard to say.</think><answer>1</answer>", "1", 1.75, 1.5),
}


def call(reward, completions, labels, **columns):
    metrics, extra = {}, {}
    rewards = asyncio.run(
        reward(
            prompts=[None] * len(completions),
            completions=completions,
            completion_ids=None,
            label=labels,
            log_metric=lambda name, value: metrics.setdefault(name, []).append(value),
            log_extra=lambda column, values: extra.setdefault(column, []).extend(values),
            **columns,
        )
    )
    return rewards, metrics, extra


def test_format_and_result_rewards():
    completions = [c for c, *_ in CASES.values()]
    assert format_reward(None, completions) == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    labels = [label for _, label, *_ in CASES.values()]
    assert result_reward(None, completions, label=labels) == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    by_answer = functools.partial(result_reward, label_column="answer")
    two = ["<answer>2</answer>", "<answer>2</answer>"]
    assert by_answer(None, two, answer=[["<answer>2</answer>"], 1]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="no label column 'label'"):
        result_reward(None, completions, answer=labels)
    with pytest.raises(ValueError, match="not 1 or 2"):
        parse_label("3")


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_r1_reward_formula_on_hand_made_completions(mode):
    completions = [c for c, *_ in CASES.values()]
    labels = [label for _, label, *_ in CASES.values()]
    expected = [paper if mode == "paper" else reference for *_, paper, reference in CASES.values()]
    rewards, metrics, extra = call(R1Reward(RuleReferee(), consistency_mode=mode), completions, labels)
    assert rewards == pytest.approx(expected)
    assert metrics["r1_reward/result"] == [pytest.approx(4 / 7)]
    assert metrics["r1_reward/format"] == [pytest.approx(5 / 7)]
    # Answered referee calls: two consistent (1) and one inconsistent (0 paper, -1 reference).
    assert metrics["r1_reward/consistency"] == [pytest.approx(2 / 3 if mode == "paper" else 1 / 3)]
    assert metrics["referee/failures"] == [1.0]
    assert extra["referee"] == ["consistent", "inconsistent", "not asked", "consistent", "not asked", "not asked",
                                "failed: the reasoning states no clear 'Response N is better' (none, negated or ambiguous)"]  # fmt: skip


def test_format_check_is_the_references_pattern_unless_lenient():
    spaced = "<think>So Response 2 is better.</think>\n<answer>2</answer>"
    padded = "  <think>So Response 2 is better.</think><answer>2</answer>  "
    exact = "<think>So Response 2 is better.</think><answer>2</answer>"
    assert format_reward(None, [exact, exact + "\n", spaced, padded]) == [1.0, 1.0, 0.0, 0.0]
    assert format_reward(None, [exact, spaced, padded], format_mode="lenient") == [1.0, 1.0, 1.0]
    nested = "<think>a<think>b</think><answer>2</answer>"
    assert format_reward(None, [nested], format_mode="lenient") == [0.0]  # one of each tag, in either mode
    strict, lenient = R1Reward(None), R1Reward(None, format_mode="lenient")
    assert call(strict, [spaced], ["2"])[0] == [1.0] and call(lenient, [spaced], ["2"])[0] == [1.5]
    with pytest.raises(ValueError, match="format mode"):
        R1Reward(None, format_mode="loose")


def test_r1_reward_weights_and_no_referee():
    completion, label = CASES["correct_inconsistent"][:2]
    reward = R1Reward(RuleReferee(), consistency_mode="reference", consistency_weight=1.0, format_weight=0.25)
    rewards, *_ = call(reward, [completion], [label])
    assert rewards == [pytest.approx(0.0 + 0.25)]  # 1 * (1 + 1 * -1) + 0.25
    rewards, metrics, extra = call(R1Reward(None), [CASES["correct_consistent_formatted"][0]], ["2"])
    assert rewards == [1.5] and "referee/failures" not in metrics and extra == {}


def test_r1_reward_takes_conversational_completions():
    completion = [{"role": "assistant", "content": CASES["correct_consistent_formatted"][0]}]
    rewards, *_ = call(R1Reward(RuleReferee()), [completion], [2])
    assert rewards == [2.0]


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_r1_reward_through_the_openai_referee_matches_the_formula(mode):
    completions = [c for c, *_ in CASES.values()]
    labels = [label for _, label, *_ in CASES.values()]
    expected = [paper if mode == "paper" else reference for *_, paper, reference in CASES.values()]
    with ScriptedOpenAIServer(referee_rule, latency_s=0.02) as server:
        reward = R1Reward(OpenAIReferee(server.base_url, "m", **FAST), consistency_mode=mode)
        rewards, metrics, _ = call(reward, completions, labels)
        sent = len(server.requests)
    # The scripted referee cannot parse a reasoning without a verdict either: it answers "No", not a failure.
    expected[-1] = 1.5 if mode == "paper" else 1.0
    assert rewards == pytest.approx(expected)
    assert sent == 4  # only the correct answers go to the referee
    assert metrics["referee/failures"] == [0.0] and metrics["referee/latency"][0] >= 0.02


def test_r1_reward_under_faults_returns_a_reward_for_every_completion():
    markers = ["FAULT500", "FAULTTIMEOUT", "FAULTMALFORMED", "FAULTCLOSE", "GARBLE"] + ["ok"] * 11
    template = "<think>{} {}. So Response 1 is better.</think><answer>1</answer>"
    completions = [template.format(m, i) for i, m in enumerate(markers)]
    with ScriptedOpenAIServer(referee_rule, latency_s=0.01) as server:
        reward = R1Reward(OpenAIReferee(server.base_url, "m", **FAST), consistency_mode="reference")
        rewards, metrics, extra = call(reward, completions, ["1"] * len(completions))
    assert len(rewards) == 16 and all(math.isfinite(r) for r in rewards)
    assert rewards == [1.5] * 5 + [2.0] * 11  # failures are neutral (0), the rest consistent
    assert metrics["referee/failures"] == [5.0]
    assert sum(value.startswith("failed") for value in extra["referee"]) == 5


def test_r1_reward_dead_referee_warns_once_and_keeps_training():
    reward = R1Reward(OpenAIReferee(dead_port_url(), "m", **FAST))
    completions = [CASES["correct_consistent_formatted"][0]] * 3
    with pytest.warns(RuntimeWarning, match="failed all 3 calls"):
        rewards, metrics, _ = call(reward, completions, ["2"] * 3)
    assert rewards == [1.75] * 3 and metrics["referee/failures"] == [3.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rewards, metrics, _ = call(reward, completions, ["2"] * 3)  # no second warning
    assert metrics["referee/failures"] == [3.0]


class BrokenReferee(Referee):
    """A referee with a bug: it raises instead of returning judgements."""

    async def judge(self, requests):
        raise RuntimeError("boom")


def test_r1_reward_contains_a_referee_that_raises():
    with pytest.warns(RuntimeWarning):
        rewards, metrics, extra = call(R1Reward(BrokenReferee()), [CASES["correct_consistent_formatted"][0]], ["2"])
    assert rewards == [1.75] and metrics["referee/failures"] == [1.0]
    assert "boom" in extra["referee"][0]


def test_r1_reward_counts_unparseable_local_model_answers(tiny_model_dir):
    referee = TransformersReferee(tiny_model_dir, batch_size=4, max_new_tokens=4, device="cpu")
    completions = [f"<think>Case {i}. So Response 1 is better.</think><answer>1</answer>" for i in range(5)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a random model may well fail every call
        rewards, metrics, extra = call(R1Reward(referee), completions, ["1"] * 5)
    failed = sum(value.startswith("failed: unparseable") for value in extra["referee"])
    assert len(rewards) == 5 and metrics["referee/failures"] == [float(failed)]
    assert rewards.count(1.75) == failed  # each failure is neutral


def config(tmp_path, **fields):
    return StableReinforceConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **fields)


def test_build_r1_reward_from_config(tmp_path):
    from trl.trainer.utils import get_callable_name, is_async_callable

    reward = build_r1_reward(config(tmp_path, referee="rule", consistency_mode="reference", consistency_weight=1.0,
                                    format_weight=0.1, label_column="answer"))  # fmt: skip
    assert isinstance(reward.referee, RuleReferee) and reward.consistency_mode == "reference"
    assert (reward.consistency_weight, reward.format_weight, reward.label_column) == (1.0, 0.1, "answer")
    assert is_async_callable(reward) and get_callable_name(reward) == "r1_reward"
    assert build_r1_reward(config(tmp_path, referee="none")).referee is None

    url = dead_port_url()
    openai_config = config(
        tmp_path, referee="openai", referee_base_url=url, referee_model="judge", referee_api_key="secret",
        referee_max_concurrency=7, referee_timeout=2.0, referee_max_retries=1, referee_reasoning_lines=3,
        referee_attach_image=True,
    )  # fmt: skip
    openai_reward = build_r1_reward(openai_config)
    ref = openai_reward.referee
    assert isinstance(ref, OpenAIReferee) and "secret" not in repr(openai_reward)
    fields = (ref.base_url, ref.model, ref.max_concurrency, ref.timeout, ref.max_retries, ref.reasoning_lines)
    assert fields == (url, "judge", 7, 2.0, 1, 3) and ref.attach_image


def test_build_r1_reward_with_a_local_model(tmp_path, tiny_model_dir):
    local = config(tmp_path, referee="transformers", referee_model=tiny_model_dir, referee_max_concurrency=3)
    reward = build_r1_reward(local)
    assert isinstance(reward.referee, TransformersReferee) and reward.referee.batch_size == 3
