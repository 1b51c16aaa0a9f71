"""Video in training: the model's own video input (`pixel_values_videos`, `video_grid_thw`) through TRL's
trainers, which carry images only (TRL 1.16: GRPO never hands a video to the model, huggingface/trl#4144;
SFT's vision collator drops the `videos` column and never fills a video placeholder).

A judge row holds a video as a `{"type": "video"}` placeholder in its prompt and the frames in its `videos`
column (`data.pairs.to_judge_example`). `frames_as_images` (the recipes' dataset option, `convert` and
`select-hard`'s `--frames-as-images`) instead sends the frames as images, one placeholder each: every TRL
vision path takes that, at a higher token cost (no temporal merge). The choice is written into the trained
model's config (`record_presentation`), which W&B logs with the run and `Judge.from_pretrained` reads back, so
a judge is evaluated on the input it was trained on.

- `GRPOVideoInputs`, mixed into `StableReinforceTrainer`: the frames go into the prompt's video part, so TRL's
  own tokenization and generation (transformers) see the video; the processor call TRL makes for the
  training forward gets the videos too; each row's video tensors travel in the batch as per-row lists (TRL's
  shuffle and split keep lists aligned with rows); every policy/reference forward gets its rows' videos.
- `SFTVideoInputs`, for `SFTTrainer`: keeps the `videos` column and fills the video placeholders before TRL's
  collator runs.

A video reaches the processor as its frames, already sampled (`data.loaders` takes `num_frames` evenly spaced
frames of a folder). Every processor call here says so (`frames_kwargs`): frames are never resampled, and they
are taken as sampled at `FRAME_RATE`, the rate the Qwen-VL processors sample a video file at. That rate sets
Qwen2.5-VL's `second_per_grid_ts` and the timestamps Qwen3-VL and Qwen3.5 write before each frame; without
it, transformers assumes 24 fps and warns on every call.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

PRESENTATION_FIELD = "frames_as_images"
# What a forward takes of a video; Qwen2.5-VL only has `second_per_grid_ts` (the later families write time as text).
VIDEO_TENSORS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
FRAME_RATE = 2.0  # frames per second, the Qwen-VL video processors' own sampling rate


# ------------------------------------------------------------------------------------------ rows


def row_videos(example: dict) -> list[list]:
    """The videos of a judge row (each a list of frames); [] for an image-only row."""
    return [list(video) for video in example.get("videos") or [] if video]


def attach_videos(messages: list[dict], videos: list[list]) -> list[dict]:
    """`messages` with the frames of `videos` in its video placeholders, in order: the form the processor's
    chat template loads a video from. The row is copied, never changed."""
    if not videos:
        return messages
    remaining = iter(videos)
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [
                {**part, "video": next(remaining)} if part.get("type") == "video" and part.get("video") is None else part
                for part in content
            ]
            message = {**message, "content": content}
        out.append(message)
    if next(remaining, None) is not None:
        raise ValueError(f"a row has {len(videos)} video(s) but fewer {{'type': 'video'}} placeholders in its prompt")
    return out


def frames_kwargs(videos: list[list]) -> dict:
    """Processor kwargs for `videos` given as their sampled frames: kept as they are, `FRAME_RATE` apart."""
    metadata = [{"total_num_frames": len(v), "fps": FRAME_RATE, "frames_indices": list(range(len(v)))} for v in videos]
    return {"video_metadata": metadata, "do_sample_frames": False} if videos else {}


def _conversation_videos(conversation) -> list | None:
    """The videos a conversation (or a batch of them) carries, in order; None when one is not a list of frames
    (a file or a URL, whose own metadata the processor reads)."""
    batch = [conversation] if conversation and isinstance(conversation[0], dict) else conversation
    videos = [
        part.get("video") for messages in batch for message in messages if isinstance(message.get("content"), list)
        for part in message["content"] if part.get("type") == "video"
    ]  # fmt: skip
    return videos if all(isinstance(v, (list, tuple)) for v in videos) else None


class FramesAsSampled:
    """A processor whose calls with videos (direct or through `apply_chat_template`) pass `frames_kwargs`: the
    form TRL's collators and generation call it in. Everything else is the processor's own."""

    def __init__(self, processor):
        self._processor = processor

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def __call__(self, *args, videos=None, **kwargs):
        if videos and kwargs.get("video_metadata") is None:
            kwargs.update(frames_kwargs(videos))
        return self._processor(*args, videos=videos, **kwargs)

    def apply_chat_template(self, conversation, *args, processor_kwargs=None, **kwargs):
        videos = _conversation_videos(conversation)
        if videos and kwargs.get("tokenize"):
            processor_kwargs = {**frames_kwargs(videos), **(processor_kwargs or {})}
        return self._processor.apply_chat_template(conversation, *args, processor_kwargs=processor_kwargs, **kwargs)


# ------------------------------------------------------------------------------------------ presentation


def record_presentation(model, frames_as_images: bool) -> None:
    """Write the video presentation into the model's config: W&B logs it with the run, `save_pretrained`
    writes it to config.json, `Judge.from_pretrained` reads it."""
    setattr(model.config, PRESENTATION_FIELD, bool(frames_as_images))


def recorded_presentation(path) -> bool:
    """`frames_as_images` as recorded in a saved model's config (False, the native video, when absent)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return False
    return bool(getattr(config, PRESENTATION_FIELD, False))


def video_token_cost(processor, frames: list) -> tuple[int, int]:
    """Tokens one video takes in the prompt: (as a video, as its frames shown as images)."""
    merge = processor.video_processor.merge_size**2
    video = processor.video_processor(videos=[frames], return_tensors="pt", **frames_kwargs([frames]))
    as_video = int(video["video_grid_thw"].prod()) // merge
    grid = processor.image_processor(images=frames, return_tensors="pt")["image_grid_thw"]
    return as_video, int(grid.prod(-1).sum()) // processor.image_processor.merge_size**2


def log_token_cost_once(owner, processor, frames: list) -> None:
    if getattr(owner, "_video_cost_logged", False):
        return
    owner._video_cost_logged = True
    as_video, as_images = video_token_cost(processor, frames)
    size = getattr(frames[0], "size", None)
    logger.warning(
        "A video of %d frames%s costs %d prompt tokens as a video (%d as images with frames_as_images).",
        len(frames), f" at {size[0]}x{size[1]}" if size else "", as_video, as_images,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ GRPO


class _ProcessorWithVideos(FramesAsSampled):
    """The trainer's processor for one generation batch: its plain call (TRL's, for the training forward's
    inputs) also gets the videos of the rows whose text holds a video placeholder."""

    def __init__(self, processor, videos: list[list[list]]):
        super().__init__(processor)
        self._videos = videos

    def __call__(self, *args, text=None, images=None, **kwargs):
        if isinstance(images, list):  # a video-only row's images are None here: the processor wants them left out
            images = [image for row in images if row for image in (row if isinstance(row, list) else [row])] or None
        if text is not None and kwargs.get("videos") is None and len(text) == len(self._videos):
            videos = [v for t, row in zip(text, self._videos) if self._processor.video_token in t for v in row]
            kwargs["videos"] = videos or None
        return super().__call__(*args, text=text, images=images, **kwargs)


class _VideoForward:
    """`model` with the videos of the rows it is called on. TRL's log-prob pass calls the model on
    consecutive chunks of the batch, in order: the offset says which rows a call holds."""

    def __init__(self, model, rows: dict[str, list], token_ids: tuple[int | None, int | None]):
        self.model, self.rows, self.token_ids, self.offset = model, rows, token_ids, 0

    def __call__(self, input_ids=None, **kwargs):
        rows = slice(self.offset, self.offset + input_ids.size(0))
        self.offset = rows.stop
        grids = self.rows["video_grid_thw"][rows]
        if kwargs.get("image_grid_thw") is not None and len(kwargs["image_grid_thw"]) == 0:
            del kwargs["image_grid_thw"], kwargs["pixel_values"]  # TRL's slice of a chunk with videos only
        if sum(len(g) for g in grids):
            for key in self.rows:
                kwargs[key] = torch.cat(self.rows[key][rows])
            # Qwen2.5-VL and its successors place vision tokens (3-D rope) only from `mm_token_type_ids`; TRL
            # builds it from its image-only processor call, or not at all when a batch has no image.
            image_id, video_id = self.token_ids
            kwargs["mm_token_type_ids"] = (input_ids == image_id).int() + 2 * (input_ids == video_id).int()
        return self.model(input_ids=input_ids, **kwargs)


class GRPOVideoInputs:
    """Native video input for TRL's `GRPOTrainer` (mix in before it), on every family `tiny.FAMILIES` names."""

    _video_rows: dict[str, list] | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        dataset = self.train_dataset
        if dataset is None or "videos" not in (getattr(dataset, "column_names", None) or ()):
            return
        if self.use_vllm:
            raise ValueError(
                "The dataset holds videos, and TRL's vLLM generation carries images only. Send the frames as images "
                "(frames_as_images: true in the recipe, or `--frames-as-images` for convert/select-hard), or "
                "generate with transformers (use_vllm: false)."
            )

    def _video_tensors(self, videos: list[list[list]]) -> dict[str, list]:
        """Per-row lists of each video tensor (empty for a row without video), on the trainer's device."""
        processor = self.processing_class
        flat = [v for row in videos for v in row]
        out = processor(text=[processor.video_token] * len(flat), videos=flat, return_tensors="pt",
                        **frames_kwargs(flat))  # fmt: skip
        per_row = [len(row) for row in videos]
        grids = torch.split(out["video_grid_thw"], per_row)
        rows = {
            "pixel_values_videos": torch.split(out["pixel_values_videos"], [int(g.prod(-1).sum()) for g in grids]),
            "video_grid_thw": grids,
        }
        if "second_per_grid_ts" in out:
            seconds = torch.as_tensor(out["second_per_grid_ts"], dtype=torch.float32)
            rows["second_per_grid_ts"] = torch.split(seconds, per_row)
        device = self.accelerator.device
        return {key: [t.to(device) for t in tensors] for key, tensors in rows.items()}

    def _generate_and_score_completions(self, inputs):
        videos = [row_videos(example) for example in inputs]
        if not any(videos):
            self._video_rows = None
            return super()._generate_and_score_completions(inputs)
        log_token_cost_once(self, self.processing_class, next(v for row in videos for v in row))
        inputs = [{**x, "prompt": attach_videos(x["prompt"], v)} for x, v in zip(inputs, videos)]
        # Set before TRL's pass and kept after it: its old/reference log-probs, and any log-prob pass a
        # subclass runs on the same rows afterwards, take their videos from here.
        self._video_rows = self._video_tensors(videos)
        processor = self.processing_class
        self.processing_class = _ProcessorWithVideos(processor, videos)
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self.processing_class = processor
        output.update(self._video_rows)
        return output

    def compute_loss(self, model, inputs, *args, **kwargs):
        rows, self._video_rows = self._video_rows, {k: inputs[k] for k in VIDEO_TENSORS if k in inputs} or None
        try:
            return super().compute_loss(model, inputs, *args, **kwargs)
        finally:
            self._video_rows = rows

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, *args, **kwargs):
        for key in VIDEO_TENSORS:  # TRL's processor call made them for the whole batch: the rows' own are used
            kwargs.pop(key, None)
        rows = self._video_rows
        if rows is not None:
            if len(rows["video_grid_thw"]) != input_ids.size(0):
                raise RuntimeError(f"{input_ids.size(0)} rows in a forward, videos held for {len(rows['video_grid_thw'])}")
            kwargs.pop("mm_token_type_ids", None)
            model = _VideoForward(model, rows, (self._image_pad_token_id, self._video_pad_token_id))
        return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, *args, **kwargs)


# ------------------------------------------------------------------------------------------ SFT


class SFTVideoInputs:
    """Native video input for TRL's `SFTTrainer` (mix in before it): the `videos` column
    survives column pruning and fills each row's video placeholders right before TRL's collator."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        collate = self.data_collator
        processor = self.processing_class
        if hasattr(collate, "processor"):  # TRL's vision collator renders and processes each batch through it
            collate.processor = FramesAsSampled(collate.processor)

        def collate_with_videos(examples):
            out = []
            for example in examples:
                example = dict(example)
                videos = row_videos(example)
                example.pop("videos", None)
                if videos:
                    log_token_cost_once(self, processor, videos[0])
                    example["messages"] = attach_videos(example["messages"], videos)
                out.append(example)
            return collate(out)

        self.data_collator = collate_with_videos

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None and "videos" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "videos"]
