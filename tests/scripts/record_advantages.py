"""Run by `accelerate launch` in the tests: trains a few StableReinforce steps and records, per process, the
gathered rewards, the local advantages, the rows (prompt, label) and each rollout's pair and order of each
generation batch (one JSON line each).

With `--order-consistency`: `order_consistency_weight=1` on `one_order_dataset`, judged by `red_reading_judge`
(which reads only red pairs) with every other reward 0, and 3 prompts per process, so that some pair has one
order on each process."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer  # noqa: E402
from tests.trl_helpers import (  # noqa: E402
    colour_judge_dataset,
    one_order_dataset,
    red_reading_judge,
    verdict_reward,
    zero_reward,
)


class RecordingTrainer(StableReinforceTrainer):
    def _calculate_rewards(self, *args):
        self._recorded_rows = [[row["prompt"], row["label"]] for row in args[0]]  # as the reward sees them
        self._recorded_rewards = super()._calculate_rewards(*args)
        return self._recorded_rewards

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        record = {
            "process_index": self.accelerator.process_index,
            "num_processes": self.accelerator.num_processes,
            "rewards_per_func": self._recorded_rewards.tolist(),
            "local_advantages": output["advantages"].tolist(),
            "rows": self._recorded_rows,
            "pairs": self._pair_keys[0],
            "orders": self._pair_keys[1],
        }
        path = os.path.join(self.args.output_dir, f"advantages_rank{self.accelerator.process_index}.jsonl")
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
        return output


if __name__ == "__main__":
    model_dir, output_dir = sys.argv[1], sys.argv[2]
    consistency = "--order-consistency" in sys.argv[3:]
    args = StableReinforceConfig(
        output_dir=output_dir,
        per_device_train_batch_size=6 if consistency else 4,
        num_generations=2 if consistency else 4,
        max_completion_length=8,
        num_iterations=1 if consistency else 2,
        max_steps=4,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        log_completions=False,
        order_consistency_weight=1.0 if consistency else 0.0,
        advantage_filter=not consistency,
    )
    if consistency:
        dataset, reward, judge = one_order_dataset(16), zero_reward, red_reading_judge
    else:
        dataset, reward, judge = colour_judge_dataset(16), verdict_reward, None
    trainer = RecordingTrainer(model=model_dir, reward_funcs=reward, args=args, train_dataset=dataset,
                               rollout_func=judge)  # fmt: skip
    trainer.train()
    if trainer.accelerator.is_main_process:
        with open(os.path.join(output_dir, "log_history.json"), "w") as f:
            json.dump(trainer.state.log_history, f)
