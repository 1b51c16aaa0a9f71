"""Step time of StableReinforceTrainer vs GRPOTrainer on the same config, measured side by side.

Both trainers run the same tiny Qwen2.5-VL, data, reward and schedule (data reused with
num_iterations=2 so the pre-clip path is live), alternating A/B/A/B so that machine noise hits
both. Reported: the ratio of median step times (target <= 1.05 with StableReinforce's defaults), and
the median of per-repeat ratios (paired: robust to the load of a shared machine drifting between repeats).
`--options` also measures the options a user sets, each against GRPOTrainer on the same TRL settings:
`beta` (TRL's in-loss KL, on the unclamped log-probs), token statistics, the k1 KL in the reward.

    python -m benchmarks.trainer_overhead [--repeats 3] [--steps 8] [--options]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from trl import GRPOConfig, GRPOTrainer

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer
from stable_reinforce_trl.data.synthetic import synthetic_judge_dataset
from stable_reinforce_trl.rewards import result_reward
from stable_reinforce_trl.tiny import make_tiny_model

from .common import write_result

def varied_reward(prompts, completions, **columns) -> list[float]:
    """The R1 result reward plus a small length term: a random tiny model is never right, and a
    constant reward would zero every advantage and skip the backward pass being measured."""
    return [r + 0.01 * len(str(c)) for r, c in zip(result_reward(prompts, completions, **columns), completions)]


GRPO = (GRPOTrainer, GRPOConfig)
STABLE = (StableReinforceTrainer, StableReinforceConfig)
# name -> (trainer, config, extra config, the GRPOTrainer arm it is compared with). StableReinforce takes
# GRPO's advantage baseline (group mean, batch std) and samples pairs in one order, as GRPO does, so both
# arms train alike on the same rows.
AS_GRPO = {"advantage_baseline": "group", "position_balanced": False}
ARMS = {
    "GRPOTrainer": (*GRPO, {}, None),
    "StableReinforceTrainer": (*STABLE, AS_GRPO, "GRPOTrainer"),
}
OPTION_ARMS = {
    "GRPOTrainer beta=0.04": (*GRPO, {"beta": 0.04}, None),
    "StableReinforceTrainer beta=0.04": (*STABLE, {**AS_GRPO, "beta": 0.04}, "GRPOTrainer beta=0.04"),
    "StableReinforceTrainer advantage_statistics=token": (
        *STABLE, {**AS_GRPO, "advantage_statistics": "token"}, "GRPOTrainer"
    ),
    "StableReinforceTrainer kl_in_reward beta=0.04": (
        *STABLE, {**AS_GRPO, "beta": 0.04, "kl_in_reward": True}, "GRPOTrainer beta=0.04"
    ),
}  # fmt: skip


def run_arm(name: str, model_dir: str, dataset, steps: int, out: str) -> list[float]:
    trainer_cls, config_cls, extra, _ = {**ARMS, **OPTION_ARMS}[name]
    args = config_cls(
        output_dir=out,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=24,
        # Every completion exactly 24 tokens: step time must not depend on what each arm happens to sample.
        generation_kwargs={"min_new_tokens": 24},
        num_iterations=2,
        steps_per_generation=2,
        max_steps=steps,
        learning_rate=1e-4,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        log_completions=False,
        disable_tqdm=True,
        # GRPOTrainer configured to the same objective: token-mean per sequence, batch-level scaling.
        loss_type="grpo",
        scale_rewards="batch",
        **extra,
    )
    trainer = trainer_cls(model=model_dir, reward_funcs=varied_reward, args=args, train_dataset=dataset)
    trainer.train()
    step_times = [entry["step_time"] for entry in trainer.state.log_history if "step_time" in entry]
    return step_times[1:]  # the first step pays one-off warm-up costs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the tiny model gains nothing from more)")
    parser.add_argument("--options", action="store_true", help="also measure beta, token statistics, kl_in_reward")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    arms = {**ARMS, **OPTION_ARMS} if args.options else ARMS
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(make_tiny_model(f"{tmp}/tiny"))
        dataset = synthetic_judge_dataset(64, seed=0)
        times: dict[str, list[float]] = {name: [] for name in arms}
        repeat_medians: dict[str, list[float]] = {name: [] for name in arms}
        started = time.perf_counter()
        for repeat in range(args.repeats):
            order = list(arms) if repeat % 2 == 0 else list(reversed(arms))
            for name in order:
                steps = run_arm(name, model_dir, dataset, args.steps, f"{tmp}/{repeat}-{len(times[name])}")
                times[name] += steps
                repeat_medians[name].append(statistics.median(steps))
    medians = {name: statistics.median(values) for name, values in times.items()}
    compared = {name: arms[name][3] for name in arms if arms[name][3]}
    pooled = {name: medians[name] / medians[base] for name, base in compared.items()}
    # Arms of one repeat run minutes apart at most: the median of per-repeat ratios cancels the slow drifts
    # in load of a shared machine that pooled medians keep.
    paired = {
        name: statistics.median(a / b for a, b in zip(repeat_medians[name], repeat_medians[base]))
        for name, base in compared.items()
    }
    ratio = pooled["StableReinforceTrainer"]
    option_ratios = {name: value for name, value in pooled.items() if name in OPTION_ARMS}
    result = {
        "median_step_time_s": medians,
        "step_times_s": times,
        "ratio_stable_reinforce_over_grpo": ratio,
        "option_ratios_over_grpo": option_ratios,
        "paired_ratios_over_grpo": paired,
        "repeat_median_step_time_s": repeat_medians,
        "target": "<= 1.05 (defaults)",
        "settings": vars(args),
        "wall_time_s": time.perf_counter() - started,
    }
    path = write_result("trainer_overhead", result)
    print(f"median step time: GRPOTrainer {medians['GRPOTrainer']:.4f}s, StableReinforceTrainer "
          f"{medians['StableReinforceTrainer']:.4f}s, ratio {ratio:.3f}, paired {paired['StableReinforceTrainer']:.3f} "
          f"(target <= 1.05) -> {path}")
    for name, value in option_ratios.items():
        print(f"  {name}: {medians[name]:.4f}s, ratio {value:.3f}, paired {paired[name]:.3f} over {compared[name]}")
    return result


if __name__ == "__main__":
    main()
