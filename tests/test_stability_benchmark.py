"""`benchmarks.stability`: the perturbed sampler, the non-finite-weights stop and the collapse criteria."""

import argparse
import math

import pytest
import torch
from transformers import TrainerControl, TrainerState

from benchmarks import stability


def sampled_batch(model_dir, tmp_path, noise: float):
    """One generation batch through TRL's real `_generate_and_score_completions`, sampled by `PerturbedSampler`."""
    from stable_reinforce_trl.config import StableReinforceConfig
    from stable_reinforce_trl.data.synthetic import synthetic_judge_dataset
    from stable_reinforce_trl.trainer import StableReinforceTrainer

    config = StableReinforceConfig(
        output_dir=str(tmp_path / f"noise-{noise}"), per_device_train_batch_size=4, num_generations=2, steps_per_generation=2,
        num_iterations=2, max_completion_length=8, max_steps=1, report_to="none", save_strategy="no", use_cpu=True,
        disable_tqdm=True, log_completions=False, seed=0,
    )  # fmt: skip
    sampler = stability.PerturbedSampler(noise, None, seed=0)
    trainer = StableReinforceTrainer(model=model_dir, args=config, train_dataset=synthetic_judge_dataset(8, seed=0),
                                     rollout_func=sampler)  # fmt: skip
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batch = next(iter(trainer.get_train_dataloader()))
    torch.manual_seed(0)  # the same sampling draws for every noise level
    output = trainer._generate_and_score_completions(batch)
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the trainer must get its own weights back"
    return output


def test_perturbed_sampler_samples_from_another_policy_and_gives_the_weights_back(formatted_judge_dir, tmp_path):
    # A trained judge (a random one samples every token at about the same low probability)
    plain = sampled_batch(formatted_judge_dir, tmp_path, noise=0.0)
    perturbed = sampled_batch(formatted_judge_dir, tmp_path, noise=1.0)
    assert not torch.equal(plain["completion_ids"], perturbed["completion_ids"])

    def mean_old_logp(out):  # the trainer's own log-probs of what was sampled
        return (out["old_per_token_logps"] * out["completion_mask"]).sum() / out["completion_mask"].sum()

    # Tokens the trainer itself would rarely have sampled: its log-probs of them are lower.
    assert mean_old_logp(perturbed) < mean_old_logp(plain)


def test_a_run_stops_at_the_step_its_weights_turn_nonfinite():
    watch, model, state = stability.StopOnNonfiniteWeights(), torch.nn.Linear(2, 2), TrainerState()
    state.global_step = 3
    assert not watch.on_step_end(None, state, TrainerControl(), model=model).should_training_stop
    assert watch.step is None
    with torch.no_grad():
        model.weight[0, 1] = math.nan
    state.global_step = 4
    assert watch.on_step_end(None, state, TrainerControl(), model=model).should_training_stop
    assert watch.step == 4


def figures(max_abs_loss, length_change_pct=0.0, nonfinite_loss_steps=0, nonfinite_weights_step=None):
    return dict(max_abs_loss=max_abs_loss, length_change_pct=length_change_pct,
                nonfinite_loss_steps=nonfinite_loss_steps, nonfinite_weights_step=nonfinite_weights_step)  # fmt: skip


def test_collapse_criteria_are_the_issues_measured_against_stable_reinforce():
    summary = {
        "stable_reinforce": {"max_abs_loss": 0.5, "per_seed": [figures(0.4), figures(0.6, length_change_pct=49.0)]},
        "reinforce_pp": {"max_abs_loss": 30.0, "per_seed": [
            figures(50.0), figures(49.9), figures(0.3, length_change_pct=50.0),
            figures(0.3, nonfinite_loss_steps=1), figures(0.3, nonfinite_weights_step=7),
        figures(0.3) | {"nonfinite_steps_skipped": 1.0}, figures(0.3, length_change_pct=None),
        ]},
    }  # fmt: skip
    criteria = stability.judge_collapses(summary)
    assert criteria["max_abs_loss_limit"] == pytest.approx(50.0)  # 100 x stable_reinforce's median max |loss|
    assert [f["collapse"] for f in summary["reinforce_pp"]["per_seed"]] == [
        ["loss spike"], [], ["length runaway"], ["non-finite"], ["non-finite"], ["non-finite"], []]
    assert summary["reinforce_pp"]["collapsed_seeds"] == 5 and summary["stable_reinforce"]["collapsed_seeds"] == 0
    assert stability.judge_collapses({"reinforce_pp": summary["reinforce_pp"]}) is None  # no reference arm: no verdict


@pytest.mark.parametrize(
    "flags, message",
    [(["--set", "rl_step=3"], "did you mean rl_steps"), (["--set", "rl_steps=3"], "use --steps"),
     (["--rl-set", "pre_clip=false"], "use --arms"), (["--rl-set", "temprature=2"], "did you mean temperature")],
)  # fmt: skip
def test_a_mistyped_override_is_one_line_and_exit_code_2(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        stability.main(["--init", "unused", *flags])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_stressed_arm_runs_with_the_perturbed_sampler(tiny_model_dir, tmp_path):
    args = argparse.Namespace(steps=2, learning_rate=1e-3, steps_per_generation=2, max_completion_length=8, num_iterations=2,
                              max_grad_norm=1.0, sampler_noise=0.5, sampler_dtype="bfloat16",
                              plan_overrides={"rl_batch_size": 4, "rl_generations": 2}, rl_config={"temperature": 1.2})  # fmt: skip
    log, stopped = stability.run_arm(tiny_model_dir, "reinforce_pp", 0, args, tmp_path)
    assert [e["step"] for e in log] == [1, 2] and stopped is None
    figures_ = stability.summarize_arm([log], [stopped])["per_seed"][0]
    assert figures_["nonfinite_loss_steps"] == 0 and math.isfinite(figures_["max_abs_loss"])
    assert 0 <= figures_["accuracy_first"] <= 1 and figures_["length_change_pct"] is not None
