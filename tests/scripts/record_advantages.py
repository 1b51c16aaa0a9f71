"""Run by `accelerate launch` in the tests: trains a few StableReinforce steps and records, per process,
the gathered rewards, the local advantages and the rows (prompt, label) of each generation batch (one JSON
line each)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer  # noqa: E402
from tests.trl_helpers import colour_judge_dataset, verdict_reward  # noqa: E402


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
        }
        with open(os.path.join(self.args.output_dir, f"advantages_rank{self.accelerator.process_index}.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        return output


if __name__ == "__main__":
    model_dir, output_dir = sys.argv[1], sys.argv[2]
    args = StableReinforceConfig(
        output_dir=output_dir,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        num_iterations=2,
        max_steps=4,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        log_completions=False,
    )
    trainer = RecordingTrainer(model=model_dir, reward_funcs=verdict_reward, args=args, train_dataset=colour_judge_dataset(16))
    trainer.train()
    if trainer.accelerator.is_main_process:
        with open(os.path.join(output_dir, "log_history.json"), "w") as f:
            json.dump(trainer.state.log_history, f)
