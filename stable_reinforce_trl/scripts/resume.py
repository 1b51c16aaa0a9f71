"""Resuming the recipes from a checkpoint: which one (the weights themselves: `stable_reinforce_trl.checkpoints`)."""

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
