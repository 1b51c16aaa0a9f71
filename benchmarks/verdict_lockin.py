"""Why some demo seeds never learn: the RL rollouts' verdicts, step by step, on seeds that lock and one that learns.

    python -m benchmarks.verdict_lockin [--seeds 0,5,8] [--jobs 2] [--name N] [-- demo flags...]
    python -m benchmarks.verdict_lockin --table [--name N]   # docs/demo.md's table

Runs the default demo for each seed (as `benchmarks.demo_seeds` does, into `outputs/verdict_lockin/seed-S`; a
seed already run with the same flags is read, not rerun) and reads the RL stage's per-generation verdict
diagnostics (`stable_reinforce_trl.verdict_stats`) from its `training_log.jsonl`: the share of rollouts naming
Response 1 on label-1 and on label-2 rows, the mean advantage of each verdict, the result reward, and the share
of wrongly judged prompts whose samples still hold a right verdict. Writes
`benchmarks/results/verdict_lockin.json` (every generation's values, and their means over the first, middle
and last fifth of RL) and a PNG of the curves.
"""

from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import RESULTS, write_result
from .demo_seeds import parse_seeds, run_seed

PREFIX = "stable_reinforce/"
KEYS = ("p_verdict_1_label_1", "p_verdict_1_label_2", "advantage_verdict_1", "advantage_verdict_2",
        "groups_sampling_right", "wrong_groups_sampling_right")  # fmt: skip
CURVES = {**{k: PREFIX + k for k in KEYS}, "result_reward": "r1_reward/result", "consistency": "r1_reward/consistency",
          "mean_length": "completions/mean_length"}  # fmt: skip


def rl_curves(log_path: Path) -> dict[str, list[tuple[int, float]]]:
    """Each curve's (step, value) over the RL stage's generations."""
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    rl = [e for e in entries if e.get("stage") == "rl"]
    return {name: [(e["step"], e[key]) for e in rl if key in e and math.isfinite(e[key])] for name, key in CURVES.items()}


def windows(points: list[tuple[int, float]]) -> dict[str, float | None]:
    """Means over the first, middle and last fifth of the generations."""
    values = [v for _, v in points]
    if not values:
        return {"first": None, "middle": None, "last": None}
    n = max(1, len(values) // 5)
    middle = len(values) // 2
    parts = {"first": values[:n], "middle": values[middle - n // 2 : middle - n // 2 + n], "last": values[-n:]}
    return {name: round(sum(part) / len(part), 4) for name, part in parts.items()}


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("p_verdict_1_label_1", "p_verdict_1_label_2"), ("advantage_verdict_1", "advantage_verdict_2"),
              ("result_reward",), ("wrong_groups_sampling_right",)]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8))
    for ax, names in zip(axes, panels):
        for run in runs:
            for name, style in zip(names, ("-", "--")):
                points = run["curves"][name]
                which = f", {' '.join(name.rsplit('_', 2)[-2:])}" if len(names) > 1 else ""  # "label 1", "verdict 2"
                ax.plot([p[0] for p in points], [p[1] for p in points], style, linewidth=1,
                        label=f"seed {run['seed']}{which}")  # fmt: skip
        ax.set_title(" / ".join(names), fontsize=9)
        ax.set_xlabel("RL step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(name: str = "verdict_lockin") -> str:
    """docs/demo.md's table, from the committed JSON: per seed, first -> last fifth of RL."""
    runs = json.loads((RESULTS / f"{name}.json").read_text())["runs"]

    def span(run, key, digits=2):
        w = run["windows"][key]
        return "n/a" if w["first"] is None else f"{w['first']:.{digits}f} -> {w['last']:.{digits}f}"

    lines = ["| seed | RL greedy | P(1 given label 1) | P(1 given label 2) | right sampled on wrong prompts | consistency "
             "| mean length | result |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for run in runs:
        lines.append(f"| {run['seed']} | {run['rl']['greedy']:.0f}% | {span(run, 'p_verdict_1_label_1')} | "
                     f"{span(run, 'p_verdict_1_label_2')} | {span(run, 'wrong_groups_sampling_right')} | "
                     f"{span(run, 'consistency')} | {span(run, 'mean_length', 1)} | {span(run, 'result_reward')} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,5,8", help="e.g. 0,5,8 or 0-9")
    parser.add_argument("--jobs", type=int, default=2, help="demos at once (each uses one CPU thread)")
    parser.add_argument("--output-dir", default=None, help="default: outputs/<name>")
    parser.add_argument("--name", default="verdict_lockin", help="result name (benchmarks/results/<name>.json)")
    parser.add_argument("--table", action="store_true", help="print docs/demo.md's table from the committed JSON")
    parser.add_argument("demo_args", nargs="*", help="more `stable-reinforce demo` flags (after --)")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.name))
        return {}
    root = Path(args.output_dir or f"outputs/{args.name}")

    def one(seed: int) -> dict:
        record = run_seed(seed, root / f"seed-{seed}", args.demo_args)
        curves = rl_curves(root / f"seed-{seed}" / "training_log.jsonl")
        return {**record, "curves": curves, "windows": {name: windows(points) for name, points in curves.items()}}

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(one, parse_seeds(args.seeds)))
    result = {"demo_args": args.demo_args, "runs": runs}
    path = write_result(args.name, result)
    plot(runs, RESULTS / f"{args.name}.png")
    for run in runs:
        w = run["windows"]
        print(f"seed {run['seed']}: RL {run['rl']['greedy']:.0f}% | P(1|label 1) {w['p_verdict_1_label_1']} | "
              f"P(1|label 2) {w['p_verdict_1_label_2']} | wrong groups sampling right "
              f"{w['wrong_groups_sampling_right']}")  # fmt: skip
    print(f"-> {path}")
    return result


if __name__ == "__main__":
    main()
