"""`stable-reinforce demo`: the R1-Reward recipe end to end on CPU, on a tiny Qwen2.5-VL and the synthetic task.

1. build a tiny random-init Qwen2.5-VL (real processor, local tokenizer);
2. evaluate it on held-out synthetic pairs (both orders; greedy and Voting@k);
3. SFT cold start on rule-written reasoning traces (TRL `SFTTrainer`);
4. evaluate;
5. StableReinforce RL from the SFT model with the R1 reward (rule referee, or an OpenAI-compatible
   referee with `--referee-base-url`);
6. evaluate; write `report.json`, PNG plots and print a summary.

Every stage is the real code path a GPU user runs, only smaller.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import time
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .tiny import FAMILIES, FORMAT_MODES

console = Console()


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and schedule. The full plan is tuned to finish in under 10 minutes on 2 CPU cores."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    difficulty: str = "basic"
    # The cold-start teacher reasons (and is right) on 40% of the pairs. On the rest it gives only a verdict,
    # and that verdict names Response 1, as a position-biased judge does: right on half of them. A teacher
    # whose bare verdicts were right would hand SFT the whole task; see docs/demo.md.
    terse_traces: float = 0.6
    terse_verdicts: str = "1"  # what those verdicts name: "right", "guess" (a coin flip) or "1"
    sft_pairs: int = 3200  # 400 steps of 8, 1,280 of them with the reasoning
    sft_epochs: float = 1.0
    # 1e-2 gave a cold start that names the image's colour at chance, and RL then had to learn sight from the
    # verdict alone, which 2 seeds in 10 lost; at 3e-3 the reasoned traces see (docs/demo.md).
    sft_learning_rate: float = 3e-3
    rl_pairs: int = 1024
    rl_steps: int = 300
    rl_learning_rate: float = 3e-4  # higher drifts the tiny policy into ignoring the prompt
    rl_batch_size: int = 16  # completions per optimizer step (the paper: 128)
    rl_generations: int = 4
    rl_steps_per_generation: int = 2  # rollouts = 2 x update batch, as the paper's 256 / 128
    # The paper averages each response's tokens ("grpo"). Here the verdict-only traces the cold start leaves
    # are a third the length of the reasoned ones, so that weighs their tokens 3x, and on some seeds RL drifts
    # into short unreasoned guesses; averaging over all tokens of the batch ("dapo", TRL's default) does not.
    rl_loss_type: str = "dapo"
    max_completion_length: int = 64
    eval_pairs: int = 64
    voting_k: int = 5


QUICK = DemoPlan(sft_pairs=16, sft_epochs=1, rl_pairs=32, rl_steps=2, rl_batch_size=8, eval_pairs=4, voting_k=2,
                 max_completion_length=16)  # fmt: skip


def _cast(value: str, like):
    """A command-line string as the type of `like` (a field's default); untyped defaults (None) guess."""
    if isinstance(like, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false, got {value!r}")
        return value.lower() in ("true", "1")
    if isinstance(like, (int, float, str)):
        return type(like)(value)
    for guess in (int, float):
        try:
            return guess(value)
        except ValueError:
            pass
    return value


def _parse_overrides(items: list[str], defaults: dict, flag: str) -> dict:
    changes = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in defaults:
            close = difflib.get_close_matches(name, defaults, n=3)
            hint = f"did you mean {' or '.join(close)}?" if close else f"FIELD one of {sorted(defaults)}"
            raise SystemExit(f"{flag} {item!r}: expected FIELD=VALUE; {hint}")
        try:
            changes[name] = _cast(value, defaults[name])
        except ValueError as error:
            raise SystemExit(f"{flag} {item!r}: {error}") from None
    return changes


def with_overrides(plan: DemoPlan, overrides: list[str]) -> DemoPlan:
    """`["rl_steps=200", "rl_learning_rate=1e-4"]` applied to a plan, each value cast to its field's type."""
    from .data.synthetic import check_teacher

    plan = replace(plan, **_parse_overrides(overrides, asdict(plan), "--set"))
    try:  # the data's own checks, before any stage runs: not after the base model's evaluation
        check_teacher(plan.difficulty, plan.terse_traces, plan.terse_verdicts)
    except ValueError as error:
        raise SystemExit(f"--set {' '.join(overrides)}: {error}") from None
    return plan


def rl_config_overrides(overrides: list[str]) -> dict:
    """`["temperature=0.7", "advantage_baseline=group"]` as `StableReinforceConfig` keyword arguments for the
    RL stage, each value cast to its field's type: any knob of the trainer, without a plan field per knob."""
    from .config import StableReinforceConfig

    defaults = {f.name: None if f.default is MISSING else f.default for f in fields(StableReinforceConfig) if f.init}
    return _parse_overrides(overrides, defaults, "--rl-set")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stable-reinforce demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes that check every stage runs (about 30 s); too small to learn, so expect 0%% "
                             "accuracy throughout")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", default="qwen2.5-vl", choices=FAMILIES,
                        help="the tiny judge's architecture, processor and chat template (see make-tiny-model)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a DemoPlan field, e.g. --set rl_steps=200 --set sft_pairs=3840 (repeatable)")
    parser.add_argument("--rl-set", dest="rl_config", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a StableReinforceConfig field for the RL stage, e.g. --rl-set temperature=0.7 "
                             "(repeatable)")  # fmt: skip
    parser.add_argument("--referee-base-url", default=None, help="OpenAI-compatible referee (default: rule referee)")
    parser.add_argument("--referee-model", default="Qwen/Qwen2.5-VL-7B-Instruct")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny matrices gain nothing from more)")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------ stages
def evaluate_stage(model_dir: Path, pairs, plan: DemoPlan, out: Path, name: str) -> dict:
    from .evaluation import evaluate
    from .judge import Judge

    results = {}
    for label, k in (("greedy", 1), (f"voting@{plan.voting_k}", plan.voting_k)):
        judge = Judge.from_pretrained(str(model_dir), batch_size=32, max_new_tokens=plan.max_completion_length, temperature=1.0)
        report = evaluate(pairs, judge, order="both", k=k, cache=out / "eval_cache.jsonl", progress=True)
        results[label] = {key: report[key] for key in ("overall", "any_at_k", "p_verdict_1", "parse_failure_rate") if key in report}
        results[label]["by_order"] = report.get("accuracy_by_order")
        if "accuracy" in report:
            results[label]["order_averaged"] = report["accuracy"]["order_averaged"]["accuracy"]
    console.print(f"  {name}: both-order accuracy greedy {results['greedy']['overall']:.1%}, "
                  f"voting@{plan.voting_k} {results[f'voting@{plan.voting_k}']['overall']:.1%}")  # fmt: skip
    return results


def sft_stage(model_dir: Path, plan: DemoPlan, seed: int, out: Path) -> tuple[Path, list[dict]]:
    from trl import SFTConfig, SFTTrainer

    from .data.synthetic import synthetic_sft_dataset

    config = SFTConfig(
        output_dir=str(out / "sft"),
        num_train_epochs=plan.sft_epochs,
        per_device_train_batch_size=8,
        learning_rate=plan.sft_learning_rate,
        lr_scheduler_type="cosine",
        assistant_only_loss=True,  # learn the judge's answer, not the prompt
        activation_checkpointing=False,
        max_length=None,
        logging_steps=5,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=seed,
    )
    dataset = synthetic_sft_dataset(plan.sft_pairs, seed=seed + 1, difficulty=plan.difficulty,
                                    terse_traces=plan.terse_traces, terse_verdicts=plan.terse_verdicts)  # fmt: skip
    trainer = SFTTrainer(model=str(model_dir), args=config, train_dataset=dataset)
    _log_to_file(trainer, out / "training_log.jsonl", "sft")
    trainer.train()
    trainer.save_model(config.output_dir)
    trainer.processing_class.save_pretrained(config.output_dir)
    return Path(config.output_dir), trainer.state.log_history


def rl_stage(model_dir: Path, plan: DemoPlan, out: Path, *, seed: int, data_seed: int | None = None,
             save: bool = True, trainer_kwargs: dict | None = None, **config_overrides) -> tuple[Path, list[dict]]:
    """StableReinforce RL on the synthetic task; `config_overrides` go to `StableReinforceConfig` (the
    stability benchmark's arms and stress settings, the demo's referee), `trainer_kwargs` to the trainer
    (the stability benchmark's callbacks and `rollout_func`)."""
    from .config import StableReinforceConfig
    from .data.synthetic import synthetic_judge_dataset
    from .trainer import StableReinforceTrainer

    config = StableReinforceConfig(**{
        "output_dir": str(out / "rl"),
        "per_device_train_batch_size": plan.rl_batch_size,
        "num_generations": plan.rl_generations,
        "steps_per_generation": plan.rl_steps_per_generation,
        "max_completion_length": plan.max_completion_length,
        "temperature": 1.0,
        "learning_rate": plan.rl_learning_rate,
        "lr_scheduler_type": "constant",
        "max_steps": plan.rl_steps,
        "activation_checkpointing": False,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "seed": seed,
        "log_completions": False,
        "referee": "rule",
        **config_overrides,
    })  # fmt: skip
    data_seed = seed + 2 if data_seed is None else data_seed
    dataset = synthetic_judge_dataset(plan.rl_pairs, seed=data_seed, difficulty=plan.difficulty)
    trainer = StableReinforceTrainer(model=str(model_dir), args=config, train_dataset=dataset, **(trainer_kwargs or {}))
    _log_to_file(trainer, out / "training_log.jsonl", "rl")
    trainer.train()
    if save:
        trainer.save_model(config.output_dir)
        trainer.processing_class.save_pretrained(config.output_dir)
        trainer.create_model_card(model_name="stable-reinforce-demo-judge")  # TRL writes one only with checkpoints
    return Path(config.output_dir), trainer.state.log_history


def _log_to_file(trainer, path: Path, stage: str) -> None:
    """Keep the trainer's progress bar, send its per-step metric dicts to `path` (one JSON line each):
    hundreds of them would bury the stages and the summary."""
    from transformers.trainer_callback import ProgressCallback

    class ProgressToFile(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with path.open("a") as f:
                    f.write(json.dumps({"stage": stage, "step": state.global_step, **logs}) + "\n")

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ProgressToFile())


# ------------------------------------------------------------------------------------------------ report
RL_CURVES = {
    "reward": "reward",
    "r1_reward/result": "rollouts judged right (result reward)",
    "stable_reinforce/p_verdict_1": "rollouts naming Response 1 (%)",
    "stable_reinforce/p_label_1": "rollouts whose label is 1 (%)",  # drawn in the panel above
    "completions/mean_length": "response length (tokens)",
    "stable_reinforce/pre_clip_frac": "pre-clipped token fraction",
    "stable_reinforce/log_ratio_max_abs": "max |log-ratio|",
    "stable_reinforce/advantage_filtered_frac": "filtered advantage fraction",
    "loss": "loss",
}


def curves(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    return {key: [(e["step"], e[key]) for e in log_history if key in e and e[key] is not None] for key in RL_CURVES}


PRE_CLIP_LOG_BOUND = math.log(1e3)  # the paper's window, [log 1e-3, log 1e3]: |log-ratio| <= 6.91
FRACTIONS = ("stable_reinforce/pre_clip_frac", "stable_reinforce/advantage_filtered_frac")
POSITIONS = ("stable_reinforce/p_verdict_1", "stable_reinforce/p_label_1")


def smoothed(values: list[float], window: int) -> list[float]:
    """Trailing mean over `window` steps: the trend of a curve that is noisy step to step."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot(report: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(17, 7))
    panels = [(key, title) for key, title in RL_CURVES.items() if key != POSITIONS[1]]
    for ax, (key, title) in zip(axes.flat, panels):
        points = report["rl"]["curves"].get(key, [])
        steps, values = ([p[0] for p in points], [p[1] for p in points]) if points else ([], [])
        if key == POSITIONS[0]:
            _plot_positions(ax, report["rl"]["curves"])
            continue
        scale = 100 if key in FRACTIONS else 1
        values = [scale * v for v in values]
        # A maximum is read at its peaks, not smoothed away; the rest are noisy step to step.
        window = 1 if key == "stable_reinforce/log_ratio_max_abs" else max(1, len(values) // 15)
        if window > 1:  # raw values faint behind their trend
            ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8)
            ax.plot(steps, smoothed(values, window), color="tab:blue", label=f"mean of {window} logged steps")
            ax.legend(loc="best", fontsize=8)
        elif values:
            ax.plot(steps, values, color="tab:blue", linewidth=0.9, marker="." if len(values) < 30 else None)
        if key == "stable_reinforce/log_ratio_max_abs":
            ax.axhline(PRE_CLIP_LOG_BOUND, color="tab:red", linestyle="--", linewidth=1)
            ax.text(0.02, PRE_CLIP_LOG_BOUND, " pre-clip window: |log-ratio| <= log 1e3 = 6.91", color="tab:red",
                    va="bottom", transform=ax.get_yaxis_transform(), fontsize=8)  # fmt: skip
            ax.set_ylim(0, max([PRE_CLIP_LOG_BOUND, *values]) * 1.15)
        if key in FRACTIONS:
            top = max(values, default=0.0)
            # A fraction that is mostly zero sits on the floor of an autoscaled axis; give it room to show.
            ax.set_ylim(-0.05 * max(top, 1.0), max(top, 1.0) * 1.15)
            ax.set_ylabel("% of tokens" if "pre_clip" in key else "% of advantages")
            if top == 0:
                ax.text(0.5, 0.5, "0 at every logged step", ha="center", transform=ax.transAxes, color="gray")
        ax.set_title(title + (" (%)" if key in FRACTIONS else ""))
        ax.set_xlabel("RL step")
    fig.suptitle("StableReinforce on the tiny Qwen2.5-VL")
    fig.tight_layout()
    training_png = out / "rl_training.png"
    fig.savefig(training_png, dpi=100)
    plt.close(fig)

    stages = list(report["evaluation"])
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for i, label in enumerate(report["evaluation"][stages[0]]):
        values = [100 * report["evaluation"][s][label]["overall"] for s in stages]
        bars = ax.bar([x + (i - 0.5) * width for x in range(len(stages))], values, width, label=label)
        ax.bar_label(bars, fmt="%.0f")
    ax.set_xticks(range(len(stages)), stages)
    ax.set_ylabel("both-order accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"held-out synthetic pairs (n={report['plan']['eval_pairs']})")
    ax.legend()
    fig.tight_layout()
    accuracy_png = out / "accuracy.png"
    fig.savefig(accuracy_png, dpi=100)
    plt.close(fig)
    return [str(training_png), str(accuracy_png)]


def _plot_positions(ax, curves_: dict) -> None:
    """The share of rollouts naming Response 1 beside the share labelled 1: a judge drifting to a position
    leaves the label's line; 50% is a balanced batch and a judge without a position prior."""
    for key, label, colour in ((POSITIONS[0], "naming Response 1", "tab:blue"), (POSITIONS[1], "label 1", "tab:gray")):
        points = curves_.get(key, [])
        values = [100 * p[1] for p in points]
        window = max(1, len(values) // 15)
        ax.plot([p[0] for p in points], smoothed(values, window), color=colour, label=label)
    ax.axhline(50, color="black", linewidth=0.5, linestyle=":")
    ax.set_ylim(-5, 105)
    ax.set_ylabel("% of rollouts")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(RL_CURVES[POSITIONS[0]].replace(" (%)", ""))
    ax.set_xlabel("RL step")


def print_summary(report: dict) -> None:
    table = Table(title="held-out accuracy (both orders: a pair counts only if judged right in each)")
    labels = list(next(iter(report["evaluation"].values())))
    averaged = "order_averaged" in report["evaluation"]["base"]["greedy"]
    columns = labels + (["greedy, order-avg"] if averaged else [])
    for column in ("stage", *columns, "verdict=1", "unparsed"):
        table.add_column(column, justify="right")
    for stage, results in report["evaluation"].items():
        greedy = results["greedy"]
        table.add_row(stage, *(_pct(results[label]["overall"]) for label in labels),
                      *([_pct(greedy["order_averaged"])] if averaged else []),
                      _pct(greedy.get("p_verdict_1")), _pct(greedy.get("parse_failure_rate")))  # fmt: skip
    console.print(table)
    console.print("verdict=1, unparsed: share of greedy answers naming response 1 / with no parseable verdict; "
                  "order-avg: each order scored on its own, then averaged")  # fmt: skip
    if report["quick"]:
        console.print("--quick checks that every stage runs; its sizes are too small to learn (0% is expected). "
                      "Run without --quick for the real demo (about 4 min).")  # fmt: skip
    gap = report["rl_minus_sft_points"]
    console.print(f"RL - SFT (greedy, both orders): [bold]{gap:+.1f} points[/bold]; "
                  f"wall time {report['wall_time_s'] / 60:.1f} min")  # fmt: skip


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"  # None: no valid verdict to count


def all_finite(value) -> bool:
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(all_finite(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    import warnings

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight loading/saving bars: one bar per stage is the trainer's or the judge's
    # TRL's own call of a transformers method renamed in v5; nothing a user of the demo can change
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

    torch.set_num_threads(args.threads)
    from .data.synthetic import make_synthetic_pairs
    from .tiny import make_tiny_model

    plan = with_overrides(QUICK if args.quick else DemoPlan(), args.overrides)
    rl_config = rl_config_overrides(args.rl_config)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_cache.jsonl").unlink(missing_ok=True)  # a new tiny model each run: old generations do not apply
    started = time.perf_counter()
    console.rule("[bold]stable-reinforce demo" + (" (quick)" if args.quick else ""))
    if args.quick:
        console.print("--quick: toy sizes that check every stage runs; too small to learn, expect 0% accuracy")
    (out / "training_log.jsonl").unlink(missing_ok=True)
    console.print(f"TRL's per-step logs: {out / 'training_log.jsonl'}")

    console.print(f"[1/6] building the tiny {args.family} judge (random init, local tokenizer, real processor)")
    base = make_tiny_model(out / "tiny-model", seed=args.seed, hidden_size=plan.hidden_size, family=args.family,
                           num_hidden_layers=plan.num_hidden_layers, intermediate_size=2 * plan.hidden_size)  # fmt: skip
    if FORMAT_MODES[args.family] != "strict":  # the config's default
        rl_config.setdefault("format_mode", FORMAT_MODES[args.family])
    eval_pairs = make_synthetic_pairs(plan.eval_pairs, seed=args.seed + 1000, difficulty=plan.difficulty)
    evaluation, stage_s = {}, {}
    clock = time.perf_counter()

    def timed(name: str) -> None:
        nonlocal clock
        stage_s[name], clock = round(time.perf_counter() - clock, 1), time.perf_counter()

    console.print("[2/6] evaluating the untrained model")
    evaluation["base"] = evaluate_stage(base, eval_pairs, plan, out, "base")
    timed("eval_base")
    console.print("[3/6] SFT cold start on rule-written traces")
    sft_dir, sft_log = sft_stage(base, plan, args.seed, out)
    timed("sft")
    console.print("[4/6] evaluating after SFT")
    evaluation["sft"] = evaluate_stage(sft_dir, eval_pairs, plan, out, "sft")
    timed("eval_sft")
    console.print("[5/6] StableReinforce RL from the SFT model")
    referee = (dict(referee="openai", referee_base_url=args.referee_base_url, referee_model=args.referee_model)
               if args.referee_base_url else {})  # fmt: skip
    rl_dir, rl_log = rl_stage(sft_dir, plan, out, seed=args.seed, **{"loss_type": plan.rl_loss_type, **referee, **rl_config})
    timed("rl")
    console.print("[6/6] evaluating after RL")
    evaluation["rl"] = evaluate_stage(rl_dir, eval_pairs, plan, out, "rl")
    timed("eval_rl")

    report = {
        "family": args.family,
        "plan": asdict(plan),
        "rl_config": rl_config,
        "quick": args.quick,
        "referee": args.referee_base_url or "rule",
        "evaluation": evaluation,
        "rl_minus_sft_points": 100 * (evaluation["rl"]["greedy"]["overall"] - evaluation["sft"]["greedy"]["overall"]),
        "sft": {"final_loss": next((e["train_loss"] for e in reversed(sft_log) if "train_loss" in e), None)},
        "rl": {"steps": max((e.get("step", 0) for e in rl_log), default=0), "curves": curves(rl_log)},
        "wall_time_s": time.perf_counter() - started,
        "stage_s": stage_s,
    }
    report["plots"] = plot(report, out)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print_summary(report)
    console.print(f"report: {out / 'report.json'}; plots: {', '.join(report['plots'])}")
    return 0
