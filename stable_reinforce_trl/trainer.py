"""`StableReinforceTrainer`: TRL's `GRPOTrainer` with StableReinforce's three hooks.

- reward: with no `reward_funcs`, the R1 reward (format + result + consistency) built from the config;
- advantages: recomputed from the rewards TRL gathered over all processes (baseline, global
  standardization, sigma filter) and swapped into TRL's batch;
- loss: TRL's own loss, handed old log-probs rewritten so that its `exp(logps - old)` is the pre-clipped
  ratio, while its KL term and off-policy mask see the true log-probs;
- step: an optimizer step whose gradients (or policy forward) hold a NaN/Inf is skipped, on every process.

Everything else (generation, vLLM, distribution, logging, checkpoints) is TRL's, unchanged. The math
lives in `algorithms.py`; this module only wires it in.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from trl import GRPOTrainer

from . import algorithms
from .checkpoints import RestoresFullCheckpoints
from .video import GRPOVideoInputs
from .config import StableReinforceConfig

METRIC_PREFIX = "stable_reinforce/"
logger = logging.getLogger(__name__)


@dataclass
class _PreClipState:
    """What the loss hook needs while TRL's `_compute_loss` runs: the batch TRL reads, and a counter of
    the tokens whose policy log-prob came out non-finite."""

    inputs: dict
    masked: int = 0


def _loss_mask(batch: dict) -> torch.Tensor:
    """The tokens TRL's loss counts: `completion_mask * tool_mask`, as `_compute_loss` builds it."""
    return batch["completion_mask"] if "tool_mask" not in batch else batch["completion_mask"] * batch["tool_mask"]


class StableReinforceTrainer(GRPOVideoInputs, RestoresFullCheckpoints, GRPOTrainer):
    """Drop-in replacement for [`~trl.GRPOTrainer`] that trains with StableReinforce (R1-Reward).

    Takes the same arguments as `GRPOTrainer`; `args` must be a [`StableReinforceConfig`]. When
    `reward_funcs` is omitted, the R1 reward is built from the config's `referee*`/`*_weight` fields.
    """

    _tag_names = ["trl", "stable-reinforce", "r1-reward"]
    _name = "StableReinforce"
    _paper = {  # the model card's "a method introduced in ..." and citation; TRL's default names GRPO's paper
        "title": "R1-Reward: Training Multimodal Reward Model Through Stable Reinforcement Learning",
        "id": "2505.02835",
        "citation": "@article{zhang2025r1reward,\n"
                    "    title   = {{R1-Reward: Training Multimodal Reward Model Through Stable Reinforcement Learning}},\n"
                    "    author  = {Yi-Fan Zhang and others},\n"
                    "    year    = 2025,\n"
                    "    eprint  = {arXiv:2505.02835},\n"
                    "}",
    }  # fmt: skip

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        # TRL names a base model only by hub id; one loaded from a local folder would read "[None]".
        super().create_model_card(model_name, dataset_name, tags)
        card = os.path.join(self.args.output_dir, "README.md")
        base = getattr(self.model.config, "_name_or_path", "")
        if self.is_world_process_zero() and base and os.path.isfile(card):
            text = open(card, encoding="utf-8").read()
            with open(card, "w", encoding="utf-8") as f:
                f.write(text.replace("[None](https://huggingface.co/None)", f"`{base}` (a local model)"))

    def __init__(self, model, reward_funcs=None, args: StableReinforceConfig | None = None, *pos, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = StableReinforceConfig(f"{str(name).split('/')[-1]}-StableReinforce")
        if not isinstance(args, StableReinforceConfig):
            raise TypeError(
                f"StableReinforceTrainer needs a StableReinforceConfig, got {type(args).__name__}. "
                "Replace GRPOConfig(...) with StableReinforceConfig(...): it takes every GRPOConfig argument."
            )
        if reward_funcs is None:
            from .rewards import build_r1_reward

            reward_funcs = [build_r1_reward(args)]
        self._pre_clip_state: _PreClipState | None = None
        self._gathered_rewards: torch.Tensor | None = None
        self._nonfinite_forwards = 0  # global count of non-finite policy log-probs in this accumulation window
        self._nonfinite_steps_skipped = 0
        super().__init__(model, reward_funcs, args, *pos, **kwargs)
        if self.is_deepspeed_enabled:
            logger.warning(
                "Under DeepSpeed the engine takes the optimizer step inside backward, so StableReinforce cannot skip a "
                "step whose gradients are NaN/Inf. ZeRO-1/2 skip it themselves with \"bf16\": {\"check_grad_overflow\": "
                "true} in the DeepSpeed config; ZeRO-3 in bf16 has no such check."
            )

    # ----------------------------------------------------------------------------------------- advantages
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # TRL returns rewards gathered over all processes: keep them for the global advantage pass.
        self._gathered_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._gathered_rewards

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        rewards_per_func, self._gathered_rewards = self._gathered_rewards, None
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        if self.args.multi_objective_aggregation == "normalize_then_sum":
            rewards = algorithms.normalize_then_sum(rewards_per_func, self.reward_weights, group_size)
        else:  # same weighting as TRL; a row every reward function skipped (all None) stays NaN -> advantage 0
            rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device)).nansum(dim=1)
            rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        values, weights, local_width = self._advantage_inputs(output, rewards, mode)
        options = dict(
            baseline=self.args.advantage_baseline, group_size=group_size, scale=self.args.scale_rewards, weights=weights
        )
        advantages, filtered = algorithms.stable_reinforce_advantages(values, sigma=self.args.advantage_sigma, **options)
        local = slice(self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs))
        output["advantages"] = advantages[local] if local_width is None else advantages[local, :local_width]

        # The completions table shows TRL's advantages for this batch: show ours (a sequence's mean if per token).
        shown = advantages
        if advantages.dim() == 2:
            shown = (advantages * (weights > 0)).sum(-1) / (weights > 0).sum(-1).clamp(min=1)
        logged = self._logs["advantages"]
        for _ in range(min(len(shown), len(logged))):
            logged.pop()
        logged.extend(shown.tolist())

        metrics = self._metrics[mode]
        counted = torch.ones_like(filtered) if weights is None else weights > 0
        filtered_frac = (filtered & counted).sum() / counted.sum().clamp(min=1)
        metrics[METRIC_PREFIX + "advantage_filtered_frac"].append(filtered_frac.item())
        max_abs_z = algorithms.advantage_zscores(values, **options).abs().max()
        metrics[METRIC_PREFIX + "advantage_max_abs_z"].append(max_abs_z.item())
        return output

    def _advantage_inputs(self, output: dict, rewards: torch.Tensor, mode: str):
        """What the advantage pipeline runs on, over the global batch: the rewards (N,) or, with
        `kl_in_reward`, per-token returns (N, T); each value's weight (None: each completion once); and
        this process's completion width (to slice per-token advantages back), None for (N,)."""
        token = self.args.advantage_statistics == "token"
        if not (token or self.args.kl_in_reward):
            return rewards, None, None
        mask = _loss_mask(output).float()
        if not self.args.kl_in_reward:
            return rewards, self.accelerator.gather(mask.sum(-1)), None
        k1 = self._rollout_policy_logps(output, mode) - output["ref_per_token_logps"]
        k1 = torch.nan_to_num(k1, nan=0.0, posinf=0.0, neginf=0.0) * mask  # unscorable tokens: no KL evidence
        global_mask = self.accelerator.gather(self.accelerator.pad_across_processes(mask, dim=1))
        global_k1 = self.accelerator.gather(self.accelerator.pad_across_processes(k1, dim=1))
        kl = self.accelerator.reduce(torch.stack([k1.sum(), mask.sum()]), reduction="sum")
        self._metrics[mode]["kl"].append((kl[0] / kl[1].clamp(min=1)).item())  # TRL's key: the KL being penalized
        returns = algorithms.per_token_returns(rewards, global_k1, global_mask, self.args.beta)
        weights = global_mask if token else global_mask / global_mask.sum(-1, keepdim=True).clamp(min=1)
        return returns, weights, mask.size(1)

    @torch.no_grad()
    def _rollout_policy_logps(self, output: dict, mode: str) -> torch.Tensor:
        """The policy's log-probs of the rollout: TRL's old log-probs when it computed them, else one
        no-grad forward (TRL skips it when the first optimization step sees the same weights)."""
        if output.get("old_per_token_logps") is not None:
            return output["old_per_token_logps"]
        keys = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes", "num_tiles",
                "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")  # fmt: skip
        batch_size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        logps, _, _ = self._get_per_token_logps_and_entropies(
            self.model,
            torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1),
            torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1),
            output["completion_ids"].size(1),
            batch_size=batch_size,
            **{key: output[key] for key in keys if key in output},
        )
        return logps

    # ----------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs, masked = self._mask_nonfinite_inputs(inputs)
        beta = self.beta
        with self._pre_clip_context(inputs) as state:
            if self.args.kl_in_reward:
                self.beta = 0.0  # the KL is already in the advantages: TRL must not add its in-loss term
            try:
                loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                self.beta = beta
        mode = "train" if self.model.training else "eval"
        counts = torch.tensor([float(masked), float(state.masked)], device=loss.device)
        counts = self.accelerator.reduce(counts, reduction="sum")  # every process takes the same decision below
        self._metrics[mode][METRIC_PREFIX + "nonfinite_tokens_masked"].append(counts.sum().item())
        if mode == "train":
            self._nonfinite_forwards += int(counts[1].item())
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        # transformers calls this once per optimizer step, after clipping and right before `optimizer.step()`.
        # Its norm is already global (DDP all-reduces the grads first; FSDP's clip all-reduces the norm).
        grad_norm = super()._get_grad_norm(model, grad_norm)
        if self.is_deepspeed_enabled:
            return grad_norm  # DeepSpeed's engine has already stepped inside `backward`: nothing to skip here
        forwards, self._nonfinite_forwards = self._nonfinite_forwards, 0
        if forwards or not math.isfinite(float(grad_norm)):
            # A NaN that reached any gradient (backward through an inf logit writes NaN even where the loss
            # masked the token) would poison the weights. With every grad None, torch optimizers leave every
            # parameter and its moments untouched: the update is skipped, not just zeroed (Adam's momentum
            # would still move zeroed parameters).
            model.zero_grad(set_to_none=True)
            self._nonfinite_steps_skipped += 1
        # TRL's convention for a running count (as `num_tokens`): one value, the total so far.
        self._metrics["train"][METRIC_PREFIX + "nonfinite_steps_skipped"] = [float(self._nonfinite_steps_skipped)]
        return grad_norm

    @contextmanager
    def _pre_clip_context(self, inputs: dict):
        # Only the policy forward inside compute_loss is pre-clipped; generation-time passes
        # (old and reference log-probs) go through `_get_per_token_logps_and_entropies` untouched.
        self._pre_clip_state = _PreClipState(inputs)
        try:
            yield self._pre_clip_state
        finally:
            self._pre_clip_state = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *a, **kw):
        logps, entropies, aux_loss = super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, *a, **kw
        )
        if self._pre_clip_state is None:
            return logps, entropies, aux_loss
        logps, entropies = self._pre_clip(logps, entropies, self._pre_clip_state)
        return logps, entropies, aux_loss

    def _pre_clip(self, logps: torch.Tensor, entropies: torch.Tensor | None, state: _PreClipState):
        """Rewrite the batch TRL's `_compute_loss` is about to read so that only its importance ratio is
        pre-clipped: its old log-probs become `old' = logps - clamp(logps - old, *bounds)`, not detached, so
        TRL's `exp(logps - old')` is the paper's pre-clipped ratio in value and gradient (zero outside the
        window), while the policy log-probs it returns (and TRL's KL term, its logged `kl`, its off-policy
        mask) stay unclamped. TRL reads the batch only after this forward returns.

        A NaN/Inf log-prob or entropy from this forward contributes nothing to the loss (zero advantage,
        ratio 1, KL 0), whatever mask TRL builds; the optimizer step is then skipped (`_get_grad_norm`).
        """
        mode = "train" if self.model.training else "eval"
        inputs = state.inputs
        old_logps = inputs.get("old_per_token_logps")
        valid = _loss_mask(inputs).bool()
        bad = ~torch.isfinite(logps)
        if entropies is not None:
            bad = bad | ~torch.isfinite(entropies)
        bad = bad & valid
        if bad.any():
            state.masked += int(bad.sum())
            anchor = inputs.get("ref_per_token_logps") if self.beta != 0.0 else None  # KL 0 at the token
            anchor = anchor if anchor is not None else old_logps if old_logps is not None else torch.zeros_like(logps)
            logps = torch.where(bad, anchor.detach(), logps)
            if entropies is not None:
                entropies = torch.where(bad, torch.zeros_like(entropies), entropies)
            advantages = inputs["advantages"]
            advantages = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
            inputs["advantages"] = advantages * ~bad
            if "sampling_per_token_logps" in inputs:
                sampling = inputs["sampling_per_token_logps"]
                inputs["sampling_per_token_logps"] = torch.where(bad, logps.detach(), sampling)
            valid = valid & ~bad

        if old_logps is None:  # TRL will use logps.detach() as old: the ratio is exactly 1
            log_ratio = torch.zeros_like(logps)
        else:
            old_logps = torch.where(bad, logps.detach(), old_logps)
            log_ratio = (logps - old_logps).detach()
        abs_log_ratio = log_ratio.abs().masked_fill(~valid, 0.0)
        bounds = self.args.log_ratio_bounds
        outside = (
            ((log_ratio < bounds[0]) | (log_ratio > bounds[1])) & valid if bounds else torch.zeros_like(valid)
        )
        stats = self.accelerator.reduce(torch.stack([outside.sum().float(), valid.sum().float()]), reduction="sum")
        max_abs = self.accelerator.gather(abs_log_ratio.max().reshape(1)).max()
        self._metrics[mode][METRIC_PREFIX + "pre_clip_frac"].append((stats[0] / stats[1].clamp(min=1)).item())
        self._metrics[mode][METRIC_PREFIX + "log_ratio_max_abs"].append(max_abs.item())

        if old_logps is not None:
            if self.off_policy_mask_threshold is not None:  # it falls back to the old log-probs: the true ones
                inputs.setdefault("sampling_per_token_logps", old_logps)
            inputs["old_per_token_logps"] = logps - (logps - old_logps).clamp(*bounds) if bounds else old_logps
        return logps, entropies

    def _mask_nonfinite_inputs(self, inputs: dict) -> tuple[dict, int]:
        """Drop tokens whose old/reference log-prob or vLLM IS ratio is NaN/Inf (vLLM marks tokens it
        could not score with NaN), so one bad token cannot turn the step's loss into NaN.

        The drop goes into `tool_mask`, which TRL multiplies into its loss mask, not `completion_mask`,
        which is also the attention mask of the forward: the later tokens still see the dropped one."""
        inputs = dict(inputs)  # our copy: `_pre_clip` rewrites entries of it for TRL's loss
        keep = torch.ones_like(inputs["completion_mask"], dtype=torch.bool)
        neutral_values = (("old_per_token_logps", 0.0), ("ref_per_token_logps", 0.0), ("importance_sampling_ratio", 1.0))
        for key, neutral in neutral_values:
            value = inputs.get(key)
            if value is None or value.dim() != 2:
                continue
            bad = ~torch.isfinite(value)
            if bad.any():
                inputs[key] = value.masked_fill(bad, neutral)
                keep = keep & ~bad
        if keep.all():
            return inputs, 0
        counted = _loss_mask(inputs).bool()
        tool_mask = inputs.get("tool_mask", torch.ones_like(inputs["completion_mask"]))
        inputs["tool_mask"] = tool_mask * keep.to(tool_mask.dtype)
        return inputs, int((counted & ~keep).sum())
