"""StableReinforceTrainer end to end on CPU with the tiny Qwen2.5-VL and real images."""

import math

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import GRPOTrainer

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer
from stable_reinforce_trl.algorithms import per_token_policy_loss

from .trl_helpers import colour_judge_dataset, verdict_reward


def make_config(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        num_iterations=2,
        steps_per_generation=2,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        max_steps=4,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        log_completions=False,
        dataloader_num_workers=0,
    )
    kwargs.update(overrides)
    return StableReinforceConfig(**kwargs)


def make_trainer(tiny_model_dir, tmp_path, **overrides):
    return StableReinforceTrainer(
        model=tiny_model_dir,
        reward_funcs=verdict_reward,
        args=make_config(tmp_path, **overrides),
        train_dataset=colour_judge_dataset(8),
    )


def test_trains_with_reused_data_and_logs_stable_reinforce_metrics(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 4
    loss_keys = ("pre_clip_frac", "log_ratio_max_abs", "nonfinite_tokens_masked")
    for key in loss_keys:
        assert all(math.isfinite(entry[f"stable_reinforce/{key}"]) for entry in logs), key
    # Advantages are computed once per generation batch (every steps_per_generation * num_iterations steps).
    generation_logs = [entry for entry in logs if "reward" in entry]
    assert len(generation_logs) == 1
    for key in ("advantage_filtered_frac", "advantage_max_abs_z"):
        assert math.isfinite(generation_logs[0][f"stable_reinforce/{key}"]), key
    # Data reused (num_iterations=2, steps_per_generation=2): later steps see ratios away from 1.
    assert max(entry["stable_reinforce/log_ratio_max_abs"] for entry in logs) > 0
    changed = sum(not torch.equal(before[k], v) for k, v in trainer.model.named_parameters())
    assert changed > 0


def test_trainer_loss_is_the_pure_function(tiny_model_dir, tmp_path):
    """Guards the loss hook against TRL changes: the trainer's loss on a batch whose old log-probs sit
    far outside the window must equal `per_token_policy_loss` aggregated as loss_type='grpo'."""
    for pre_clip in (True, False):
        trainer = make_trainer(tiny_model_dir, tmp_path, pre_clip=pre_clip, num_iterations=1, steps_per_generation=1)
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); we call the loss directly
        rows = [trainer.train_dataset[i] for i in range(4)]
        rows = [row for row in rows for _ in range(2)]  # TRL repeats each prompt num_generations times
        batch = trainer._generate_and_score_completions(rows)
        mask = batch["completion_mask"].float()
        with torch.no_grad():
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
        offsets = torch.linspace(-12.0, 12.0, logps.numel()).view_as(logps)  # many |log-ratio| > log(1e3)
        batch["old_per_token_logps"] = logps - offsets
        batch["advantages"] = torch.linspace(-1.0, 1.0, logps.size(0))
        loss = trainer.compute_loss(trainer.model, batch)
        bounds = trainer.args.log_ratio_bounds
        expected_tok = per_token_policy_loss(logps, batch["old_per_token_logps"], batch["advantages"], log_ratio_bounds=bounds)
        expected = ((expected_tok * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
        assert trainer._metrics["train"]["stable_reinforce/pre_clip_frac"][-1] > (0.3 if pre_clip else -1)
        loss.backward()
        grads_finite = all(torch.isfinite(p.grad).all() for p in trainer.model.parameters() if p.grad is not None)
        assert grads_finite


def test_nonfinite_old_logps_are_masked_and_counted(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, num_iterations=1, steps_per_generation=1)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    rows = [row for row in (trainer.train_dataset[i] for i in range(4)) for _ in range(2)]
    batch = trainer._generate_and_score_completions(rows)
    old = torch.zeros_like(batch["completion_mask"], dtype=torch.float32) - 1.0
    old[0, 0], old[1, 0] = float("nan"), float("inf")
    batch["old_per_token_logps"] = old
    loss = trainer.compute_loss(trainer.model, batch)
    assert torch.isfinite(loss)
    assert trainer._metrics["train"]["stable_reinforce/nonfinite_tokens_masked"][-1] == 2
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in trainer.model.parameters() if p.grad is not None)


def test_rejects_options_the_loss_cannot_honour(tmp_path):
    with pytest.raises(ValueError, match="loss_type='cispo'"):
        make_config(tmp_path, loss_type="cispo")
    for loss_type in ("sapo", "vespo"):
        with pytest.raises(ValueError, match=f"loss_type='{loss_type}'"):
            make_config(tmp_path, loss_type=loss_type)
    with pytest.raises(ValueError, match="scale_rewards='std'"):
        make_config(tmp_path, scale_rewards="std")
    with pytest.raises(ValueError, match="kl_in_reward=True needs beta > 0"):
        make_config(tmp_path, kl_in_reward=True)


def test_accepts_every_trl_reward_scaling(tmp_path):
    # GRPOConfig's own spellings: True/False are "group"/"none"; the paper's default stays "batch".
    assert make_config(tmp_path).scale_rewards == "batch"
    for value, meaning in (("group", "group"), (True, "group"), ("batch", "batch"), ("none", "none"), (False, "none")):
        assert make_config(tmp_path, scale_rewards=value).scale_rewards == meaning
    assert make_config(tmp_path, multi_objective_aggregation="normalize_then_sum").multi_objective_aggregation == "normalize_then_sum"


def test_needs_its_own_config(tiny_model_dir, tmp_path):
    from trl import GRPOConfig

    with pytest.raises(TypeError, match="StableReinforceConfig"):
        StableReinforceTrainer(model=tiny_model_dir, reward_funcs=verdict_reward, args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True))


def test_referee_key_never_reaches_the_logged_config(tmp_path):
    config = make_config(tmp_path, referee="openai", referee_api_key="sk-secret-123")
    assert config.referee_api_key == "sk-secret-123"  # the trainer still has it
    assert "sk-secret-123" not in str(config.to_dict()) and "sk-secret-123" not in config.to_json_string()
