"""`stable-reinforce eval`: a judge on a benchmark, scored without the reference evaluation's blind spots.

    stable-reinforce eval --benchmark vl-rewardbench --data vl_rewardbench.parquet --model out/judge
    stable-reinforce eval --benchmark vl-rewardbench --data vl_rewardbench.parquet --model out/judge \
        --protocol official --k 5
    stable-reinforce eval --benchmark mm-rlhf-rewardbench --data mm_rlhf.jsonl --model out/judge --k 5
    stable-reinforce eval --benchmark pairs --data synthetic:64:basic --model outputs/demo/rl

`--data` is a benchmark file, a `convert` / `select-hard` output (jsonl or folder), or
`synthetic:N[:difficulty[:seed]]`: the held-out pairs of the recipes' synthetic task (their seed + 1000,
never a training row; `synthetic:64:basic` is the demo's held-out set). Writes `--output` (JSON, by
default named after the model, benchmark, protocol, order and k) and a markdown table beside it, and
caches generations beside it too (`<output>.generations.jsonl`), so rerunning a killed evaluation resumes it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

from ..cli import HelpFormatter
from ..data.loaders import FORMATS, collect_pairs
from ..data.pairs import PreferencePair
from ..data.validation import InvalidRowsError, SkipReport
from .scoring import BENCHMARKS, ORDERS, PROTOCOLS, UNCATEGORIZED, mm_rlhf_category

MAX_LISTED = 20
SYNTHETIC_PREFIX = "synthetic:"


def load_benchmark(
    benchmark: str,
    data: str | os.PathLike,
    *,
    format: str | None = None,  # noqa: A002 - the loaders' word
    skip_invalid: bool = False,
    limit: int | None = None,
    **loader_kwargs,
) -> tuple[list[PreferencePair], SkipReport]:
    """The benchmark's pairs through `data.load_pairs`, and the report of rows dropped.

    Without `skip_invalid`, any invalid row raises `InvalidRowsError` listing them (the first
    `MAX_LISTED`) rather than stopping at the first: a benchmark with missing images should be fixed
    in one pass, and a score over a silently smaller set is not the benchmark's score.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    report = SkipReport(max_examples=MAX_LISTED)
    if str(data).startswith(SYNTHETIC_PREFIX):
        pairs = synthetic_pairs(str(data))
        return (pairs[:limit] if limit is not None else pairs), report
    # Every invalid row is read, then listed in one InvalidRowsError (unless skipped), as `convert` does.
    pairs, report = collect_pairs(data, format or "auto", skip_invalid=True, max_listed=MAX_LISTED, **loader_kwargs)
    pairs = _one_per_order_copy(pairs)
    if benchmark == "mm-rlhf-rewardbench":
        root = loader_kwargs.get("image_root") or (Path(data).parent if Path(data).is_file() else Path(data))
        for pair in pairs:
            pair.category = pair.category or media_category(pair, root)
    if report.total and not skip_invalid:
        raise InvalidRowsError(str(data), report, len(pairs), "for images: the paths, or --image-root")
    return (pairs[:limit] if limit is not None else pairs), report


def _one_per_order_copy(pairs: list[PreferencePair]) -> list[PreferencePair]:
    """`convert --both-orders` writes each pair twice (labels "1" and "2"): keep the first; `--order` decides
    the orders. Rows repeated with the same label stay, as a benchmark file repeats them."""
    from ..data.records import pair_key

    labels: dict[str, set] = {}
    kept = []
    for pair in pairs:
        seen = labels.setdefault(pair_key(pair), set())
        if seen and pair.label not in seen:
            seen.add(pair.label)
            continue
        seen.add(pair.label)
        kept.append(pair)
    if len(kept) < len(pairs):
        logging.getLogger(__name__).warning(
            f"{len(pairs) - len(kept)} row(s) repeat a pair in the other order (convert --both-orders): each pair "
            f"is judged once per order that --order / --protocol ask for")
    return kept


def synthetic_pairs(name: str) -> list[PreferencePair]:
    """`synthetic:N[:difficulty[:seed]]` as evaluation pairs: the recipes' held-out split of that task."""
    from ..data.synthetic import make_synthetic_pairs
    from ..scripts.judge_datasets import SYNTHETIC_EVAL_SEED_OFFSET, parse_synthetic

    n, difficulty, seed = parse_synthetic(name)
    return make_synthetic_pairs(n, seed + SYNTHETIC_EVAL_SEED_OFFSET, difficulty)


def media_category(pair: PreferencePair, root: str | os.PathLike) -> str:
    """MM-RLHF-RewardBench's category from the pair's image or video path as the file wrote it (relative to
    `root`, the folder its relative paths start from)."""
    media = [*pair.images, *(pair.video or [])]
    if not media or not isinstance(media[0], str):
        return UNCATEGORIZED
    path = os.path.relpath(media[0], root) if os.path.isabs(media[0]) else media[0]
    return mm_rlhf_category(media[0] if path.startswith("..") else path)


def model_slug(model: str) -> str:
    """A file-name-safe name for a model path or hub id: its last two parts (`outputs/demo/rl` -> `demo-rl`)."""
    parts = [p for p in Path(str(model).rstrip("/")).parts if p not in ("/", ".", "..")][-2:]
    return re.sub(r"[^\w.-]+", "_", "-".join(parts)) or "model"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stable-reinforce eval", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--benchmark", required=True, choices=BENCHMARKS,
                        help="how pairs are categorized and, with --protocol official, scored")
    parser.add_argument("--data", required=True,
                        help="benchmark file, convert / select-hard output (jsonl or folder), hub dataset name, or "
                             "synthetic:N[:difficulty[:seed]] (the synthetic task's held-out pairs)")
    parser.add_argument("--model", required=True, help="the judge: a folder saved with save_pretrained, or a hub id")
    parser.add_argument("--format", choices=[f for f in FORMATS if f != "columns"],
                        help="loader format (default: by benchmark, detected from the rows)")
    parser.add_argument("--split", default="train", help="split of a Hub dataset")
    parser.add_argument("--image-root", help="folder relative image paths start from (default: the data file's)")
    parser.add_argument("--num-frames", type=int, default=8, help="frames sampled from a video folder")
    parser.add_argument("--skip-invalid", action="store_true", help="drop rows that cannot be judged, and count them")
    parser.add_argument("--limit", type=int, help="evaluate the first N pairs only")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="ours",
                        help="ours: the accuracy block (order-averaged, both-orders, chosen-first) (default); "
                             "official: each benchmark scored as its released script does (VL-RewardBench cal.py, "
                             "Multimodal RewardBench 2_get_accuracy.py, MM-RLHF get_acc.py), in its own order")
    parser.add_argument("--order", choices=ORDERS, default=None,
                        help="ours: both (default): every pair in both orders; random: one seeded order per pair; "
                             "chosen-first: the reference code's, for comparison only. official: fixed by the "
                             "benchmark (MM-RLHF-RewardBench: random by default, or chosen-first)")
    parser.add_argument("--k", type=int, default=1, help="samples per prompt: 1 = greedy, k > 1 = Voting@k / Any@k")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for k > 1")
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="longest judgment generated")
    parser.add_argument("--batch-size", type=int, help="prompts per generate call (default 8; vLLM 512)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random order and the sampling")
    parser.add_argument("--backend", choices=("auto", "transformers", "vllm"), default="auto",
                        help="auto: vLLM when installed and on a GPU, else transformers")
    parser.add_argument("--device", help="transformers backend device (default: cuda if available)")
    parser.add_argument("--dtype", default="auto", help="model dtype (transformers backend)")
    parser.add_argument("--vllm-kwargs", type=json.loads, default={},
                        help='JSON for vllm.LLM, e.g. \'{"tensor_parallel_size": 2}\'')
    parser.add_argument("--output", type=Path,
                        help="results JSON (default: eval_results/<model>--<benchmark>-<protocol>-<order>-k<k>.json)")
    parser.add_argument("--cache", type=Path, help="generations cache (default: beside --output)")
    parser.add_argument("--no-cache", action="store_true", help="keep no generations (no resume)")
    parser.add_argument("--force-output", help="debugging: make every judge output this exact text (transformers)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `stable-reinforce eval`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .scoring import schedule

    if args.k < 1:
        print(f"error: --k must be >= 1 (1 = greedy, k > 1 = Voting@k), got {args.k}", file=sys.stderr)
        return 2
    try:
        order, _ = schedule(0, protocol=args.protocol, benchmark=args.benchmark, order=args.order, k=args.k)
        pairs, skipped = load_benchmark(
            args.benchmark, args.data, format=args.format, skip_invalid=args.skip_invalid, limit=args.limit,
            image_root=args.image_root, num_frames=args.num_frames, split=args.split,
        )
        schedule(len(pairs), protocol=args.protocol, benchmark=args.benchmark, order=args.order, k=args.k,
                 released=[p.label for p in pairs])
    except (InvalidRowsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ConnectionError as error:  # a name shaped like a Hub dataset's, with no file and no Hub to ask
        print(f"error: --data {args.data}: no such file or folder, and no Hub dataset by that name could be reached "
              f"({error}). Check the path.", file=sys.stderr)
        return 2
    name = f"{model_slug(args.model)}--{args.benchmark}-{args.protocol}-{order}-k{args.k}.json"
    output = args.output or Path("eval_results") / name
    cache = None if args.no_cache else (args.cache or output.with_suffix(".generations.jsonl"))
    if skipped.total:
        print(f"skipped {skipped.total} invalid row(s): {dict(skipped.counts)}", file=sys.stderr)
    if not pairs:
        print(f"error: no pairs to evaluate in {args.data}", file=sys.stderr)
        return 2

    from ..judge import Judge
    from .report import markdown, write_report
    from .runner import evaluate

    try:
        judge = Judge.from_pretrained(
            args.model, backend=args.backend, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
            temperature=args.temperature, force_output=args.force_output, device=args.device, dtype=args.dtype,
            seed=args.seed, **args.vllm_kwargs,
        )
    except OSError as error:  # transformers' word for a folder without a model, or a hub id it cannot fetch
        print(f"error: --model {args.model}: cannot load a judge from it ({str(error).splitlines()[0]}). Give a "
              f"folder saved with save_pretrained (config.json, weights, processor) or a hub id.", file=sys.stderr)
        return 2
    report = evaluate(pairs, judge, benchmark=args.benchmark, order=args.order, k=args.k, seed=args.seed,
                      protocol=args.protocol, cache=cache, progress=not args.no_progress)
    report = {"data": str(args.data), "model": str(args.model), **report,
              "skipped": {"total": skipped.total, "reasons": dict(skipped.counts)},
              "cache": str(cache) if cache else None}
    json_path, md_path = write_report(report, output)
    print(markdown(report))
    print(f"wrote {json_path} and {md_path}")
    return 0
