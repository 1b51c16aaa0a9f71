"""`StableReinforceConfig`: TRL's `GRPOConfig` plus only the knobs StableReinforce adds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl import GRPOConfig

# Loss types whose objective is the PPO clipped surrogate `-min(r A, clip(r) A)`: they differ only in
# how per-token losses are averaged, so the pre-clipped ratio drops in unchanged. The others
# (cispo, sapo, vespo) build a different objective from the ratio and are rejected.
PPO_CLIP_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")


@dataclass
class StableReinforceConfig(GRPOConfig):
    r"""
    Configuration for [`StableReinforceTrainer`]: every [`~trl.GRPOConfig`] field, plus StableReinforce's.

    Defaults follow the R1-Reward paper (arXiv 2505.02835). Where its reference code differs, the
    field's help says how to reproduce it.

    Parameters:
        > StableReinforce: the loss

        pre_clip (`bool`, *optional*, defaults to `True`):
            Clamp the log importance ratio to `[log pre_clip_ratio_min, log pre_clip_ratio_max]` *before*
            exponentiating, so the ratio (and its gradient) stays finite however far the policy drifts.
        pre_clip_ratio_min (`float`, *optional*, defaults to `1e-3`):
            Lower bound of the pre-clipped ratio.
        pre_clip_ratio_max (`float`, *optional*, defaults to `1e3`):
            Upper bound of the pre-clipped ratio.

        > StableReinforce: the advantages

        advantage_baseline (`str`, *optional*, defaults to `"batch"`):
            The mean subtracted from each reward: `"batch"`, the global batch mean (Reinforce++, the paper), or
            `"group"`, the mean of the prompt's `num_generations` samples (GRPO). The scaling is TRL's
            `scale_rewards` (`"batch"` here by default, the paper's global standardization).
        scale_rewards (`str` or `bool`, *optional*, defaults to `"batch"`):
            TRL's field with TRL's meaning: divide the advantages by the reward std of the global `"batch"`
            (the paper's standardization, hence this default), of each `"group"` (`True`, TRL's default) or
            not at all (`"none"`, `False`, Dr. GRPO).
        advantage_statistics (`str`, *optional*, defaults to `"sequence"`):
            What each mean and standard deviation of the advantage pipeline weighs: `"sequence"`, every
            completion once (the paper), or `"token"`, every completion token of the global batch
            (length-weighted, as the reference script's buffer normalization).
        advantage_filter (`bool`, *optional*, defaults to `True`):
            Set every advantage whose z-score over the global batch exceeds `advantage_filter_sigma` to 0 (the
            sample stays in the batch with no gradient), whatever `scale_rewards` and the baseline are.
        advantage_filter_sigma (`float`, *optional*, defaults to `3.0`):
            The filter's threshold, in standard deviations.
        kl_in_reward (`bool`, *optional*, defaults to `False`):
            With `beta > 0`, penalize the reference's way instead of TRL's: `k1 = old - ref` per token,
            times `beta`, subtracted from the per-token reward at rollout time (no gradient through it); the
            per-token returns then go through the same baseline, scaling and filter. `False` keeps TRL's
            in-loss KL term.

        > StableReinforce: the rollouts

        position_balanced (`bool`, *optional*, defaults to `True`):
            Put every pair of a rollout batch in both orders (responses exchanged in the judge prompt, label
            flipped, same image or video), so that the batch's labels are exactly half "1" and a position prior
            earns no reward. The batch keeps its size, so it holds half as many distinct pairs, and an epoch
            runs over both orders (twice the steps). Needs judge rows (a `label_column` and the R1-Reward judge
            prompt) in a map-style dataset; a dataset without `label_column` trains unbalanced with a warning.
            The paper samples pairs in one order: `False`.
        order_consistency_weight (`float`, *optional*, defaults to `0.0`):
            With `position_balanced`: add `weight * right * (share of right rollouts of the same pair in the
            other order)` to each rollout's reward (`algorithms.order_consistency`), J1's reward for a verdict
            that holds in both orders. A judge that names one position everywhere earns nothing from it.

        > StableReinforce: the reward (used when the trainer gets no `reward_funcs`)

        referee (`str`, *optional*, defaults to `"rule"`):
            Who scores consistency between reasoning and answer: `"openai"` (any OpenAI-compatible endpoint,
            e.g. `vllm serve Qwen/Qwen2.5-VL-7B-Instruct`), `"transformers"` (a local model), `"rule"` (no
            model: the verdict stated at the end of the reasoning), or `"none"` (no consistency term).
        referee_base_url (`str` or `None`, *optional*):
            Endpoint of the `"openai"` referee; defaults to `$STABLE_REINFORCE_REFEREE_BASE_URL`.
        referee_model (`str`, *optional*, defaults to `"Qwen/Qwen2.5-VL-7B-Instruct"`):
            Model name sent to the endpoint, or the path loaded by the `"transformers"` referee.
        referee_api_key (`str` or `None`, *optional*):
            Key for the endpoint; defaults to `$STABLE_REINFORCE_REFEREE_API_KEY`, then `"EMPTY"`. Never logged.
        referee_max_concurrency (`int`, *optional*, defaults to `32`):
            Referee requests in flight at once.
        referee_timeout (`float`, *optional*, defaults to `60.0`):
            Seconds per referee call before it counts as failed.
        referee_max_retries (`int`, *optional*, defaults to `3`):
            Retries (with exponential backoff) of a failed or unparseable referee call.
        referee_reasoning_lines (`int` or `None`, *optional*):
            Send the referee only the last N lines of the reasoning (the reference code sends 3); `None`
            sends all of it.
        referee_attach_image (`bool`, *optional*, defaults to `False`):
            Attach the sample's image to the referee request.
        consistency_mode (`str`, *optional*, defaults to `"paper"`):
            `"paper"`: consistency is 1 (consistent) or 0. `"reference"`: +1 / -1, and 0 when the referee
            fails, as in the reference code.
        consistency_weight (`float`, *optional*, defaults to `0.5`):
            Reward is `result * (1 + consistency_weight * consistency) + format_weight * format`.
        format_weight (`float`, *optional*, defaults to `0.5`):
            See `consistency_weight`.
        format_mode (`str`, *optional*, defaults to `"strict"`):
            `"strict"`: the reference's check `^<think>.*?</think><answer>.*?</answer>$` (one of each tag,
            nothing between the blocks). `"lenient"`: whitespace allowed around and between them.
        label_column (`str`, *optional*, defaults to `"label"`):
            Dataset column holding the preferred response's index, `"1"` or `"2"`.
    """

    pre_clip: bool = field(default=True, metadata={"help": "Clamp the log-ratio before exp (StableReinforce)."})
    pre_clip_ratio_min: float = field(default=1e-3, metadata={"help": "Lower bound of the pre-clipped ratio."})
    pre_clip_ratio_max: float = field(default=1e3, metadata={"help": "Upper bound of the pre-clipped ratio."})

    advantage_baseline: str = field(
        default="batch", metadata={"help": "'batch' (Reinforce++, the paper) or 'group' (GRPO).", "choices": ["batch", "group"]}
    )
    advantage_statistics: str = field(
        default="sequence",
        metadata={"help": "Advantage means/stds weigh each 'sequence' (paper) or each 'token' (reference).", "choices": ["sequence", "token"]},
    )
    advantage_filter: bool = field(default=True, metadata={"help": "Zero advantages beyond advantage_filter_sigma."})
    advantage_filter_sigma: float = field(default=3.0, metadata={"help": "Advantage filter threshold, in std devs."})
    kl_in_reward: bool = field(
        default=False, metadata={"help": "With beta > 0: fold k1 = old - ref into the per-token reward (reference) instead of TRL's in-loss KL."}
    )

    position_balanced: bool = field(
        default=True, metadata={"help": "Both orders of every pair in each rollout batch (False: the paper's one order)."}
    )
    order_consistency_weight: float = field(
        default=0.0,
        metadata={"help": "With position_balanced: weight of the reward for a verdict right in both orders of its pair."},
    )

    referee: str = field(
        default="rule",
        metadata={"help": "Consistency referee: openai, transformers, rule or none.", "choices": ["openai", "transformers", "rule", "none"]},
    )
    referee_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible referee endpoint."})
    referee_model: str = field(default="Qwen/Qwen2.5-VL-7B-Instruct", metadata={"help": "Referee model name or path."})
    referee_api_key: str | None = field(default=None, metadata={"help": "Referee API key (never logged)."})
    referee_max_concurrency: int = field(default=32, metadata={"help": "Referee requests in flight at once."})
    referee_timeout: float = field(default=60.0, metadata={"help": "Seconds per referee call."})
    referee_max_retries: int = field(default=3, metadata={"help": "Retries of a failed referee call."})
    referee_reasoning_lines: int | None = field(default=None, metadata={"help": "Last N reasoning lines sent (None: all)."})
    referee_attach_image: bool = field(default=False, metadata={"help": "Send the image to the referee."})
    consistency_mode: str = field(
        default="paper", metadata={"help": "'paper' {1, 0} or 'reference' {+1, -1, 0}.", "choices": ["paper", "reference"]}
    )
    consistency_weight: float = field(default=0.5, metadata={"help": "Weight of consistency in the R1 reward."})
    format_weight: float = field(default=0.5, metadata={"help": "Weight of formatting in the R1 reward."})
    format_mode: str = field(
        default="strict",
        metadata={"help": "'strict' (the reference's pattern) or 'lenient' (whitespace between tags).", "choices": ["strict", "lenient"]},
    )
    label_column: str = field(default="label", metadata={"help": "Column with the preferred index, '1' or '2'."})

    # The paper averages each response's per-token losses ("grpo"); TRL's default is "dapo".
    loss_type: str = field(default="grpo", metadata={"help": GRPOConfig.__dataclass_fields__["loss_type"].metadata["help"]})
    # The paper standardizes over the global batch; TRL's default is "group". Every TRL value is accepted.
    scale_rewards: str = field(
        default="batch",
        metadata={"help": "Divide advantages by the reward std of the global 'batch' (the paper), each 'group' (TRL's default, True) or 'none' (False)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.pre_clip and not 0 < self.pre_clip_ratio_min < 1 < self.pre_clip_ratio_max:
            raise ValueError(
                f"pre_clip_ratio_min ({self.pre_clip_ratio_min}) must lie in (0, 1) and pre_clip_ratio_max "
                f"({self.pre_clip_ratio_max}) above 1: the window must contain ratio 1."
            )
        if self.advantage_filter and self.advantage_filter_sigma <= 0:
            raise ValueError(f"advantage_filter_sigma must be positive, got {self.advantage_filter_sigma}.")
        if self.loss_type not in PPO_CLIP_LOSS_TYPES:
            raise ValueError(
                f"loss_type={self.loss_type!r} builds its own objective from the importance ratio, so StableReinforce's "
                f"pre-clipped PPO loss cannot apply. Use one of {PPO_CLIP_LOSS_TYPES} (the paper: 'grpo')."
            )
        # GRPOConfig maps True/False to "group"/"none"; TRL itself only rejects other values mid-training.
        for name, allowed in (
            ("scale_rewards", ("group", "batch", "none")),
            ("multi_objective_aggregation", ("sum_then_normalize", "normalize_then_sum")),
            ("advantage_baseline", ("batch", "group")),
            ("advantage_statistics", ("sequence", "token")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}.")
        if self.order_consistency_weight < 0 or (self.order_consistency_weight and not self.position_balanced):
            raise ValueError(
                f"order_consistency_weight={self.order_consistency_weight} needs position_balanced=True (both orders of "
                "a pair in one rollout batch) and a weight >= 0."
            )
        if self.kl_in_reward and self.beta == 0.0:
            raise ValueError("kl_in_reward=True needs beta > 0: beta is the coefficient of the k1 term in the reward.")

    def to_dict(self) -> dict:
        # to_dict feeds W&B's run config and training_args.bin: never let the referee's key into either.
        d = super().to_dict()
        if d.get("referee_api_key"):
            d["referee_api_key"] = "<redacted>"
        return d

    @property
    def log_ratio_bounds(self) -> tuple[float, float] | None:
        """The pre-clip window in log space, or None when pre-clip is off."""
        if not self.pre_clip:
            return None
        return (math.log(self.pre_clip_ratio_min), math.log(self.pre_clip_ratio_max))

    @property
    def advantage_sigma(self) -> float | None:
        return self.advantage_filter_sigma if self.advantage_filter else None
