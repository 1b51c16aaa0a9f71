"""
StableReinforce (R1-Reward) RL of a judge: `StableReinforceTrainer` with the R1 reward (format + result +
consistency from a referee), the advantage filter and the pre-clipped loss, all set from
`StableReinforceConfig` fields.

# 8 GPUs, vLLM colocated, referee served by `vllm serve` (see recipes/README.md for the other set-ups)
```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml -m stable_reinforce_trl.scripts.rl \
    --config recipes/qwen2.5-vl-7b/stable_reinforce.yaml
```

# One GPU, LoRA (with beta > 0 the reference model is the policy with its adapter disabled, as in TRL)
```bash
accelerate launch -m stable_reinforce_trl.scripts.rl --config recipes/qwen2.5-vl-3b/stable_reinforce.yaml \
    --use_peft --beta 0.001 --model_name_or_path outputs/qwen2.5-vl-3b-sft/merged
```

# On CPU with the tiny model and the synthetic task, starting from the tiny SFT output
```bash
accelerate launch --config_file recipes/accelerate_configs/cpu.yaml -m stable_reinforce_trl.scripts.rl \
    --config recipes/tiny-cpu/stable_reinforce.yaml
```
"""

import argparse
import importlib
import os
import sys
from dataclasses import dataclass, field

from ..cli import exit_code
from ..video import record_presentation
from .completions_table import VisionCompletionsTable
from .judge_datasets import JudgeScriptArguments, eval_split, load_recipe_dataset, parse_recipe_args
from .resume import check_checkpoint_alignment, push_and_end, resolve_checkpoint, train_and_save


@dataclass
class StableReinforceScriptArguments(JudgeScriptArguments):
    """
    Args:
        reward_funcs (`list[str]`, *optional*):
            Reward functions added to the R1 reward: TRL's (`think_format_reward`, ...) or any dotted import path
            (e.g. `my_lib.rewards.custom_reward`). Weigh them with `reward_weights`, the R1 reward first.
    """

    reward_funcs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Reward functions added to the R1 reward: a name from trl.rewards (e.g. think_format_reward) or "
            "a dotted import path (e.g. my_lib.rewards.custom_reward)."
        },
    )


def load_reward_funcs(names: list[str] | None) -> list:
    import trl.rewards

    funcs = []
    for name in names or []:
        if "." not in name and hasattr(trl.rewards, name):
            funcs.append(getattr(trl.rewards, name))
        elif "." in name:
            module_path, func_name = name.rsplit(".", 1)
            # As in TRL's grpo script: a module in the working directory is importable.
            sys.path.insert(0, os.getcwd())
            funcs.append(getattr(importlib.import_module(module_path), func_name))
        else:
            raise ValueError(f"Could not load reward function {name!r}: not in trl.rewards, not a dotted import path.")
    return funcs



def main(script_args, training_args, model_args):
    from accelerate.logging import get_logger
    from trl import get_peft_config, get_quantization_config

    from stable_reinforce_trl import StableReinforceTrainer
    from stable_reinforce_trl.rewards import build_r1_reward
    from stable_reinforce_trl.rewards.referees import API_KEY_ENV

    logger = get_logger(__name__)

    # See completions_table.py: TRL's completions table, fixed for vision prompts on W&B.
    class Trainer(VisionCompletionsTable, StableReinforceTrainer):
        pass

    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    if training_args.model_init_kwargs is not None:
        model_init_kwargs.update(training_args.model_init_kwargs)
    training_args.model_init_kwargs = model_init_kwargs

    # The key reaches the referee through the environment instead, so that neither the W&B config
    # (args.to_dict()) nor training_args.bin in every checkpoint holds it.
    if training_args.referee_api_key:
        os.environ[API_KEY_ENV] = training_args.referee_api_key
        training_args.referee_api_key = None

    dataset = load_recipe_dataset(script_args, "rl", label_column=training_args.label_column, seed=training_args.seed)

    # None: the trainer builds the R1 reward (and its referee) from the config's referee*/*_weight fields.
    extra = load_reward_funcs(script_args.reward_funcs)
    reward_funcs = [build_r1_reward(training_args), *extra] if extra else None

    # With a peft_config and beta > 0, TRL takes the reference log-probs from the policy with the adapter
    # disabled: no second copy of the model.
    trainer = Trainer(
        model=model_args.model_name_or_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=eval_split(dataset, script_args, training_args.eval_strategy),
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )

    # The video presentation travels with the model (W&B's config, config.json, Judge.from_pretrained).
    record_presentation(trainer.model, script_args.frames_as_images)
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    check_checkpoint_alignment(training_args, checkpoint, logger)
    # StableReinforceTrainer restores the model weights itself (stable_reinforce_trl.checkpoints).
    train_and_save(trainer, checkpoint, training_args.output_dir)
    push_and_end(trainer, training_args, script_args.dataset_name)
    return trainer


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import ModelConfig, TrlParser

    from stable_reinforce_trl import StableReinforceConfig

    dataclass_types = (StableReinforceScriptArguments, StableReinforceConfig, ModelConfig)
    if subparsers is not None:
        return subparsers.add_parser(
            "stable-reinforce", help="StableReinforce RL of a judge", dataclass_types=dataclass_types
        )
    return TrlParser(dataclass_types, prog=prog)


def cli_main(argv: list[str] | None = None) -> int:
    """`stable-reinforce rl --config X.yaml [--field value ...]`: one process; use `accelerate launch -m
    stable_reinforce_trl.scripts.rl` for several."""
    parser = make_parser(prog="stable-reinforce rl")
    main(*parse_recipe_args(parser, argv))  # a user's mistake: one message, exit 2
    return 0


if __name__ == "__main__":
    sys.exit(exit_code(cli_main))
