"""Stability under stress: StableReinforce vs its ablations vs Reinforce++, side by side.

The same SFT-initialized tiny Qwen2.5-VL is trained on the synthetic judge task with data reused
hard (`num_iterations` and `steps_per_generation` > 1, so the policy drifts far from the one that
sampled) and a high learning rate, in four arms:

    stable_reinforce   pre-clip + advantage filter (the paper)
    no_pre_clip        advantage filter only
    no_filter          pre-clip only
    reinforce_pp       neither (Reinforce++ with PPO clipping)

Per step it records loss, the gradient norm before clipping, max |log-ratio|, response length,
reward and accuracy on the rollouts (`r1_reward/result`), and counts non-finite losses. A run whose
weights turn non-finite stops there (it could not sample again) and says at which step. Each seed of
each arm is then judged against the collapse criteria (`COLLAPSE`). Writes JSON, a PNG and a markdown table.

`--sampler-noise` / `--sampler-dtype` inject a fault: rollouts come from a copy of the policy that the
trainer never sees (Gaussian noise on every weight, or weights rounded to bf16), through TRL's
`rollout_func`, while the old log-probs are the trainer's own. It stands for a generation engine that
disagrees with the trainer (vLLM in bf16 against a trainer in fp32, or weights synced late).

    python -m benchmarks.stability [--seeds 0 1] [--steps 30] [--learning-rate 3e-3] [--max-grad-norm 1.0]
        [--init outputs/demo/sft] [--sampler-noise 0.05] [--set rl_batch_size=32] [--rl-set temperature=1.5]
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
from transformers import TrainerCallback

from .common import RESULTS, write_result

ARMS = {
    "stable_reinforce": dict(pre_clip=True, advantage_filter=True),
    "no_pre_clip": dict(pre_clip=False, advantage_filter=True),
    "no_filter": dict(pre_clip=True, advantage_filter=False),
    "reinforce_pp": dict(pre_clip=False, advantage_filter=False),
}
# The collapse criteria (#18): any one of them, per seed.
COLLAPSE = dict(loss_factor=100.0, length_change_pct=50.0)
CURVES = ("loss", "grad_norm", "stable_reinforce/log_ratio_max_abs", "completions/mean_length", "reward", "r1_reward/result")


class PerturbedSampler:
    """TRL `rollout_func`: sample each generation batch from a perturbed copy of the policy.

    The weights are perturbed in place for the `generate` call and restored bit for bit after it, so the
    trainer (old log-probs, loss, optimizer) only ever sees its own weights: it meets tokens that it would
    itself have sampled rarely, as a trainer does behind a vLLM engine in another precision.
    """

    def __init__(self, noise: float, dtype: torch.dtype | None, seed: int):
        self.noise, self.dtype = noise, dtype
        self.generator = torch.Generator().manual_seed(seed)  # a fresh draw per batch, the same per seed

    def __call__(self, prompts: list, trainer) -> dict:
        prompt_ids, images, multimodal_fields = trainer._tokenize_prompts(prompts)
        params = [p for p in trainer.model.parameters() if p.is_floating_point()]
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p in params:
                if self.dtype is not None:
                    p.copy_(p.to(self.dtype))
                if self.noise and p.numel() > 1:
                    p.add_(torch.randn(p.shape, generator=self.generator, dtype=p.dtype) * (self.noise * p.std()))
        try:
            completion_ids, logprobs = trainer._generate_single_turn(
                prompt_ids, images, multimodal_fields, trainer.num_generations
            )
        finally:
            with torch.no_grad():
                for p, original in zip(params, saved):
                    p.copy_(original)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}


class StopOnNonfiniteWeights(TrainerCallback):
    """Record the step at which any weight turns NaN/Inf and stop: such a policy cannot sample again."""

    def __init__(self):
        self.step: int | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.step is None and not all(torch.isfinite(p).all() for p in model.parameters()):
            self.step = state.global_step
            control.should_training_stop = True
        return control


def stress_plan(args: argparse.Namespace):
    from stable_reinforce_trl.demo import DemoPlan

    plan = replace(DemoPlan(), **args.plan_overrides)
    return replace(plan, rl_steps=args.steps, rl_pairs=args.steps * plan.rl_batch_size,
                   rl_learning_rate=args.learning_rate, rl_steps_per_generation=args.steps_per_generation,
                   max_completion_length=args.max_completion_length)  # fmt: skip


def run_arm(
    model_dir: Path, arm: str, seed: int, args: argparse.Namespace, out: Path
) -> tuple[list[dict], int | None]:
    """The demo's RL stage, stressed, with one arm's switches: its log and the step its weights went non-finite."""
    from stable_reinforce_trl.demo import rl_stage

    watch = StopOnNonfiniteWeights()
    trainer_kwargs = {"callbacks": [watch]}
    if args.sampler_noise or args.sampler_dtype:
        dtype = getattr(torch, args.sampler_dtype) if args.sampler_dtype else None
        trainer_kwargs["rollout_func"] = PerturbedSampler(args.sampler_noise, dtype, seed=1000 + seed)
    config = {"num_iterations": args.num_iterations, "max_grad_norm": args.max_grad_norm,
              **args.rl_config, **ARMS[arm]}  # fmt: skip
    _, log = rl_stage(model_dir, stress_plan(args), out / f"{arm}-{seed}", seed=seed, data_seed=100 + seed, save=False,
                      disable_tqdm=True, trainer_kwargs=trainer_kwargs, **config)  # fmt: skip
    return [entry for entry in log if "loss" in entry], watch.step


def summarize_arm(runs: list[list[dict]], stopped: list[int | None]) -> dict:
    """Median over seeds of each run's figures."""

    def per_run(run: list[dict], nonfinite_weights_step: int | None) -> dict:
        losses = [e["loss"] for e in run]
        finite = [abs(x) for x in losses if math.isfinite(x)]
        lengths = [e["completions/mean_length"] for e in run if "completions/mean_length" in e]
        results = [e["r1_reward/result"] for e in run if "r1_reward/result" in e]
        tail = max(1, len(results) // 4)
        return {
            "max_abs_loss": max(finite) if finite else float("inf"),
            "max_grad_norm": max((e.get("grad_norm", 0.0) for e in run), default=0.0),
            "nonfinite_loss_steps": sum(not math.isfinite(x) for x in losses),
            # updates the trainer's non-finite guard skipped (a running total; it is on in every arm)
            "nonfinite_steps_skipped": max(
                (e.get("stable_reinforce/nonfinite_steps_skipped", 0.0) for e in run), default=0.0
            ),
            "max_log_ratio": max(e.get("stable_reinforce/log_ratio_max_abs", 0.0) for e in run),
            "length_change_pct": 100 * (statistics.mean(lengths[-tail:]) / lengths[0] - 1) if lengths else None,
            "accuracy_first": results[0] if results else None,
            "accuracy_last": statistics.mean(results[-tail:]) if results else None,
            "nonfinite_weights_step": nonfinite_weights_step,
        }

    figures = [per_run(run, step) for run, step in zip(runs, stopped)]
    keys = [key for key in figures[0] if key != "nonfinite_weights_step"]  # None in most runs: no median
    medians = {key: statistics.median(f[key] for f in figures) for key in keys}
    return medians | {"per_seed": figures}


def judge_collapses(summary: dict, reference: str = "stable_reinforce") -> dict | None:
    """Mark each seed of each arm with the collapse criteria it meets (`collapse`, empty if none): a non-finite
    loss, gradient (an update the trainer's guard skipped) or weight; max |loss| at least `loss_factor` x the
    reference arm's median max |loss|; or mean completion length up by `length_change_pct`% or more.
    Returns the thresholds used (None without the reference arm)."""
    if reference not in summary:
        return None
    loss_limit = COLLAPSE["loss_factor"] * summary[reference]["max_abs_loss"]
    for s in summary.values():
        for f in s["per_seed"]:
            f["collapse"] = [reason for reason, hit in (
                ("non-finite", f["nonfinite_loss_steps"] > 0 or f.get("nonfinite_steps_skipped", 0) > 0
                 or f["nonfinite_weights_step"] is not None),
                ("loss spike", f["max_abs_loss"] >= loss_limit),
                ("length runaway", (f["length_change_pct"] or 0) >= COLLAPSE["length_change_pct"]),
            ) if hit]  # fmt: skip
        s["collapsed_seeds"] = sum(bool(f["collapse"]) for f in s["per_seed"])
    return {"reference_arm": reference, "max_abs_loss_limit": loss_limit, **COLLAPSE}


def markdown(summary: dict, settings: dict) -> str:
    extra = "".join(f", {key} {settings[key]}" for key in ("sampler_noise", "sampler_dtype") if settings.get(key))
    extra += "".join(f", {k} {v}" for k, v in {**settings["plan_overrides"], **settings["rl_config"]}.items())
    lines = [
        f"Stress: lr {settings['learning_rate']}, num_iterations {settings['num_iterations']}, "
        f"steps_per_generation {settings['steps_per_generation']}, max_grad_norm {settings['max_grad_norm']}{extra}, "
        f"{settings['steps']} steps, seeds {settings['seeds']} "
        "(median over seeds; accuracy = rollouts judged right, first step -> mean of the last quarter; "
        "collapsed = seeds meeting a collapse criterion of issue 18).",
        "",
        "| arm | max \\|loss\\| | max grad norm | non-finite loss steps | max \\|log-ratio\\| | length change | accuracy | collapsed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, s in summary.items():
        length = "n/a" if s["length_change_pct"] is None else f"{s['length_change_pct']:+.0f}%"
        collapsed = f"{s['collapsed_seeds']}/{len(s['per_seed'])}" if "collapsed_seeds" in s else "n/a"
        lines.append(
            f"| {arm} | {s['max_abs_loss']:.3g} | {s['max_grad_norm']:.3g} | {s['nonfinite_loss_steps']:g} | {s['max_log_ratio']:.3g} | "
            f"{length} | {s['accuracy_first']:.2f} -> {s['accuracy_last']:.2f} | {collapsed} |"
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
    parser.add_argument("--sampler-noise", type=float, default=0.0,
                        help="fault: sample from the policy plus Gaussian noise of this size x each weight's std")
    parser.add_argument("--sampler-dtype", default=None, choices=["bfloat16", "float16"],
                        help="fault: sample from the policy with its weights rounded to this dtype")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a DemoPlan field, as the demo's --set (e.g. rl_batch_size=32)")
    parser.add_argument("--rl-set", dest="rl_overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a StableReinforceConfig field, as the demo's --rl-set (e.g. temperature=1.5)")
    parser.add_argument("--name", default="stability", help="results go to benchmarks/results/<name>.{json,md,png}")
    args = parser.parse_args(argv)
    from stable_reinforce_trl.demo import DemoPlan, _parse_overrides, rl_config_overrides

    try:  # a typo in FIELD=VALUE: one line and exit code 2, as for any other bad flag
        args.plan_overrides = _parse_overrides(args.overrides, vars(DemoPlan()), "--set")
        args.rl_config = rl_config_overrides(args.rl_overrides)
    except SystemExit as error:
        parser.error(str(error))
    owned = {"rl_steps": "--steps", "rl_pairs": "--steps", "rl_learning_rate": "--learning-rate",
             "rl_steps_per_generation": "--steps-per-generation", "max_completion_length": "--max-completion-length",
             "num_iterations": "--num-iterations", "max_grad_norm": "--max-grad-norm", **{k: "--arms" for k in ARMS["stable_reinforce"]}}  # fmt: skip
    for name in [*args.plan_overrides, *args.rl_config]:
        if name in owned:
            parser.error(f"{name} has its own flag here: use {owned[name]}")
    torch.set_num_threads(1)

    started = time.perf_counter()
    curves: dict[str, list[list[dict]]] = {arm: [] for arm in args.arms}
    stopped: dict[str, list[int | None]] = {arm: [] for arm in args.arms}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        init = args.init or demo_sft_model(out)  # a formatted judge, so rewards vary
        for seed in args.seeds:
            for arm in args.arms:  # arms side by side per seed: machine noise hits all alike
                print(f"seed {seed}, arm {arm}", flush=True)
                log, step = run_arm(init, arm, seed, args, out)
                curves[arm].append(log)
                stopped[arm].append(step)
    summary = {arm: summarize_arm(runs, stopped[arm]) for arm, runs in curves.items()}
    criteria = judge_collapses(summary)
    settings = {**vars(args), "init": str(args.init or "the demo's SFT model"), "collapse_criteria": criteria}
    del settings["overrides"], settings["rl_overrides"]  # kept parsed, as plan_overrides and rl_config
    table = markdown(summary, settings)
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
