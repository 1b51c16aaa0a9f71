"""`stable-reinforce select-hard`: annotations -> the SFT set (teacher traces) and the RL set (hard pairs).

Difficulty is the number of teacher attempts a pair needed, or "failed" when none matched the label.
R1-Reward trains RL on pairs that needed >= 2 attempts or failed; SFT learns from the traces.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from typing import Iterable, Sequence

from .pairs import LABELS, PreferencePair

FAILED = "failed"


def difficulty(pair: PreferencePair) -> str:
    """"1", "2", ... (attempts used), "failed", or "unannotated"."""
    if pair.attempts is None:
        return "unannotated"
    return FAILED if pair.failed else str(pair.attempts)


def select_hard(
    pairs: Iterable[PreferencePair], *, min_attempts: int = 2, include_failed: bool = True
) -> list[PreferencePair]:
    """The RL set: annotated pairs that needed at least `min_attempts` tries, plus (by default) the failed."""
    return [p for p in pairs if p.attempts is not None and
            ((p.failed and include_failed) or (not p.failed and p.attempts >= min_attempts))]


def select_sft(
    pairs: Iterable[PreferencePair], *, max_attempts: int | None = None, balance: bool = True, seed: int = 0
) -> list[PreferencePair]:
    """The SFT set: pairs with a matching trace (optionally only the easier ones).

    A trace is tied to the order it was written for, so labels cannot be reassigned; `balance`
    instead drops (seeded) surplus pairs of the commoner label, so a teacher's position bias does
    not become the student's.
    """
    kept = [p for p in pairs if p.reasoning is not None and not p.failed and p.reasoning_label in LABELS
            and (max_attempts is None or p.attempts <= max_attempts)]
    if not balance:
        return kept
    by_label = {label: [p for p in kept if p.reasoning_label == label] for label in LABELS}
    n = min(len(v) for v in by_label.values())
    rng = random.Random(seed)
    keep = {id(p) for group in by_label.values() for p in rng.sample(group, n)}
    return [p for p in kept if id(p) in keep]


def difficulty_table(pairs: Sequence[PreferencePair], title: str = "pairs by difficulty and source") -> str:
    """A plain-text table: one row per source, one column per difficulty, with totals."""
    counts = Counter((p.source or "-", difficulty(p)) for p in pairs)
    sources = sorted({s for s, _ in counts})
    levels = sorted({d for _, d in counts}, key=lambda d: (not d.isdigit(), int(d) if d.isdigit() else 0, d))
    header = ["source", *levels, "total"]
    rows = [[s, *(str(counts[s, d]) for d in levels), str(sum(counts[s, d] for d in levels))] for s in sources]
    rows.append(["total", *(str(sum(counts[s, d] for s in sources)) for d in levels), str(len(pairs))])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([title, line(header), *map(line, rows)])


def _why_rl_empty(pairs: Sequence[PreferencePair], min_attempts: int, include_failed: bool) -> str:
    failed = sum(p.failed for p in pairs if p.attempts is not None)
    why = f"every annotated pair was right within {min_attempts - 1} attempt(s) (--min-attempts {min_attempts})"
    if failed and not include_failed:
        why += f", and --no-failed left out the {failed} that failed"
    return (why + ". Fix: lower --min-attempts" + (", drop --no-failed" if failed and not include_failed else "")
            + ", or annotate with a weaker teacher or at a higher temperature")


def _why_sft_empty(pairs: Sequence[PreferencePair], max_attempts: int | None, balance: bool) -> str:
    traced = [p for p in pairs if p.reasoning is not None and not p.failed and p.reasoning_label in LABELS]
    if not traced:
        return ("no pair has a trace that matched its label (every annotated pair failed all attempts). Fix: annotate "
                "with a stronger teacher or more --attempts")
    within = [p for p in traced if max_attempts is None or p.attempts <= max_attempts]
    if not within:
        return f"no trace was found within {max_attempts} attempt(s). Fix: raise or drop --sft-max-attempts"
    labels = Counter(p.reasoning_label for p in within)
    return (f"every trace answers {labels.most_common(1)[0][0]}, and balancing keeps as many of each label as the "
            "rarer one has. Fix: pass --no-balance (the teacher's position bias then becomes the student's)")


def _write(name: str, pairs: list, out: str | None, build, why: str) -> None:
    from .convert import save_dataset

    if not pairs:
        print(f"{name} set is empty, not written: {why}")
    elif out:
        save_dataset(build(pairs), out)
        print(f"wrote {name} set ({len(pairs)} pairs) to {out}")


def build_parser() -> argparse.ArgumentParser:
    from ..cli import HelpFormatter
    from .convert import add_source_args

    parser = argparse.ArgumentParser(prog="stable-reinforce select-hard", description=__doc__,
                                     formatter_class=HelpFormatter)
    add_source_args(parser)
    parser.set_defaults(format="pairs")  # annotation files are in the pairs format
    parser.add_argument("--rl-out", help="folder (or .jsonl) for the RL judge set")
    parser.add_argument("--sft-out", help="folder (or .jsonl) for the SFT set (messages + images)")
    parser.add_argument("--min-attempts", type=int, default=2, help="RL: pairs needing at least this many tries")
    parser.add_argument("--no-failed", action="store_true", help="RL: leave out pairs no attempt got right")
    parser.add_argument("--sft-max-attempts", type=int, default=None,
                        help="SFT: only traces found within N tries (default: any)")
    parser.add_argument("--no-balance", action="store_true", help="SFT: keep every trace, balanced or not")
    parser.add_argument("--seed", type=int, default=0, help="seed of the RL set's labels and the SFT balancing")
    parser.add_argument("--frames-as-images", action="store_true", help="video frames as images (TRL-ready)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .convert import pairs_from_args
    from .pairs import judge_dataset, sft_dataset
    from .validation import OptionError

    args = build_parser().parse_args(argv)
    if args.min_attempts < 1 or (args.sft_max_attempts is not None and args.sft_max_attempts < 1):
        raise OptionError("--min-attempts and --sft-max-attempts must be >= 1 (1 takes every annotated pair)")
    pairs = pairs_from_args(args)
    if all(p.attempts is None for p in pairs):
        raise OptionError(f"{args.source}: none of its {len(pairs)} pairs is annotated (no 'attempts' field). "
                          "Fix: run `stable-reinforce annotate` on it and pass the file it writes (--out)")
    print(difficulty_table(pairs, "annotations by difficulty and source"))
    rl = select_hard(pairs, min_attempts=args.min_attempts, include_failed=not args.no_failed)
    sft = select_sft(pairs, max_attempts=args.sft_max_attempts, balance=not args.no_balance, seed=args.seed)
    print(difficulty_table(rl, f"\nRL set: {len(rl)} pairs (attempts >= {args.min_attempts}"
                           + ("" if args.no_failed else " or failed") + ")"))
    sft_labels = Counter(p.reasoning_label for p in sft)
    title = f"\nSFT set: {len(sft)} pairs (label 1: {sft_labels['1']}, label 2: {sft_labels['2']})"
    print(difficulty_table(sft, title) + "\n")
    _write("RL", rl, args.rl_out, lambda ps: judge_dataset(ps, seed=args.seed, frames_as_images=args.frames_as_images),
           _why_rl_empty(pairs, args.min_attempts, not args.no_failed))
    _write("SFT", sft, args.sft_out, lambda ps: sft_dataset(ps, frames_as_images=args.frames_as_images),
           _why_sft_empty(pairs, args.sft_max_attempts, not args.no_balance))
    return 0
