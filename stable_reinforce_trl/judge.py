"""A trained judge put to work: compare two responses, k samples, both orders, batched.

    judge = Judge.from_pretrained("path/to/judge")   # vLLM when installed and on a GPU, else transformers
    result = judge.compare("What colour is the car?", "Red.", "Blue.", images=["car.png"], k=5)
    result.share, result.winner, result.verdicts, result.reasoning

The prompt is the training prompt (`prompts.judge_messages` + the processor's chat template), so the
judge is evaluated on exactly what it learned. Sampling settings are explicit (top-p 1, no top-k,
no repetition penalty), as in TRL's rollouts, rather than whatever `generation_config.json` holds:
Qwen's shipped config (top-k 1) would silently turn "temperature 1.0" into greedy decoding.

Also here: `JudgeReward` (the judge as a TRL reward function) and `best_of_n`.
"""

from __future__ import annotations

import io
import itertools
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol, Sequence

from .prompts import INVALID, Verdict, completion_text, generation_opening, judge_messages, parse_judgement

BACKENDS = ("auto", "transformers", "vllm")


# ------------------------------------------------------------------------------------------ requests


@dataclass(frozen=True)
class JudgeRequest:
    """One question with two responses, in the order they are shown (Response 1, Response 2).

    `images` are paths, `{"bytes"/"path"}` dicts or PIL images; `video` the frames of one video.
    """

    question: str
    response1: str
    response2: str
    images: Sequence[Any] = ()
    video: Sequence[Any] | None = None

    def swapped(self) -> "JudgeRequest":
        """The same comparison with the responses shown the other way round."""
        return replace(self, response1=self.response2, response2=self.response1)

    @classmethod
    def from_pair(cls, pair, label: str) -> "JudgeRequest":
        """A `PreferencePair` with `chosen` shown at position `label` ("1" or "2")."""
        first, second = pair.responses(label)
        return cls(pair.question, first, second, tuple(pair.images), pair.video)

    def as_images(self) -> "JudgeRequest":
        """The video's frames shown as images, as a judge trained with `frames_as_images` saw them."""
        return self if self.video is None else replace(self, images=(*self.images, *self.video), video=None)

    def messages(self) -> list[dict]:
        """The training prompt: image/video placeholders, then the judge text."""
        if self.video is None:
            return judge_messages(self.question, self.response1, self.response2, num_images=len(self.images))
        messages = judge_messages(self.question, self.response1, self.response2, video=True)
        messages[0]["content"][:0] = [{"type": "image"} for _ in self.images]  # rare: images beside a video
        return messages


def load_image(ref: Any):
    """A PIL RGB image from a path, a `{"bytes", "path"}` dict (as `datasets` stores images) or a PIL image."""
    from PIL import Image

    if isinstance(ref, (str, os.PathLike)):
        with Image.open(ref) as image:
            return image.convert("RGB")
    if isinstance(ref, dict):
        source = io.BytesIO(ref["bytes"]) if ref.get("bytes") else ref.get("path")
        if source is None:
            raise ValueError(f"image dict without bytes or path: {sorted(ref)}")
        with Image.open(source) as image:
            return image.convert("RGB")
    if hasattr(ref, "convert"):
        return ref.convert("RGB")
    raise TypeError(f"cannot read an image from a {type(ref).__name__}; give a path, bytes dict or PIL image")


# ------------------------------------------------------------------------------------------ backends


@dataclass(frozen=True)
class Sampling:
    """How each prompt is decoded: greedy (`do_sample=False`, one sample) or `n` samples at `temperature`."""

    n: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    max_new_tokens: int = 1024

    def as_dict(self) -> dict:
        settings = {"do_sample": self.do_sample, "max_new_tokens": self.max_new_tokens}
        return {**settings, "temperature": self.temperature} if self.do_sample else settings


class JudgeBackend(Protocol):
    """Generates judge outputs: `n` texts per request, in request order."""

    name: str

    def generate(self, requests: Sequence[JudgeRequest], sampling: Sampling) -> list[list[str]]: ...


def _forced_processor(token_ids: list[int], eos_token_id: int, prompt_length: int):
    import torch
    from transformers import LogitsProcessor

    class ForceOutput(LogitsProcessor):
        """Every row emits `token_ids` then EOS: the rest of generation (batching, sampling, decoding) stays real."""

        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - prompt_length
            target = token_ids[step] if step < len(token_ids) else eos_token_id
            forced = torch.full_like(scores, float("-inf"))
            forced[:, target] = 0.0
            return forced

    return ForceOutput()


class TransformersBackend:
    """Batched `model.generate` with left padding.

    `force_output` (tests, debugging) makes every sample this exact text, through a real
    `LogitsProcessor` on real generation: e.g. `"<think>x</think><answer>1</answer>"` is a judge that
    always answers 1, whose position bias the evaluation must expose.
    """

    def __init__(self, model, processor, *, name: str | None = None, force_output: str | None = None):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.force_output = force_output
        self._forced_ids = self.tokenizer.encode(force_output, add_special_tokens=False) if force_output else None
        self.opening = generation_opening(processor)  # what the prompt already wrote of the answer (Qwen3.5)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str | None = None, dtype: str = "auto",
                        force_output: str | None = None) -> "TransformersBackend":
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(path)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(model, processor, name=os.path.abspath(path) if os.path.exists(path) else str(path),
                   force_output=force_output)

    def _eos(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        return list(eos) if isinstance(eos, (list, tuple)) else [eos]

    def generate(self, requests: Sequence[JudgeRequest], sampling: Sampling) -> list[list[str]]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        from .video import frames_kwargs

        if not requests:
            return []
        texts = self.processor.apply_chat_template([r.messages() for r in requests], add_generation_prompt=True,
                                                   tokenize=False)
        images = [load_image(x) for r in requests for x in r.images]
        videos = [[load_image(f) for f in r.video] for r in requests if r.video is not None]
        inputs = self.processor(text=texts, images=images or None, videos=videos or None, return_tensors="pt",
                                padding=True, padding_side="left", **frames_kwargs(videos)).to(self.model.device)
        prompt_length = inputs["input_ids"].shape[1]
        eos = self._eos()
        # generate() fills every field left None from the model's generation_config (Qwen ships
        # repetition_penalty 1.05, top_k 1): what the decoding depends on is set here, explicitly.
        config = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens, do_sample=sampling.do_sample, num_return_sequences=sampling.n,
            eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id, repetition_penalty=1.0,
            **(dict(temperature=sampling.temperature, top_p=1.0, top_k=0) if sampling.do_sample else {}),
        )
        processors = LogitsProcessorList()
        if self._forced_ids is not None:
            if len(self._forced_ids) > sampling.max_new_tokens:
                raise ValueError(f"force_output is {len(self._forced_ids)} tokens; "
                                 "raise max_new_tokens to at least that")
            processors.append(_forced_processor(self._forced_ids, eos[0], prompt_length))
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=config, logits_processor=processors)
        decoded = [self.opening + text for text in self.tokenizer.batch_decode(output[:, prompt_length:],
                                                                               skip_special_tokens=True)]
        return [decoded[i * sampling.n : (i + 1) * sampling.n] for i in range(len(requests))]


class VLLMBackend:
    """vLLM offline inference (`pip install 'stable-reinforce-trl[vllm]'`): much faster on a GPU.

    `llm_kwargs` go to `vllm.LLM` (e.g. `tensor_parallel_size`, `gpu_memory_utilization`, `max_model_len`).
    """

    def __init__(self, path: str | os.PathLike, *, max_images: int = 4, seed: int = 0, **llm_kwargs):
        try:
            import vllm
        except ImportError as exc:
            raise ImportError("the vLLM backend needs vLLM: pip install 'stable-reinforce-trl[vllm]' "
                              "(or use backend='transformers')") from exc
        from transformers import AutoProcessor

        self.name = os.path.abspath(path) if os.path.exists(path) else str(path)
        self.processor = AutoProcessor.from_pretrained(path)
        self.opening = generation_opening(self.processor)
        llm_kwargs.setdefault("limit_mm_per_prompt", {"image": max_images, "video": 1})
        self.llm = vllm.LLM(model=str(path), seed=seed, **llm_kwargs)
        self._sampling_params = vllm.SamplingParams

    def generate(self, requests: Sequence[JudgeRequest], sampling: Sampling) -> list[list[str]]:
        import numpy as np

        texts = self.processor.apply_chat_template([r.messages() for r in requests], add_generation_prompt=True,
                                                   tokenize=False)
        inputs = []
        for text, request in zip(texts, requests):
            media: dict[str, Any] = {}
            if request.images:
                media["image"] = [load_image(x) for x in request.images]
            if request.video is not None:
                frames = [load_image(f) for f in request.video]
                media["video"] = np.stack([np.asarray(f.resize(frames[0].size)) for f in frames])
            inputs.append({"prompt": text, "multi_modal_data": media} if media else {"prompt": text})
        params = self._sampling_params(
            n=sampling.n, temperature=sampling.temperature if sampling.do_sample else 0.0, top_p=1.0, top_k=-1,
            repetition_penalty=1.0, max_tokens=sampling.max_new_tokens,
        )
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        return [[self.opening + o.text for o in out.outputs] for out in outputs]


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


# --------------------------------------------------------------------------------------------- judge


@dataclass(frozen=True)
class JudgeSample:
    """One judge output. `verdict` is in the prompt's numbering; `choice` in the caller's (None: unparseable)."""

    swapped: bool
    text: str
    verdict: Verdict
    reasoning: str

    @property
    def choice(self) -> int | None:
        if self.verdict == INVALID:
            return None
        return 3 - self.verdict if self.swapped else self.verdict


@dataclass(frozen=True)
class Comparison:
    """All samples for one comparison (k per order), in the caller's numbering of the responses."""

    samples: tuple[JudgeSample, ...]

    @property
    def votes(self) -> tuple[int, int]:
        """Samples that picked response 1, response 2."""
        choices = [s.choice for s in self.samples]
        return choices.count(1), choices.count(2)

    @property
    def share(self) -> tuple[float, float]:
        """Fraction of all samples (unparseable ones included) that picked response 1, response 2."""
        total = len(self.samples) or 1
        return self.votes[0] / total, self.votes[1] / total

    @property
    def invalid(self) -> int:
        return sum(s.choice is None for s in self.samples)

    @property
    def winner(self) -> int | None:
        """1 or 2 by majority of votes; None on a tie (or no parseable sample)."""
        one, two = self.votes
        return None if one == two else (1 if one > two else 2)

    @property
    def verdicts(self) -> list[int | None]:
        """Each sample's choice in the caller's numbering (None: unparseable)."""
        return [s.choice for s in self.samples]

    @property
    def reasoning(self) -> list[str]:
        """Each sample's <think> text."""
        return [s.reasoning for s in self.samples]

    def __str__(self) -> str:
        one, two = self.share
        winner = "tie" if self.winner is None else f"response {self.winner}"
        lines = [f"winner: {winner} (votes {one:.0%} for 1, {two:.0%} for 2, {self.invalid} unparseable)"]
        for swapped, name in ((False, "as given"), (True, "swapped")):
            verdicts = [s.choice for s in self.samples if s.swapped == swapped]
            if verdicts:
                shown = " ".join("?" if v is None else str(v) for v in verdicts)
                lines.append(f"  {name:<8} ({len(verdicts)} samples): {shown}")
        return "\n".join(lines)


def _image_list(images) -> tuple:
    """One image given alone (a path, a PIL image, a dict) is a list of one, not a sequence of characters."""
    if isinstance(images, (str, os.PathLike, dict)) or hasattr(images, "convert"):
        return (images,)
    return tuple(images)


def _sample(text: str, swapped: bool) -> JudgeSample:
    parsed = parse_judgement(text)
    return JudgeSample(swapped, text, parsed.verdict, parsed.reasoning)


@dataclass
class Judge:
    """A judge model behind a backend, with the decoding settings the paper evaluates with.

    k = 1 decodes greedily; k > 1 draws k samples at `temperature` (Voting@k). `batch_size` is the
    number of prompts per backend call (each yields k samples). `frames_as_images` shows a video as its
    frames (the presentation the judge was trained with; `from_pretrained` reads it from the model's config).
    """

    backend: JudgeBackend
    batch_size: int = 8
    max_new_tokens: int = 1024
    temperature: float = 1.0
    name: str = field(default="")
    frames_as_images: bool = False

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.temperature <= 0:
            raise ValueError("need batch_size >= 1, max_new_tokens >= 1 and temperature > 0")
        self.name = self.name or self.backend.name

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        backend: str = "auto",
        batch_size: int | None = None,
        max_new_tokens: int = 1024,
        temperature: float = 1.0,
        force_output: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        seed: int = 0,
        **vllm_kwargs,
    ) -> "Judge":
        """Load a judge saved with `save_pretrained` (a path or hub id).

        `backend="auto"` takes vLLM when it is installed and a GPU is present, else transformers.
        `seed` seeds vLLM's sampler (with transformers, seed torch before generating); `vllm_kwargs`
        go to `vllm.LLM`.
        """
        import torch

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "auto":
            use_vllm = vllm_available() and torch.cuda.is_available() and force_output is None
            backend = "vllm" if use_vllm else "transformers"
        if backend == "vllm":
            if force_output is not None:
                raise ValueError("force_output works with the transformers backend only")
            engine: JudgeBackend = VLLMBackend(path, seed=seed, **vllm_kwargs)
            default_batch = 512  # vLLM schedules its own batches; bigger calls just mean fewer round trips
        else:
            if vllm_kwargs:
                raise TypeError(f"unexpected arguments for the transformers backend: {sorted(vllm_kwargs)}")
            engine = TransformersBackend.from_pretrained(path, device=device, dtype=dtype, force_output=force_output)
            default_batch = 8
        from .video import recorded_presentation

        return cls(engine, batch_size or default_batch, max_new_tokens, temperature,
                   frames_as_images=recorded_presentation(path))

    def sampling(self, k: int) -> Sampling:
        """The decoding for k samples per prompt: greedy for k = 1, else sampling at `temperature`."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return Sampling(k, k > 1, self.temperature, self.max_new_tokens)

    def settings(self, k: int) -> dict:
        """What the outputs depend on besides the prompt: the model and the decoding (cache keys use it)."""
        force = getattr(self.backend, "force_output", None)
        frames = {"frames_as_images": True} if self.frames_as_images else {}
        return {"model": self.name, **self.sampling(k).as_dict(), **({"force_output": force} if force else {}), **frames}

    def generate(self, requests: Sequence[JudgeRequest], k: int = 1, n: int | None = None) -> list[list[str]]:
        """Raw outputs, `n` (default k) per request, decoded as for Voting@k (greedy for k = 1), in batches
        of `batch_size` prompts. `n < k` tops up samples a resumed run already has."""
        sampling = replace(self.sampling(k), n=n or k)
        if self.frames_as_images:
            requests = [r.as_images() for r in requests]
        outputs: list[list[str]] = []
        for start in range(0, len(requests), self.batch_size):
            outputs += self.backend.generate(list(requests[start : start + self.batch_size]), sampling)
        return outputs

    def compare_many(
        self, requests: Sequence[JudgeRequest], *, k: int = 1, both_orders: bool = True
    ) -> list[Comparison]:
        """One `Comparison` per request: k samples as given, and k more with the responses swapped."""
        prompts = list(requests) + ([r.swapped() for r in requests] if both_orders else [])
        outputs = self.generate(prompts, k)
        n = len(requests)
        comparisons = []
        for i in range(n):
            samples = [_sample(t, False) for t in outputs[i]]
            if both_orders:
                samples += [_sample(t, True) for t in outputs[n + i]]
            comparisons.append(Comparison(tuple(samples)))
        return comparisons

    def compare(self, question: str, response1: str, response2: str, images: Sequence[Any] = (),
                video: Sequence[Any] | None = None, *, k: int = 1, both_orders: bool = True) -> Comparison:
        """Which response is better: vote share, verdicts and reasoning over k samples per order."""
        request = JudgeRequest(question, response1, response2, _image_list(images), video)
        return self.compare_many([request], k=k, both_orders=both_orders)[0]


# ------------------------------------------------------------------------------------ judge at work


def tournament(n: int, results: dict[tuple[int, int], Comparison]) -> list[float]:
    """Each candidate's mean vote share over its comparisons (`results[(i, j)]` compares i as 1, j as 2).

    A candidate with no comparison (a group of one) gets 0.5: no evidence either way.
    """
    totals, counts = [0.0] * n, [0] * n
    for (i, j), comparison in results.items():
        share_i, share_j = comparison.share
        totals[i] += share_i
        totals[j] += share_j
        counts[i] += 1
        counts[j] += 1
    return [totals[i] / counts[i] if counts[i] else 0.5 for i in range(n)]


@dataclass(frozen=True)
class BestOfN:
    """The winner of a round-robin among candidates: its index, text, every candidate's score."""

    index: int
    best: str
    scores: list[float]
    comparisons: dict[tuple[int, int], Comparison]


def best_of_n(judge: Judge, question: str, candidates: Sequence[str], images: Sequence[Any] = (),
              video: Sequence[Any] | None = None, *, k: int = 1, both_orders: bool = True) -> BestOfN:
    """Pick the best of n candidate answers: every pair judged (n(n-1)/2 comparisons, one batched call),
    each candidate scored by its mean vote share; ties go to the earlier candidate."""
    if not candidates:
        raise ValueError("best_of_n needs at least one candidate")
    pairs = list(itertools.combinations(range(len(candidates)), 2))
    requests = [JudgeRequest(question, candidates[i], candidates[j], _image_list(images), video) for i, j in pairs]
    results = dict(zip(pairs, judge.compare_many(requests, k=k, both_orders=both_orders)))
    scores = tournament(len(candidates), results)
    index = max(range(len(candidates)), key=lambda i: (scores[i], -i))
    return BestOfN(index, candidates[index], scores, results)


def prompt_question(prompt: Any) -> str:
    """The question text of a TRL prompt: a string, or the last user turn of a conversation."""
    if isinstance(prompt, str):
        return prompt
    users = [m for m in prompt if m.get("role") == "user"]
    return completion_text(users[-1:] or prompt).strip()


def _row_media(columns: dict, i: int) -> tuple[tuple, Any]:
    images = columns.get("images")
    if images is not None and images[i]:
        row = images[i]
        return (tuple(row) if isinstance(row, (list, tuple)) else (row,)), None
    if columns.get("image") is not None and columns["image"][i] is not None:
        return (columns["image"][i],), None
    videos = columns.get("videos")
    if videos is not None and videos[i]:
        return (), videos[i][0]
    return (), None


class JudgeReward:
    """The judge as a TRL reward function: each completion is scored by its wins in pairwise comparisons.

    - `against="reference"`: completion vs the row's `reference_column` answer; reward = the completion's
      vote share (0..1) over k samples in both orders.
    - `against="group"`: round-robin among completions of the same prompt (TRL's `num_generations`
      samples, consecutive in the batch); reward = mean vote share against the others (0.5 alone).
      Groups are runs of consecutive equal prompts, or fixed runs of `group_size` when given (set it to
      `num_generations` when rows with the same text differ only in their images).

    The question is the prompt's last user turn; images come from the `images` (or `image`/`videos`)
    column. Logs `<name>/invalid_frac` (unparseable judge outputs) through TRL's `log_metric`.
    """

    def __init__(self, judge: Judge, *, against: str = "reference", reference_column: str = "reference", k: int = 1,
                 both_orders: bool = True, group_size: int | None = None, name: str = "judge_reward"):
        if against not in ("reference", "group"):
            raise ValueError(f"against must be 'reference' or 'group', got {against!r}")
        self.judge, self.against, self.reference_column = judge, against, reference_column
        self.k, self.both_orders, self.group_size = k, both_orders, group_size
        self.__name__ = name  # TRL names the reward's metrics after it

    def __repr__(self) -> str:
        return f"JudgeReward(judge={self.judge.name!r}, against={self.against!r}, k={self.k})"

    def __call__(self, prompts: Sequence, completions: Sequence, log_metric: Callable | None = None,
                 **columns) -> list[float]:
        texts = [completion_text(c) for c in completions]
        questions = [prompt_question(p) for p in prompts]
        media = [_row_media(columns, i) for i in range(len(texts))]
        if self.against == "reference":
            if self.reference_column not in columns:
                raise ValueError(f"JudgeReward(against='reference') needs a {self.reference_column!r} column; the "
                                 f"dataset has {sorted(k for k in columns if not k.startswith(('trainer_', 'log_')))}")
            references = columns[self.reference_column]
            requests = [JudgeRequest(q, t, str(r), *m) for q, t, r, m in zip(questions, texts, references, media)]
            comparisons = self.judge.compare_many(requests, k=self.k, both_orders=self.both_orders)
            rewards = [c.share[0] for c in comparisons]
        else:
            rewards, comparisons = self._round_robin(prompts, questions, texts, media)
        if log_metric is not None and comparisons:
            samples = sum(len(c.samples) for c in comparisons)
            log_metric(f"{self.__name__}/invalid_frac", sum(c.invalid for c in comparisons) / samples)
        return rewards

    def _round_robin(self, prompts, questions, texts, media):
        if self.group_size:
            groups = [list(range(s, min(s + self.group_size, len(texts)))) for s in range(0, len(texts), self.group_size)]
        else:
            groups = [list(g) for _, g in itertools.groupby(range(len(texts)), key=lambda i: repr(prompts[i]))]
        pairs = [(i, j) for group in groups for i, j in itertools.combinations(group, 2)]
        requests = [JudgeRequest(questions[i], texts[i], texts[j], *media[i]) for i, j in pairs]
        comparisons = self.judge.compare_many(requests, k=self.k, both_orders=self.both_orders)
        return tournament(len(texts), dict(zip(pairs, comparisons))), comparisons
