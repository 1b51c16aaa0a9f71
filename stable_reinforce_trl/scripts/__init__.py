"""The SFT and RL entry points, as TRL keeps `trl/scripts/`: `stable-reinforce sft|rl --config X.yaml`,
`accelerate launch -m stable_reinforce_trl.scripts.sft|rl --config X.yaml`, or the one-page files in `recipes/`.

- `judge_datasets`: what `dataset_name` may be (a file from any folder, pairs, `synthetic:N`) -> trainer rows;
- `completions_table`: TRL's completions table for vision prompts on W&B;
- `resume`: which checkpoint `--resume_from_checkpoint` means, and whether it sits on a generation boundary.
"""
