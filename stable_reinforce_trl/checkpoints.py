"""Restoring a full checkpoint's model weights, which transformers 5.23 silently skips for Qwen2.5-VL."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

logger = logging.getLogger(__name__)


class _KnownKeyMismatch(logging.Filter):
    """Drops the Trainer's missing/unexpected-key warnings for a checkpoint whose weights were already restored."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(
            ("There were missing keys in the checkpoint", "There were unexpected keys in the checkpoint")
        )


@contextmanager
def known_key_mismatch_silenced(active: bool = True):
    """While the Trainer's own (no-op) load runs after `restore_model_weights`, its key warnings are known
    false: silence them for that call only, so a real mismatch later in the process is still reported."""
    if not active:
        yield
        return
    trainer_logger, key_filter = logging.getLogger("transformers.trainer"), _KnownKeyMismatch()
    trainer_logger.addFilter(key_filter)
    try:
        yield
    finally:
        trainer_logger.removeFilter(key_filter)


def restore_model_weights(trainer, checkpoint: str) -> bool:
    """Load a full (non-PEFT, non-DeepSpeed, non-FSDP) checkpoint's weights into `trainer.model`; True if it did.

    `Trainer` loads those with `load_state_dict(strict=False)`, but transformers saves Qwen2.5-VL under its
    legacy key names (`model.layers.*`, `visual.*`), which match none of the model's own
    (`model.language_model.layers.*`, `model.visual.*`): nothing is loaded and training silently continues
    from the initial weights with the checkpoint's optimizer state (huggingface/transformers#43701).
    `from_pretrained` applies the key mapping; a strict `load_state_dict` then fails loudly on any mismatch.
    DeepSpeed, FSDP and PEFT checkpoints are restored by their own code paths, which match keys correctly.

    Every parameter comes back in its own dtype, bit for bit: a model of one dtype is read in that dtype; a
    mixed one (bf16 with `cast_lm_head_to_fp32`'s fp32 head) is read in fp32, which holds every bf16 value
    exactly, and `load_state_dict` copies each tensor into its parameter's dtype.
    """
    import torch
    from transformers.modeling_utils import PreTrainedModel

    model = trainer.model
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled or not isinstance(model, PreTrainedModel):
        return False  # PEFT models are PeftModel instances: their adapter is reloaded by `load_adapter`
    if not os.path.isfile(os.path.join(checkpoint, "config.json")):
        return False
    dtypes = {p.dtype for p in model.parameters()}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    saved = type(model).from_pretrained(checkpoint, dtype=dtype, device_map="cpu")
    model.load_state_dict(saved.state_dict(), strict=True)
    del saved
    logger.info("Model weights restored from %s (transformers#43701 workaround).", checkpoint)
    return True


class RestoresFullCheckpoints:
    """Mix in before a `transformers.Trainer` subclass: resume (`train(resume_from_checkpoint=...)`) and
    `load_best_model_at_end` then restore a full checkpoint's weights, which the Trainer alone skips for
    Qwen2.5-VL (see `restore_model_weights`)."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        restored = model is None and restore_model_weights(self, resume_from_checkpoint)
        with known_key_mismatch_silenced(restored):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self):
        restored = restore_model_weights(self, self.state.best_model_checkpoint)
        with known_key_mismatch_silenced(restored):
            super()._load_best_model()
