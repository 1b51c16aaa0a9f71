"""What a rollout batch says about a judge's verdicts: does it read the pair, or name a position?

Logged per generation under `stable_reinforce/` (see `StableReinforceTrainer._log_verdicts`), over the
global batch. A judge that reads names Response 1 on label-1 rows and Response 2 on label-2 rows
(`p_verdict_1_label_1` near 1, `p_verdict_1_label_2` near 0); one locked on a position names it on both
(the two equal). RL can only move such a judge if some of its samples are right on the pairs it gets
wrong: `wrong_groups_sampling_right` is that share, and at 0 no advantage points the way out.
"""

from __future__ import annotations

import math

import torch


def _share(part: torch.Tensor, whole: torch.Tensor) -> float:
    n = whole.sum().item()
    return (part & whole).sum().item() / n if n else math.nan


def _mean(values: torch.Tensor, where: torch.Tensor) -> float:
    return values[where].mean().item() if where.any() else math.nan


def verdict_stats(verdicts: torch.Tensor, labels: torch.Tensor, advantages: torch.Tensor, group_size: int) -> dict:
    """`verdicts` (N,): 1, 2, or 0 for no parseable verdict; `labels` (N,): 1 or 2; `advantages` (N,): each
    rollout's advantage; rows in groups of `group_size` rollouts of one prompt. NaN where a share has no rows."""
    parsed, one = verdicts > 0, verdicts == 1
    right = verdicts == labels
    groups = right.view(-1, group_size).float()
    wrong_groups = groups.mean(1) < 0.5
    return {
        "p_verdict_1": _share(one, parsed),
        "p_label_1": (labels == 1).float().mean().item(),
        "p_verdict_1_label_1": _share(one, parsed & (labels == 1)),
        "p_verdict_1_label_2": _share(one, parsed & (labels == 2)),
        "advantage_verdict_1": _mean(advantages, one),
        "advantage_verdict_2": _mean(advantages, verdicts == 2),
        "groups_sampling_right": (groups.max(1).values > 0).float().mean().item(),
        "wrong_groups_sampling_right": _share(groups.max(1).values > 0, wrong_groups),
    }
