"""`stable-reinforce annotate`: cold-start traces from a teacher behind an OpenAI-compatible endpoint.

Each pair is shown to the teacher with the judge prompt (images as base64 data URLs) in a seeded,
balanced order; up to `attempts` tries, keeping the first trace whose answer matches the label.
The number of tries used is the pair's difficulty (R1-Reward's progressive-difficulty recipe).

Resumable: one finished pair = one line appended (and flushed) to the output jsonl, keyed by
`pair_key`; a rerun skips what is there. A line cut short by a kill is trimmed on restart. A pair
whose requests keep failing (HTTP errors, timeouts, dropped connections) is not written there but
to `<out>.errors.jsonl`, so the next run retries it and the main file never holds two lines for it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..prompts import judge_text, parse_judgement
from .pairs import PreferencePair, balanced_labels
from .records import image_bytes, pair_key, pair_to_record


@dataclass
class AnnotateConfig:
    """How to reach the teacher and how hard to try. Temperature 0 (the paper's) makes retries pointless
    on a deterministic server; raise it to give later attempts a different answer."""

    base_url: str
    model: str
    api_key: str = "EMPTY"
    attempts: int = 3
    temperature: float = 0.0
    max_tokens: int = 1024
    concurrency: int = 8
    timeout_s: float = 120.0
    request_retries: int = 2  # per attempt, for endpoint failures (not for wrong answers)
    retry_delay_s: float = 1.0  # doubled after each failed request
    max_consecutive_errors: int = 20  # then the endpoint is taken to be down: stop, and let a rerun resume
    seed: int = 0


@dataclass
class AnnotateSummary:
    """What a run did: pairs already done before it, finished now (by attempts used), and errored."""

    skipped_done: int = 0
    succeeded: Counter = field(default_factory=Counter)  # attempts used -> pairs
    failed: int = 0
    errored: int = 0
    not_attempted: int = 0  # left when the run stopped because the endpoint kept failing
    first_error: str | None = None  # the first endpoint error, to name the cause when nothing got through

    def __str__(self) -> str:
        by_attempts = ", ".join(f"{k} attempt(s): {v}" for k, v in sorted(self.succeeded.items())) or "none"
        return (f"already done: {self.skipped_done}; succeeded: {sum(self.succeeded.values())} ({by_attempts}); "
                f"failed all attempts: {self.failed}; endpoint errors (retried next run): {self.errored}"
                + (f"; stopped early, not attempted: {self.not_attempted}" if self.not_attempted else ""))


class TeacherError(RuntimeError):
    """The endpoint did not answer (after retries); the pair is retried on the next run."""


def teacher_messages(pair: PreferencePair, label: str) -> list[dict]:
    """The judge prompt in OpenAI chat format, images (or video frames) first as data URLs."""
    content = []
    for ref in [*pair.images, *(pair.video or [])]:
        data, mime = image_bytes(ref)
        url = f"data:{mime};base64,{base64.b64encode(data).decode()}"
        content.append({"type": "image_url", "image_url": {"url": url}})
    content.append({"type": "text", "text": judge_text(pair.question, *pair.responses(label))})
    return [{"role": "user", "content": content}]


async def _ask(client, messages: list[dict], config: AnnotateConfig) -> str:
    delay = config.retry_delay_s
    for attempt in range(config.request_retries + 1):
        try:
            response = await client.chat.completions.create(
                model=config.model, messages=messages, temperature=config.temperature, max_tokens=config.max_tokens,
            )
            return response.choices[0].message.content or ""
        except Exception as exc:  # any endpoint failure: HTTP status, timeout, connection, unparseable body
            if attempt == config.request_retries:
                raise TeacherError(f"{type(exc).__name__}: {exc}") from exc
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


async def annotate_pair(
    client, pair: PreferencePair, label: str, config: AnnotateConfig
) -> tuple[PreferencePair, list]:
    """Ask up to `config.attempts` times; the pair comes back annotated, with the verdict of each try."""
    messages = teacher_messages(pair, label)
    verdicts = []
    for attempt in range(1, config.attempts + 1):
        judgement = parse_judgement(await _ask(client, messages, config))
        verdicts.append(judgement.verdict)
        if str(judgement.verdict) == label:
            return pair.with_annotation(judgement.reasoning, label, attempt, failed=False), verdicts
    return pair.with_annotation(None, label, config.attempts, failed=True), verdicts


def _finished_keys(path: Path) -> set[str]:
    """Keys already in the output; trims a last line a kill cut short, so appends stay line-aligned."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    keys = set()
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                keys.add(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}, line {number}: not an annotation record; fix or remove the line "
                                 "(this file is appended to by `annotate` only)") from None
    return keys


async def annotate_async(
    pairs: Sequence[PreferencePair], out_path: str | os.PathLike, config: AnnotateConfig, *, progress: bool = True
) -> AnnotateSummary:
    """Annotate the pairs not yet in `out_path`, appending one line per finished pair. See the module doc."""
    import openai
    from tqdm.auto import tqdm

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _finished_keys(out)
    labels = balanced_labels(len(pairs), config.seed)  # by position in the input: the same on every run
    todo = [(pair, label) for pair, label in zip(pairs, labels) if pair_key(pair) not in done]
    summary = AnnotateSummary(skipped_done=len(pairs) - len(todo))
    media = out.with_name(out.name + ".media")
    queue: asyncio.Queue = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)
    client = openai.AsyncOpenAI(base_url=config.base_url, api_key=config.api_key, timeout=config.timeout_s,
                                max_retries=0)  # retries are ours: they must also cover bodies that do not parse
    bar = tqdm(total=len(todo), desc="annotate", unit="pair", disable=not progress)
    with open(out, "a", encoding="utf-8") as results, open(out.with_name(out.name + ".errors.jsonl"), "a") as errors:

        def write(file, record: dict) -> None:
            # One write + flush per line, from the single event-loop thread: lines never interleave.
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
            file.flush()

        consecutive_errors = 0

        async def worker():
            nonlocal consecutive_errors
            while not queue.empty() and consecutive_errors < config.max_consecutive_errors:
                pair, label = queue.get_nowait()
                try:
                    annotated, verdicts = await annotate_pair(client, pair, label, config)
                except TeacherError as exc:
                    summary.errored += 1
                    summary.first_error = summary.first_error or str(exc)
                    consecutive_errors += 1
                    write(errors, {"key": pair_key(pair), "id": pair.id, "error": str(exc), "time": time.time()})
                else:
                    consecutive_errors = 0
                    record = {"key": pair_key(pair), **pair_to_record(annotated, media), "verdicts": verdicts}
                    write(results, record)
                    if annotated.failed:
                        summary.failed += 1
                    else:
                        summary.succeeded[annotated.attempts] += 1
                bar.update(1)

        try:
            await asyncio.gather(*(worker() for _ in range(max(1, config.concurrency))))
            summary.not_attempted = queue.qsize()
        finally:
            bar.close()
            await client.close()
    return summary


def annotate(
    pairs: Sequence[PreferencePair], out_path, config: AnnotateConfig, *, progress: bool = True
) -> AnnotateSummary:
    """Synchronous `annotate_async`."""
    return asyncio.run(annotate_async(pairs, out_path, config, progress=progress))


# Help for the AnnotateConfig fields the command line sets (the defaults come from the dataclass).
_OPTION_HELP = {
    "attempts": "tries per pair; the number used is the pair's difficulty",
    "temperature": "teacher sampling temperature (0: the paper's; > 0 gives later attempts a new answer)",
    "max_tokens": "most tokens per teacher answer",
    "concurrency": "requests in flight at once",
    "timeout_s": "seconds before a request is given up (then retried)",
    "request_retries": "retries of a failed request (HTTP error, timeout, dropped connection), per attempt",
    "retry_delay_s": "seconds before the first retry, doubled after each",
    "max_consecutive_errors": "endpoint failures in a row after which the run stops (a rerun resumes)",
    "seed": "seed of the balanced order each pair is shown in",
}


def build_parser() -> argparse.ArgumentParser:
    from ..cli import HelpFormatter
    from .convert import add_source_args

    parser = argparse.ArgumentParser(prog="stable-reinforce annotate", description=__doc__,
                                     formatter_class=HelpFormatter)
    add_source_args(parser)
    parser.add_argument("--out", required=True, help="annotations jsonl (appended to; reruns resume)")
    parser.add_argument("--base-url", required=True, help="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    parser.add_argument("--model", required=True, help="the teacher's model name at that endpoint")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "EMPTY"),
                        help="API key (default: $OPENAI_API_KEY, else EMPTY)")
    defaults = AnnotateConfig("", "")
    for name, help_ in _OPTION_HELP.items():
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value, help=help_)
    parser.add_argument("--limit", type=int, default=None, help="annotate only the first N pairs (default: all)")
    return parser


def _check(args: argparse.Namespace) -> None:
    from .validation import OptionError

    if not args.base_url.startswith(("http://", "https://")):
        raise OptionError(f"--base-url must be an http(s) URL like http://127.0.0.1:8000/v1, got {args.base_url!r}")
    for name in ("attempts", "max_tokens", "concurrency", "max_consecutive_errors", "limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise OptionError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.timeout_s <= 0 or args.request_retries < 0 or args.retry_delay_s < 0 or args.temperature < 0:
        raise OptionError("--timeout-s must be > 0, and --request-retries, --retry-delay-s, --temperature >= 0")
    if Path(args.out).is_dir():
        raise OptionError(f"--out {args.out} is a folder; give the annotations .jsonl file to write (or resume)")


def main(argv: list[str] | None = None) -> int:
    from ..cli import Terminated, stop_on_sigterm_as_on_ctrl_c
    from .convert import pairs_from_args
    from .validation import OptionError

    args = build_parser().parse_args(argv)
    _check(args)
    pairs = pairs_from_args(args)[: args.limit]
    config = AnnotateConfig(**{k: getattr(args, k) for k in _OPTION_HELP} | dict(
        base_url=args.base_url, model=args.model, api_key=args.api_key))
    if config.temperature == 0 and config.attempts > 1:
        print("note: at temperature 0 a deterministic teacher repeats itself, so attempts after the first rarely "
              "change the answer; --temperature > 0 makes them count")
    out = Path(args.out)
    try:
        done = _finished_keys(out)
    except ValueError as error:
        raise OptionError(str(error)) from None
    stop_on_sigterm_as_on_ctrl_c()
    try:
        summary = annotate(pairs, out, config)
    except KeyboardInterrupt as stop:
        keys = {pair_key(p) for p in pairs}
        finished = len(_finished_keys(out) & keys)
        how = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
        print(f"\n{how}: {finished} of {len(pairs)} pairs are annotated in {out} ({finished - len(done & keys)} "
              "in this run). Rerun the same command to resume: finished pairs are skipped.", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130  # the shell's 128 + signal number
    print(summary)
    if summary.errored and not summary.succeeded and not summary.failed and not summary.skipped_done:
        raise OptionError(f"the teacher at {args.base_url} answered no request ({summary.first_error}). Fix: check "
                          "--base-url and --model, and that the server is running; a rerun resumes")
    if summary.errored or summary.not_attempted:
        print(f"{summary.errored + summary.not_attempted} pair(s) not annotated (endpoint errors, listed in "
              f"{out.name}.errors.jsonl); rerun the same command to retry them", file=sys.stderr)
    return 0 if summary.errored == 0 and summary.not_attempted == 0 else 1
