"""Judge evaluation: trustworthy accuracy on VL-RewardBench, Multimodal RewardBench, MM-RLHF-RewardBench
and any preference pairs, with both orders, Voting@k / Any@k and position-bias figures.

`scoring` holds the arithmetic (pure functions on verdicts); `runner` runs a `Judge` over pairs with a
resumable generation cache; `report` writes JSON and markdown; `cli` is `stable-reinforce eval`.
"""

from .scoring import (
    BENCHMARKS,
    ORDERS,
    PROTOCOLS,
    JudgedOrder,
    JudgedPair,
    acc_plus,
    accuracy_block,
    any_correct,
    benchmark_category,
    category_table,
    macro_accuracy,
    majority,
    mm_rlhf_category,
    mm_rlhf_official,
    multimodal_rewardbench_category,
    multimodal_rewardbench_official,
    official_summary,
    order_stats,
    orders_for,
    pair_correct,
    random_passes,
    schedule,
    summarize,
    vl_rewardbench_category,
    vl_rewardbench_category_from_id,
    vl_rewardbench_category_from_source,
    vl_rewardbench_official,
    vote_correct,
)

__all__ = [
    "BENCHMARKS",
    "ORDERS",
    "PROTOCOLS",
    "GenerationCache",
    "InvalidRowsError",
    "JudgedOrder",
    "JudgedPair",
    "acc_plus",
    "accuracy_block",
    "any_correct",
    "benchmark_category",
    "category_table",
    "evaluate",
    "load_benchmark",
    "macro_accuracy",
    "main",
    "majority",
    "markdown",
    "mm_rlhf_category",
    "mm_rlhf_official",
    "multimodal_rewardbench_category",
    "multimodal_rewardbench_official",
    "official_summary",
    "order_stats",
    "orders_for",
    "pair_correct",
    "random_passes",
    "schedule",
    "summarize",
    "vl_rewardbench_category",
    "vl_rewardbench_category_from_id",
    "vl_rewardbench_category_from_source",
    "vl_rewardbench_official",
    "vote_correct",
    "write_report",
]


def __getattr__(name: str):
    # The model-running half imports torch/transformers: load it on first use, so `scoring` stays cheap.
    lazy = {
        "GenerationCache": "runner", "evaluate": "runner", "markdown": "report", "write_report": "report",
        "InvalidRowsError": "cli", "load_benchmark": "cli", "main": "cli",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(f".{lazy[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
