"""`stable-reinforce make-tiny-model DIR [--family F]`: an offline tiny Qwen judge (random weights, real
processor, local tokenizer) for the CPU recipes and tests: Qwen2.5-VL (default), Qwen3-VL or Qwen3.5."""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from .cli import HelpFormatter
    from .tiny import FAMILIES

    parser = argparse.ArgumentParser(prog="stable-reinforce make-tiny-model", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("output_dir", help="folder to write the model, tokenizer and processor to")
    parser.add_argument("--family", default="qwen2.5-vl", choices=FAMILIES,
                        help="architecture, processor and chat template of the released checkpoints it stands in for")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (same seed, same weights)")
    parser.add_argument("--hidden-size", type=int, default=64, help="text hidden size (a multiple of 8, >= 32)")
    parser.add_argument("--num-hidden-layers", type=int, default=2, help="text layers")
    return parser


def main(argv: list[str]) -> int:
    from .data.validation import OptionError

    args = build_parser().parse_args(argv)
    # 4 attention heads whose head size mrope splits into time/height/width halves: at least 8, even.
    if args.hidden_size < 32 or args.hidden_size % 8:
        raise OptionError(f"--hidden-size must be a multiple of 8 and >= 32 (4 heads of an even size >= 8), "
                          f"got {args.hidden_size}")
    if args.num_hidden_layers < 1:
        raise OptionError(f"--num-hidden-layers must be >= 1, got {args.num_hidden_layers}")
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        raise OptionError(f"{args.output_dir} is a file; give a folder to write the model into")
    from .tiny import make_tiny_model

    path = make_tiny_model(args.output_dir, seed=args.seed, hidden_size=args.hidden_size,
                           num_hidden_layers=args.num_hidden_layers, family=args.family)  # fmt: skip
    print(f"tiny {args.family} judge written to {path}")
    return 0
