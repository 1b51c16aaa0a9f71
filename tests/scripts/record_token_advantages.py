"""Run by `accelerate launch` in the tests: StableReinforce with token statistics and the k1 KL in the
reward; records, per process, the gathered rewards, the local loss mask, k1 and per-token advantages."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer  # noqa: E402
from tests.trl_helpers import colour_judge_dataset, verdict_reward  # noqa: E402


class RecordingTrainer(StableReinforceTrainer):
    def _calculate_rewards(self, *args):
        self._recorded_rewards = super()._calculate_rewards(*args)
        return self._recorded_rewards

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        record = {
            "process_index": self.accelerator.process_index,
            "rewards": self._recorded_rewards.sum(1).tolist(),
            "mask": output["completion_mask"].tolist(),
            "k1": (output["old_per_token_logps"] - output["ref_per_token_logps"]).tolist(),
            "advantages": output["advantages"].tolist(),
        }
        with open(os.path.join(self.args.output_dir, f"token_rank{self.accelerator.process_index}.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        return output


if __name__ == "__main__":
    model_dir, output_dir = sys.argv[1], sys.argv[2]
    args = StableReinforceConfig(
        output_dir=output_dir, per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
        num_iterations=2, max_steps=2, learning_rate=1e-3, logging_steps=1, report_to="none", save_strategy="no",
        use_cpu=True, seed=0, log_completions=False, beta=0.5, kl_in_reward=True, advantage_statistics="token",
        advantage_filter_sigma=1.5,  # low enough that the filter acts, so a per-process filter would differ
        # Completions of different lengths on each process (the padding differs across processes).
        generation_kwargs={"sequence_bias": {(AutoTokenizer.from_pretrained(model_dir).eos_token_id,): 7.0}},
    )  # fmt: skip
    trainer = RecordingTrainer(model=model_dir, reward_funcs=verdict_reward, args=args, train_dataset=colour_judge_dataset(16))
    with torch.no_grad():  # a reference apart from the policy, so k1 is not zero
        for p in trainer.ref_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    trainer.train()
