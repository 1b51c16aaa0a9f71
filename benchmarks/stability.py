"""Stability under stress: StableReinforce vs its ablations vs Reinforce++, side by side.

The same SFT-initialized tiny Qwen2.5-VL is trained on the synthetic judge task with data reused
hard (`num_iterations` and `steps_per_generation` > 1, so the policy drifts far from the one that
sampled) and a high learning rate, in four arms:

    stable_reinforce   pre-clip + advantage filter (the paper)
    no_pre_clip        advantage filter only
    no_filter          pre-clip only
    reinforce_pp       neither (Reinforce++ with PPO clipping)

Per step it records loss, the gradient norm before clipping, max |log-ratio|, response length,
reward and accuracy on the rollouts (`r1_reward/result`), and counts non-finite losses. Writes
JSON, a PNG and a markdown table.

    python -m benchmarks.stability [--seeds 0 1] [--steps 30] [--learning-rate 3e-3] [--max-grad-norm 1.0]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from .common import RESULTS, write_result

ARMS = {
    "stable_reinforce": dict(pre_clip=True, advantage_filter=True),
    "no_pre_clip": dict(pre_clip=False, advantage_filter=True),
    "no_filter": dict(pre_clip=True, advantage_filter=False),
    "reinforce_pp": dict(pre_clip=False, advantage_filter=False),
}
CURVES = ("loss", "grad_norm", "stable_reinforce/log_ratio_max_abs", "completions/mean_length", "reward", "r1_reward/result")


def run_arm(model_dir: Path, arm: str, seed: int, args: argparse.Namespace, out: Path) -> list[dict]:
    """The demo's RL stage, stressed, with one arm's switches."""
    from stable_reinforce_trl.demo import DemoPlan, rl_stage

    plan = replace(DemoPlan(), rl_steps=args.steps, rl_pairs=args.steps * 16, rl_learning_rate=args.learning_rate,
                   rl_steps_per_generation=args.steps_per_generation, max_completion_length=args.max_completion_length)  # fmt: skip
    _, log = rl_stage(model_dir, plan, out / f"{arm}-{seed}", seed=seed, data_seed=100 + seed, save=False,
                      num_iterations=args.num_iterations, max_grad_norm=args.max_grad_norm, disable_tqdm=True,
                      **ARMS[arm])  # fmt: skip
    return [entry for entry in log if "loss" in entry]


def summarize_arm(runs: list[list[dict]]) -> dict:
    """Median over seeds of each run's figures."""

    def per_run(run: list[dict]) -> dict:
        losses = [e["loss"] for e in run]
        finite = [abs(x) for x in losses if math.isfinite(x)]
        lengths = [e["completions/mean_length"] for e in run if "completions/mean_length" in e]
        results = [e["r1_reward/result"] for e in run if "r1_reward/result" in e]
        tail = max(1, len(results) // 4)
        return {
            "max_abs_loss": max(finite) if finite else float("inf"),
            "max_grad_norm": max((e.get("grad_norm", 0.0) for e in run), default=0.0),
            "nonfinite_loss_steps": sum(not math.isfinite(x) for x in losses),
            "max_log_ratio": max(e.get("stable_reinforce/log_ratio_max_abs", 0.0) for e in run),
            "length_change_pct": 100 * (statistics.mean(lengths[-tail:]) / lengths[0] - 1) if lengths else None,
            "accuracy_first": results[0] if results else None,
            "accuracy_last": statistics.mean(results[-tail:]) if results else None,
        }

    figures = [per_run(run) for run in runs]
    return {key: statistics.median(f[key] for f in figures) for key in figures[0]} | {"per_seed": figures}


def markdown(summary: dict, settings: dict) -> str:
    lines = [
        f"Stress: lr {settings['learning_rate']}, num_iterations {settings['num_iterations']}, "
        f"steps_per_generation {settings['steps_per_generation']}, max_grad_norm {settings['max_grad_norm']}, "
        f"{settings['steps']} steps, seeds {settings['seeds']} "
        "(median over seeds; accuracy = rollouts judged right, first step -> mean of the last quarter).",
        "",
        "| arm | max \\|loss\\| | max grad norm | non-finite loss steps | max \\|log-ratio\\| | length change | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, s in summary.items():
        length = "n/a" if s["length_change_pct"] is None else f"{s['length_change_pct']:+.0f}%"
        lines.append(
            f"| {arm} | {s['max_abs_loss']:.3g} | {s['max_grad_norm']:.3g} | {s['nonfinite_loss_steps']:g} | {s['max_log_ratio']:.3g} | "
            f"{length} | {s['accuracy_first']:.2f} -> {s['accuracy_last']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.6))
    for ax, key in zip(axes, CURVES):
        for i, (arm, runs) in enumerate(curves.items()):
            for j, run in enumerate(runs):
                points = [(e["step"], e[key]) for e in run if key in e and math.isfinite(e[key])]
                if points:
                    ax.plot(*zip(*points), color=f"C{i}", alpha=0.8, label=arm if j == 0 else None)
        ax.set_title(key.split("/")[-1])
        ax.set_xlabel("step")
        if key in ("loss", "grad_norm", "stable_reinforce/log_ratio_max_abs"):
            ax.set_yscale("symlog")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def demo_sft_model(out: Path) -> Path:
    """The demo's tiny model after the demo's SFT cold start."""
    from stable_reinforce_trl.demo import DemoPlan, sft_stage
    from stable_reinforce_trl.tiny import make_tiny_model

    plan = DemoPlan()
    base = make_tiny_model(out / "tiny", seed=0, hidden_size=plan.hidden_size,
                           num_hidden_layers=plan.num_hidden_layers, intermediate_size=2 * plan.hidden_size)  # fmt: skip
    return sft_stage(base, plan, seed=0, out=out)[0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--num-iterations", type=int, default=4)
    parser.add_argument("--steps-per-generation", type=int, default=4)
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="the paper's 1.0; 0 turns clipping off")
    parser.add_argument("--max-completion-length", type=int, default=64)
    parser.add_argument("--init", type=Path, default=None,
                        help="start every arm from this model (e.g. outputs/demo/sft) instead of running the demo's SFT stage")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--name", default="stability", help="results go to benchmarks/results/<name>.{json,md,png}")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    started = time.perf_counter()
    curves: dict[str, list[list[dict]]] = {arm: [] for arm in args.arms}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        init = args.init or demo_sft_model(out)  # a formatted judge, so rewards vary
        for seed in args.seeds:
            for arm in args.arms:  # arms side by side per seed: machine noise hits all alike
                print(f"seed {seed}, arm {arm}", flush=True)
                curves[arm].append(run_arm(init, arm, seed, args, out))
    summary = {arm: summarize_arm(runs) for arm, runs in curves.items()}
    settings = {**vars(args), "init": str(args.init or "the demo's SFT model")}
    table = markdown({arm: {k: v for k, v in s.items() if k != "per_seed"} for arm, s in summary.items()}, settings)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(curves, RESULTS / f"{args.name}.png")
    (RESULTS / f"{args.name}.md").write_text(table)
    result = {"settings": settings, "summary": summary, "curves": curves, "wall_time_s": time.perf_counter() - started}
    path = write_result(args.name, json.loads(json.dumps(result, default=float)))
    print(table)
    print(f"-> {path}, {RESULTS / f'{args.name}.png'}, {RESULTS / f'{args.name}.md'}")
    return result


if __name__ == "__main__":
    main()
