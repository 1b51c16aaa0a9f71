"""Position-balanced rollouts: every pair of a rollout batch in both orders.

A judge that does not yet read the image can still raise its reward by learning where the better
response usually sits. In a rollout batch whose labels lean to "1", answering "1" everywhere scores
above chance, and a judge that always names the same position gets no signal back out (all its
samples agree, so none has an advantage). With both orders of each pair in the same batch, a
position prior scores exactly 50% and only reading the pair beats it.

The training set is doubled lazily: rows `0..N-1` are the user's, row `N + i` is row `i` marked to be
shown in the other order (the swap happens when the row reaches the trainer: same media, responses
exchanged in the judge prompt, label flipped). The sampler puts `i` and `N + i` in the same rollout
batch, so the batch keeps its size and `num_generations`, `steps_per_generation` and
`num_iterations` keep their meaning; it holds half as many distinct pairs.
"""

from __future__ import annotations

import datasets
import torch
from trl.trainer.utils import RepeatSampler

from .cli import UserError
from .prompts import swap_responses
from .rewards.functions import parse_label

# Internal columns, dropped from each row before TRL and the rewards see it: which order, and which pair.
SWAPPED_COLUMN, PAIR_COLUMN = "_position_swapped", "_position_pair"
PAIR_KEYS = (PAIR_COLUMN, SWAPPED_COLUMN)  # a rollout's pair, and which of its two orders


class PositionBalanceError(UserError, ValueError):
    """The dataset cannot be position-balanced; the message names the row and the fix."""


def check_batch(prompts_per_batch: int) -> None:
    """Both orders of a pair go in the same rollout batch: its number of prompts must be even."""
    if prompts_per_batch % 2:
        raise PositionBalanceError(
            f"position_balanced needs an even number of prompts per rollout batch (generation_batch_size / "
            f"num_generations), got {prompts_per_batch}: both orders of each pair go in the same batch. Change "
            "generation_batch_size or num_generations, or set position_balanced=False."
        )


def flip_label(value):
    """The other position, in the label's own type where it is plain ("1" -> "2", 1 -> 2)."""
    flipped = 3 - parse_label(value)
    return flipped if isinstance(value, int) else str(flipped)


def swapped_row(row: dict, label_column: str) -> dict:
    """The row shown in the other order: responses exchanged in the prompt, label flipped, media as is."""
    prompt = swap_responses(row["prompt"])
    if prompt is None:
        raise PositionBalanceError(f"row {row.get('id', '?')!r}: its prompt does not hold the judge prompt")
    return {**row, "prompt": prompt, label_column: flip_label(row[label_column])}


def unmark(rows: list[dict], label_column: str) -> list[dict]:
    """The rows a rollout batch reads: the marked copies swapped, the internal column dropped."""
    out = []
    for row in rows:
        row = dict(row)
        row.pop(PAIR_COLUMN, None)
        if row.pop(SWAPPED_COLUMN, False):
            row = swapped_row(row, label_column)
        out.append(row)
    return out


def check_judge_rows(dataset: datasets.Dataset, label_column: str) -> None:
    """Every row must be a judge row this module can swap: fail before training, naming the row."""
    fix = "build rows with `stable_reinforce_trl.data.judge_dataset` or set position_balanced=False"
    for i, row in enumerate(dataset.select_columns(["prompt", label_column])):
        if swap_responses(row["prompt"]) is None:
            raise PositionBalanceError(
                f"position_balanced: row {i}, field 'prompt': no text part holds the R1-Reward judge prompt "
                f"(`stable_reinforce_trl.prompts.JUDGE_PROMPT`), so its responses cannot be swapped; {fix}."
            )
        try:
            parse_label(row[label_column])
        except ValueError as error:
            raise PositionBalanceError(f"position_balanced: row {i}, field {label_column!r}: {error}") from None


def both_orders(dataset: datasets.Dataset) -> datasets.Dataset:
    """`dataset` followed by itself marked as swapped, each row with its pair's index: Arrow shares the data,
    nothing is copied or decoded."""
    n = len(dataset)
    doubled = datasets.concatenate_datasets([dataset, dataset])
    return doubled.add_column(SWAPPED_COLUMN, [False] * n + [True] * n).add_column(PAIR_COLUMN, [*range(n)] * 2)


class PositionBalancedSampler(RepeatSampler):
    """TRL's `RepeatSampler` over `both_orders(dataset)` whose every chunk of unique prompts (one rollout
    batch) holds pairs `i` and `N + i` side by side: the same shuffling, repeats and seeding."""

    def __init__(self, data_source, mini_repeat_count: int, batch_size: int = 1, repeat_count: int = 1,
                 shuffle: bool = True, seed: int | None = None):  # fmt: skip
        check_batch(batch_size)
        super().__init__(data_source, mini_repeat_count, batch_size, repeat_count, shuffle, seed)
        self.num_pairs = self.num_samples // 2

    def __iter__(self):
        n = self.num_pairs
        order = torch.randperm(n, generator=self.generator).tolist() if self.shuffle else list(range(n))
        per_batch = self.batch_size // 2
        for start in range(0, n - per_batch + 1, per_batch):
            chunk = [index for pair in order[start : start + per_batch] for index in (pair, n + pair)]
            for _ in range(self.repeat_count):
                for index in chunk:
                    yield from [index] * self.mini_repeat_count

    def __len__(self) -> int:
        return (self.num_pairs // (self.batch_size // 2)) * self.batch_size * self.mini_repeat_count * self.repeat_count
