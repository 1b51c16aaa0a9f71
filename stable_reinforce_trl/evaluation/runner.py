"""Running a judge over preference pairs: the thin layer between the loaders, the model and `scoring`.

Generations go to a jsonl cache as each batch finishes, keyed by pair, order, sample index and the
judge's settings (model, decoding), so a killed run resumes where it stopped and a run with a larger k
reuses the samples it already has.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from ..data.pairs import PreferencePair
from ..data.records import pair_key
from ..judge import Judge, JudgeRequest
from ..prompts import parse_verdict
from .scoring import JudgedOrder, JudgedPair, benchmark_category, official_summary, schedule, summarize


class GenerationCache:
    """Judge outputs on disk, one jsonl line per sample: `{pair, order, sample, settings, model, text}`.

    Only lines whose settings match this run's are used; a torn last line (a run killed mid-write) is skipped.
    """

    def __init__(self, path: str | os.PathLike, settings: dict):
        self.path = Path(path)
        self.settings_id = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.model = settings.get("model", "")
        self._texts: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
        # A run killed mid-write leaves a line without its newline: the next append must not extend it.
        self._torn = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                self._torn = f.read(1) != b"\n"
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if row.get("settings") == self.settings_id:
                        self._texts[(row["pair"], row["order"])][int(row["sample"])] = row["text"]

    def get(self, key: str, label: str, k: int) -> list[str]:
        """The leading run of cached samples 0, 1, ... for (pair, order), at most k of them."""
        samples = self._texts.get((key, label), {})
        texts = []
        while len(texts) < k and len(texts) in samples:
            texts.append(samples[len(texts)])
        return texts

    def add(self, key: str, label: str, texts: Sequence[str], start: int = 0) -> None:
        """Record samples `start`, `start + 1`, ... and append them to the file at once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for offset, text in enumerate(texts):
            self._texts[(key, label)][start + offset] = text
            lines.append(json.dumps({"pair": key, "order": label, "sample": start + offset,
                                     "settings": self.settings_id, "model": self.model, "text": text}) + "\n")
        with open(self.path, "a", encoding="utf-8") as f:
            if self._torn:
                f.write("\n")
                self._torn = False
            f.writelines(lines)
            f.flush()


def _size(pair: PreferencePair) -> int:
    """A rough prompt size, for grouping similar lengths into a batch (an image costs hundreds of tokens)."""
    media = len(pair.images) + len(pair.video or ())
    return len(pair.question) + len(pair.chosen) + len(pair.rejected) + 500 * media


def evaluate(
    pairs: Sequence[PreferencePair],
    judge: Judge,
    *,
    benchmark: str = "pairs",
    order: str | None = None,
    k: int = 1,
    seed: int = 0,
    protocol: str = "ours",
    cache: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Judge every pair as the protocol asks and return its metrics plus the run's settings, counts and
    throughput.

    `protocol="ours"` (default): every pair in the `order`s asked (`both`, the default; `random`;
    `chosen-first`) with k samples each, scored by `scoring.summarize`. `protocol="official"`: in the
    benchmark's own order (`scoring.schedule`), scored by `scoring.official_summary`.
    `cache`: a jsonl path for generations (resumable); None keeps nothing.
    """
    started = time.perf_counter()
    order, plan = schedule(len(pairs), protocol=protocol, benchmark=benchmark, order=order, k=k, seed=seed,
                           released=[p.label for p in pairs])
    keys = [pair_key(p) for p in pairs]
    settings = judge.settings(k)
    store = GenerationCache(cache, settings) if cache is not None else None
    texts: dict[tuple[int, str], list[str]] = {}
    todo: dict[int, list[tuple[int, str]]] = defaultdict(list)  # samples missing -> units
    for i, wanted in enumerate(plan):
        for label, count in wanted.items():
            texts[(i, label)] = store.get(keys[i], label, count) if store else []
            if len(texts[(i, label)]) < count:
                todo[count - len(texts[(i, label)])].append((i, label))
    units = sum(map(len, plan))
    cached_units = units - sum(map(len, todo.values()))

    if todo and k > 1:
        import torch

        torch.manual_seed(seed)
    from tqdm.auto import tqdm

    generated = 0
    with tqdm(total=units, initial=cached_units, unit="prompt", desc="judging", disable=not progress) as bar:
        for missing, batch_units in todo.items():
            # Longest prompts first: less padding per batch, and an out-of-memory shows up at once.
            batch_units.sort(key=lambda unit: -_size(pairs[unit[0]]))
            for start in range(0, len(batch_units), judge.batch_size):
                chunk = batch_units[start : start + judge.batch_size]
                requests = [JudgeRequest.from_pair(pairs[i], label) for i, label in chunk]
                for (i, label), new in zip(chunk, judge.generate(requests, k, n=missing)):
                    if store:
                        store.add(keys[i], label, new, start=len(texts[(i, label)]))
                    texts[(i, label)] = texts[(i, label)] + list(new)
                    generated += len(new)
                bar.update(len(chunk))

    judged = [
        JudgedPair(
            id=pair.id,
            category=benchmark_category(benchmark, pair.category, pair.id),
            orders=tuple(JudgedOrder(label, tuple(parse_verdict(t) for t in texts[(i, label)]))
                         for label in plan[i]),
            group=pair.id,
        )
        for i, pair in enumerate(pairs)
    ]
    metrics = summarize(judged, benchmark, order) if protocol == "ours" else official_summary(judged, benchmark)
    elapsed = time.perf_counter() - started
    return {
        "benchmark": benchmark,
        "protocol": protocol,
        "order": order,
        "k": k,
        "seed": seed,
        **metrics,
        "generation": settings,
        "prompts": units,
        "prompts_cached": cached_units,
        "samples_generated": generated,
        "elapsed_s": round(elapsed, 3),
        "pairs_per_s": len(pairs) / elapsed if elapsed > 0 else None,
    }
