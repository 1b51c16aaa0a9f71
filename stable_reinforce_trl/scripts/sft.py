"""
SFT cold start of an R1-Reward judge: TRL's `SFTTrainer` on judge conversations (the judge prompt with its
image(s), answered by a teacher's `<think>..</think><answer>N</answer>` trace).

# One GPU / many GPUs / many nodes (see recipes/README.md)
```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml -m stable_reinforce_trl.scripts.sft \
    --config recipes/qwen2.5-vl-7b/sft.yaml
```

# On CPU with the tiny model and the synthetic task (no files, no network)
```bash
stable-reinforce make-tiny-model outputs/tiny-cpu/model
accelerate launch --config_file recipes/accelerate_configs/cpu.yaml -m stable_reinforce_trl.scripts.sft \
    --config recipes/tiny-cpu/sft.yaml
```

`dataset_name` is a traces file written by `stable-reinforce select-hard --sft-out` (or any source with
`messages` + `images`), an annotated pairs file, or `synthetic:N[:difficulty[:seed]]`.
With `--use_peft`, the adapter is saved to `output_dir` and, unless `--merge_adapter false`, the merged
model to `output_dir/merged`: the model the RL recipe starts from.
"""

import argparse
import os
import sys
from dataclasses import dataclass, field

from ..checkpoints import RestoresFullCheckpoints
from ..cli import exit_code
from ..video import SFTVideoInputs, record_presentation
from .judge_datasets import JudgeScriptArguments, eval_split, load_recipe_dataset, parse_recipe_args
from .resume import push_and_end, resolve_checkpoint, train_and_save

MERGED_SUBDIR = "merged"


@dataclass
class SFTScriptArguments(JudgeScriptArguments):
    """
    Args:
        merge_adapter (`bool`, *optional*, defaults to `True`):
            With `use_peft`, also write the base model with the adapter merged in to `output_dir/merged`.
    """

    merge_adapter: bool = field(
        default=True, metadata={"help": "With use_peft, also save the merged model to output_dir/merged."}
    )


def merge_adapter(base_model: str, adapter_dir: str, model_init_kwargs: dict, frames_as_images: bool = False) -> str:
    """Base model + adapter -> `adapter_dir/merged`. The base is reloaded unquantized, even after QLoRA:
    a 4-bit base cannot take the sum."""
    from peft import PeftModel
    from transformers import AutoProcessor
    from trl.trainer.utils import create_model_from_path

    kwargs = {k: v for k, v in model_init_kwargs.items() if k not in ("quantization_config", "device_map")}
    # On CPU: the GPU still holds the trainer's memory, and a merge is only one weight sum per adapted layer.
    model = create_model_from_path(base_model, device_map="cpu", **kwargs)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    record_presentation(merged, frames_as_images)
    out = os.path.join(adapter_dir, MERGED_SUBDIR)
    merged.save_pretrained(out)
    AutoProcessor.from_pretrained(adapter_dir).save_pretrained(out)
    return out


def main(script_args, training_args, model_args):
    from trl import SFTTrainer, get_peft_config, get_quantization_config

    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    if training_args.model_init_kwargs is not None:
        model_init_kwargs.update(training_args.model_init_kwargs)
    training_args.model_init_kwargs = model_init_kwargs

    dataset = load_recipe_dataset(script_args, "sft", seed=training_args.seed)

    # `messages` + `images` rows go through SFTTrainer's own vision collator; with `assistant_only_loss` it
    # swaps in TRL's Qwen2.5-VL training template, so only the judge's answer is learned, not the prompt.
    peft_config = get_peft_config(model_args)
    # Resuming and load_best_model_at_end restore Qwen2.5-VL's weights (stable_reinforce_trl.checkpoints);
    # rows with a video reach the model as Qwen2.5-VL's video input (stable_reinforce_trl.video).
    class JudgeSFTTrainer(RestoresFullCheckpoints, SFTVideoInputs, SFTTrainer):
        pass

    trainer = JudgeSFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=eval_split(dataset, script_args, training_args.eval_strategy),
        quantization_config=get_quantization_config(model_args),
        peft_config=peft_config,
    )

    record_presentation(trainer.model, script_args.frames_as_images)
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    train_and_save(trainer, checkpoint, training_args.output_dir)

    # The RL recipe loads a full model by path; an adapter alone is not one.
    if peft_config is not None and script_args.merge_adapter:
        trainer.accelerator.wait_for_everyone()
        if trainer.accelerator.is_main_process:
            merged = merge_adapter(
                model_args.model_name_or_path, training_args.output_dir, model_init_kwargs, script_args.frames_as_images
            )
            trainer.accelerator.print(f"🔗 Merged model saved to {merged}.")
        trainer.accelerator.wait_for_everyone()

    push_and_end(trainer, training_args, script_args.dataset_name)
    return trainer


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None):
    from trl import ModelConfig, SFTConfig, TrlParser

    dataclass_types = (SFTScriptArguments, SFTConfig, ModelConfig)
    if subparsers is not None:
        return subparsers.add_parser("sft", help="SFT cold start of a judge", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types, prog=prog)


def cli_main(argv: list[str] | None = None) -> int:
    """`stable-reinforce sft --config X.yaml [--field value ...]`: one process; use `accelerate launch -m
    stable_reinforce_trl.scripts.sft` for several."""
    parser = make_parser(prog="stable-reinforce sft")
    main(*parse_recipe_args(parser, argv))  # a user's mistake: one message, exit 2
    return 0


if __name__ == "__main__":
    sys.exit(exit_code(cli_main))
