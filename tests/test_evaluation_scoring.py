"""The evaluation's arithmetic on known verdicts: voting, both-order correctness, categories, Acc+, bias."""

from collections import Counter

import pytest

from stable_reinforce_trl.evaluation import (
    JudgedOrder,
    JudgedPair,
    acc_plus,
    any_correct,
    benchmark_category,
    majority,
    mm_rlhf_category,
    mm_rlhf_official,
    multimodal_rewardbench_official,
    official_summary,
    order_stats,
    orders_for,
    pair_correct,
    random_passes,
    schedule,
    summarize,
    vl_rewardbench_category,
    vl_rewardbench_category_from_id,
    vl_rewardbench_official,
    vote_correct,
)

X = "invalid"


def pair(*orders, id="p", category="c", group=""):
    return JudgedPair(id, category, tuple(JudgedOrder(label, tuple(v)) for label, v in orders), group)


def test_majority_is_plurality_of_valid_verdicts_and_ties_decide_nothing():
    assert majority([1]) == 1
    assert majority([2, 1, 2, 1, 2]) == 2
    assert majority([1, X, X, X, 2, 1]) == 1  # invalid samples do not vote
    assert majority([1, 2]) == X
    assert majority([1, 2, X]) == X
    assert majority([X, X]) == X
    assert majority([]) == X


def test_voting_and_any_at_k_on_known_verdicts():
    # chosen at position 2; five samples
    order = JudgedOrder("2", (1, 2, 1, X, 1))
    assert not vote_correct(order) and any_correct(order)
    order = JudgedOrder("2", (2, 2, 1, X, 1))
    assert not vote_correct(order)  # 2 vs 2: a tie is no decision
    assert vote_correct(JudgedOrder("2", (2, 2, 1, X, X)))
    assert not any_correct(JudgedOrder("1", (2, 2, X)))
    # Voting@5 and Any@5 over a small set: known answers
    pairs = [
        pair(("1", (1, 1, 2, 2, 1))),  # vote right, any right
        pair(("1", (2, 2, 2, 1, X))),  # vote wrong, any right
        pair(("2", (X, X, X, X, X))),  # nothing parseable
        pair(("2", (2, 2, 2, 2, 2))),  # right
    ]
    summary = summarize(pairs)
    assert summary["overall"] == 0.5
    assert summary["any_at_k"] == 0.75
    assert summary["parse_failure_rate"] == pytest.approx(6 / 20)


def test_a_pair_is_right_only_when_right_in_every_order():
    always_one = pair(("1", (1,)), ("2", (1,)))
    assert not pair_correct(always_one)
    assert pair_correct(pair(("1", (1,)), ("2", (2,))))
    assert not pair_correct(pair(("1", (1, 1, 2)), ("2", (1, 2, 1))))
    assert pair_correct(pair(("1", (1, 1, 2)), ("2", (1, 2, 1))), any_correct)
    assert not pair_correct(pair())  # a pair never judged is not right


def test_orders_plan():
    assert orders_for(3, "both") == [("1", "2")] * 3
    assert orders_for(2, "chosen-first") == [("1",), ("1",)]
    random_orders = orders_for(10, "random", seed=3)
    assert Counter(o for (o,) in random_orders) == {"1": 5, "2": 5}
    assert random_orders == orders_for(10, "random", seed=3) != orders_for(10, "random", seed=4)
    with pytest.raises(ValueError, match="order must be one of"):
        orders_for(1, "chosen-second")


def test_always_one_judge_position_bias_in_each_order_mode():
    n = 8
    verdicts_for = {"1": (1,), "2": (1,)}  # answers "1" whatever it sees
    results = {}
    for mode in ("chosen-first", "both", "random"):
        pairs = [pair(*((label, verdicts_for[label]) for label in labels)) for labels in orders_for(n, mode)]
        results[mode] = summarize(pairs)
    assert results["chosen-first"]["overall"] == 1.0  # the reference evaluation's blind spot
    assert results["both"]["overall"] == 0.0
    assert results["random"]["overall"] == 0.5
    both = results["both"]
    assert both["p_verdict_1"] == 1.0
    assert both["position_bias"] == 1.0
    assert both["accuracy_by_order"] == {
        "chosen_first": {"n": 8, "accuracy": 1.0}, "chosen_second": {"n": 8, "accuracy": 0.0},
    }
    assert both["order_consistency"] == 0.0
    assert results["chosen-first"]["position_bias"] is None  # one order seen: bias cannot be measured


def test_unbiased_judge_stats():
    pairs = [pair(("1", (1,)), ("2", (2,))), pair(("1", (2,)), ("2", (1,))), pair(("1", (1,)), ("2", (X,)))]
    stats = order_stats(pairs)
    assert stats["p_verdict_1"] == pytest.approx(3 / 5)
    assert stats["position_bias"] == pytest.approx(2 / 3 - 1 / 3)
    assert stats["order_consistency"] == pytest.approx(2 / 3)  # the invalid majority is not consistent
    assert stats["parse_failure_rate"] == pytest.approx(1 / 6)


@pytest.mark.parametrize(
    "source, category",
    [("WildVision", "general"), ("wildvision-battle", "general"), ("POVID", "hallucination"),
     ("RLAIF-V", "hallucination"), ("rlaif_v", "hallucination"), ("RLHF-V", "hallucination"),
     ("MMMU-Pro", "reasoning"), ("mmmu_pro", "reasoning"), ("MathVerse", "reasoning"), ("reasoning", "reasoning")],
)
def test_vl_rewardbench_category_from_query_source(source, category):
    # the id would say otherwise: query_source wins
    assert vl_rewardbench_category(source, "unrelated-id") == category


def test_vl_rewardbench_category_from_id_prefix_is_case_insensitive():
    ids = {
        "hallucination_pair_12": "hallucination", "Hallucination_Pair-3": "hallucination",
        "RLAIF-V-1024": "hallucination", "rlaif-v_9": "hallucination", "RLHF-V-5": "hallucination",
        "rlhf-v_7": "hallucination", "mathverse_233": "reasoning", "MathVerse-1": "reasoning",
        "mmmu_pro_7": "reasoning", "MMMU_Pro_8": "reasoning", "wildvision_1": "general", "vlfeedback_3": "general",
    }
    for pair_id, category in ids.items():
        assert vl_rewardbench_category_from_id(pair_id) == category, pair_id
        assert vl_rewardbench_category("", pair_id) == category  # no query_source: the id decides


def test_categories_and_macro_accuracy():
    right, wrong = ("1", (1,)), ("1", (2,))
    pairs = [pair(right, category="a"), pair(wrong, category="a"), pair(right, category="b"),
             pair(right, category="b"), pair(right, category="b"), pair(wrong, category="b")]
    summary = summarize(pairs)
    assert summary["categories"] == {"a": {"n": 2, "accuracy": 0.5, "any_at_k": 0.5},
                                     "b": {"n": 4, "accuracy": 0.75, "any_at_k": 0.75}}
    assert summary["overall"] == pytest.approx(4 / 6)
    assert summary["macro"] == pytest.approx((0.5 + 0.75) / 2)
    assert "acc_plus" not in summary


def test_acc_plus_over_prompt_groups():
    right, wrong = ("1", (1,)), ("1", (2,))
    pairs = [pair(right, group="g1"), pair(right, group="g1"), pair(right, group="g2"), pair(wrong, group="g2"),
             pair(right, group="g3")]
    assert acc_plus(pairs) == (pytest.approx(2 / 3), 3)
    summary = summarize(pairs, "mm-rlhf-rewardbench")
    assert summary["overall"] == pytest.approx(4 / 5)
    assert summary["acc_plus"] == pytest.approx(2 / 3) and summary["n_groups"] == 3


def test_unknown_benchmark_is_refused():
    with pytest.raises(ValueError, match="benchmark must be one of"):
        summarize([], "rewardbench")


# ------------------------------------------------------------------ ours: the accuracy block


def test_always_one_judge_reads_50_0_100_in_the_accuracy_block():
    pairs = [pair(("1", (1,)), ("2", (1,)), category=c, id=f"p{i}") for i, c in enumerate("aabbb")]
    block = summarize(pairs, order="both")["accuracy"]
    assert list(block) == ["order_averaged", "both_orders", "chosen_first"]
    assert [block[name]["accuracy"] for name in block] == [0.5, 0.0, 1.0]
    assert all(block[name]["n"] == 5 and block[name]["what"] for name in block)
    assert block["order_averaged"]["categories"] == {"a": {"n": 2, "accuracy": 0.5}, "b": {"n": 3, "accuracy": 0.5}}
    assert block["both_orders"]["categories"]["b"] == {"n": 3, "accuracy": 0.0}
    assert block["chosen_first"]["macro"] == 1.0


def test_order_averaged_scores_each_judgment_and_acc_plus_is_its_expectation():
    # p0 right in both orders, p1 right only with chosen second, p2 wrong in both; Voting@3 in each order
    pairs = [pair(("1", (1, 1, 2)), ("2", (2, 2, X)), group="g"), pair(("1", (2, 2, 1)), ("2", (2, 1, 2)), group="g"),
             pair(("1", (2, X, X)), ("2", (1, 1, 1)), group="h")]
    block = summarize(pairs, "mm-rlhf-rewardbench", order="both")["accuracy"]
    assert block["order_averaged"]["accuracy"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert block["both_orders"]["accuracy"] == pytest.approx(1 / 3)
    assert block["chosen_first"]["accuracy"] == pytest.approx(1 / 3)
    # group g: 1 * 0.5 (each pair in a random order: p1 right half the time); h: 0
    assert block["order_averaged"]["acc_plus"] == pytest.approx(0.25) and block["order_averaged"]["n_groups"] == 2
    assert block["both_orders"]["acc_plus"] == 0.0 and block["chosen_first"]["acc_plus"] == 0.0


def test_single_order_runs_get_their_own_block():
    assert list(summarize([pair(("2", (2,)))], order="random")["accuracy"]) == ["random_order"]
    assert summarize([pair(("1", (1,)))], order="chosen-first")["accuracy"]["chosen_first"]["accuracy"] == 1.0
    assert "accuracy" not in summarize([pair(("1", (1,)))])  # no order given: the block is not guessed


# ------------------------------------------------------------------------------ schedules


def test_schedules_of_each_protocol():
    assert schedule(2) == ("both", [{"1": 1, "2": 1}] * 2)
    assert schedule(2, k=3, order="chosen-first") == ("chosen-first", [{"1": 3}] * 2)
    order, plan = schedule(6, protocol="official", benchmark="vl-rewardbench", k=5, seed=2)
    assert order == "random-passes" and all(sum(p.values()) == 5 for p in plan)
    passes = random_passes(6, 5, seed=2)
    assert [Counter(p[j] for p in passes) for j in range(5)] == [{"1": 3, "2": 3}] * 5  # each pass balanced
    assert [(p[0],) for p in passes] == orders_for(6, "random", 2)  # pass 0 shares a random-order run's cache
    assert schedule(3, protocol="official", benchmark="multimodal-rewardbench", k=2, released=["2", "1", "2"]) == (
        "released", [{"2": 2}, {"1": 2}, {"2": 2}])
    assert schedule(2, protocol="official", benchmark="mm-rlhf-rewardbench", order="chosen-first")[1] == [{"1": 1}] * 2
    assert schedule(4, protocol="official", benchmark="mm-rlhf-rewardbench")[0] == "random"
    with pytest.raises(ValueError, match="fixes the order"):
        schedule(2, protocol="official", benchmark="vl-rewardbench", order="both")
    with pytest.raises(ValueError, match="takes --order random or chosen-first"):
        schedule(2, protocol="official", benchmark="mm-rlhf-rewardbench", order="both")
    with pytest.raises(ValueError, match="the order the file shows"):
        schedule(2, protocol="official", benchmark="multimodal-rewardbench", released=[None, "1"])


# ------------------------------------------------------------------- the benchmarks' own scripts


def test_vl_rewardbench_official_leaves_out_no_majority_and_unparsed_pairs():
    pairs = [
        pair(("1", (1,)), ("2", (2, 1)), category="general"),  # agree 2 of 3 -> right
        pair(("1", (2, 2)), ("2", (2,)), category="general"),  # reject 2 of 3 -> wrong
        pair(("1", (1,)), ("2", (1, X)), category="hallucination"),  # 1 agree, 1 reject, 1 unparsed: no majority
        pair(("1", (X, X)), ("2", (2,)), category="hallucination"),  # 2 of 3 unparsed: left out
        pair(("2", (2, 2, 1)), category="hallucination"),  # right
        pair(("1", (1, 1)), ("2", (1,)), category="reasoning"),  # right (agree 2 > 1.5)
        pair(("1", (X,)), category="reasoning"),  # k = 1, unparsed: left out, not wrong
    ]
    official = vl_rewardbench_official(pairs)
    assert official["n"] == 7 and official["n_scored"] == 4
    assert official["left_out"] == {"no_majority": 1, "unparsed": 2}
    assert official["overall"] == pytest.approx(3 / 4)
    assert official["categories"] == {"general": {"n": 2, "n_scored": 2, "accuracy": 0.5},
                                      "hallucination": {"n": 3, "n_scored": 1, "accuracy": 1.0},
                                      "reasoning": {"n": 2, "n_scored": 1, "accuracy": 1.0}}
    assert official["macro"] == pytest.approx((0.5 + 1 + 1) / 3)


def _reference_mmrb_accuracy(outputs, labels):
    """Multimodal RewardBench's 2_get_accuracy.py, its arithmetic written out: [[A]] / [[B]], else a random guess
    after random.seed(123), in file order."""
    import random

    random.seed(123)
    right = []
    for output, label in zip(outputs, labels):
        pred = "A" if "[[A]]" in output else "B" if "[[B]]" in output else ("A" if random.random() < 0.5 else "B")
        right.append(pred == label)
    return sum(right) / len(right)


def test_multimodal_rewardbench_official_guesses_unparsed_answers_like_the_script():
    released = ["1", "2", "2", "1", "2", "1", "1", "2", "2", "1"]
    verdicts = [1, X, X, 1, 2, X, X, 1, X, X]  # six unparseable answers
    pairs = [pair((label, (v,)), id=f"nocaps_{i}", category="open_generation/correctness_task")
             for i, (label, v) in enumerate(zip(released, verdicts))]
    official = multimodal_rewardbench_official(pairs)
    outputs = [{1: "[[A]]", 2: "[[B]]", X: "no verdict"}[v] for v in verdicts]
    as_script = _reference_mmrb_accuracy(outputs, ["A" if label == "1" else "B" for label in released])
    assert official["overall"] == pytest.approx(as_script) and official["guessed"] == 6
    always_one = [pair((label, (1,))) for label in released]
    assert multimodal_rewardbench_official(always_one)["overall"] == 0.5  # the released order is the file's


def test_multimodal_rewardbench_subcategories_as_the_official_script_splits_them():
    ids = {("PAIRS_occupation_12", "safety"): "safety/bias", ("hateful_memes_3", "safety"): "safety/toxicity",
           ("mathvista_45", "reasoning"): "reasoning/math", ("EMMA-Coding_7", "reasoning"): "reasoning/coding",
           ("mmmu-v_3", "knowledge"): "knowledge", ("nocaps_13062", "open_generation/correctness_task"):
           "open_generation/correctness_task"}
    for (pair_id, category), split in ids.items():
        assert benchmark_category("multimodal-rewardbench", category, pair_id) == split
    judged = [pair(("1", (1 if i % 2 else 2,)), id=pid, category=benchmark_category("multimodal-rewardbench", c, pid))
              for i, (pid, c) in enumerate(ids)]
    cats = multimodal_rewardbench_official(judged)["categories"]
    assert cats["safety"] == {"n": 2, "accuracy": 0.5} and cats["reasoning"] == {"n": 2, "accuracy": 0.5}
    assert cats["safety/toxicity"] == {"n": 1, "accuracy": 1.0} and cats["reasoning/math"]["accuracy"] == 0.0
    # the macro is over the parts only: safety/bias 1, safety/toxicity 0, knowledge 1 (not also their parent)
    parts = [pair(("1", (1,)), category="safety/bias"), pair(("1", (2,)), category="safety/toxicity"),
             pair(("1", (1,)), category="knowledge")]
    ours = summarize(parts, "multimodal-rewardbench", order="chosen-first")["accuracy"]["chosen_first"]
    assert ours["categories"]["safety"] == {"n": 2, "accuracy": 0.5} and ours["macro"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("path, category", [
    ("mcq/llava_wild/0031.jpg", "mcq"), ("long/coco/000000391895.jpg", "long"), ("short/ocr/12.png", "short"),
    ("safety/mmsafety/7.jpg", "safety"), ("video/clip_0004", "video"), ("video/clip_0004/frame_003.jpg", "video"),
    ("/data/mm_rlhf/long/coco/1.jpg", "long"), ("images/short_answers/3.jpg", "short"),
    ("other/1.jpg", "uncategorized"),
])
def test_mm_rlhf_category_from_the_media_path(path, category):
    assert mm_rlhf_category(path) == category


def test_mm_rlhf_official_acc_and_acc_plus_per_category():
    right, wrong, tie = ("1", (1,)), ("1", (2,)), ("1", (1, 2))
    pairs = [pair(right, group="q1", category="mcq"), pair(right, group="q1", category="mcq"),
             pair(tie, group="q2", category="mcq"), pair(right, group="q3", category="video"),
             pair(wrong, group="q4", category="long"), pair(right, group="q4", category="long")]
    official = mm_rlhf_official(pairs)
    assert official["overall"] == pytest.approx(4 / 6)  # the tie is wrong
    assert official["acc_plus"] == pytest.approx(2 / 4) and official["n_groups"] == 4
    assert official["categories"]["mcq"] == {"n": 3, "accuracy": pytest.approx(2 / 3), "acc_plus": 0.5, "n_groups": 2}
    assert official["categories"]["long"] == {"n": 2, "accuracy": 0.5, "acc_plus": 0.0, "n_groups": 1}
    assert official_summary(pairs, "mm-rlhf-rewardbench")["official"] == official
