"""Consistency referees: does a judge's reasoning support the answer it gave?

All referees share one interface, `await referee.judge(requests) -> list[Judgement]`, one
judgement per request, in order. A referee never raises for a single failed request: the
judgement carries `consistent=None` and the error, and `R1Reward` turns that into a neutral
consistency and a `referee/failures` count.

- `OpenAIReferee`: any OpenAI-compatible endpoint (vLLM serving Qwen2.5-VL-7B-Instruct, as in the paper).
- `TransformersReferee`: a local model, batched `generate`.
- `RuleReferee`: no model; reads the verdict the reasoning states ("Response 2 is better").
"""

from __future__ import annotations

import abc
import asyncio
import base64
import hashlib
import io
import json
import logging
import os
import random
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

logger = logging.getLogger(__name__)
_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+

BASE_URL_ENV = "STABLE_REINFORCE_REFEREE_BASE_URL"
API_KEY_ENV = "STABLE_REINFORCE_REFEREE_API_KEY"

REFEREE_PROMPT = (
    "A judge compared two responses (Response 1 and Response 2) to a question{about_image}, reasoned about "
    "them, and then gave a final answer.\n"
    "\n"
    "[Judge's reasoning]\n"
    "{reasoning}\n"
    "\n"
    "[Judge's final answer]\n"
    "Response {verdict} is better.\n"
    "\n"
    "Does the reasoning support the final answer? Reply with one word: yes if it does, no if it does not "
    "(for example, if the reasoning favours the other response)."
)


@dataclass(frozen=True)
class RefereeRequest:
    """One consistency question: the judge's reasoning, the response it chose (1 or 2), and optionally the image."""

    reasoning: str
    verdict: int
    image: Any = None


@dataclass(frozen=True)
class Judgement:
    """A referee's answer. `consistent` is None when the referee failed; `error` then says why.

    `latency_s` is the time spent waiting on the referee for this request (None for cache hits).
    `text` is the referee's raw answer, when there was one.
    """

    consistent: bool | None
    text: str = ""
    error: str | None = None
    latency_s: float | None = None


class Referee(abc.ABC):
    """Decides, for each request, whether the reasoning agrees with the verdict."""

    name: str = "referee"

    @abc.abstractmethod
    async def judge(self, requests: Sequence[RefereeRequest]) -> list[Judgement]:
        """One judgement per request, in order. Must not raise for a failed request."""

    async def aclose(self) -> None:
        """Release connections or models; a no-op unless a referee holds some."""


def _check_reasoning_lines(n: int | None) -> None:
    if n is not None and n <= 0:
        raise ValueError(f"reasoning_lines must be positive or None (the whole reasoning), got {n}.")


def last_lines(text: str, n: int | None) -> str:
    """The last `n` non-blank lines of `text` (all of it for None). Blank lines carry no evidence, so skip them."""
    _check_reasoning_lines(n)
    if n is None:
        return text.strip()
    return "\n".join([line for line in text.splitlines() if line.strip()][-n:])


def referee_prompt(request: RefereeRequest, reasoning_lines: int | None = None, with_image: bool = False) -> str:
    return (
        REFEREE_PROMPT.replace("{about_image}", " about an image" if with_image else "")
        .replace("{verdict}", str(request.verdict))
        .replace("{reasoning}", last_lines(request.reasoning, reasoning_lines))
    )


_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


_BOTH_OPTIONS = re.compile(r"\W*(?:yes|no)\s*(?:/|\bor\b|\|)\s*(?:yes|no)\b", re.IGNORECASE)


def parse_yes_no(text: str) -> bool | None:
    """The referee's answer: its first word if that is yes/no, else the only yes/no word it used, else None.
    An answer that names both options ("yes/no", "Yes or no") is no answer."""
    words = _YES_NO.findall(text)
    if not words or _BOTH_OPTIONS.match(text):
        return None
    stripped = text.lstrip(" \t\n*\"'`")
    if stripped[:3].lower() == "yes" or stripped[:2].lower() == "no":
        return words[0].lower() == "yes"
    distinct = {w.lower() for w in words}
    return distinct.pop() == "yes" if len(distinct) == 1 else None


def image_data_url(image: Any) -> str:
    """A PIL image (or encoded image bytes) as a base64 `data:` URL, the form OpenAI-compatible servers accept."""
    if isinstance(image, (bytes, bytearray)):
        data, mime = bytes(image), "image/png" if bytes(image[:4]) == b"\x89PNG" else "image/jpeg"
    elif hasattr(image, "save"):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    else:
        raise TypeError(f"cannot attach an image of type {type(image).__name__}; pass a PIL image or bytes.")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class RuleReferee(Referee):
    """No model: compares the verdict the reasoning states with the answer. A heuristic for CPU runs, tests
    and demos, where the reasoning is short and regular; for real runs use the `openai` referee
    (`referee="openai"`: a model such as Qwen2.5-VL-7B-Instruct behind `vllm serve`), as the paper does.

    The rule: the verdict sentence is the *last* sentence with a phrase "Response N is [up to two words]
    better" (case-insensitive; N is 1 or 2; e.g. "Response 2 is better", "response 1 is clearly better",
    "Response 2 is the better one"). Consistent when that N equals the answer. The referee cannot tell (a
    failure: neutral consistency) when the reasoning states no verdict, and when the verdict sentence is
    negated before or inside the phrase ("I would not say Response 2 is better", "Response 2 isn't better")
    or ambiguous (names both responses as better with no "but"/"however" between, or "Response 1 or 2 is
    better"): neither counts as consistent.
    """

    name = "rule"
    _STATEMENT = re.compile(
        r"\bresponse\s*#?\s*([12])\s+is\s+(?:(?!(?:not|no|never)\b)[\w-]+\s+){0,2}?better\b", re.IGNORECASE
    )
    _NEGATION = re.compile(r"\b(?:not|no|never|hardly|neither|nor|cannot)\b|n't\b", re.IGNORECASE)
    _EITHER = re.compile(r"\bresponses?\s*#?\s*[12]\s*(?:/|\bor\b|\band\b)\s*(?:response\s*)?#?\s*[12]\b", re.IGNORECASE)
    _CORRECTION = re.compile(r"\b(?:but|however|yet|though|although|instead|rather)\b", re.IGNORECASE)
    _SENTENCES = re.compile(r"[^.!?\n]+[.!?]*")

    def stated_verdict(self, reasoning: str) -> int | None:
        """The verdict the reasoning states, or None when it states none or an unclear one (see the class)."""
        for sentence in reversed(self._SENTENCES.findall(reasoning)):
            statements = list(self._STATEMENT.finditer(sentence))
            if not statements:
                if self._EITHER.search(sentence) and re.search(r"\bbetter\b", sentence, re.IGNORECASE):
                    return None  # "Response 1 or 2 is better": a verdict sentence that names no one response
                continue
            if len(statements) > 1 and self._CORRECTION.search(sentence[statements[-2].end() : statements[-1].start()]):
                statements = statements[-1:]  # "Response 1 is better, but on reflection Response 2 is better"
            verdicts = {int(m.group(1)) for m in statements}
            negated = any(self._NEGATION.search(sentence[: m.start()]) for m in statements)
            if len(verdicts) > 1 or negated or self._EITHER.search(sentence):
                return None
            return verdicts.pop()
        return None

    async def judge(self, requests: Sequence[RefereeRequest]) -> list[Judgement]:
        judgements = []
        for request in requests:
            stated = self.stated_verdict(request.reasoning)
            if stated is None:
                error = "the reasoning states no clear 'Response N is better' (none, negated or ambiguous)"
                judgements.append(Judgement(None, error=error, latency_s=0.0))
            else:
                judgements.append(Judgement(stated == request.verdict, f"Response {stated} is better", latency_s=0.0))
        return judgements


class OpenAIReferee(Referee):
    """A referee behind an OpenAI-compatible chat-completions endpoint (e.g. `vllm serve Qwen/Qwen2.5-VL-7B-Instruct`).

    Requests run concurrently, at most `max_concurrency` in flight; each attempt is cut off after `timeout`
    seconds; failed or unparseable answers are retried `max_retries` times with exponential backoff
    (`backoff_s`, doubling, jittered, at most 30 s; after an unparseable answer the retry samples at
    temperature >= 0.7). Parsed answers are cached on the exact request, so a repeated completion costs
    nothing. The referee sees the whole reasoning, or its last `reasoning_lines` lines (the reference
    code sends 3), and, with `attach_image`, the image as a base64 data URL.

    `base_url` and `api_key` default to `$STABLE_REINFORCE_REFEREE_BASE_URL` and
    `$STABLE_REINFORCE_REFEREE_API_KEY` (then "EMPTY", which vLLM accepts). The key is never logged.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        model: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        api_key: str | None = None,
        *,
        max_concurrency: int = 32,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        reasoning_lines: int | None = None,
        attach_image: bool = False,
        temperature: float = 0.0,
        max_tokens: int = 16,
        cache_size: int = 100_000,
    ):
        self.base_url = base_url or os.environ.get(BASE_URL_ENV)
        if not self.base_url:
            raise ValueError(
                f"OpenAIReferee needs an endpoint: pass base_url (config: referee_base_url) or set ${BASE_URL_ENV}, "
                "e.g. http://localhost:8000/v1 for `vllm serve`."
            )
        if max_concurrency < 1 or timeout <= 0 or max_retries < 0:
            raise ValueError(
                "need max_concurrency >= 1, timeout > 0, max_retries >= 0; "
                f"got {max_concurrency}, {timeout}, {max_retries}."
            )
        _check_reasoning_lines(reasoning_lines)
        self._api_key = api_key or os.environ.get(API_KEY_ENV) or "EMPTY"
        self.model = model
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.reasoning_lines = reasoning_lines
        self.attach_image = attach_image
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._cache: OrderedDict[str, tuple[bool, str]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = None
        self._semaphore: asyncio.Semaphore | None = None

    def __repr__(self) -> str:  # no key here: reprs end up in logs
        return (
            f"OpenAIReferee(base_url={self.base_url!r}, model={self.model!r}, "
            f"max_concurrency={self.max_concurrency})"
        )

    def _ensure_client(self):
        # The client and semaphore belong to one event loop (httpx pools its connections per loop). TRL runs
        # every reward call on one long-lived loop, so this creates them once per run; a new loop (e.g. a
        # second `asyncio.run`) gets its own rather than reusing connections tied to a closed loop.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import openai

            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key, timeout=self.timeout, max_retries=0
            )
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._loop = loop
        return self._client

    def request_body(self, request: RefereeRequest) -> dict:
        """The chat-completions request sent for `request` (also the cache key)."""
        with_image = self.attach_image and request.image is not None
        text = referee_prompt(request, self.reasoning_lines, with_image)
        content: Any = text
        if with_image:
            content = [
                {"type": "image_url", "image_url": {"url": image_data_url(request.image)}},
                {"type": "text", "text": text},
            ]
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    async def _post(self, body: dict) -> str:
        """The answer's text. Raises on HTTP errors (the SDK's exceptions) and on bodies that are not a completion."""
        import httpx

        # `client.post` with the raw response rather than `chat.completions.create`: the body is already plain
        # JSON, and the SDK's typed-params transform and response models cost ~1 ms of CPU a call, a quarter of
        # the client's cost, which is what bounds throughput at high concurrency on a small machine.
        if _timeout is None:  # Python 3.10
            response = await asyncio.wait_for(
                self._client.post("/chat/completions", body=body, cast_to=httpx.Response), self.timeout
            )
        else:  # no extra task per call, unlike wait_for
            async with _timeout(self.timeout):
                response = await self._client.post("/chat/completions", body=body, cast_to=httpx.Response)
        return json.loads(response.content)["choices"][0]["message"]["content"] or ""

    async def judge(self, requests: Sequence[RefereeRequest]) -> list[Judgement]:
        self._ensure_client()
        return list(await asyncio.gather(*(self._judge_one(r) for r in requests)))

    async def _judge_one(self, request: RefereeRequest) -> Judgement:
        try:
            body = self.request_body(request)
        except Exception as exc:  # e.g. an image that cannot be encoded: a failure, not a crash
            return Judgement(None, error=f"could not build the request: {exc!r}")
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                consistent, text = self._cache[key]
                return Judgement(consistent, text)
        waited, error, text = 0.0, None, ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(self.backoff_s * 2 ** (attempt - 1), 30.0) * random.uniform(0.5, 1.5))
            # An unparseable greedy answer would come back the same: sample on the retry instead.
            temperature = body["temperature"] if not text else max(body["temperature"], 0.7)
            async with self._semaphore:
                start = time.perf_counter()
                try:
                    text, error = await self._post({**body, "temperature": temperature}), None
                except Exception as exc:  # any transport, HTTP or decoding failure is retried, then counted
                    error, text = _describe(exc), ""
                finally:
                    waited += time.perf_counter() - start
            if error is None:
                consistent = parse_yes_no(text)
                if consistent is not None:
                    self._remember(key, consistent, text)
                    return Judgement(consistent, text, latency_s=waited)
                error = f"unparseable referee answer: {text[:80]!r}"
        return Judgement(None, text, error=error, latency_s=waited)

    def _remember(self, key: str, consistent: bool, text: str) -> None:
        with self._cache_lock:
            self._cache[key] = (consistent, text)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.close()
        self._client = self._loop = self._semaphore = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {str(exc)[:120]}"


class TransformersReferee(Referee):
    """A local referee model loaded with transformers (`AutoProcessor` + `AutoModelForImageTextToText`).

    Prompts are decoded greedily in batches of `batch_size` (left-padded) on a worker thread, so the event
    loop (and other async reward functions) keep running. There are no retries: greedy decoding would answer
    the same. Pass a loaded `model` and `processor` to share them, or a path / hub id to load.
    """

    name = "transformers"

    def __init__(
        self,
        model: str | Any,
        processor: Any = None,
        *,
        batch_size: int = 16,
        reasoning_lines: int | None = None,
        attach_image: bool = False,
        max_new_tokens: int = 8,
        device: str | None = None,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if isinstance(model, (str, os.PathLike)):
            processor = processor or AutoProcessor.from_pretrained(model)
            model = AutoModelForImageTextToText.from_pretrained(model, dtype="auto")
            model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        _check_reasoning_lines(reasoning_lines)
        if processor is None:
            raise ValueError("TransformersReferee needs the model's processor when given a loaded model.")
        self.model = model.eval()
        self.processor = processor
        self.batch_size = batch_size
        self.reasoning_lines = reasoning_lines
        self.attach_image = attach_image
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()  # one generate at a time on the shared model

    async def judge(self, requests: Sequence[RefereeRequest]) -> list[Judgement]:
        judgements: list[Judgement] = []
        for start in range(0, len(requests), self.batch_size):
            batch = list(requests[start : start + self.batch_size])
            began = time.perf_counter()
            try:
                texts = await asyncio.to_thread(self._generate, batch)
            except Exception as exc:  # an OOM or a bad input fails this batch, not the training step
                judgements += [Judgement(None, error=_describe(exc)) for _ in batch]
                continue
            per_request = (time.perf_counter() - began) / len(batch)
            for text in texts:
                consistent = parse_yes_no(text)
                error = None if consistent is not None else f"unparseable referee answer: {text[:80]!r}"
                judgements.append(Judgement(consistent, text, error=error, latency_s=per_request))
        return judgements

    def _generate(self, batch: list[RefereeRequest]) -> list[str]:
        import torch

        conversations, images = [], []
        for request in batch:
            with_image = self.attach_image and request.image is not None
            content = [{"type": "text", "text": referee_prompt(request, self.reasoning_lines, with_image)}]
            if with_image:
                content.insert(0, {"type": "image"})
                images.append(request.image)
            conversations.append([{"role": "user", "content": content}])
        prompts = self.processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        tokenizer.padding_side = "left"  # decoder-only: new tokens must follow each prompt directly
        inputs = self.processor(text=prompts, images=images or None, return_tensors="pt", padding=True)
        inputs = inputs.to(self.model.device)
        with self._lock, torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
