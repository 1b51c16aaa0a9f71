"""StableReinforce's math as plain tensor functions: no trainer state, no distributed calls.

Everything the trainer does to rewards, advantages and log-probs that differs from TRL's GRPO
lives here, so it can be read and tested on its own (the way verl keeps its estimators).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

#: The paper's pre-clip window: the log-ratio is clamped to [log 1e-3, log 1e3] *before* exp.
DEFAULT_LOG_RATIO_BOUNDS: tuple[float, float] = (math.log(1e-3), math.log(1e3))

Baseline = Literal["group", "batch"]
Scaling = Literal["group", "batch", "none"]
Scope = Literal["group", "batch"]


def pre_clipped_ratio(
    logps: torch.Tensor, old_logps: torch.Tensor, log_ratio_bounds: tuple[float, float] | None = DEFAULT_LOG_RATIO_BOUNDS
) -> torch.Tensor:
    """`exp(clamp(logps - old_logps, *bounds))`. Clamping first keeps the ratio (and its gradient)
    finite: TRL's `delta` clamps after `exp`, when the overflow has already happened."""
    log_ratio = logps - old_logps
    if log_ratio_bounds is not None:
        log_ratio = log_ratio.clamp(*log_ratio_bounds)
    return torch.exp(log_ratio)


def per_token_policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    *,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    log_ratio_bounds: tuple[float, float] | None = DEFAULT_LOG_RATIO_BOUNDS,
) -> torch.Tensor:
    """The PPO clipped surrogate per token, on the pre-clipped ratio:
    `-min(r * A, clamp(r, 1 - eps, 1 + eps_high) * A)` with `r = exp(clamp(logps - old_logps, *bounds))`.

    `advantages` is per sequence (B,) or per token (B, T). `log_ratio_bounds=None` gives the
    unprotected loss of plain PPO / Reinforce++ (kept for ablations and tests).
    """
    if advantages.dim() == logps.dim() - 1:
        advantages = advantages.unsqueeze(-1)
    ratio = pre_clipped_ratio(logps, old_logps, log_ratio_bounds)
    eps_high = epsilon if epsilon_high is None else epsilon_high
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + eps_high)
    return -torch.min(ratio * advantages, clipped * advantages)


def _weights(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Each value's weight in a mean or std: 0 for NaN/Inf values, else `weights` (default 1)."""
    w = torch.ones_like(values) if weights is None else weights.to(values.dtype).expand_as(values)
    return torch.where(torch.isfinite(values), w, torch.zeros_like(w))


def _scoped(x: torch.Tensor, scope: Scope, group_size: int) -> torch.Tensor:
    """View `x` as one row per scope: a group is `group_size` consecutive samples (all their tokens)."""
    if scope == "batch":
        return x.reshape(1, -1)
    if x.size(0) % group_size:
        raise ValueError(f"{x.size(0)} rewards do not split into groups of {group_size}")
    return x.reshape(x.size(0) // group_size, -1)


def weighted_mean_std(
    values: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    scope: Scope = "batch",
    group_size: int = 1,
    unbiased: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and std per scope, broadcast back to `values`' shape. NaN/Inf values weigh 0; a
    scope with no weight gets mean 0 and std 0. The std is the population one unless `unbiased`
    (Bessel's correction, as TRL's `nanstd`; meant for unit weights)."""
    w = _scoped(_weights(values, weights), scope, group_size)
    x = _scoped(torch.where(w.view_as(values) > 0, values, torch.zeros_like(values)), scope, group_size)
    total = w.sum(-1, keepdim=True)
    tiny = torch.finfo(x.dtype).tiny
    mean = (w * x).sum(-1, keepdim=True) / total.clamp(min=tiny)
    var = (w * (x - mean) ** 2).sum(-1, keepdim=True) / (total - 1 if unbiased else total).clamp(min=tiny)
    return mean.expand_as(x).reshape(values.shape), var.sqrt().expand_as(x).reshape(values.shape)


def advantage_baseline(
    rewards: torch.Tensor, baseline: Baseline, group_size: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Rewards minus a baseline: the mean of each prompt's `group_size` consecutive samples (GRPO),
    or the mean of the whole batch (Reinforce++, the paper's choice). NaN rewards (unscorable
    samples) are left out of the means and stay NaN. `weights` weigh each value in the means."""
    if baseline not in ("group", "batch"):
        raise ValueError(f"baseline must be 'group' or 'batch', got {baseline!r}")
    return rewards - weighted_mean_std(rewards, weights, scope=baseline, group_size=group_size)[0]


def zscores(values: torch.Tensor, weights: torch.Tensor | None = None, *, min_std: float = 1e-6) -> torch.Tensor:
    """`(values - mean) / std` over every value given (weighted); 0 where the spread is below `min_std`
    (all values equal, up to float error) and where a value is NaN/Inf."""
    mean, std = weighted_mean_std(values, weights)
    z = torch.where(std > min_std, (values - mean) / std.clamp(min=min_std), torch.zeros_like(values))
    return torch.where(torch.isfinite(values), z, torch.zeros_like(z))


def standardize_and_filter(
    advantages: torch.Tensor, *, sigma: float | None = 3.0, min_std: float = 1e-6, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardize over every value given, then zero each `|z| > sigma` (the Advantage Filter).

    Returns `(advantages, filtered)` where `filtered` marks the zeroed entries. Filtered samples
    stay in the batch with no gradient; NaN/Inf advantages become 0 and count as filtered.
    `sigma=None` standardizes only. A batch whose spread is below `min_std` (all rewards equal, up
    to float error) carries no signal and gets all-zero advantages rather than amplified rounding noise.
    """
    z = zscores(advantages, weights, min_std=min_std)
    filtered = ~torch.isfinite(advantages)
    if sigma is not None:
        filtered = filtered | (z.abs() > sigma)
    return torch.where(filtered, torch.zeros_like(z), z), filtered


def scale_advantages(
    centred: torch.Tensor,
    rewards: torch.Tensor,
    scale: Scaling,
    group_size: int,
    weights: torch.Tensor | None = None,
    min_std: float = 1e-6,
) -> torch.Tensor:
    """TRL's `scale_rewards`: divide by the std of the rewards within each group (`"group"`) or over
    the batch (`"batch"`), or not at all (`"none"`). Unweighted, this is TRL's formula exactly
    (`/ (nanstd + 1e-4)`, Bessel-corrected); weighted (token statistics), the reference script's
    population std over tokens. A scope whose rewards are all equal is left unscaled."""
    if scale == "none":
        return centred
    if scale not in ("group", "batch"):
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    std = weighted_mean_std(rewards, weights, scope=scale, group_size=group_size, unbiased=weights is None)[1]
    return torch.where(std > min_std, centred / (std + 1e-4 if weights is None else std), centred)


def stable_reinforce_advantages(
    rewards: torch.Tensor,
    *,
    baseline: Baseline,
    group_size: int,
    sigma: float | None = 3.0,
    scale: Scaling = "batch",
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole advantage pipeline over a global batch: baseline, scaling, sigma filter.

    `rewards` is one value per completion (N,), or per-token returns (N, T) (the KL folded into the
    reward, `per_token_returns`). `weights` (same shape) weighs each value in every mean and std:
    `None` counts each completion once (the paper); completion lengths (N,) or the completion mask
    (N, T) weigh every token (the reference script); 0 leaves a value out (padding).

    How the options combine (TRL's `scale_rewards` keeps TRL's meaning for the scaling):

    - `baseline` chooses the mean subtracted: the group's (`"group"`) or the global batch's (`"batch"`).
    - `scale` divides by the std of the rewards in the group (`"group"`, TRL's default), in the global
      batch (`"batch"`, the paper), or not at all (`"none"`, Dr. GRPO).
    - The filter (`sigma`) then zeroes every advantage whose z-score over the *global batch* exceeds
      `sigma`, in every combination; the advantages kept are the scaled values, not the z-scores.

    So `("batch", "batch")` is the paper's `(r - mean) / std` over the batch (scaled values and
    z-scores coincide), `("group", "group")` is GRPO's, `("group", "batch")` is TRL's
    `scale_rewards="batch"` (PPO Lite), `("group", "none")` is Dr. GRPO's, each with the global filter.
    NaN rewards (unscorable) get advantage 0 and count as filtered.
    """
    scaled = _scaled(rewards, baseline, group_size, scale, weights)
    filtered = ~torch.isfinite(scaled)
    if sigma is not None:
        filtered = filtered | (zscores(scaled, weights).abs() > sigma)
    return torch.where(filtered, torch.zeros_like(scaled), scaled), filtered


def advantage_zscores(
    rewards: torch.Tensor,
    *,
    baseline: Baseline,
    group_size: int,
    scale: Scaling = "batch",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The z-scores over the global batch the filter of `stable_reinforce_advantages` decides on."""
    return zscores(_scaled(rewards, baseline, group_size, scale, weights), weights)


def _scaled(rewards, baseline, group_size, scale, weights):
    centred = advantage_baseline(rewards, baseline, group_size, weights)
    return scale_advantages(centred, rewards, scale, group_size, weights)


def normalize_then_sum(rewards_per_func: torch.Tensor, reward_weights: torch.Tensor, group_size: int) -> torch.Tensor:
    """TRL's `multi_objective_aggregation="normalize_then_sum"` (GDPO) before its batch step: each reward
    function standardized within its group (TRL's unbiased std + 1e-4), then the weighted sum. A row every
    function skipped (all NaN) stays NaN; StableReinforce's baseline, scaling and filter follow."""
    grouped = rewards_per_func.view(-1, group_size, rewards_per_func.size(1))
    mean = grouped.nanmean(dim=1, keepdim=True)
    if group_size > 1:
        count = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
        var = ((grouped - mean) ** 2).nansum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
        std = var.sqrt()
    else:
        std = torch.zeros_like(mean)
    normalized = ((grouped - mean) / (std + 1e-4)).view_as(rewards_per_func)
    summed = (normalized * reward_weights.to(normalized).unsqueeze(0)).nansum(dim=1)
    summed[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return summed


def reward_to_go(token_rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`sum_{s >= t} r_s` over each row's masked tokens (returns with gamma 1)."""
    r = token_rewards * mask
    return r.flip(-1).cumsum(-1).flip(-1)


def per_token_returns(rewards: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, coef: float) -> torch.Tensor:
    """The reference script's returns: the KL folded into the reward, `-coef * kl_t` at every token and
    the sequence reward at the last, with gamma 1, so `G_t = reward - coef * sum_{s >= t} kl_s`. No
    gradient flows through it (detached); padding positions get the sequence reward (weigh them 0)."""
    return (rewards.unsqueeze(-1) - coef * reward_to_go(kl.detach(), mask)).detach()


def order_consistency(right: torch.Tensor, pairs: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """J1's order-consistency reward, in expectation over the other order's samples: each rollout's
    `right` (1/0) times the share of right rollouts of the same pair (`pairs`) shown in the other order
    (`orders`: 0 or 1); 0 where the other order has no rollout in the batch.

    A judge naming one position everywhere is right in one order only, so it earns nothing here; one that
    names it a share q of the time earns, per right verdict, 1 - q in one order and q in the other: the
    pull is back toward reading the pair."""
    key = pairs.long() * 2 + orders.long()
    size = int(key.max()) + 2 if key.numel() else 0
    right = right.float()
    hits = torch.zeros(size, dtype=right.dtype, device=right.device).index_add_(0, key, right)
    count = torch.zeros(size, dtype=right.dtype, device=right.device).index_add_(0, key, torch.ones_like(right))
    other = key ^ 1
    return right * hits[other] / count[other].clamp(min=1)
