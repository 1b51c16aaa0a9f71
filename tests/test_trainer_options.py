"""TRL options under StableReinforce, through TRL's real `_compute_loss` and the real optimizer step.

Each test builds a batch with the tiny Qwen2.5-VL, then compares what the trainer computes with the
formula written out here: the KL term on the unclamped log-probs, the off-policy mask, non-finite
forwards (an inf injected into the logits: a fault, not a mock), a tool mask, the KL in the reward.
"""

import json
import math

import pytest
import transformers
import torch
from trl import GRPOTrainer

from stable_reinforce_trl import StableReinforceTrainer

from .test_trainer import make_config, make_trainer
from .trl_helpers import colour_judge_dataset, verdict_reward


def rollout(trainer):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); we call the loss directly
    rows = [row for row in (trainer.train_dataset[i] for i in range(4)) for _ in range(2)]
    return trainer._generate_and_score_completions(rows)


def policy_logps(trainer, batch):
    """The policy's per-token log-probs with gradient, straight from TRL (no StableReinforce hook)."""
    logps, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(
        trainer,
        trainer.model,
        torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
        torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1),
        batch["completion_ids"].size(1),
        pixel_values=batch["pixel_values"],
        image_grid_thw=batch["image_grid_thw"],
        num_images=batch["num_images"],
        mm_token_type_ids=batch.get("mm_token_type_ids"),
    )
    return logps


def grads(model):
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def expected_loss(logps, old, ref, advantages, mask, *, beta, bounds, bias_correction=False, off_policy=None, eps=0.2):
    """TRL's grpo loss with the pre-clipped ratio, KL and off-policy mask on the true log-probs."""
    adv = advantages.unsqueeze(1)
    ratio = torch.exp((logps - old).clamp(*bounds))
    per_token = -torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
    if off_policy is not None:
        kl_seq = ((old - logps.detach()) * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
        per_token = per_token * ((adv >= 0) | (kl_seq <= off_policy)).float()
    kl = torch.exp(ref - logps) - (ref - logps) - 1
    if bias_correction:
        kl = kl * ratio
    per_token = per_token + beta * kl
    loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    return loss, (kl * mask).sum() / mask.sum()


@pytest.mark.parametrize(
    "options",
    [
        {"use_bias_correction_kl": False},
        {"use_bias_correction_kl": True},  # TRL 1.16's default: the KL times the (pre-clipped) ratio
        {"use_bias_correction_kl": False, "off_policy_mask_threshold": 8.0},
    ],
    ids=["kl", "bias_kl", "opsm"],
)
def test_kl_and_off_policy_mask_see_the_unclamped_log_probs(tiny_model_dir, tmp_path, options):
    trainer = make_trainer(tiny_model_dir, tmp_path, beta=0.04, num_iterations=1, steps_per_generation=1, **options)
    batch = rollout(trainer)
    mask = batch["completion_mask"].float()
    with torch.no_grad():
        logps = policy_logps(trainer, batch)
    # Old log-probs up to 12 nats from the policy (the window is +-6.9), the reference up to 9: the tokens
    # the pre-clip stops are exactly those whose KL gradient is largest.
    batch["old_per_token_logps"] = logps + torch.linspace(12.0, -12.0, logps.numel()).view_as(logps)
    batch["ref_per_token_logps"] = logps + torch.linspace(-9.0, 9.0, logps.numel()).view_as(logps)
    batch["advantages"] = torch.linspace(-1.0, 1.0, logps.size(0))
    bounds = trainer.args.log_ratio_bounds

    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    got = grads(trainer.model)
    logps = policy_logps(trainer, batch)
    expected, expected_kl = expected_loss(
        logps, batch["old_per_token_logps"], batch["ref_per_token_logps"], batch["advantages"], mask, beta=0.04,
        bounds=bounds, bias_correction=options["use_bias_correction_kl"],
        off_policy=options.get("off_policy_mask_threshold"),
    )  # fmt: skip
    expected.backward()
    want = grads(trainer.model)

    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert trainer._metrics["train"]["kl"][-1] == pytest.approx(expected_kl.item(), rel=1e-4)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-3, atol=1e-6 * want[name].abs().max().item()), name
    # The KL gradient is large exactly where the ratio is clamped: a clamped KL would have dropped it.
    assert max(g.abs().max().item() for g in want.values()) > 1.0


def inject_inf_into_logits(model, row: int, token: int, completion_length: int):
    """A forward hook that overflows the final hidden state predicting one completion token (as a bf16
    overflow would), once, in a forward with gradient (the loss's). TRL's fused head never calls lm_head."""
    state = {"fired": 0}
    position = (token % completion_length) - completion_length - 1  # hidden t-1 predicts token t

    def hook(module, args, output):
        if torch.is_grad_enabled() and not state["fired"]:
            state["fired"] += 1
            output = output.clone()
            output[row, position] = float("inf")
            return output
        return output

    return model.model.language_model.norm.register_forward_hook(hook), state


def test_nonfinite_forward_skips_the_step_on_the_real_optimizer(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, num_iterations=1, steps_per_generation=1, max_steps=1)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    handle, state = inject_inf_into_logits(trainer.model, row=0, token=-1, completion_length=8)
    try:
        trainer.train()
    finally:
        handle.remove()
    assert state["fired"] == 1
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 1
    assert math.isfinite(logs[0]["loss"])  # the bad token contributed nothing to the loss value
    assert logs[0]["stable_reinforce/nonfinite_tokens_masked"] >= 1
    assert logs[0]["stable_reinforce/nonfinite_steps_skipped"] == 1
    assert not math.isfinite(logs[0]["grad_norm"])  # the backward did carry NaN into the gradients
    for name, param in trainer.model.named_parameters():
        assert torch.isfinite(param).all(), name
        assert torch.equal(param, before[name]), name  # skipped: neither the grad nor Adam's moments moved it


def test_a_clean_run_counts_no_skipped_step(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, num_iterations=1, steps_per_generation=1, max_steps=1)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs[0]["stable_reinforce/nonfinite_steps_skipped"] == 0
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_nonfinite_masking_reaches_the_loss_through_a_tool_mask(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, num_iterations=1, steps_per_generation=1)
    batch = rollout(trainer)
    mask = batch["completion_mask"].clone()
    with torch.no_grad():
        logps = policy_logps(trainer, batch)
    tool_mask = torch.ones_like(mask)
    tool_mask[:, 1:3] = 0  # tokens a tool wrote: TRL builds mask = completion_mask * tool_mask
    batch["tool_mask"] = tool_mask
    old = logps - 0.3
    old[2, 0] = float("nan")  # an input TRL/vLLM could not score: dropped from the mask
    batch["old_per_token_logps"] = old
    batch["advantages"] = torch.linspace(-1.0, 1.0, logps.size(0))
    handle, state = inject_inf_into_logits(trainer.model, row=5, token=0, completion_length=mask.size(1))
    try:
        loss = trainer.compute_loss(trainer.model, batch)
    finally:
        handle.remove()
    assert state["fired"] == 1 and torch.isfinite(loss)
    assert trainer._metrics["train"]["stable_reinforce/nonfinite_tokens_masked"][-1] == 2
    keep = (mask * tool_mask).float()
    keep[2, 0] = 0.0
    ratio = torch.exp((logps - old.nan_to_num(0.0)).clamp(*trainer.args.log_ratio_bounds))
    adv = batch["advantages"].unsqueeze(1)
    per_token = -torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    per_token[5, 0] = 0.0  # the bad forward's token contributes nothing (it stays in the row's length)
    expected = ((per_token * keep).sum(1) / keep.sum(1).clamp(min=1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert trainer._nonfinite_forwards == 1  # the next optimizer step will be skipped


@pytest.mark.parametrize("statistics", ["sequence", "token"])
def test_kl_in_reward_folds_k1_into_per_token_advantages(tiny_model_dir, tmp_path, statistics):
    trainer = make_trainer(
        tiny_model_dir, tmp_path, beta=0.5, kl_in_reward=True, advantage_statistics=statistics, advantage_filter=False,
        num_iterations=1, steps_per_generation=1,
    )  # fmt: skip
    with torch.no_grad():  # a reference apart from the policy, so k1 is not zero
        for p in trainer.ref_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rewards_seen = {}
    original = trainer._calculate_rewards

    def keep_rewards(*a, **kw):  # read what TRL gathered, the trainer's own wrapper stays in the path
        rewards_seen["r"] = original(*a, **kw)
        return rewards_seen["r"]

    trainer._calculate_rewards = keep_rewards
    batch = rollout(trainer)
    mask = batch["completion_mask"].float()
    with torch.no_grad():
        logps = policy_logps(trainer, batch)
    k1 = (logps - batch["ref_per_token_logps"]) * mask
    reward = rewards_seen["r"].sum(1)
    returns = reward.unsqueeze(1) - 0.5 * k1.flip(1).cumsum(1).flip(1)
    w = mask if statistics == "token" else mask / mask.sum(1, keepdim=True)
    mean = (returns * w).sum() / w.sum()
    std = (((returns - mean) ** 2) * w).sum().div(w.sum()).sqrt()
    expected = (returns - mean) / std
    assert batch["advantages"].shape == mask.shape
    assert torch.allclose(batch["advantages"][mask.bool()], expected[mask.bool()], atol=1e-4)
    assert trainer._metrics["train"]["kl"][-1] == pytest.approx((k1.sum() / mask.sum()).item(), rel=1e-4)
    # In the loss, TRL adds no KL term of its own: the loss is the policy term on per-token advantages.
    trainer.compute_loss(trainer.model, batch)
    assert "kl" not in trainer._metrics["train"] or len(trainer._metrics["train"]["kl"]) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"scale_rewards": "group", "advantage_baseline": "group"},
        {"scale_rewards": False, "advantage_baseline": "group", "loss_type": "dr_grpo"},
        {"multi_objective_aggregation": "normalize_then_sum", "advantage_statistics": "token"},
        {"beta": 0.04, "kl_in_reward": True, "advantage_statistics": "token"},  # the reference script's choices
    ],
    ids=["grpo", "dr_grpo", "gdpo_token", "reference_kl"],
)
def test_trl_reward_options_train(tiny_model_dir, tmp_path, options):
    trainer = StableReinforceTrainer(
        model=tiny_model_dir,
        reward_funcs=[verdict_reward, verdict_reward],
        args=make_config(tmp_path, max_steps=2, num_iterations=1, steps_per_generation=1, **options),
        train_dataset=colour_judge_dataset(8),
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(math.isfinite(entry["loss"]) for entry in logs)
    assert all(0.0 <= entry["stable_reinforce/advantage_filtered_frac"] <= 1.0 for entry in logs)


def test_two_processes_token_statistics_and_kl_in_reward_are_global(tiny_model_dir, tmp_path):
    from stable_reinforce_trl.algorithms import per_token_returns, stable_reinforce_advantages

    from .test_distributed import ROOT, accelerate_launch

    result = accelerate_launch(2, ROOT / "tests/scripts/record_token_advantages.py", tiny_model_dir, str(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [[json.loads(line) for line in (tmp_path / f"token_rank{rank}.jsonl").open()] for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) >= 1
    assert any(len(r0["mask"][0]) != len(r1["mask"][0]) for r0, r1 in zip(*ranks))  # padded differently
    acted = False
    for r0, r1 in zip(*ranks):
        assert r0["rewards"] == r1["rewards"]
        width = max(len(r0["mask"][0]), len(r1["mask"][0]))
        pad = lambda rows: torch.nn.functional.pad(torch.tensor(rows, dtype=torch.float32), (0, width - len(rows[0])))  # noqa: E731
        mask = torch.cat([pad(r0["mask"]), pad(r1["mask"])])
        k1 = torch.cat([pad(r0["k1"]), pad(r1["k1"])]) * mask
        returns = per_token_returns(torch.tensor(r0["rewards"]), k1, mask, coef=0.5)
        expected, filtered = stable_reinforce_advantages(returns, baseline="batch", group_size=4, sigma=1.5, weights=mask)
        acted |= bool((filtered & mask.bool()).any())
        for rank, record in enumerate((r0, r1)):
            got = torch.tensor(record["advantages"])
            local_mask = torch.tensor(record["mask"]).bool()
            want = expected[rank * 4 : (rank + 1) * 4, : got.size(1)]
            assert torch.allclose(got[local_mask], want[local_mask], atol=1e-4), rank
    assert acted  # the filter zeroed some tokens, so the global z-scores are checked too


def test_minus_inf_at_an_uncounted_token_keeps_the_loss_finite_as_in_trl(tiny_model_dir, tmp_path):
    """A policy log-prob of -inf at a token the loss does not count (here a tool-written one) must leave
    the loss as stock TRL computes it: finite. Rewriting old log-probs there gave `-inf - (-inf)`."""
    trainer = make_trainer(tiny_model_dir, tmp_path, num_iterations=1, steps_per_generation=1)
    batch = rollout(trainer)
    width = batch["completion_mask"].size(1)
    with torch.no_grad():
        logps = policy_logps(trainer, batch)
    batch["tool_mask"] = torch.ones_like(batch["completion_mask"])
    batch["tool_mask"][0, 2] = 0
    batch["old_per_token_logps"] = logps - 0.3
    batch["advantages"] = torch.linspace(-1.0, 1.0, logps.size(0))

    def minus_inf(module, args, output):  # the fused head's log-prob of one token underflows to -inf
        if torch.is_grad_enabled():
            output.log_probs = output.log_probs.clone()
            output.log_probs[0, 2 - width] = float("-inf")
        return output

    handle = trainer.model.register_forward_hook(minus_inf)
    try:
        ours = trainer.compute_loss(trainer.model, dict(batch))
        stock = GRPOTrainer.compute_loss(trainer, trainer.model, dict(batch))
    finally:
        handle.remove()
    assert torch.isfinite(stock)
    assert torch.isfinite(ours) and ours.item() == pytest.approx(stock.item(), rel=1e-5)


def minus_inf_log_prob(model, row: int, token: int, completion_length: int):
    """A forward hook that makes the fused head's log-prob of one completion token -inf, once, in a forward with
    gradient: a non-finite forward whose gradients stay finite (the token is masked out before backward)."""
    state = {"fired": 0}

    def hook(module, args, output):
        if torch.is_grad_enabled() and not state["fired"]:
            state["fired"] += 1
            output.log_probs = output.log_probs.clone()
            output.log_probs[row, token - completion_length] = float("-inf")
        return output

    return model.register_forward_hook(hook), state


@pytest.mark.parametrize("scaler", [False, True], ids=["bf16_or_fp32", "fp16_grad_scaler"])
@pytest.mark.parametrize("fault", ["forward", "gradients"])
def test_a_skipped_step_never_advances_the_lr_schedule(fault, scaler, tiny_model_dir, tmp_path):
    """Whether the step is skipped for a non-finite forward (finite gradients) or for non-finite gradients, with
    or without fp16's GradScaler (a real one: accelerate makes none on CPU, so the test hands it one), the LR
    schedule holds at the skipped step and the weights do not move."""
    options = dict(fp16=True) if scaler else {}
    trainer = make_trainer(tiny_model_dir, tmp_path, num_iterations=1, steps_per_generation=1, max_steps=2,
                           lr_scheduler_type="linear", **options)  # fmt: skip
    if scaler:
        trainer.accelerator.scaler = torch.amp.GradScaler("cpu")
    inject = minus_inf_log_prob if fault == "forward" else inject_inf_into_logits
    handle, state = inject(trainer.model, row=0, token=2, completion_length=8)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    moved_at_step_1 = []
    trainer.add_callback(type("Watch", (transformers.TrainerCallback,), {
        "on_step_end": lambda self, args, st, control, **kw: moved_at_step_1.append(
            st.global_step == 1 and any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters()))
    })())  # fmt: skip
    try:
        trainer.train()
    finally:
        handle.remove()
    assert state["fired"] == 1 and (trainer.optimizer.scaler is not None) == scaler
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert math.isfinite(logs[0]["grad_norm"]) == (fault == "forward")
    assert logs[0]["stable_reinforce/nonfinite_steps_skipped"] == 1
    assert moved_at_step_1[0] is False
    assert logs[1]["learning_rate"] == logs[0]["learning_rate"] == trainer.args.learning_rate  # held, then stepped
    assert trainer.lr_scheduler.get_last_lr()[0] < trainer.args.learning_rate
