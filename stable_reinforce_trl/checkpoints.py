"""Restoring a full checkpoint's model weights, which transformers 5.23 silently skips for Qwen2.5-VL."""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager

from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

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
    DeepSpeed, FSDP and PEFT checkpoints are restored by their own code paths, which match keys correctly.
    """
    from transformers.modeling_utils import PreTrainedModel

    model = trainer.model
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled or not isinstance(model, PreTrainedModel):
        return False  # PEFT models are PeftModel instances: their adapter is reloaded by `load_adapter`
    if not os.path.isfile(os.path.join(checkpoint, "config.json")):
        return False
    if not load_checkpoint_weights(model, checkpoint):
        _load_whole_model(model, checkpoint)
    logger.info("Model weights restored from %s (transformers#43701 workaround).", checkpoint)
    return True


def _safetensors_files(checkpoint: str) -> list[str]:
    index = os.path.join(checkpoint, SAFE_WEIGHTS_INDEX_NAME)
    if os.path.isfile(index):
        with open(index) as f:
            return [os.path.join(checkpoint, name) for name in sorted(set(json.load(f)["weight_map"].values()))]
    single = os.path.join(checkpoint, SAFE_WEIGHTS_NAME)
    return [single] if os.path.isfile(single) else []


def load_checkpoint_weights(model, checkpoint: str) -> bool:
    """Copy a safetensors checkpoint into `model` one tensor at a time; False (nothing loaded) when the
    checkpoint is not safetensors or its keys need more than renaming (fused weights).

    Every process of a job resumes at once, so reading the whole model per process (what `from_pretrained`
    does) would hold a second copy in host memory on every rank: 33 GB each for Qwen2.5-VL-7B with an fp32
    head. Here the extra memory is one tensor. The keys go through transformers' own renamings for the
    model (the legacy names it saves under); each tensor is read in its saved dtype and copied into its
    parameter, bit for bit when the dtypes agree, which they do for a checkpoint of the same run. Strict:
    a saved key the model lacks, or a parameter the checkpoint lacks, raises.
    """
    import torch
    from safetensors import safe_open
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightRenaming, rename_source_key

    files = _safetensors_files(checkpoint)
    if not files:
        return False
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if not isinstance(t, WeightRenaming)]
    targets = model.state_dict(keep_vars=True)  # names -> the live parameters and persistent buffers
    plan = []  # (file, saved key, target name): decided before any copy, so a refusal loads nothing
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                name, converter = rename_source_key(key, renamings, converters, model.base_model_prefix, targets)
                if converter is not None:
                    return False
                if name not in targets:
                    raise KeyError(f"checkpoint {checkpoint}: saved tensor {key!r} (as {name!r}) is not in the model")
                plan.append((path, key, name))
    loaded = [id(targets[name]) for _, _, name in plan]
    if len(set(loaded)) < len(loaded):  # e.g. an untied checkpoint into a tied model: one would silently win
        raise KeyError(f"checkpoint {checkpoint}: several saved tensors map to one parameter (tied weights differ)")
    missing = [name for name, tensor in targets.items() if id(tensor) not in loaded]
    if missing:
        raise KeyError(f"checkpoint {checkpoint} holds no tensor for {missing[:5]} ({len(missing)} in all)")
    with torch.no_grad():
        for path in files:
            with safe_open(path, framework="pt") as f:
                for _, key, name in (entry for entry in plan if entry[0] == path):
                    targets[name].copy_(f.get_tensor(key))
    return True


def _load_whole_model(model, checkpoint: str) -> None:
    """The fallback for .bin checkpoints and fused keys: `from_pretrained` applies every conversion, then a
    strict `load_state_dict`. A model of one dtype is read in that dtype; a mixed one (bf16 with
    `cast_lm_head_to_fp32`'s fp32 head) in fp32, which holds every bf16 value exactly."""
    import torch

    dtypes = {p.dtype for p in model.parameters()}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    saved = type(model).from_pretrained(checkpoint, dtype=dtype, device_map="cpu")
    model.load_state_dict(saved.state_dict(), strict=True)
    del saved


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
