"""`PreferencePair`, the one record every source is read into, and its conversion to judge examples.

A pair knows which response humans preferred (`chosen`), not where it sits in the prompt: the
position (the label, "1" or "2") is assigned at conversion time, seeded and exactly balanced, so
a judge cannot score by always answering "1".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Iterable, Union

import datasets
from PIL import Image as PILImage

from ..prompts import judge_messages, judge_output

# A path (resolved, loaded lazily by `datasets.Image`) or an in-memory picture (synthetic data).
ImageRef = Union[str, PILImage.Image]
LABELS: tuple[str, str] = ("1", "2")


@dataclass
class PreferencePair:
    """One image(s)-question-two-responses sample with the human preference.

    `images` or `video` (the frames of one video, in order) carries the visual input. The
    annotation fields are filled by `stable-reinforce annotate`: `reasoning` is the teacher's trace
    written for the prompt in which `chosen` sat at position `reasoning_label`; `attempts` is how
    many tries the teacher needed (None: not annotated); `failed` means no try matched the label.
    `label` is where the source itself showed `chosen` ("1"/"2") when it fixes an order (Multimodal
    RewardBench's Output1/Output2, VL-RewardBench's response list, a judge row): the order an official
    benchmark protocol scores in. None for sources that only say chosen/rejected.
    """

    id: str
    question: str
    chosen: str
    rejected: str
    images: list[ImageRef] = field(default_factory=list)
    video: list[ImageRef] | None = None
    category: str = ""
    source: str = ""
    reasoning: str | None = None
    reasoning_label: str | None = None
    attempts: int | None = None
    failed: bool = False
    label: str | None = None

    def responses(self, label: str) -> tuple[str, str]:
        """(Response 1, Response 2) for the prompt whose correct answer is `label`."""
        if label not in LABELS:
            raise ValueError(f"label must be '1' or '2', got {label!r}")
        return (self.chosen, self.rejected) if label == "1" else (self.rejected, self.chosen)

    def with_annotation(
        self, reasoning: str | None, label: str | None, attempts: int, failed: bool
    ) -> "PreferencePair":
        return replace(self, reasoning=reasoning, reasoning_label=label, attempts=attempts, failed=failed)


def balanced_labels(n: int, seed: int = 0) -> list[str]:
    """n labels, half "1" and half "2" (one more "1" when n is odd), in a seeded random order."""
    labels = [LABELS[i % 2] for i in range(n)]
    random.Random(seed).shuffle(labels)
    return labels


def _prompt(pair: PreferencePair, label: str, frames_as_images: bool) -> list[dict]:
    answer1, answer2 = pair.responses(label)
    if pair.video is not None and not frames_as_images:
        return judge_messages(pair.question, answer1, answer2, video=True)
    return judge_messages(pair.question, answer1, answer2, num_images=len(_visuals(pair, frames_as_images)))


def _visuals(pair: PreferencePair, frames_as_images: bool) -> list[ImageRef]:
    if pair.video is not None and frames_as_images:
        return [*pair.images, *pair.video]
    return list(pair.images)


def to_judge_example(pair: PreferencePair, label: str, *, frames_as_images: bool = False) -> dict:
    """The pair as one judge row: `prompt` (TRL conversational), `images`, `label`, and id/category/source.

    `label` is where `chosen` goes ("1": first). Video frames go to a `videos` column (one video,
    a list of frames) unless `frames_as_images`, which sends them as images, one placeholder each,
    the form every TRL vision trainer accepts.
    """
    row = {
        "prompt": _prompt(pair, label, frames_as_images),
        "images": _visuals(pair, frames_as_images),
        "label": label,
        "id": pair.id,
        "category": pair.category,
        "source": pair.source,
    }
    if pair.video is not None and not frames_as_images:
        row["videos"] = [list(pair.video)]
    return row


def to_sft_example(pair: PreferencePair, *, frames_as_images: bool = False) -> dict:
    """The pair with its trace as one SFT row: `messages` (user judge prompt + assistant
    `<think>..</think><answer>N</answer>`) and `images`, in the order the trace was written for."""
    if pair.reasoning is None or pair.reasoning_label not in LABELS:
        raise ValueError(f"pair {pair.id!r} has no reasoning trace; annotate it first (stable-reinforce annotate)")
    row = to_judge_example(pair, pair.reasoning_label, frames_as_images=frames_as_images)
    answer = {"type": "text", "text": judge_output(pair.reasoning, int(pair.reasoning_label))}
    row["messages"] = [*row.pop("prompt"), {"role": "assistant", "content": [answer]}]
    return row


_PART = {"type": datasets.Value("string"), "text": datasets.Value("string")}
MESSAGES = datasets.List({"role": datasets.Value("string"), "content": datasets.List(_PART)})
_META = {name: datasets.Value("string") for name in ("label", "id", "category", "source")}


def _features(text_column: str, with_videos: bool) -> datasets.Features:
    features = {text_column: MESSAGES, "images": datasets.List(datasets.Image()), **_META}
    if with_videos:
        features["videos"] = datasets.List(datasets.List(datasets.Image()))
    return datasets.Features(features)


def _dataset(rows: list[dict], text_column: str) -> datasets.Dataset:
    with_videos = any("videos" in row for row in rows)
    if with_videos:  # Arrow needs every row to have the column
        rows = [row if "videos" in row else {**row, "videos": []} for row in rows]
    return datasets.Dataset.from_list(rows, features=_features(text_column, with_videos))


def judge_dataset(
    pairs: Iterable[PreferencePair], *, seed: int = 0, both_orders: bool = False, frames_as_images: bool = False
) -> datasets.Dataset:
    """Judge rows for RL or evaluation: `prompt`, `images` (lazy `Image` features), `label` "1"/"2",
    and id/category/source.

    Labels are seeded and exactly balanced; `both_orders` instead emits every pair twice, once per
    order (same `id`, labels "1" and "2"), to measure position bias.
    """
    pairs = list(pairs)
    if both_orders:
        rows = [to_judge_example(p, label, frames_as_images=frames_as_images) for p in pairs for label in LABELS]
    else:
        labels = balanced_labels(len(pairs), seed)
        rows = [to_judge_example(p, label, frames_as_images=frames_as_images) for p, label in zip(pairs, labels)]
    return _dataset(rows, "prompt")


def sft_dataset(pairs: Iterable[PreferencePair], *, frames_as_images: bool = False) -> datasets.Dataset:
    """SFT rows for TRL's SFTTrainer: `messages` (conversational, with the assistant's trace) plus `images`."""
    return _dataset([to_sft_example(p, frames_as_images=frames_as_images) for p in pairs], "messages")
