"""A tiny, random-init Qwen judge built offline: real architecture, real processor, local tokenizer.

Tests, the demo and the CPU recipes use it so that nothing reaches a model hub; everything
downstream loads it with the same `from_pretrained(path)` calls that load
`Qwen/Qwen2.5-VL-7B-Instruct` on a GPU machine. Three families, each with its released
checkpoints' chat template (as TRL stores it), processor classes and special tokens:

- `qwen2.5-vl`: Qwen2.5-VL (14-pixel patches), the paper's base model; the default;
- `qwen3-vl`: Qwen3-VL (16-pixel patches, DeepStack vision features, interleaved mrope);
- `qwen3.5`: Qwen3.5, natively multimodal, its text layers mostly linear attention (Gated DeltaNet),
  with the thinking chat template of Qwen3.5-4B and larger (the generation prompt opens `<think>`).

What the package knows of each family lives here; elsewhere it reads the model's own config and chat template
(`prompts.generation_opening`) and processor (`video.py`'s native video).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

# Qwen2.5's special tokens, in Qwen's order, so ids and roles match the real tokenizer's layout.
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# Whole tokens for the judge's tags: a 7B tokenizer has the vocabulary to make these cheap; a tiny
# one does not, and a tiny model learns the format far faster when each tag is a single token.
JUDGE_TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
# Qwen2's pre-tokenizer split: single digits, no leading space. "Response 2" and "<answer>2" then share
# the token "2", as in the real tokenizer, so copying the stated verdict into the answer is a plain copy.
QWEN_PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

FAMILIES = ("qwen2.5-vl", "qwen3-vl", "qwen3.5")
# The chat template each family's released checkpoints ship (TRL keeps them byte for byte, to recognise them).
CHAT_TEMPLATES = {
    "qwen2.5-vl": "qwen2_5_vl.jinja",
    "qwen3-vl": "qwen3_vl.jinja",
    "qwen3.5": "qwen3_5_think.jinja",  # Qwen3.5-4B and larger: the generation prompt opens `<think>`
}

# The format check each family's judgements pass: Qwen3.5's template writes a blank line between `</think>` and
# `<answer>`, which the reference's strict pattern refuses (its recipe sets `format_mode: lenient` too).
FORMAT_MODES = {"qwen2.5-vl": "strict", "qwen3-vl": "strict", "qwen3.5": "lenient"}

TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
# Qwen3-VL's and Qwen3.5's tower: 16-pixel patches and a learned position table (8 x 8 patches).
TINY_VISION_QWEN3 = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                         num_position_embeddings=64)  # fmt: skip
TINY_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, fullatt_block_indexes=[1], window_size=56)
# Small images keep the tiny model's prompts short: at most 112x112 pixels = 16 image tokens.
TINY_IMAGE_PIXELS = dict(min_pixels=28 * 28, max_pixels=112 * 112)
# Qwen3-VL and Qwen3.5: 16-pixel patches merged 2x2, so 32-pixel units; at most 128x128 = 16 image tokens.
TINY_IMAGE_SIZE_QWEN3 = {"shortest_edge": 32 * 32, "longest_edge": 128 * 128}


def _training_text() -> str:
    """The text the BPE tokenizer is trained on: the judge prompt plus the synthetic task's words."""
    from .prompts import JUDGE_PROMPT

    words = (
        "red green blue yellow purple orange black white circle square triangle star left right top bottom "
        "center one two three four five six seven eight nine zero there is are a an the image shows response "
        "better worse correct wrong count colour color shape position question answer which how many what "
        "of in on at and but not both so therefore because matches says claims picture So The What Which How Where There"
    )
    return "\n".join([JUDGE_PROMPT] * 4 + [words] * 20 + [" ".join(str(i) for i in range(100))])


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def build_tiny_tokenizer(vocab_size: int = 1024, family: str = "qwen2.5-vl"):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_training_text()], trainer=trainer)
    _check_family(family)
    chat_template = (resources.files("trl") / "chat_templates" / CHAT_TEMPLATES[family]).read_text()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIAL_TOKENS[1:],
        chat_template=chat_template,
        model_max_length=32768,
    )
    tokenizer.add_tokens(JUDGE_TAG_TOKENS)
    return tokenizer


def build_tiny_processor(vocab_size: int = 1024, family: str = "qwen2.5-vl"):
    tokenizer = build_tiny_tokenizer(vocab_size, family)
    if family == "qwen2.5-vl":
        from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        image_processor = Qwen2VLImageProcessor(**TINY_IMAGE_PIXELS)
        video_processor = Qwen2VLVideoProcessor(**TINY_IMAGE_PIXELS)
        processor_cls = Qwen2_5_VLProcessor
    else:  # Qwen3.5 loads Qwen3-VL's processor (transformers' AutoProcessor maps qwen3_5 to it)
        from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

        image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, size=TINY_IMAGE_SIZE_QWEN3)
        video_processor = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, size=TINY_IMAGE_SIZE_QWEN3)
        processor_cls = Qwen3VLProcessor
    return processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                         chat_template=tokenizer.chat_template)  # fmt: skip


def _mrope_section(rotary_half: int) -> list[int]:
    """mrope splits the rotated half-dims of each head between time, height and width."""
    return [rotary_half - 2 * (rotary_half // 3), rotary_half // 3, rotary_half // 3]


def _special_token_ids(tok) -> dict:
    return dict(
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )


def build_tiny_model(processor, seed: int = 0, tie_word_embeddings: bool = True, family: str = "qwen2.5-vl",
                     **text_overrides):  # fmt: skip
    import torch
    import transformers

    _check_family(family)
    tok = processor.tokenizer
    text = {**TINY_TEXT, **text_overrides}
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    text_config = dict(
        **text,
        vocab_size=len(tok),
        max_position_embeddings=4096,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
    )
    if family == "qwen2.5-vl":
        config_cls, model_cls = transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration
        vision = dict(**TINY_VISION, out_hidden_size=text["hidden_size"])
        text_config["rope_parameters"] = {"rope_type": "default", "mrope_section": _mrope_section(head_dim // 2),
                                          "rope_theta": 1e6}  # fmt: skip
    else:
        # The released configs' shape at tiny size: an explicit head_dim, interleaved mrope, 16-pixel patches.
        vision = dict(**TINY_VISION_QWEN3, out_hidden_size=text["hidden_size"])
        text_config["head_dim"] = head_dim
        if family == "qwen3-vl":
            config_cls, model_cls = transformers.Qwen3VLConfig, transformers.Qwen3VLForConditionalGeneration
            vision["deepstack_visual_indexes"] = [0]  # DeepStack features from a vision layer
            text_config["rope_parameters"] = {"rope_type": "default", "mrope_section": _mrope_section(head_dim // 2),
                                              "mrope_interleaved": True, "rope_theta": 5e6}  # fmt: skip
        else:
            config_cls, model_cls = transformers.Qwen3_5Config, transformers.Qwen3_5ForConditionalGeneration
            # Qwen3.5 rotates part of each head (a quarter of 256 dims; half of the tiny head's 16, so that time,
            # height and width each keep a section); its layers go 3 linear-attention : 1 full.
            text_config["rope_parameters"] = {"rope_type": "default", "mrope_section": _mrope_section(head_dim // 4),
                                              "mrope_interleaved": True, "rope_theta": 1e7,
                                              "partial_rotary_factor": 0.5}  # fmt: skip
            text_config.update(linear_key_head_dim=head_dim, linear_value_head_dim=head_dim, linear_num_key_heads=2,
                               linear_num_value_heads=4,
                               full_attention_interval=min(4, text["num_hidden_layers"]))  # fmt: skip
    config = config_cls(text_config=text_config, vision_config=vision, tie_word_embeddings=tie_word_embeddings,
                        **_special_token_ids(tok))  # fmt: skip
    torch.manual_seed(seed)
    model = model_cls(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def make_tiny_model(output_dir: str | Path, seed: int = 0, tie_word_embeddings: bool = True,
                    family: str = "qwen2.5-vl", **text_overrides) -> Path:  # fmt: skip
    """Build and save a tiny judge of `family` (model, tokenizer, processor) so `from_pretrained(output_dir)`
    loads it.

    Deterministic for a seed: the same seed writes the same weights. `tie_word_embeddings=False` gives the
    7B's layout (a separate `lm_head`); the default ties them, as the 3B does.
    """
    output_dir = Path(output_dir)
    processor = build_tiny_processor(family=family)
    model = build_tiny_model(processor, seed=seed, tie_word_embeddings=tie_word_embeddings, family=family,
                             **text_overrides)  # fmt: skip
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    (output_dir / "tiny_model.json").write_text(json.dumps({"seed": seed, "family": family, **TINY_TEXT,
                                                            **text_overrides}))  # fmt: skip
    return output_dir
