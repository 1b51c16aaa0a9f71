"""Does the demo's cold start see the image? The SFT judge's sampled traces, read against the truth.

    python -m benchmarks.cold_start_sight [--seeds 0,5,8] [--jobs 2] [--arm NAME=FIELD=VALUE,...]...
    python -m benchmarks.cold_start_sight --table [--name N]   # docs/demo.md's table

For each arm (a set of `DemoPlan` overrides, as `stable-reinforce demo --set` takes them; by default the plan as
it is, the earlier plan's blind cold start, and a teacher whose bare verdicts are right) and seed, trains the
demo's tiny model and SFT stage only (into `outputs/cold_start_sight/<arm>/seed-S`; a finished run is read, not
rerun), then samples 8 verdicts per order at temperature 1 on 64 held-out pairs of the demo's colour task and
reads each trace: the share that reason ("The image shows a red circle."), the share of those that name the
image's true colour (sight), the accuracy of reasoned verdicts, of reasoned verdicts that saw right, and of
terse ones. A judge that names the colour at chance (0.5) has not learned to look; one that sees but answers
terse at chance gains from RL only by moving to the reasoned trace. Writes `benchmarks/results/<--name>.json`
(default `cold_start_sight`).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import RESULTS, write_result
from .demo_seeds import parse_seeds

ARMS = {"default": [], "blind_1e-2": ["sft_learning_rate=1e-2", "terse_verdicts=right"],
        "right_3e-3": ["terse_verdicts=right"]}  # fmt: skip
SHOWS = re.compile(r"The image shows an? (\w+)")
TRUTH = re.compile(r" is (\w+)\.$")  # the colour task's response: "The circle is red."


def read_traces(model_dir: Path, seed: int, pairs: int = 64, k: int = 8) -> dict:
    """The sampled traces' sight and accuracy, as shares (None where nothing was counted)."""
    from stable_reinforce_trl.data.synthetic import make_synthetic_pairs
    from stable_reinforce_trl.judge import Judge, JudgeRequest

    held_out = make_synthetic_pairs(pairs, seed=seed + 1000, difficulty="basic")  # the demo's evaluation pairs
    judge = Judge.from_pretrained(str(model_dir), backend="transformers", max_new_tokens=64, temperature=1.0,
                                  device="cpu", batch_size=64)  # fmt: skip
    counts = dict.fromkeys(("samples", "reasoned", "saw", "right_reasoned", "right_saw", "terse", "right_terse"), 0)
    for pair, comparison in zip(held_out, judge.compare_many([JudgeRequest.from_pair(p, "1") for p in held_out], k=k)):
        truth = TRUTH.search(pair.chosen).group(1)
        for sample in comparison.samples:
            right = sample.choice == 1  # `chosen` is Response 1 in the caller's numbering
            shown = SHOWS.search(sample.reasoning)
            counts["samples"] += 1
            if shown:
                saw = shown.group(1) == truth
                counts["reasoned"] += 1
                counts["right_reasoned"] += right
                counts["saw"] += saw
                counts["right_saw"] += right and saw
            else:
                counts["terse"] += 1
                counts["right_terse"] += right

    def share(part, whole):
        return round(counts[part] / counts[whole], 3) if counts[whole] else None

    return {"reasoned": share("reasoned", "samples"), "sight": share("saw", "reasoned"),
            "accuracy_reasoned": share("right_reasoned", "reasoned"), "accuracy_when_seen": share("right_saw", "saw"),
            "accuracy_terse": share("right_terse", "terse"), "counts": counts}  # fmt: skip


def one_run(arm: str, overrides: list[str], seed: int, out: Path) -> dict:
    """The SFT stage of the demo's plan with `overrides`, then its traces read (in this process)."""
    import torch

    from stable_reinforce_trl.demo import DemoPlan, sft_stage, with_overrides
    from stable_reinforce_trl.tiny import make_tiny_model

    torch.set_num_threads(1)
    plan = with_overrides(DemoPlan(), overrides)
    base = make_tiny_model(out / "tiny-model", seed=seed, hidden_size=plan.hidden_size,
                           num_hidden_layers=plan.num_hidden_layers, intermediate_size=2 * plan.hidden_size)  # fmt: skip
    sft_dir, _ = sft_stage(base, plan, seed, out)
    return {"arm": arm, "overrides": overrides, "seed": seed, **read_traces(sft_dir, seed)}


def table(name: str = "cold_start_sight") -> str:
    runs = json.loads((RESULTS / f"{name}.json").read_text())["runs"]
    lines = ["| cold start | seed | reasoned | sight (right colour named) | accuracy reasoned | accuracy when seen | "
             "accuracy terse |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in runs:
        plan = ", ".join(f"`{o}`" for o in r["overrides"]) or "default"
        lines.append(f"| {plan} | {r['seed']} | {r['reasoned']:.2f} | {r['sight']:.2f} | {r['accuracy_reasoned']:.2f} "
                     f"| {r['accuracy_when_seen']:.2f} | {r['accuracy_terse']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,5,8")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each uses one CPU thread)")
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=FIELD=VALUE,...",
                        help="a cold start to read (repeatable; default: the three in ARMS)")  # fmt: skip
    parser.add_argument("--output-dir", default="outputs/cold_start_sight")
    parser.add_argument("--name", default="cold_start_sight", help="result name (benchmarks/results/<name>.json)")
    parser.add_argument("--table", action="store_true", help="print docs/demo.md's table from the committed JSON")
    parser.add_argument("--one", nargs=2, metavar=("ARM", "SEED"), help=argparse.SUPPRESS)  # a worker process
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.name))
        return {}
    arms = {}
    for spec in args.arm:
        name, _, overrides = spec.partition("=")
        arms[name] = [o for o in overrides.split(",") if o]
    arms = arms or dict(ARMS)
    root = Path(args.output_dir)
    if args.one:
        arm, seed = args.one[0], int(args.one[1])
        out = root / arm / f"seed-{seed}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "sight.json").write_text(json.dumps(one_run(arm, arms[arm], seed, out), indent=2))
        return {}

    def run(job: tuple[str, int]) -> dict:
        arm, seed = job
        path = root / arm / f"seed-{seed}" / "sight.json"
        if not (path.exists() and json.loads(path.read_text())["overrides"] == arms[arm]):
            path.unlink(missing_ok=True)
            specs = [f"--arm={a}={','.join(o)}" for a, o in arms.items()] if args.arm else []
            subprocess.run([sys.executable, "-m", "benchmarks.cold_start_sight", "--output-dir", str(root), *specs,
                            "--one", arm, str(seed)], check=True, capture_output=True)  # fmt: skip
        record = json.loads(path.read_text())
        print(f"{arm} seed {seed}: sight {record['sight']}, accuracy terse {record['accuracy_terse']}", flush=True)
        return record

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(run, [(arm, seed) for arm in arms for seed in parse_seeds(args.seeds)]))
    path = write_result(args.name, {"arms": arms, "runs": runs})
    print(f"-> {path}")
    return {"runs": runs}


if __name__ == "__main__":
    main()
