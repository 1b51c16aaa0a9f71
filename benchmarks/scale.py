"""StableReinforceTrainer vs GRPOTrainer at the real Qwen2.5-VL-3B and 7B dimensions, side by side.

No hub is reachable, so the model is built from the architecture stored in
`benchmarks/model_configs/<model>/config.json` (random init: the real vision and text towers and the
real vocabulary, 151,936 / 152,064) with the tiny local tokenizer, whose ids all fit that vocabulary.
Both arms train on identical batches of real images at the pixel budget below, with completions
forced to a fixed length so they do the same work, in bf16 with gradient checkpointing, LoRA or full,
vLLM colocate when vLLM is installed. Each arm runs in a fresh process (so that its peak memory is
its own and a vLLM engine never outlives its arm), alternating A/B/B/A over the repeats.

    python -m benchmarks.scale --model qwen2.5-vl-3b-instruct --peft none     # a GPU
    python -m benchmarks.scale --model qwen2.5-vl-7b-instruct --peft lora
    python -m benchmarks.scale --smoke --output /tmp/scale.json             # CPU, tiny dims, < 1 min
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from .common import RESULTS, machine

MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
RECIPES = Path(__file__).resolve().parent.parent / "recipes"
# The recipes set no image cap, so the processor's own applies: 28 * 28 * 1280 pixels (1,280 image
# tokens, as Qwen2.5-VL's image processor defaults to). Images are drawn to fill it.
DEFAULT_MAX_PIXELS = 28 * 28 * 1280
ARM_KEYS = {"stable_reinforce": "StableReinforceTrainer", "grpo": "GRPOTrainer"}
GB = 2**30


def recipe_for(model: str) -> dict:
    """The RL recipe of that size: its LoRA, batch and vLLM settings are the benchmark's defaults."""
    size = "7b" if "7b" in model else "3b"
    return yaml.safe_load((RECIPES / f"qwen2.5-vl-{size}" / "stable_reinforce.yaml").read_text())


def build_model_dir(out: Path, model: str, max_pixels: int, smoke: bool, device: str) -> tuple[Path, int]:
    """Save a random-init Qwen2.5-VL of `model`'s architecture plus a processor, for `from_pretrained`."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from stable_reinforce_trl.tiny import TINY_IMAGE_PIXELS, TINY_TEXT, TINY_VISION, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    spec = json.loads((MODEL_CONFIGS / model / "config.json").read_text())
    if len(tokenizer) > spec["vocab_size"]:
        raise ValueError(f"the tiny tokenizer ({len(tokenizer)} tokens) does not fit vocab_size {spec['vocab_size']}")
    if smoke:  # the same code at the tiny model's widths, depths and vocabulary (the 152k LM head alone is ~1 s/step)
        spec.update(TINY_TEXT, max_window_layers=TINY_TEXT["num_hidden_layers"], vocab_size=len(tokenizer))
        spec["vision_config"].update(TINY_VISION, out_hidden_size=TINY_TEXT["hidden_size"])
        half = TINY_TEXT["hidden_size"] // TINY_TEXT["num_attention_heads"] // 2
        spec["rope_scaling"]["mrope_section"] = [half - 2 * (half // 3), half // 3, half // 3]
    # The architecture is the real one; the special tokens are where the local tokenizer puts them.
    for name, token in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"), ("vision_start_token_id",
        "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"), ("bos_token_id", "<|endoftext|>"),
        ("eos_token_id", "<|im_end|>"), ("pad_token_id", "<|endoftext|>"),
    ]:  # fmt: skip
        spec[name] = tokenizer.convert_tokens_to_ids(token)
    config = Qwen2_5_VLConfig(**spec)
    text = config.text_config
    torch.manual_seed(0)
    with torch.device(device):
        model_obj = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model_obj.generation_config.eos_token_id = text.eos_token_id
    model_obj.generation_config.pad_token_id = tokenizer.pad_token_id
    model_obj.save_pretrained(out)
    pixels = TINY_IMAGE_PIXELS if smoke else dict(min_pixels=56 * 56, max_pixels=max_pixels)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    processor.save_pretrained(out)
    params = sum(p.numel() for p in model_obj.parameters())
    del model_obj
    if device == "cuda":
        torch.cuda.empty_cache()
    return out, params


def image_side(max_pixels: int) -> int:
    """The largest square side, in whole 28-pixel patches, whose area stays within the budget."""
    return max(28, int(max_pixels**0.5) // 28 * 28)


def dataset(n: int, side: int):
    """The synthetic judge rows, their images redrawn at `side` x `side` (the same rows for both arms)."""
    from PIL import Image

    from stable_reinforce_trl.data.synthetic import synthetic_judge_dataset

    rows = synthetic_judge_dataset(n, seed=0, difficulty="easy")
    return rows.map(lambda row: {"images": [im.resize((side, side), Image.NEAREST) for im in row["images"]]})


def run_arm(arm: str, model_dir: str, rows_spec: tuple[int, int], settings: dict, out: str) -> dict:
    """One arm's training run in this (fresh) process; returns its per-step figures."""
    from .trainer_overhead import ARMS, varied_reward  # TRL's import is paid in the arm's process only

    torch.set_num_threads(settings["threads"])
    # Each arm's trainer, config and extra fields are trainer_overhead's, so both benchmarks compare the same.
    trainer_cls, config_cls, extra, _ = ARMS[ARM_KEYS[arm]]
    on_gpu = torch.cuda.is_available()
    completion = settings["completion_length"]
    vllm = {}
    if settings["vllm"]:
        vllm = dict(
            use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=settings["vllm_gpu_memory_utilization"],
            vllm_max_model_length=settings["vllm_max_model_length"],
            vllm_enable_sleep_mode=settings["vllm_sleep_mode"],
        )  # fmt: skip
    args = config_cls(
        output_dir=out,
        per_device_train_batch_size=settings["batch_size"],
        # One generation feeds two optimizer steps, as the recipes' 256 rollouts / 128 per update.
        steps_per_generation=2,
        num_generations=settings["num_generations"],
        max_completion_length=completion,
        # Every completion exactly `completion` tokens (vLLM's name for it is min_tokens).
        generation_kwargs={"min_tokens" if settings["vllm"] else "min_new_tokens": completion},
        max_steps=settings["steps"],
        learning_rate=settings["learning_rate"],
        bf16=on_gpu,
        use_cpu=not on_gpu,
        gradient_checkpointing=settings["gradient_checkpointing"],
        model_init_kwargs={"dtype": "bfloat16" if on_gpu else "float32"},
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=0,
        log_completions=False,
        disable_tqdm=True,
        # GRPOTrainer configured to the same objective, as in benchmarks/trainer_overhead.py.
        loss_type="grpo",
        scale_rewards="batch",
        **vllm,
        **extra,
    )
    peft_config = None
    if settings["peft"] == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=settings["lora_r"], lora_alpha=settings["lora_alpha"], lora_dropout=0.05,
            target_modules=settings["lora_target_modules"], task_type="CAUSAL_LM",
        )  # fmt: skip
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer = trainer_cls(
        model=model_dir, reward_funcs=varied_reward, args=args, train_dataset=dataset(*rows_spec),
        peft_config=peft_config,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "step_time" in entry]
    if on_gpu:
        peak = torch.cuda.max_memory_allocated() / GB
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "step_times_s": [entry["step_time"] for entry in logs],
        "num_tokens": [entry.get("num_tokens") for entry in logs],  # logged on generation steps only
        "peak_memory_gb": peak,
    }


def run_arm_isolated(*args) -> dict:
    """run_arm, with any error passed back as text: some of transformers' exceptions do not unpickle."""
    try:
        return run_arm(*args)
    except Exception:
        import traceback

        raise RuntimeError(traceback.format_exc()) from None


def summarize(runs: list[dict]) -> dict:
    """Medians over every step but each run's first generation (two steps: warm-up, compilation, caches).

    tokens_per_s counts the prompt and completion tokens each step trains on: a generation's tokens
    (TRL's `num_tokens` grows by them) are split over its two steps.
    """
    step_times, rates = [], []
    for run in runs:
        times, tokens = run["step_times_s"], run["num_tokens"]
        for i in range(2, len(times) - 1, 2):
            step_times += times[i : i + 2]
            rates.append((tokens[i] - tokens[i - 2]) / (times[i] + times[i + 1]))
    return {
        "step_time_s": statistics.median(step_times),
        "tokens_per_s": statistics.median(rates),
        "peak_memory_gb": max(run["peak_memory_gb"] for run in runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    models = sorted(p.name for p in MODEL_CONFIGS.iterdir())
    parser.add_argument("--model", default="qwen2.5-vl-3b-instruct", choices=models)
    parser.add_argument("--peft", default="none", choices=["none", "lora"])
    parser.add_argument("--steps", type=int, default=None, help="even (default 6; 4 with --smoke)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per arm, alternating the order")
    parser.add_argument("--batch-size", type=int, default=None, help="per device (default: the recipe's)")
    parser.add_argument("--num-generations", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--completion-length", type=int, default=256, help="tokens per completion (recipes: 1024)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    parser.add_argument("--vllm", default="auto", choices=["auto", "on", "off"], help="auto: when installed")
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    parser.add_argument("--smoke", action="store_true", help="the same code at tiny dims on CPU (< 1 min)")
    parser.add_argument("--output", type=Path, default=None, help="default: results/scale_<model>_<peft>.json")
    args = parser.parse_args(argv)
    args.steps = args.steps or (4 if args.smoke else 6)
    if args.steps < 4 or args.steps % 2:
        parser.error("--steps must be even and at least 4 (the first generation's two steps are warm-up)")
    on_gpu = torch.cuda.is_available() and not args.smoke
    recipe = recipe_for(args.model)
    use_vllm = {"on": True, "off": False, "auto": on_gpu and importlib.util.find_spec("vllm") is not None}[args.vllm]
    if use_vllm and not on_gpu:
        parser.error("--vllm on needs a GPU")
    side = image_side(args.max_pixels if not args.smoke else 112 * 112)
    settings = {
        "model": args.model,
        "peft": args.peft,
        "steps": args.steps,
        "repeats": args.repeats,
        "batch_size": args.batch_size or (2 if args.smoke else recipe["per_device_train_batch_size"]),
        "num_generations": args.num_generations or recipe["num_generations"],
        "completion_length": 8 if args.smoke else args.completion_length,
        "image_side": side,
        "max_pixels": 112 * 112 if args.smoke else args.max_pixels,
        "learning_rate": recipe["learning_rate"] if args.peft == "none" else 1e-5,
        "gradient_checkpointing": not args.no_gradient_checkpointing,
        "dtype": "bfloat16" if on_gpu else "float32 (CPU)",
        "vllm": use_vllm,
        "vllm_gpu_memory_utilization": recipe["vllm_gpu_memory_utilization"],
        "vllm_max_model_length": 4096 + args.completion_length,
        "vllm_sleep_mode": bool(recipe.get("vllm_enable_sleep_mode", False)),
        "lora_r": recipe["lora_r"],
        "lora_alpha": recipe["lora_alpha"],
        "lora_target_modules": recipe["lora_target_modules"],
        "threads": args.threads,
        "smoke": args.smoke,
    }
    started = time.perf_counter()
    # spawn, not fork: each arm gets a clean CUDA context and its own peak-memory counter.
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, params = build_model_dir(Path(tmp) / "model", args.model, settings["max_pixels"], args.smoke,
                                            "cuda" if on_gpu else "cpu")  # fmt: skip
        rows_needed = settings["batch_size"] * 2 * args.steps // settings["num_generations"]
        rows_spec = (max(rows_needed, 8), side)
        runs: dict[str, list[dict]] = {arm: [] for arm in ARM_KEYS}
        for repeat in range(args.repeats):
            order = list(ARM_KEYS) if repeat % 2 == 0 else list(reversed(ARM_KEYS))
            for arm in order:
                with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                    out = f"{tmp}/{arm}-{repeat}"
                    job = pool.submit(run_arm_isolated, arm, str(model_dir), rows_spec, settings, out)
                    runs[arm].append(job.result())
    arms = {arm: summarize(values) for arm, values in runs.items()}
    ratio = arms["stable_reinforce"]["step_time_s"] / arms["grpo"]["step_time_s"]
    result = {
        "benchmark": "scale",
        "machine": machine(),
        "params": params,
        "arms": arms,
        "step_time_ratio": ratio,
        "settings": settings,
        "memory": "torch.cuda.max_memory_allocated (GiB)" if on_gpu else "peak RSS of the arm's process (GiB)",
        "wall_time_s": time.perf_counter() - started,
    }
    path = args.output or RESULTS / f"scale_{args.model}_{args.peft}{'_smoke' if args.smoke else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"{args.model} ({params / 1e9:.2f}B params) {args.peft}: step time StableReinforce "
          f"{arms['stable_reinforce']['step_time_s']:.3f}s, GRPO {arms['grpo']['step_time_s']:.3f}s, "
          f"ratio {ratio:.3f}; "
          f"peak memory {arms['stable_reinforce']['peak_memory_gb']:.1f} / {arms['grpo']['peak_memory_gb']:.1f} GiB; "
          f"{arms['stable_reinforce']['tokens_per_s']:.0f} / {arms['grpo']['tokens_per_s']:.0f} tokens/s -> {path}")
    return result


if __name__ == "__main__":
    main()
