"""Running the recipes' trainers: which checkpoint a resume means (the weights themselves:
`stable_reinforce_trl.checkpoints`), whether it sits on a generation boundary, and the end of a run."""

from __future__ import annotations

import os
import re


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """A checkpoint folder, or `None`. `last` (or `true`) means the newest `checkpoint-*` in `output_dir`,
    as `Trainer.train(resume_from_checkpoint=True)` does, so a preempted job can rerun its own command."""
    from transformers.trainer_utils import get_last_checkpoint

    if resume_from_checkpoint is None or resume_from_checkpoint.lower() in ("", "none", "false"):
        return None
    if resume_from_checkpoint.lower() in ("last", "true"):
        checkpoint = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if checkpoint is None:
            raise ValueError(f"resume_from_checkpoint={resume_from_checkpoint!r}: no checkpoint-* in {output_dir}")
        return checkpoint
    return resume_from_checkpoint

def generation_period(args) -> int:
    """Optimizer steps that one generation batch feeds (TRL regenerates every `steps_per_generation *
    num_iterations` micro-steps)."""
    return max(1, args.steps_per_generation * args.num_iterations // args.gradient_accumulation_steps)


def check_checkpoint_alignment(args, checkpoint: str | None, logger) -> None:
    # TRL keeps the generated batch in memory only: a checkpoint taken part-way through it resumes with a fresh
    # generation from the same prompts and shifts which prompts the following steps see. Checkpoints on
    # generation boundaries resume exactly.
    period = generation_period(args)
    if period == 1:
        return
    if args.save_strategy == "steps" and args.save_steps >= 1 and int(args.save_steps) % period:
        logger.warning(
            f"save_steps={args.save_steps} is not a multiple of {period}, the optimizer steps each generation batch "
            "feeds: resuming from such a checkpoint regenerates that batch and shifts the data order. "
            f"Use a multiple of {period}."
        )
    found = re.fullmatch(r"checkpoint-(\d+)", os.path.basename(os.path.normpath(checkpoint or "")))
    if found:
        step = int(found.group(1))
        if step % period:
            logger.warning(f"{checkpoint} falls inside a generation batch (every {period} steps): data order shifts.")


def train_and_save(trainer, checkpoint: str | None, output_dir: str) -> None:
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.accelerator.print("✅ Training completed.")
    trainer.save_model(output_dir)
    trainer.accelerator.print(f"💾 Model saved to {output_dir}.")


def push_and_end(trainer, args, dataset_name: str | None) -> None:
    """The end of TRL's scripts: push when asked, then `Trainer.end()` (transformers >= 5.18: closes the
    trackers, e.g. W&B's run)."""
    import transformers
    from packaging.version import Version

    if args.push_to_hub:
        trainer.push_to_hub(dataset_name=dataset_name)
        trainer.accelerator.print(f"🤗 Model pushed to the Hub in https://huggingface.co/{trainer.hub_model_id}.")
    if Version(transformers.__version__) >= Version("5.18.0"):
        trainer.end()
