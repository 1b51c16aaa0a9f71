"""The evaluation's arithmetic, as pure functions over verdicts: nothing here runs a model.

Vocabulary: a pair is judged in one or two *orders*; an order is named by its `label`, the position
at which the human-preferred (`chosen`) response was shown ("1": chosen first). Each order holds k
verdicts (1, 2 or "invalid"), one per sample.

- Voting@k: the plurality of the valid verdicts; a tie, or no valid verdict, decides nothing and
  counts as wrong (so unparseable output can never earn accuracy).
- Any@k: at least one sample picked the chosen response.
- A pair is right only when it is right in every order it was judged in: a judge that always
  answers "1" is right in the chosen-first order and wrong in the other, so it scores 0 under
  `both`, not the 100% that the reference evaluation (chosen always first) gives it.
- The `accuracy` block puts a number next to published ones: `order_averaged` scores each judgment
  of a pair judged in both orders (the expected accuracy under a random order: the always-"1" judge
  reads 50%), beside the strict `both_orders` (0%) and the reference's `chosen_first` (100%).
- `--protocol official` scores each benchmark as its own released script does (`official_summary`).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from ..data.pairs import LABELS, balanced_labels
from ..prompts import INVALID, Verdict

ORDERS = ("both", "random", "chosen-first")
BENCHMARKS = ("vl-rewardbench", "multimodal-rewardbench", "mm-rlhf-rewardbench", "pairs")
PROTOCOLS = ("ours", "official")
UNCATEGORIZED = "uncategorized"


@dataclass(frozen=True)
class JudgedOrder:
    """The k verdicts for one pair shown with `chosen` at position `label`."""

    label: str
    verdicts: tuple[Verdict, ...]


@dataclass(frozen=True)
class JudgedPair:
    """One pair's verdicts in every order it was judged in, with what its metrics group it by."""

    id: str
    category: str
    orders: tuple[JudgedOrder, ...]
    group: str = ""


# ------------------------------------------------------------------------------------------- orders


def orders_for(n: int, order: str, seed: int = 0) -> list[tuple[str, ...]]:
    """The labels each of n pairs is judged with: `both` ("1", "2"); `chosen-first` ("1",) (the reference
    code's, for comparison only); `random` one seeded label each, exactly balanced between "1" and "2"."""
    if order == "both":
        return [LABELS] * n
    if order == "chosen-first":
        return [("1",)] * n
    if order == "random":
        return [(label,) for label in balanced_labels(n, seed)]
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def random_passes(n: int, k: int, seed: int = 0) -> list[tuple[str, ...]]:
    """VL-RewardBench's k passes: pass j shows each pair in its own random order (seeded, each pass exactly
    balanced). Pass 0 is `orders_for(n, "random", seed)`, so a k = 1 run shares its generations."""
    passes = [balanced_labels(n, seed + j) for j in range(k)]
    return [tuple(p[i] for p in passes) for i in range(n)]


# What each protocol judges when the user does not say: ours both orders; the official scripts their own.
OFFICIAL_ORDERS = {
    "vl-rewardbench": "random-passes",  # cal.py: k passes, each pair in a random order per pass
    "multimodal-rewardbench": "released",  # 2_get_accuracy.py: Output1/Output2 as in the file
    "mm-rlhf-rewardbench": "random",  # the file fixes no order; chosen-first is the reference's (--order)
    "pairs": "random-passes",  # no script of its own: scored as VL-RewardBench's cal.py
}


def schedule(
    n: int, *, protocol: str = "ours", benchmark: str = "pairs", order: str | None = None, k: int = 1,
    seed: int = 0, released: Sequence[str | None] = (),
) -> tuple[str, list[dict[str, int]]]:
    """(the order's name, per pair `{label: samples to generate}`) for a protocol.

    `ours`: `order` (default both), k samples in each. `official`: the benchmark's own order
    (`OFFICIAL_ORDERS`); MM-RLHF-RewardBench takes `random` or `chosen-first`. `released` holds each
    pair's `PreferencePair.label` (the order the file shows), for `released`.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "ours":
        order = order or "both"
        return order, [{label: k for label in labels} for labels in orders_for(n, order, seed)]
    official = OFFICIAL_ORDERS[benchmark]
    if order is not None and not (official == "random" and order in ("random", "chosen-first")):
        fixed = {"random-passes": "k passes, each pair in a seeded random order per pass",
                 "released": "the order the file shows (Output1, Output2)"}.get(official)
        allowed = f"fixes the order ({fixed})" if fixed else "takes --order random or chosen-first"
        raise ValueError(f"--protocol official for {benchmark} {allowed}; got --order {order}. Drop --order, "
                         f"or use --protocol ours for another order.")
    order = order or official
    if order == "random-passes":
        return order, [dict(sorted(Counter(passes).items())) for passes in random_passes(n, k, seed)]
    if order == "released":
        if len(released) != n or None in released:
            raise ValueError(f"--protocol official for {benchmark} scores in the order the file shows the two "
                             f"responses, and these pairs have none (a chosen/rejected file): give the released "
                             f"file (Output1/Output2/Better), or use --protocol ours")
        return order, [{label: k} for label in released]
    return order, [{label: k for label in labels} for labels in orders_for(n, order, seed)]


# ------------------------------------------------------------------------------------------- voting


def majority(verdicts: Sequence[Verdict]) -> Verdict:
    """The most frequent valid verdict; "invalid" on a tie or when no verdict is valid."""
    counts = Counter(v for v in verdicts if v != INVALID)
    if not counts:
        return INVALID
    (top, top_n), *rest = counts.most_common()
    return INVALID if rest and rest[0][1] == top_n else top


def vote_correct(order: JudgedOrder) -> bool:
    """Voting@k (greedy when k = 1): the majority picked the chosen response."""
    return majority(order.verdicts) == int(order.label)


def any_correct(order: JudgedOrder) -> bool:
    """Any@k: some sample picked the chosen response."""
    return int(order.label) in order.verdicts


def pair_correct(pair: JudgedPair, rule: Callable[[JudgedOrder], bool] = vote_correct) -> bool:
    """Right in every order the pair was judged in."""
    return bool(pair.orders) and all(rule(order) for order in pair.orders)


def accuracy(flags: Iterable[bool]) -> float | None:
    """The share of true flags; None for none (a metric with no data is missing, not 0)."""
    flags = list(flags)
    return sum(flags) / len(flags) if flags else None


# --------------------------------------------------------------------------------------- categories

# VL-RewardBench's official split is by `query_source`. Keys are lower-cased with punctuation removed,
# so "RLAIF-V", "rlaif_v" and "rlaifv" are one source.
VL_REWARDBENCH_SOURCES = {
    "wildvision": "general",
    "vlfeedback": "general",
    "reasoningtasks": "reasoning",  # cal.py's folder name for MMMU-Pro + MathVerse
    "povid": "hallucination",
    "rlaifv": "hallucination",
    "rlhfv": "hallucination",
    "mmmupro": "reasoning",
    "mathverse": "reasoning",
}
VL_REWARDBENCH_CATEGORIES = ("general", "hallucination", "reasoning")
# Converted exports lose `query_source`; their ids keep it as a prefix. Matched case-insensitively:
# the reference script matched case-sensitively and reported 484 / 448 / 318 instead of 183 / 749 / 318.
VL_REWARDBENCH_ID_PREFIXES = {
    "hallucinationpair": "hallucination",
    "rlaifv": "hallucination",
    "rlhfv": "hallucination",
    "mathverse": "reasoning",
    "mmmupro": "reasoning",
}


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def vl_rewardbench_category_from_source(query_source: str) -> str | None:
    """general / hallucination / reasoning for a `query_source` (or an already-mapped category name);
    None when the value names no known source."""
    key = _squash(query_source or "")
    if key in VL_REWARDBENCH_CATEGORIES:
        return key
    if not key:
        return None
    return next((cat for source, cat in VL_REWARDBENCH_SOURCES.items() if key.startswith(source)), None)


def vl_rewardbench_category_from_id(pair_id: str) -> str:
    """The category a converted export's id prefix implies: hallucination_pair / RLAIF-V / RLHF-V ->
    hallucination, mathverse / mmmu_pro -> reasoning, anything else -> general."""
    key = _squash(pair_id)
    return next((cat for prefix, cat in VL_REWARDBENCH_ID_PREFIXES.items() if key.startswith(prefix)), "general")


def vl_rewardbench_category(query_source: str, pair_id: str) -> str:
    """From `query_source` when it names a known source, else from the id prefix."""
    return vl_rewardbench_category_from_source(query_source) or vl_rewardbench_category_from_id(pair_id)


def multimodal_rewardbench_category(category: str, pair_id: str) -> str:
    """The split of Multimodal RewardBench's `scripts/2_get_accuracy.py`: `safety` is `safety/bias` for PAIRS
    ids (`pairs...`) and `safety/toxicity` otherwise; `reasoning` is `reasoning/math` for `math...` ids
    (MathVista) and `reasoning/coding` otherwise; the other categories as released."""
    pair_id = pair_id.lower()
    if category == "safety":
        return "safety/bias" if pair_id.startswith("pairs") else "safety/toxicity"
    if category == "reasoning":
        return "reasoning/math" if pair_id.startswith("math") else "reasoning/coding"
    return category or UNCATEGORIZED


# MM-RLHF-RewardBench's categories, in the order its scoring script tries them.
MM_RLHF_CATEGORIES = ("mcq", "long", "short", "safety", "video")


def mm_rlhf_category(media_path: str) -> str:
    """The category a row's `image` / `video` path names: its first folder (`mcq/...`, `video/...`), or, as the
    released `cal_performance_mmreweard_bench.py` does, the first of mcq / long / short / safety / video that
    occurs in the path."""
    parts = [part for part in re.split(r"[\\/]", media_path) if part and part not in (".", "..")]
    for part in parts[:-1] or parts:
        if part.lower() in MM_RLHF_CATEGORIES:
            return part.lower()
    return next((name for name in MM_RLHF_CATEGORIES if name in media_path.lower()), UNCATEGORIZED)


def benchmark_category(benchmark: str, category: str, pair_id: str) -> str:
    """The category a pair is reported under, for a benchmark (the loaders put `query_source` and
    `Category` into `PreferencePair.category`; MM-RLHF's comes from the media path at load time)."""
    if benchmark == "vl-rewardbench":
        return vl_rewardbench_category(category, pair_id)
    if benchmark == "multimodal-rewardbench":
        return multimodal_rewardbench_category(category, pair_id)
    return category or UNCATEGORIZED


# ------------------------------------------------------------------------------------------ metrics


def category_table(pairs: Sequence[JudgedPair]) -> dict[str, dict]:
    """`{category: {n, accuracy, any_at_k}}`, categories sorted by name."""
    by_category: dict[str, list[JudgedPair]] = defaultdict(list)
    for pair in pairs:
        by_category[pair.category].append(pair)
    return {
        name: {
            "n": len(members),
            "accuracy": accuracy(pair_correct(p) for p in members),
            "any_at_k": accuracy(pair_correct(p, any_correct) for p in members),
        }
        for name, members in sorted(by_category.items())
    }


def macro_accuracy(categories: dict[str, dict]) -> float | None:
    """The unweighted mean of the categories' accuracies."""
    return sum(c["accuracy"] for c in categories.values()) / len(categories) if categories else None


def acc_plus(pairs: Sequence[JudgedPair]) -> tuple[float | None, int]:
    """(Acc+, number of groups): the share of groups (pairs with one prompt) whose every pair is right."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for pair in pairs:
        groups[pair.group or pair.id].append(pair_correct(pair))
    return accuracy(all(flags) for flags in groups.values()), len(groups)


def order_stats(pairs: Sequence[JudgedPair]) -> dict:
    """Position bias and output health.

    - `parse_failure_rate`: unparseable samples / all samples.
    - `p_verdict_1`: share of valid samples answering "1" (0.5 for an unbiased judge on balanced orders).
    - `accuracy_by_order`: Voting@k accuracy with the chosen response shown first / second.
    - `position_bias`: accuracy chosen-first minus chosen-second (1.0: always "1"; -1.0: always "2").
    - `order_consistency`: among pairs judged in both orders, the share whose majority picks the same
      response in both (swapping the responses does not change the decision).
    """
    samples = [v for pair in pairs for order in pair.orders for v in order.verdicts]
    valid = [v for v in samples if v != INVALID]
    by_order = {
        name: [vote_correct(o) for pair in pairs for o in pair.orders if o.label == label]
        for name, label in (("chosen_first", "1"), ("chosen_second", "2"))
    }
    table = {name: {"n": len(flags), "accuracy": accuracy(flags)} for name, flags in by_order.items()}
    first, second = table["chosen_first"]["accuracy"], table["chosen_second"]["accuracy"]
    both = [pair for pair in pairs if {o.label for o in pair.orders} == set(LABELS)]
    consistent = [_picks_same(pair) for pair in both]
    return {
        "parse_failure_rate": accuracy(v == INVALID for v in samples),
        "p_verdict_1": accuracy(v == 1 for v in valid),
        "accuracy_by_order": table,
        "position_bias": first - second if first is not None and second is not None else None,
        "order_consistency": accuracy(consistent),
    }


def _picks_same(pair: JudgedPair) -> bool:
    """Both orders' majorities name the same response (chosen in both, or rejected in both)."""
    picks = set()
    for order in pair.orders:
        verdict = majority(order.verdicts)
        if verdict == INVALID:
            return False
        picks.add(verdict == int(order.label))
    return len(picks) == 1


def summarize(pairs: Sequence[JudgedPair], benchmark: str = "pairs", order: str | None = None) -> dict:
    """Every metric of a run (protocol `ours`): `overall` (Voting@k, right in every order judged), `any_at_k`,
    `macro`, `categories`, order stats, for MM-RLHF-RewardBench `acc_plus` over prompt groups, and, given the
    `order` the pairs were judged in, the `accuracy` block (`accuracy_block`). Accuracies are in [0, 1]."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    categories = category_table(pairs)
    summary = {
        "n": len(pairs),
        **({"accuracy": accuracy_block(pairs, order, benchmark)} if order is not None else {}),
        "overall": accuracy(pair_correct(p) for p in pairs),
        "any_at_k": accuracy(pair_correct(p, any_correct) for p in pairs),
        "macro": macro_accuracy(categories),
        "categories": categories,
    }
    if benchmark == "mm-rlhf-rewardbench":
        summary["acc_plus"], summary["n_groups"] = acc_plus(pairs)
    summary.update(order_stats(pairs))
    return summary



# ------------------------------------------------------------------------------ ours: the accuracy block

# Each block scores a pair in [0, 1] from its orders' Voting@k verdicts, and says in one line what it is.
ACCURACY_BLOCKS = {
    "order_averaged": "each pair judged in both orders, each judgment scored: the expected accuracy under a "
                      "random order, free of position bias (the number to put next to published ones)",
    "both_orders": "right only when right in both orders (strict: order consistency and accuracy at once)",
    "chosen_first": "the chosen response always shown first, as the reference evaluation did; for comparison "
                    "only (an always-\"1\" judge scores 100%)",
    "random_order": "one seeded random order per pair, balanced between \"1\" and \"2\"",
}


def _order_averaged(pair: JudgedPair) -> float:
    return sum(vote_correct(o) for o in pair.orders) / len(pair.orders) if pair.orders else 0.0


def _chosen_first(pair: JudgedPair) -> float:
    return float(any(vote_correct(o) for o in pair.orders if o.label == "1"))


def _strict(pair: JudgedPair) -> float:
    return float(pair_correct(pair))


_BLOCK_SCORES = {"order_averaged": _order_averaged, "both_orders": _strict, "chosen_first": _chosen_first,
                 "random_order": _strict}
_BLOCKS_FOR_ORDER = {"both": ("order_averaged", "both_orders", "chosen_first"), "chosen-first": ("chosen_first",),
                     "random": ("random_order",)}


# Multimodal RewardBench's leaderboard columns that its script splits in two (`reasoning/math`, ...).
SPLIT_PARENTS = ("reasoning", "safety")


def category_members(pairs: Sequence[JudgedPair]) -> dict[str, list[int]]:
    """`{category: indices of its pairs}`, sorted by name, with `reasoning` and `safety` also holding their two
    parts where the categories are split (`multimodal_rewardbench_category`)."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        members[pair.category].append(i)
        parent = pair.category.split("/")[0]
        if parent != pair.category and parent in SPLIT_PARENTS:
            members[parent].append(i)
    return dict(sorted(members.items()))


def scored_block(pairs: Sequence[JudgedPair], scores: Sequence[float], *, with_acc_plus: bool = False) -> dict:
    """`{n, accuracy, macro, categories: {name: {n, accuracy}}}` from one score per pair (1 right, 0 wrong, or
    in between); with `with_acc_plus`, Acc+ too: per prompt group the product of its pairs' scores (for 0/1
    scores: every pair right; for order-averaged ones: the chance that every pair is right when each is
    shown in a random order), overall (`acc_plus`, `n_groups`) and per category."""
    members = category_members(pairs)
    categories = {name: {"n": len(idx), "accuracy": accuracy(scores[i] for i in idx)} for name, idx in members.items()}
    leaves = {name: c for name, c in categories.items() if name not in SPLIT_PARENTS}
    block = {"n": len(pairs), "accuracy": accuracy(scores), "macro": macro_accuracy(leaves),
             "categories": categories}
    if with_acc_plus:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, pair in enumerate(pairs):
            groups[pair.group or pair.id].append(i)
        value = {g: math.prod(scores[i] for i in idx) for g, idx in groups.items()}
        block["acc_plus"], block["n_groups"] = accuracy(value.values()), len(groups)
        for name, cat in categories.items():
            # as the released script: the groups with a pair in the category, each right only if all its pairs are
            in_category = set(members[name])
            with_pair = [g for g, idx in groups.items() if in_category.intersection(idx)]
            cat["acc_plus"], cat["n_groups"] = accuracy(value[g] for g in with_pair), len(with_pair)
    return block


def accuracy_block(pairs: Sequence[JudgedPair], order: str, benchmark: str = "pairs") -> dict:
    """`{name: block}` for the blocks an order allows (`both`: order_averaged, both_orders, chosen_first),
    each with `what` it is (see `scored_block` for the fields)."""
    blocks = {}
    for name in _BLOCKS_FOR_ORDER[order]:
        scores = [_BLOCK_SCORES[name](p) for p in pairs]
        blocks[name] = {**scored_block(pairs, scores, with_acc_plus=benchmark == "mm-rlhf-rewardbench"),
                        "what": ACCURACY_BLOCKS[name]}
    return blocks


# --------------------------------------------------------------------------- the benchmarks' own scripts

OFFICIAL_SCRIPTS = {
    "vl-rewardbench": "VL-RewardBench cal.py",
    "multimodal-rewardbench": "Multimodal RewardBench scripts/2_get_accuracy.py",
    "mm-rlhf-rewardbench": "MM-RLHF-RewardBench get_acc.py (strict Acc, Acc+ over prompt ids)",
    "pairs": "VL-RewardBench cal.py (no official script for plain pairs)",
}
MULTIMODAL_REWARDBENCH_SEED = 123  # 2_get_accuracy.py: random.seed(123) before its first guess


def vl_rewardbench_official(pairs: Sequence[JudgedPair]) -> dict:
    """VL-RewardBench's `cal.py` (github.com/vl-rewardbench/VL_RewardBench): each pair's k passes (here every
    verdict of every order it was shown in) are counted as agree / reject / unparsed ("doesntMatch"); the
    pair is right when agree > k/2, wrong when reject > k/2, and otherwise (no majority, or mostly unparsed)
    left out of the denominator. Overall is micro over the scored pairs, Macro the mean of the categories."""
    outcome: dict[str, list[JudgedPair]] = defaultdict(list)
    flags: list[tuple[JudgedPair, bool]] = []
    for pair in pairs:
        verdicts = [(v, int(o.label)) for o in pair.orders for v in o.verdicts]
        agree = sum(v == label for v, label in verdicts)
        unparsed = sum(v == INVALID for v, _ in verdicts)
        reject = len(verdicts) - agree - unparsed
        if agree > len(verdicts) / 2 or reject > len(verdicts) / 2:
            flags.append((pair, agree > reject))
        else:
            outcome["unparsed" if unparsed > len(verdicts) / 2 else "no_majority"].append(pair)
    categories = {}
    for name in sorted({p.category for p in pairs}):
        scored = [right for p, right in flags if p.category == name]
        categories[name] = {"n": sum(p.category == name for p in pairs), "n_scored": len(scored),
                            "accuracy": accuracy(scored)}
    scored_categories = {name: c for name, c in categories.items() if c["accuracy"] is not None}
    return {
        "script": OFFICIAL_SCRIPTS["vl-rewardbench"], "n": len(pairs), "n_scored": len(flags),
        "left_out": {"no_majority": len(outcome["no_majority"]), "unparsed": len(outcome["unparsed"])},
        "overall": accuracy(right for _, right in flags), "macro": macro_accuracy(scored_categories),
        "categories": categories,
    }


def multimodal_rewardbench_official(pairs: Sequence[JudgedPair], seed: int = MULTIMODAL_REWARDBENCH_SEED) -> dict:
    """Multimodal RewardBench's `scripts/2_get_accuracy.py` (github.com/facebookresearch/multimodal_rewardbench):
    one verdict per pair in the released order (Voting@k for k > 1); an unparseable one (or a tied vote)
    becomes a random guess, drawn in file order from `random.seed(123)` as the script does; overall is micro
    accuracy; categories as `multimodal_rewardbench_category` splits them, plus `reasoning` and `safety`
    over their two parts (the leaderboard's columns)."""
    rng = random.Random(seed)
    flags, guessed = [], 0
    for pair in pairs:
        (order,) = pair.orders
        verdict = majority(order.verdicts)
        if verdict == INVALID:
            verdict, guessed = (1 if rng.random() < 0.5 else 2), guessed + 1
        flags.append(verdict == int(order.label))
    return {
        "script": OFFICIAL_SCRIPTS["multimodal-rewardbench"], "n": len(pairs), "guessed": guessed,
        "overall": accuracy(flags),
        "categories": {name: {"n": len(idx), "accuracy": accuracy(flags[i] for i in idx)}
                       for name, idx in category_members(pairs).items()},
    }


def mm_rlhf_official(pairs: Sequence[JudgedPair]) -> dict:
    """MM-RLHF-RewardBench's scoring (the reference `get_acc.py`; the released `cal_performance_mmreweard_bench.py`
    does the same arithmetic on scalar rewards): Acc counts a pair right only when its Voting@k verdict picks
    the chosen response (a tie or no answer is wrong); Acc+ is the share of prompt ids whose every pair is
    right; both per category (mcq / long / short / safety / video)."""
    block = scored_block(pairs, [_strict(p) for p in pairs], with_acc_plus=True)
    return {"script": OFFICIAL_SCRIPTS["mm-rlhf-rewardbench"], "n": block["n"], "overall": block["accuracy"],
            "acc_plus": block["acc_plus"], "n_groups": block["n_groups"], "categories": block["categories"]}


def official_summary(pairs: Sequence[JudgedPair], benchmark: str) -> dict:
    """The benchmark's own script's numbers (`pairs`: VL-RewardBench's `cal.py`), plus the order stats."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    if benchmark == "multimodal-rewardbench":
        official = multimodal_rewardbench_official(pairs)
    elif benchmark == "mm-rlhf-rewardbench":
        official = mm_rlhf_official(pairs)
    else:
        official = {**vl_rewardbench_official(pairs), "script": OFFICIAL_SCRIPTS[benchmark]}
    return {"n": len(pairs), "official": official, **order_stats(pairs)}
