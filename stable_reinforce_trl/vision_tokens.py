"""Vision placeholder tokens in completions: never sampled, and harmless if a rollout holds one anyway.

A Qwen-VL prompt marks where image or video features go with placeholder tokens (`<|image_pad|>`,
`<|video_pad|>`, between `<|vision_start|>` and `<|vision_end|>`). The model's forward counts them in
the whole sequence and fails when a completion holds one more than the features ("Video features and
video tokens do not match, tokens: 65, features: 64"). TRL suppresses only `image_token_id`, and only
in transformers generation. Here every placeholder is suppressed in both backends, and any that still
arrives (a custom `rollout_func`, a server that ignores the request) is swapped for the pad token in the
forward and dropped from the loss.
"""

from __future__ import annotations

# The config fields that name a placeholder, on Qwen2-VL, Qwen2.5-VL and Qwen3-VL (top level or text_config).
PLACEHOLDER_FIELDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def vision_placeholder_ids(config) -> list[int]:
    """The placeholder token ids a model config names (none for a text-only model)."""
    ids = set()
    for part in (config, getattr(config, "text_config", None)):
        for name in PLACEHOLDER_FIELDS:
            value = getattr(part, name, None) if part is not None else None
            if isinstance(value, int) and value >= 0:
                ids.add(value)
    return sorted(ids)


def transformers_generation_kwargs(generation_kwargs: dict, ids: list[int]) -> dict:
    """`generation_kwargs` with every placeholder in `suppress_tokens` (the user's own kept)."""
    suppressed = sorted(set(generation_kwargs.get("suppress_tokens") or []) | set(ids))
    return {**generation_kwargs, "suppress_tokens": suppressed}


def vllm_generation_kwargs(generation_kwargs: dict | None, tokens: list[str]) -> dict:
    """vLLM `SamplingParams` keywords with every placeholder in `bad_words` (strings, so they also travel to a
    `trl vllm-serve` server as JSON; the user's own kept)."""
    generation_kwargs = dict(generation_kwargs or {})
    bad_words = list(generation_kwargs.get("bad_words") or [])
    generation_kwargs["bad_words"] = bad_words + [t for t in tokens if t not in bad_words]
    return generation_kwargs


def neutralize(completion_ids: list[list[int]], tool_mask: list[list[int]] | None, ids: list[int], pad_id: int):
    """Completions with each placeholder replaced by `pad_id` and masked out of the loss (through TRL's
    `tool_mask`, which is not the attention mask), and how many were replaced."""
    placeholders = set(ids)
    completion_ids = [row.tolist() if hasattr(row, "tolist") else list(row) for row in completion_ids]
    found = sum(token in placeholders for row in completion_ids for token in row)
    if not found:
        return completion_ids, tool_mask, 0
    if tool_mask is None:
        tool_mask = [[1] * len(row) for row in completion_ids]
    new_ids, new_mask = [], []
    for row, mask in zip(completion_ids, tool_mask):
        row, mask = list(row), list(mask)
        for i, token in enumerate(row):
            if token in placeholders:
                row[i], mask[i] = pad_id, 0
        new_ids.append(row)
        new_mask.append(mask)
    return new_ids, new_mask, found
