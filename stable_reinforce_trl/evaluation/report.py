"""An evaluation's results as a JSON file and a markdown report (accuracies shown as percentages).

The markdown leads with the number to compare (protocol `ours`: the order-averaged accuracy; `official`:
the benchmark script's), says in one line what each number is, then gives one row per category.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .scoring import ACCURACY_BLOCKS

BLOCK_NAMES = {"order_averaged": "order-averaged", "both_orders": "both orders", "chosen_first": "chosen first",
               "random_order": "random order"}
ORDER_WORDS = {
    "both": "every pair in both orders",
    "random": "one seeded random order per pair",
    "chosen-first": "chosen response first (the reference's)",
    "random-passes": "k passes, each pair in a seeded random order per pass",
    "released": "the order the file shows",
}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _title(report: dict) -> list[str]:
    k, temperature = report["k"], report.get("generation", {}).get("temperature")
    skipped = report.get("skipped", {}).get("total", 0)
    lines = [
        f"### {report.get('model', 'judge')} on {report['benchmark']}",
        "",
        f"- model: `{report.get('model', '-')}`",
        f"- data: `{report.get('data', '-')}` ({report['n']} pairs" + (f", {skipped} invalid rows skipped)" if skipped
                                                                       else ")"),
        f"- protocol: `{report['protocol']}`" + (f" ({report['official']['script']})" if "official" in report else ""),
        f"- order: `{report['order']}` ({ORDER_WORDS.get(report['order'], report['order'])})",
        f"- k: {k} ({'greedy' if k == 1 else f'Voting@{k}, temperature {temperature}'})",
        "",
    ]
    return lines


def _health(report: dict) -> list[tuple[str, str, str]]:
    by_order = report["accuracy_by_order"]
    rows = [(f"accuracy, chosen shown {where}", _pct(by_order[key]["accuracy"]), f"n={by_order[key]['n']} pairs shown so")
            for where, key in (("first", "chosen_first"), ("second", "chosen_second"))]
    return rows + [
        ("position bias (first - second)", _pct(report["position_bias"]), "0 for a judge blind to position"),
        ("P(verdict = 1)", _pct(report["p_verdict_1"]), "share of valid samples answering 1"),
        ("order consistency", _pct(report["order_consistency"]), "pairs whose pick survives swapping the responses"),
        ("parse failures", _pct(report["parse_failure_rate"]), "samples with no valid <answer>"),
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(str, row)) + " |" for row in rows), ""]


def _ours(report: dict) -> list[str]:
    k, blocks = report["k"], report["accuracy"]
    vote = "greedy" if k == 1 else f"Voting@{k}"
    rows = [[f"**{BLOCK_NAMES[name]}** accuracy ({vote})" if i == 0 else f"{BLOCK_NAMES[name]} accuracy ({vote})",
             _pct(b["accuracy"]), b["n"], ACCURACY_BLOCKS[name]] for i, (name, b) in enumerate(blocks.items())]
    lead = next(iter(blocks))
    rows.append([f"macro, {BLOCK_NAMES[lead]}", _pct(blocks[lead]["macro"]), len(blocks[lead]["categories"]),
                 "the mean of the categories' accuracies"])
    if "acc_plus" in blocks[lead]:
        rows += [[f"Acc+, {BLOCK_NAMES[name]}", _pct(b["acc_plus"]), f"{b['n_groups']} prompt groups",
                  "groups whose every pair is right" + (" (expected, under a random order per pair)"
                                                         if name == "order_averaged" else "")]
                 for name, b in blocks.items()]
    rows.append([f"Any@{k}, {'both orders' if report['order'] == 'both' else report['order']}",
                 _pct(report["any_at_k"]), report["n"], "some sample right in every order judged"])
    rows += [[name, value, "", what] for name, value, what in _health(report)]
    lines = _table(["number", "%", "n", "what it is"], rows)
    with_plus = "acc_plus" in blocks[lead]
    header = ["category", "n", *(BLOCK_NAMES[name] for name in blocks)]
    header += [f"Acc+ {BLOCK_NAMES[name]}" for name in blocks] if with_plus else []
    category_rows = []
    for cat, c in blocks[lead]["categories"].items():
        row = [cat, c["n"], *(_pct(b["categories"][cat]["accuracy"]) for b in blocks.values())]
        row += [_pct(b["categories"][cat]["acc_plus"]) for b in blocks.values()] if with_plus else []
        category_rows.append(row)
    return lines + _table(header, category_rows)


def _official(report: dict) -> list[str]:
    o = report["official"]
    if report["benchmark"] == "multimodal-rewardbench":
        guess = f"micro accuracy, released order; an unparseable verdict is a random guess (seed 123): {o['guessed']}"
        rows = [["**overall**", _pct(o["overall"]), o["n"], guess]]
        cats = _table(["category", "n", "accuracy"],
                      [[name, c["n"], _pct(c["accuracy"])] for name, c in o["categories"].items()])
    elif report["benchmark"] == "mm-rlhf-rewardbench":
        strict = "pairs whose verdict picks the chosen response (wrong: a tie, no answer)"
        rows = [["**Acc**", _pct(o["overall"]), o["n"], strict],
                ["Acc+", _pct(o["acc_plus"]), f"{o['n_groups']} prompt groups", "groups whose every pair is right"]]
        cats = _table(["category", "n", "Acc", "groups", "Acc+"],
                      [[name, c["n"], _pct(c["accuracy"]), c["n_groups"], _pct(c["acc_plus"])]
                       for name, c in o["categories"].items()])
    else:
        left = o["left_out"]
        rows = [["**overall**", _pct(o["overall"]), f"{o['n_scored']} of {o['n']} scored",
                 "micro accuracy over the pairs with a majority (> k/2) of the k passes"],
                ["macro", _pct(o["macro"]), len(o["categories"]), "the mean of the categories' accuracies"],
                ["left out: no majority", "-", left["no_majority"], "pairs out of the denominator"],
                ["left out: unparsed", "-", left["unparsed"], "pairs out of the denominator (mostly no valid answer)"]]
        cats = _table(["category", "n", "scored", "accuracy"],
                      [[name, c["n"], c["n_scored"], _pct(c["accuracy"])] for name, c in o["categories"].items()])
    rows += [[name, value, "", what] for name, value, what in _health(report)]
    return _table(["number", "%", "n", "what it is"], rows) + cats


def markdown(report: dict) -> str:
    """The run's settings, the headline numbers (each with what it is), then one row per category."""
    body = _official(report) if report.get("protocol") == "official" else _ours(report)
    return "\n".join(_title(report) + body)


def write_report(report: dict, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write `path` (JSON) and the markdown beside it (same name, `.md`); return both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    md = path.with_suffix(".md")
    md.write_text(markdown(report))
    return path, md
