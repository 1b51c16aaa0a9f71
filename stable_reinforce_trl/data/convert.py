"""`stable-reinforce convert`: any supported source to a judge dataset (a `save_to_disk` folder or jsonl)."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

import datasets

from ..cli import HelpFormatter
from .loaders import FORMATS, MAPPING_KEYS, collect_pairs
from .pairs import judge_dataset
from .records import store_image
from .validation import IMAGE_CHECKS, OptionError


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """The options every command that reads pairs shares."""
    parser.add_argument("source", help="a jsonl/json/parquet file, a save_to_disk folder, or a Hub dataset name")
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS[:-1]],
                        help="the source's format; auto detects it from the first row's keys")
    parser.add_argument("--columns", default=None,
                        help=f"column mapping KEY=COLUMN,... with keys from {MAPPING_KEYS}")
    parser.add_argument("--image-root", default=None,
                        help="folder relative image paths start from (default: the data file's folder)")
    parser.add_argument("--num-frames", type=int, default=8, help="frames sampled evenly from a video folder")
    parser.add_argument("--check-images", default="open", choices=IMAGE_CHECKS,
                        help="open: read each image's header; exists: only check the file is there; none: no check")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="drop invalid rows (counted and reported) instead of listing them and stopping")
    parser.add_argument("--split", default="train", help="split, for a Hub dataset or a DatasetDict folder")


def parse_columns(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    try:
        return dict(item.split("=", 1) for item in text.split(","))
    except ValueError:
        raise OptionError(f"--columns must look like question=q,chosen=a,rejected=b; got {text!r}") from None


def pairs_from_args(args: argparse.Namespace) -> list:
    """The pairs an `add_source_args` parser describes. Every invalid row is listed in one error, or, with
    --skip-invalid, dropped and reported once; a source left with no pairs is an error too."""
    if args.num_frames < 1:
        raise OptionError(f"--num-frames must be >= 1, got {args.num_frames}")
    pairs, report = collect_pairs(
        args.source, args.format, columns=parse_columns(args.columns), image_root=args.image_root,
        num_frames=args.num_frames, check_images=args.check_images, skip_invalid=args.skip_invalid, split=args.split,
    )
    if args.skip_invalid:
        print(report.summary())
    if not pairs:
        raise OptionError(f"{args.source}: no valid pairs" + (" (every row was invalid)" if report.total else
                                                             " (the source has no rows)"))
    return pairs


def write_judge_jsonl(ds: datasets.Dataset, path: Path) -> None:
    """Rows (judge or SFT) with image paths; embedded or in-memory images are written to `<path>.media/`."""
    media = path.with_name(path.name + ".media")
    raw = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    if "videos" in ds.column_names:
        raw = raw.cast_column("videos", datasets.List(datasets.List(datasets.Image(decode=False))))
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(raw):
            row["images"] = [store_image(img, media, f"{i}-{k}") for k, img in enumerate(row["images"])]
            if "videos" in row:
                row["videos"] = [[store_image(fr, media, f"{i}-v{j}-{k}") for k, fr in enumerate(video)]
                                 for j, video in enumerate(row["videos"])]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def save_dataset(ds: datasets.Dataset, out: str | os.PathLike) -> None:
    """A `.jsonl` path gets jsonl with image paths; anything else is a `save_to_disk` folder, which
    stands alone: `datasets` copies the image bytes into it."""
    out = Path(out)
    if out.suffix == ".jsonl":
        out.parent.mkdir(parents=True, exist_ok=True)
        write_judge_jsonl(ds, out)
    else:
        ds.save_to_disk(os.fspath(out))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stable-reinforce convert", description=__doc__,
                                     formatter_class=HelpFormatter)
    add_source_args(parser)
    parser.add_argument("--out", required=True, help="a folder (save_to_disk) or a .jsonl file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the balanced order assignment")
    parser.add_argument("--both-orders", action="store_true", help="emit every pair in both orders")
    parser.add_argument("--frames-as-images", action="store_true", help="video frames as images (TRL-ready)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pairs = pairs_from_args(args)
    ds = judge_dataset(pairs, seed=args.seed, both_orders=args.both_orders, frames_as_images=args.frames_as_images)
    save_dataset(ds, args.out)
    labels = Counter(ds["label"])
    print(f"wrote {len(ds)} judge rows from {len(pairs)} pairs to {args.out} "
          f"(label 1: {labels['1']}, label 2: {labels['2']})")
    return 0
