"""The StableReinforce math, function by function, including the paper's worked examples."""

import math

import pytest
import torch

from stable_reinforce_trl.algorithms import (
    DEFAULT_LOG_RATIO_BOUNDS,
    advantage_baseline,
    advantage_zscores,
    normalize_then_sum,
    order_consistency,
    per_token_returns,
    per_token_policy_loss,
    pre_clipped_ratio,
    stable_reinforce_advantages,
    standardize_and_filter,
)

# The paper's worked example (Section on Pre-CLIP).
LOGPS = torch.tensor([[-0.1, -0.1, -0.1, -0.1]])
OLD = torch.tensor([[-10.0, -0.2, -0.2, -5.0]])
ADV = torch.tensor([[-1.0, -1.0, 0.5, -0.5]])


def test_worked_example_without_pre_clip_overflows_the_useful_range():
    loss = per_token_policy_loss(LOGPS, OLD, ADV, log_ratio_bounds=None)[0]
    assert loss.tolist() == pytest.approx([19930.4, 1.105, -0.5526, 67.14], rel=1e-3)


def test_worked_example_with_pre_clip_caps_the_ratio_at_1000():
    loss = per_token_policy_loss(LOGPS, OLD, ADV)[0]
    assert loss.tolist() == pytest.approx([1000.0, 1.105, -0.5526, 67.14], rel=1e-3)


def test_sequence_level_advantages_broadcast_over_tokens():
    per_seq = per_token_policy_loss(LOGPS, OLD, torch.tensor([-1.0]))
    per_tok = per_token_policy_loss(LOGPS, OLD, torch.full((1, 4), -1.0))
    assert torch.equal(per_seq, per_tok)


def test_pre_clip_keeps_loss_and_gradient_finite_where_exp_overflows():
    # log-ratio 200: exp overflows float32 (max ~ e^88).
    old = torch.tensor([[-200.5, -0.3]])
    for bounds, finite in ((DEFAULT_LOG_RATIO_BOUNDS, True), (None, False)):
        logps = torch.tensor([[-0.5, -0.2]], requires_grad=True)
        loss = per_token_policy_loss(logps, old, torch.tensor([-1.0])).sum() if bounds else per_token_policy_loss(
            logps, old, torch.tensor([-1.0]), log_ratio_bounds=None
        ).sum()
        loss.backward()
        assert bool(torch.isfinite(loss)) is finite
        assert bool(torch.isfinite(logps.grad).all()) is finite
    # Inside the window the gradient is the ordinary PPO one; outside it is zero (the clamp's).
    logps = torch.tensor([[-0.5, -0.2]], requires_grad=True)
    per_token_policy_loss(logps, old, torch.tensor([-1.0])).sum().backward()
    assert logps.grad[0, 0] == 0.0 and logps.grad[0, 1] != 0.0


def test_pre_clipped_ratio_window():
    ratio = pre_clipped_ratio(torch.tensor([0.0, 0.0, 0.0]), torch.tensor([-50.0, 50.0, 0.1]))
    assert ratio.tolist() == pytest.approx([1e3, 1e-3, math.exp(-0.1)], rel=1e-5)


def test_ppo_clip_with_asymmetric_epsilon():
    logps, old = torch.tensor([[0.5]]), torch.tensor([[0.0]])  # ratio e^0.5 = 1.65
    loss = per_token_policy_loss(logps, old, torch.tensor([1.0]), epsilon=0.2, epsilon_high=0.28)
    assert loss.item() == pytest.approx(-1.28)


def test_255_ones_and_one_zero_zero_is_filtered_others_untouched():
    rewards = torch.ones(256)
    rewards[17] = 0.0
    z, _ = standardize_and_filter(rewards - rewards.mean(), sigma=None)
    assert z[17].item() == pytest.approx(-15.97, abs=0.01)  # the paper's "about -15.96"
    advantages, filtered = stable_reinforce_advantages(rewards, baseline="batch", group_size=1, sigma=3.0)
    assert advantages[17].item() == 0.0 and filtered[17] and filtered.sum() == 1
    others = torch.cat([advantages[:17], advantages[18:]])
    # The values kept are TRL's batch scaling, (r - mean) / (std + 1e-4) with Bessel's correction.
    trl = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
    assert torch.allclose(others, torch.cat([trl[:17], trl[18:]]))
    assert others[0].item() == pytest.approx(0.0625, abs=1e-3)


def test_standardize_without_filter_and_nonfinite():
    adv = torch.tensor([1.0, 2.0, float("nan"), 3.0, float("inf")])
    z, filtered = standardize_and_filter(adv, sigma=None)
    assert filtered.tolist() == [False, False, True, False, True]
    assert z[2] == 0 and z[4] == 0
    assert z[[0, 1, 3]].tolist() == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)


def test_standardize_constant_batch_gives_zeros_not_nan():
    z, filtered = standardize_and_filter(torch.full((8,), 0.7))
    assert torch.equal(z, torch.zeros(8)) and not filtered.any()


def test_baselines():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert advantage_baseline(rewards, "group", 2).tolist() == [0.5, -0.5, 0.0, 0.0]
    assert advantage_baseline(rewards, "batch", 2).tolist() == [0.25, -0.75, 0.25, 0.25]
    with pytest.raises(ValueError, match="groups of 3"):
        advantage_baseline(rewards, "group", 3)


def test_group_baseline_ignores_unscorable_rewards():
    rewards = torch.tensor([1.0, float("nan"), 0.0, 0.0])
    advantages, filtered = stable_reinforce_advantages(rewards, baseline="group", group_size=2, sigma=3.0)
    assert advantages[1] == 0 and filtered[1]
    assert torch.isfinite(advantages).all()


# --- every TRL scale_rewards value, with the filter on global z-scores -------------------------------------------
REWARDS = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 1.0, 0.2, 0.0])  # 4 groups of 2


def trl_advantages(rewards, group_size, scale):
    """TRL 1.16's sum_then_normalize advantages (grpo_trainer.py), written out."""
    grouped = rewards.view(-1, group_size)
    centred = (grouped - grouped.mean(1, keepdim=True)).view(-1)
    if scale == "none":
        return centred
    std = grouped.std(1, keepdim=True).expand_as(grouped).reshape(-1) if scale == "group" else rewards.std()
    return centred / (std + 1e-4)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_baseline_with_each_scaling_is_trls_advantages(scale):
    ours, filtered = stable_reinforce_advantages(REWARDS, baseline="group", group_size=2, scale=scale, sigma=None)
    assert not filtered.any()
    assert torch.allclose(ours, trl_advantages(REWARDS, 2, scale), atol=1e-6)


def test_batch_baseline_takes_the_batch_mean_under_each_scaling():
    centred = REWARDS - REWARDS.mean()
    for scale, expected in (("none", centred), ("batch", centred / (REWARDS.std() + 1e-4))):
        ours, _ = stable_reinforce_advantages(REWARDS, baseline="batch", group_size=2, scale=scale, sigma=None)
        assert torch.allclose(ours, expected, atol=1e-6), scale
    ours, _ = stable_reinforce_advantages(REWARDS, baseline="batch", group_size=2, scale="group", sigma=None)
    group_std = REWARDS.view(-1, 2).std(1).repeat_interleave(2)
    # A group whose rewards are all equal (the second) is left unscaled: TRL would divide by 1e-4.
    expected = torch.where(group_std > 0, centred / (group_std + 1e-4), centred)
    assert torch.allclose(ours, expected, atol=1e-6) and ours[2] == centred[2]


def test_filter_decides_on_global_z_whatever_the_scaling():
    # Group scaling makes every group's pair +-0.707: no outlier within any group. Over the batch, the one
    # group with a large spread (rewards 0 and 30) is the outlier under "none": the filter must see that.
    rewards = torch.tensor([0.0, 30.0] + [0.0, 1.0] * 15)
    kept, filtered = stable_reinforce_advantages(rewards, baseline="group", group_size=2, scale="none", sigma=3.0)
    assert filtered.tolist() == [True, True] + [False] * 30 and kept[:2].tolist() == [0.0, 0.0]
    assert torch.allclose(kept[2:], trl_advantages(rewards, 2, "none")[2:])
    z = advantage_zscores(rewards, baseline="group", group_size=2, scale="none")
    assert z[:2].abs().min() > 3 and z[2:].abs().max() < 3
    _, filtered = stable_reinforce_advantages(rewards, baseline="group", group_size=2, scale="group", sigma=3.0)
    assert not filtered.any()  # every scaled advantage is +-0.707: the same z-score everywhere


def test_token_statistics_weigh_each_completion_by_its_length():
    # The reference: every completion token of the batch carries its sequence's reward; mean and std over tokens.
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    lengths = torch.tensor([2.0, 9.0, 7.0, 3.0, 8.0])  # wrong answers are longer
    tokens = rewards.repeat_interleave(lengths.long())
    expected = (rewards - tokens.mean()) / tokens.std(unbiased=False)
    ours, _ = stable_reinforce_advantages(rewards, baseline="batch", group_size=1, weights=lengths, sigma=None)
    assert torch.allclose(ours, expected, atol=1e-5)
    by_sequence, _ = stable_reinforce_advantages(rewards, baseline="batch", group_size=1, sigma=None)
    assert not torch.allclose(ours, by_sequence, atol=1e-2)
    # A per-token (N, T) input with the completion mask as weights is the same computation.
    mask = (torch.arange(9) < lengths.unsqueeze(1)).float()
    per_token, _ = stable_reinforce_advantages(rewards.unsqueeze(1).expand(-1, 9), baseline="batch", group_size=1, weights=mask, sigma=None)
    assert torch.allclose(per_token[mask.bool()], expected.repeat_interleave(lengths.long()), atol=1e-5)


def test_kl_in_reward_is_reward_to_go_of_k1():
    # G_t = R - coef * sum_{s >= t} k1_s over the masked tokens (gamma 1), no gradient.
    kl = torch.tensor([[0.5, 1.0, 2.0, 9.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    returns = per_token_returns(torch.tensor([1.0]), kl, mask, coef=0.1)
    assert returns[0, :3].tolist() == pytest.approx([1 - 0.35, 1 - 0.3, 1 - 0.2])
    assert not returns.requires_grad


def test_normalize_then_sum_is_trls_before_the_batch_step():
    per_func = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.5], [float("nan"), float("nan")], [1.0, 0.0]])
    weights = torch.tensor([1.0, 0.5])
    grouped = per_func.view(-1, 2, 2)
    trl = ((grouped - grouped.nanmean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).view(-1, 2)
    expected = (trl * weights).nansum(1)
    ours = normalize_then_sum(per_func, weights, group_size=2)
    assert torch.isnan(ours[4]) and torch.allclose(ours[:4], expected[:4], atol=1e-4)
    # then the default pipeline is TRL's batch step, (x - mean) / (std + 1e-4), unscorable row -> 0
    advantages, _ = stable_reinforce_advantages(ours, baseline="batch", group_size=2, sigma=None)
    finite = ours[~torch.isnan(ours)]
    assert advantages[4] == 0
    assert torch.allclose(advantages[:4], (ours[:4] - finite.mean()) / (finite.std() + 1e-4), atol=1e-5)


# --- order consistency (J1's reward for a verdict that holds in both orders) -------------------------------------


def test_order_consistency_pays_a_right_verdict_by_the_other_orders_share_of_right_ones():
    pairs = torch.tensor([0] * 8 + [1] * 8)
    orders = torch.tensor(([0] * 4 + [1] * 4) * 2)
    right = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0] + [1, 1, 1, 1, 0, 0, 0, 0])
    # pair 0: half right in order 0, a quarter in order 1; pair 1: right in order 0 only (a position prior).
    expected = [0.25, 0.25, 0, 0, 0.5, 0, 0, 0] + [0] * 8
    assert order_consistency(right, pairs, orders).tolist() == expected


def test_order_consistency_pulls_a_position_prior_back_toward_reading():
    """A judge naming Response 1 a share q of the time, whatever the pair: a right verdict earns 1 - q where the
    label is 1 and q where it is 2, so the rarer position is paid more."""
    for q in (0.25, 0.75):
        names_1 = torch.tensor([1, 0, 0, 0] if q == 0.25 else [1, 1, 1, 0])
        right = torch.cat([names_1, 1 - names_1])  # order 0: label 1; order 1: label 2
        paid = order_consistency(right, torch.zeros(8, dtype=torch.long), torch.tensor([0] * 4 + [1] * 4))
        assert paid[:4][names_1 == 1].unique().tolist() == [1 - q]
        assert paid[4:][names_1 == 0].unique().tolist() == [q]


def test_order_consistency_without_the_other_order_pays_nothing():
    paid = order_consistency(torch.ones(4), torch.tensor([3, 3, 5, 5]), torch.tensor([0, 0, 1, 1]))
    assert paid.tolist() == [0.0] * 4
