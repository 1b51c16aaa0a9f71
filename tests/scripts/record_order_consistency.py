"""Run by `accelerate launch` in the tests: StableReinforce with `order_consistency_weight=1` and a judge that
reads only red pairs (`red_reading_judge`); records, per process and generation batch, each local rollout's
prompt text, pair, order and advantage (one JSON line each)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer  # noqa: E402
from tests.trl_helpers import one_order_dataset, red_reading_judge, zero_reward  # noqa: E402


class RecordingTrainer(StableReinforceTrainer):
    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        record = {
            "texts": [row["prompt"][-1]["content"][-1]["text"] for row in inputs],
            "pairs": self._pair_keys[0],
            "orders": self._pair_keys[1],
            "advantages": output["advantages"].tolist(),
        }
        with open(os.path.join(self.args.output_dir, f"rollouts_rank{self.accelerator.process_index}.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        return output


if __name__ == "__main__":
    model_dir, output_dir = sys.argv[1], sys.argv[2]
    args = StableReinforceConfig(
        output_dir=output_dir,
        per_device_train_batch_size=6,  # 3 prompts per process: one pair has an order on each
        num_generations=2,
        max_completion_length=8,
        max_steps=4,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        log_completions=False,
        order_consistency_weight=1.0,
        advantage_filter=False,
    )
    trainer = RecordingTrainer(model=model_dir, reward_funcs=zero_reward, args=args, train_dataset=one_order_dataset(16),
                               rollout_func=red_reading_judge)  # fmt: skip
    trainer.train()
    if trainer.accelerator.is_main_process:
        with open(os.path.join(output_dir, "log_history.json"), "w") as f:
            json.dump(trainer.state.log_history, f)
