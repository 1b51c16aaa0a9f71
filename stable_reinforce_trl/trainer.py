"""`StableReinforceTrainer`: TRL's `GRPOTrainer` with StableReinforce's three hooks.

- reward: with no `reward_funcs`, the R1 reward (format + result + consistency) built from the config;
- rollouts: with `position_balanced`, every pair of a rollout batch in both orders (`position_balance.py`);
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

import datasets
import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from . import algorithms, position_balance, verdict_stats, vision_tokens
from .checkpoints import RestoresFullCheckpoints
from .prompts import generation_opening, parse_verdict, with_opening
from .rewards.functions import parse_label
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


class _SkippedStepHoldsTheSchedule(TrainerCallback):
    """A step StableReinforce skips does not advance the LR schedule, as fp16's GradScaler already has it
    for a step whose gradients overflow: transformers steps the scheduler unless accelerate reports the
    optimizer step skipped, which it knows only for the scaler's own skips. One rule, whichever the cause
    (NaN gradients or a non-finite forward) and whichever the precision."""

    def __init__(self, trainer: "StableReinforceTrainer"):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        optimizer, skipped = self.trainer.optimizer, self.trainer._step_skipped
        if hasattr(optimizer, "_is_overflow"):  # accelerate's wrapper; under DeepSpeed nothing is skipped here
            optimizer._is_overflow = skipped or (optimizer.scaler is not None and optimizer._is_overflow)
        self.trainer._step_skipped = False


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
        # (4, local rollouts): parsed verdict (0: none), label, pair and order (-1 when not position-balanced)
        self._verdicts: torch.Tensor | None = None
        self._pair_keys: list[list] = [[], []]
        self._nonfinite_forwards = 0  # global count of non-finite policy log-probs in this accumulation window
        self._nonfinite_steps_skipped = 0
        self._step_skipped = False
        pos, kwargs = list(pos), dict(kwargs)
        if pos:
            pos[0] = self._balanced_dataset(pos[0], args)
        elif kwargs.get("train_dataset") is not None:
            kwargs["train_dataset"] = self._balanced_dataset(kwargs["train_dataset"], args)
        else:
            self.position_balanced = False
        super().__init__(model, reward_funcs, args, *pos, **kwargs)
        self.add_callback(_SkippedStepHoldsTheSchedule(self))
        self._suppress_vision_placeholders()
        self._generation_opening = generation_opening(self.processing_class)
        if self.is_deepspeed_enabled:
            logger.warning(
                "Under DeepSpeed the engine takes the optimizer step inside backward, so StableReinforce cannot skip a "
                "step whose gradients are NaN/Inf. ZeRO-1/2 skip it themselves with \"bf16\": {\"check_grad_overflow\": "
                "true} in the DeepSpeed config; ZeRO-3 in bf16 has no such check."
            )

    # ------------------------------------------------------------------------------------------- rollouts
    def _balanced_dataset(self, dataset, args: StableReinforceConfig):
        """The training set both orders of each pair come from (see `position_balance`), or `dataset` as is."""
        columns = (dataset.column_names or []) if dataset is not None else []
        self.position_balanced = args.position_balanced and args.label_column in columns
        if args.position_balanced and not self.position_balanced and dataset is not None:
            logger.warning(
                f"position_balanced: the training set has no {args.label_column!r} column (label_column), so its "
                "rollouts are not balanced by position. Set position_balanced=False to silence this."
            )
        if not self.position_balanced:
            return dataset
        if isinstance(dataset, datasets.IterableDataset):
            raise position_balance.PositionBalanceError(
                "position_balanced needs a map-style datasets.Dataset (both orders of a pair are sampled together); "
                "got an IterableDataset. Load it without streaming, or set position_balanced=False."
            )
        position_balance.check_batch(args.generation_batch_size // args.num_generations)
        position_balance.check_judge_rows(dataset, args.label_column)
        return position_balance.both_orders(dataset)

    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)
        if not self.position_balanced:
            return sampler
        return position_balance.PositionBalancedSampler(
            sampler.data_source, sampler.mini_repeat_count, sampler.batch_size, sampler.repeat_count,
            sampler.shuffle, sampler.seed,
        )  # fmt: skip

    def _suppress_vision_placeholders(self) -> None:
        """Every vision placeholder out of generation, in both backends (TRL suppresses only the image one,
        and only in transformers): a sampled one breaks the next forward. See `vision_tokens`."""
        self._vision_placeholders = vision_tokens.vision_placeholder_ids(self.model.config)
        if not self._vision_placeholders:
            return
        if self.use_vllm:
            tokens = self._tokenizer.convert_ids_to_tokens(self._vision_placeholders)
            generation = self.vllm_generation
            generation.generation_kwargs = vision_tokens.vllm_generation_kwargs(generation.generation_kwargs, tokens)
        else:
            self.generation_kwargs = vision_tokens.transformers_generation_kwargs(self.generation_kwargs,
                                                                                  self._vision_placeholders)  # fmt: skip
            self.generation_config.suppress_tokens = self.generation_kwargs["suppress_tokens"]

    def _generate(self, prompts: list):
        prompt_ids, completion_ids, tool_mask, *rest = super()._generate(prompts)
        completion_ids, tool_mask, found = vision_tokens.neutralize(
            completion_ids, tool_mask, self._vision_placeholders, self._tokenizer.pad_token_id
        )
        mode = "train" if self.model.training else "eval"
        found = self.accelerator.reduce(torch.tensor(float(found), device=self.accelerator.device), reduction="sum")
        self._metrics[mode][METRIC_PREFIX + "vision_placeholders_sampled"].append(found.item())
        return (prompt_ids, completion_ids, tool_mask, *rest)

    # ----------------------------------------------------------------------------------------- advantages
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Rewards read the whole answer: with what the chat template's generation prompt already wrote of it
        # (Qwen3.5's thinking template opens `<think>` there), as TRL's reward functions cannot know.
        completions = [with_opening(c, self._generation_opening) for c in completions]
        # TRL returns rewards gathered over all processes: keep them for the global advantage pass.
        self._gathered_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        column = self.args.label_column
        self._verdicts = None  # judge rows only: what `_log_verdicts` reads once the advantages are known
        if inputs and column in inputs[0]:
            device = self.accelerator.device
            verdicts = [v if v in (1, 2) else 0 for v in map(parse_verdict, completions)]
            labels = [parse_label(row[column]) for row in inputs]
            self._verdicts = torch.tensor([verdicts, labels, *self._pair_keys], device=device)
        return self._gathered_rewards

    def _log_verdicts(self, verdicts, labels, advantages: torch.Tensor, group_size: int, mode: str) -> None:
        """`verdict_stats` over the global rollout batch: positions, verdicts by label, their advantages."""
        stats = verdict_stats.verdict_stats(verdicts, labels, advantages, group_size)
        for name, value in stats.items():
            if not math.isnan(value):
                self._metrics[mode][METRIC_PREFIX + name].append(value)

    def _generate_and_score_completions(self, inputs):
        # Each rollout's pair and order (-1 when unbalanced): `order_consistency` matches a pair's two orders.
        self._pair_keys = [[row.get(key, -1) for row in inputs] for key in position_balance.PAIR_KEYS]
        inputs = position_balance.unmark(inputs, self.args.label_column)
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        rewards_per_func, self._gathered_rewards = self._gathered_rewards, None
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        if self.args.multi_objective_aggregation == "normalize_then_sum":
            rewards = algorithms.normalize_then_sum(rewards_per_func, self.reward_weights, group_size)
        else:  # same weighting as TRL; a row every reward function skipped (all None) stays NaN -> advantage 0
            rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device)).nansum(dim=1)
            rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        # The rollouts' verdicts over the global batch (judge rows only): (verdict, label, pair, order) each.
        rollouts = None if self._verdicts is None else self.accelerator.gather(self._verdicts.T).T
        if self.args.order_consistency_weight and rollouts is not None and bool((rollouts[2] >= 0).all()):
            verdicts, labels, pairs, orders = rollouts
            both = algorithms.order_consistency(verdicts == labels, pairs, orders)
            rewards = rewards + self.args.order_consistency_weight * both
            self._metrics[mode][METRIC_PREFIX + "order_consistency"].append(both.mean().item())
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

        if rollouts is not None:
            self._log_verdicts(rollouts[0], rollouts[1], shown, group_size, mode)
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
            self._skip_update(model)
            self._nonfinite_steps_skipped += 1
            self._step_skipped = True
        # TRL's convention for a running count (as `num_tokens`): one value, the total so far.
        self._metrics["train"][METRIC_PREFIX + "nonfinite_steps_skipped"] = [float(self._nonfinite_steps_skipped)]
        return grad_norm

    def _skip_update(self, model) -> None:
        """Make the coming `optimizer.step()` change nothing: no weight, no optimizer moment."""
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is None or not scaler.is_enabled():
            model.zero_grad(set_to_none=True)  # torch optimizers skip parameters whose grad is None
            return
        # fp16: the GradScaler steps the optimizer (a fused one unscales inside its own step) and with no
        # grad at all it fails ("No inf checks were recorded"). Show it the step as an overflow instead: it
        # skips the step as for any overflow, lowers the scale, and accelerate reports the step skipped.
        for param in model.parameters():
            if param.grad is not None:
                param.grad.fill_(float("nan"))
        state = scaler._per_optimizer_states[id(getattr(self.optimizer, "optimizer", self.optimizer))]
        for found_inf in state["found_inf_per_device"].values():  # filled if the clip already unscaled
            found_inf.fill_(1.0)

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
            if bounds:  # only where the loss counts: elsewhere a -inf log-prob would give TRL `-inf - (-inf)`
                rewritten = logps - (logps - old_logps).clamp(*bounds)
                old_logps = torch.where(valid, rewritten, old_logps)
            inputs["old_per_token_logps"] = old_logps
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
