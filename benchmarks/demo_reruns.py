"""The demo's figures over reruns: sampling (Voting@k) is not bit-reproducible on CPU, so a sampled figure is
quoted with its spread, not from one run.

    python -m benchmarks.demo_reruns --runs 3 [--seed 0] [-- demo flags...]

Reruns `stable-reinforce demo` (same plan, same seed) `--runs` times, one after another, into
`--output-dir/run-N`, and writes `benchmarks/results/demo_reruns.json`: each stage's greedy and Voting@k
both-order accuracy per run, with min, max and mean.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from .common import write_result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="outputs/demo_reruns")
    parser.add_argument("demo_args", nargs="*", help="more `stable-reinforce demo` flags (after --)")
    args = parser.parse_args(argv)
    runs = []
    for i in range(args.runs):
        out = Path(args.output_dir) / f"run-{i}"
        command = [sys.executable, "-m", "stable_reinforce_trl.cli", "demo", "--output-dir", str(out),
                   "--seed", str(args.seed), *args.demo_args]  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "terminal.log", "w") as terminal:  # what `make demo` would have printed
            subprocess.run(command, check=True, stdout=terminal, stderr=subprocess.STDOUT)
        report = json.loads((out / "report.json").read_text())
        runs.append({stage: {label: 100 * r["overall"] for label, r in results.items()}
                     for stage, results in report["evaluation"].items()})  # fmt: skip
        print(f"run {i}: {runs[-1]}", flush=True)
    spread = {
        stage: {label: {"min": min(v), "max": max(v), "mean": statistics.mean(v)}
                for label in runs[0][stage] for v in [[run[stage][label] for run in runs]]}
        for stage in runs[0]
    }  # fmt: skip
    result = {"runs": runs, "spread_percent": spread, "seed": args.seed, "demo_args": args.demo_args}
    write_result("demo_reruns", result)
    return result


if __name__ == "__main__":
    main()
