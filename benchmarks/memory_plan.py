"""Memory per GPU for each Qwen recipe in recipes/ (Qwen2.5-VL, Qwen3-VL, Qwen3.5), before anyone launches it.

Parameter counts come from meta-device models of the configs in `benchmarks/model_configs/` (no
weights, no download). Model states under ZeRO come from DeepSpeed's own estimators; LoRA and QLoRA
count their trainable parameters by applying the recipe's `LoraConfig` to the meta model and their
4-bit weights with transformers' own list of modules bitsandbytes leaves alone. What no library
estimates is written here as an assumption (see ASSUMPTIONS, also written into the JSON).

    python -m benchmarks.memory_plan [--gpu-memory-gb 80] [--seq-len N] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from .common import RESULTS, machine

MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
RECIPES = Path(__file__).resolve().parent.parent / "recipes"
GB = 2**30
OVERHEAD_GB = 2.0
IMAGE_TOKENS = 1280  # one image at the processor's default cap, 28 * 28 * 1280 pixels
PROMPT_TEXT_TOKENS = 512
ASSUMPTIONS = [
    "GB = 2^30 bytes; a GPU has --gpu-memory-gb (80) and each process loses 2 GB to the CUDA context, NCCL buffers "
    "and allocator slack.",
    "Sequence: one image at the processor's default cap (28*28*1280 pixels = 1,280 tokens) + 512 prompt tokens + "
    "the recipe's 1,024 completion tokens = 2,816 tokens, unless --seq-len; max_tokens_per_micro_batch says how long "
    "the micro-batch's sequences may get before the recipe stops fitting (R1-Reward prompts reach 20,480 tokens).",
    "Activations (not in DeepSpeed's estimator), bf16 with gradient checkpointing: per token, each decoder layer's "
    "saved input (2 bytes x hidden x layers) plus one layer recomputed in backward and its gradients "
    "(2 x 2 bytes x (4 x hidden + 3 x intermediate)); the vision tower's saved inputs over 4 patches per image "
    "token. TRL 1.16 computes the loss with a fused LM head, so full-vocabulary logits are never materialized.",
    "ZeRO-3 (7B recipes, zero3.yaml: 8 processes, zero3_init_flag, no offload): DeepSpeed's "
    "estimate_zero3_model_states_mem_needs (18 bytes/param over the GPUs + 4 bytes x the largest layer); with "
    "beta > 0 (the reference-script recipe) TRL's frozen reference model adds 2 bytes/param over the GPUs.",
    "One GPU without DeepSpeed (3B recipes, dtype bfloat16, bf16): full fine-tuning keeps bf16 weights, bf16 "
    "gradients and torch AdamW's two moments in the parameters' dtype: 8 bytes/param. LoRA: the frozen base in bf16 "
    "(2 bytes/param) + 16 bytes per trainable parameter (PEFT keeps adapters in fp32: weight, gradient, 2 moments). "
    "QLoRA: the base's quantized Linear weights at 4 bits plus nested-quantization absmax (~0.127 bits/param, "
    "blocksize 64), the rest in bf16.",
    "vLLM colocate takes vllm_gpu_memory_utilization x the GPU for its weights and KV cache. Without sleep mode "
    "(7B recipe) it is held through training; with vllm_enable_sleep_mode (3B recipe) it is freed during the "
    "backward and optimizer step, so the peak is model states + max(vLLM share, activations).",
    "Referee: `vllm serve` of Qwen2.5-VL-7B-Instruct on a GPU of its own at vLLM's default gpu_memory_utilization "
    "0.9: bf16 weights + 2 GB for activations and CUDA graphs; the rest is KV cache.",
]


# recipe folder -> its model's config in model_configs/ (the released checkpoints' config.json; Qwen3-VL-8B-Instruct's
# and Qwen3.5-9B's written from their published values, in transformers 5's field names)
MODELS = {
    "qwen2.5-vl-7b": "qwen2.5-vl-7b-instruct",
    "qwen2.5-vl-3b": "qwen2.5-vl-3b-instruct",
    "qwen3-vl-8b": "qwen3-vl-8b-instruct",
    "qwen3.5-9b": "qwen3.5-9b",
}
ZERO3_RECIPES = ("qwen2.5-vl-7b", "qwen3-vl-8b", "qwen3.5-9b")  # full fine-tuning on 8 GPUs (zero3.yaml)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def meta_model(name: str):
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(MODEL_CONFIGS / name)
    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config), config


def largest_layer_params(model) -> int:
    # DeepSpeed's model_to_params counts this the same way, but dedups by data_ptr, which is 0 on meta.
    return max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())


def lora_trainable(name: str, recipe: dict) -> int:
    from peft import LoraConfig, get_peft_model

    model, _ = meta_model(name)
    config = LoraConfig(r=recipe["lora_r"], lora_alpha=recipe["lora_alpha"],
                        target_modules=recipe["lora_target_modules"], task_type="CAUSAL_LM")  # fmt: skip
    peft_model = get_peft_model(model, config)
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def four_bit_params(model) -> int:
    """Parameters in the Linear layers bitsandbytes would quantize (transformers decides which it skips)."""
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    skip = get_keys_to_not_convert(model) + list(getattr(model, "_keep_in_fp32_modules", None) or [])
    return sum(
        m.weight.numel() for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and should_convert_module(n, skip)
    )  # fmt: skip


def attention_layers(text) -> int:
    types = getattr(text, "layer_types", None)
    return sum(t == "full_attention" for t in types) if types else text.num_hidden_layers


def model_entry(name: str) -> dict:
    model, config = meta_model(name)
    text, vision = config.text_config, config.vision_config
    params = sum(p.numel() for p in model.parameters())
    return {
        "params": params,
        "vision_params": sum(p.numel() for p in model.model.visual.parameters()),
        "largest_layer_params": largest_layer_params(model),
        "four_bit_params": four_bit_params(model),
        "layers": text.num_hidden_layers,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "vocab_size": text.vocab_size,
        # K and V in bf16, for the layers that keep a cache per token: all of them, or Qwen3.5's full-attention
        # ones (its linear-attention layers keep a fixed-size state instead).
        "kv_bytes_per_token": 2 * attention_layers(text) * text.num_key_value_heads
        * (getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads) * 2,
        "vision_layer_bytes_per_patch": vision.depth * vision.hidden_size * 2,
    }


def activation_bytes_per_token(m: dict) -> float:
    text = 2 * m["hidden_size"] * m["layers"] + 2 * 2 * (4 * m["hidden_size"] + 3 * m["intermediate_size"])
    return text


def plan_entry(
    m: dict, *, recipe: str, method: str, gpus: int, micro_batch: int, seq_len: int, gpu_gb: float,
    states_bytes: float, vllm_share: float = 0.0, vllm_sleeps: bool = False, extra: dict | None = None,
) -> dict:  # fmt: skip
    per_token = activation_bytes_per_token(m)
    image_tokens = min(IMAGE_TOKENS, seq_len)
    activations = micro_batch * (seq_len * per_token + 4 * image_tokens * m["vision_layer_bytes_per_patch"])
    states_gb, act_gb, vllm_gb = states_bytes / GB, activations / GB, vllm_share * gpu_gb
    peak = states_gb + OVERHEAD_GB + (max(vllm_gb, act_gb) if vllm_sleeps else vllm_gb + act_gb)
    # The longest sequences the micro-batch can hold: what is left once states and vLLM are placed.
    room = gpu_gb - states_gb - OVERHEAD_GB - (0.0 if vllm_sleeps else vllm_gb)
    max_tokens = int(room * GB / per_token) if room > 0 else 0
    return {
        "recipe": recipe, "method": method, "gpus": gpus, "micro_batch": micro_batch, "seq_len": seq_len,
        "model_states_gb": round(states_gb, 2), "activations_gb": round(act_gb, 2), "vllm_gb": round(vllm_gb, 2),
        "vllm_sleep_mode": vllm_sleeps, "overhead_gb": OVERHEAD_GB, "per_gpu_gb": round(peak, 2),
        "fits": peak <= gpu_gb, "max_tokens_per_micro_batch": max_tokens, **(extra or {}),
    }  # fmt: skip


def single_gpu_states(m: dict, method: str, trainable: int) -> float:
    if method == "full":
        return 8 * m["params"]
    frozen = m["params"] * 2
    if method == "qlora":  # 4-bit base with nested quantization constants; everything else stays bf16
        frozen = m["four_bit_params"] * (0.5 + 0.127 / 8) + (m["params"] - m["four_bit_params"]) * 2
    return frozen + 16 * trainable


def vllm_room(m: dict, share_gb: float) -> dict:
    """What a vLLM share holds once it has the bf16 weights: KV cache, in tokens."""
    kv = share_gb - m["params"] * 2 / GB - OVERHEAD_GB
    return {"vllm_kv_cache_gb": round(kv, 2), "vllm_kv_cache_tokens": max(0, int(kv * GB / m["kv_bytes_per_token"]))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu-memory-gb", type=float, default=80.0)
    parser.add_argument("--seq-len", type=int, default=IMAGE_TOKENS + PROMPT_TEXT_TOKENS + 1024)
    parser.add_argument("--output", type=Path, default=RESULTS / "memory_plan.json")
    args = parser.parse_args(argv)
    try:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    except ImportError:
        message = "memory_plan needs DeepSpeed's estimators: pip install 'stable-reinforce-trl[deepspeed]'"
        print(message, file=sys.stderr)
        raise SystemExit(2)
    gpu, seq = args.gpu_memory_gb, args.seq_len
    models = {name: model_entry(config) for name, config in MODELS.items()}
    zero3_gpus = load_yaml(RECIPES / "accelerate_configs" / "zero3.yaml")["num_processes"]
    plan = []
    for name in ZERO3_RECIPES:
        m = models[name]
        _, zero3_bytes, _ = estimate_zero3_model_states_mem_needs(
            m["params"], m["largest_layer_params"], num_gpus_per_node=zero3_gpus, num_nodes=1,
            cpu_offload=False, cpu_offload_params=False, zero_init=True,
        )  # fmt: skip
        for path in sorted((RECIPES / name).glob("*.yaml")):
            recipe = load_yaml(path)
            share = recipe.get("vllm_gpu_memory_utilization", 0.0) if recipe.get("use_vllm") else 0.0
            # beta > 0 with full fine-tuning: TRL adds a frozen bf16 reference model, ZeRO-3-sharded like the policy.
            reference = 2 * m["params"] / zero3_gpus if recipe.get("beta", 0.0) > 0 else 0.0
            extra = {"reference_model_gb": round(reference / GB, 2), **(vllm_room(m, share * gpu) if share else {})}
            plan.append(plan_entry(
                m, recipe=f"{name}/{path.name}", method="full, ZeRO-3", gpus=zero3_gpus,
                micro_batch=recipe["per_device_train_batch_size"], seq_len=seq, gpu_gb=gpu,
                states_bytes=zero3_bytes + reference, vllm_share=share,
                vllm_sleeps=bool(recipe.get("vllm_enable_sleep_mode")), extra=extra,
            ))  # fmt: skip
    m7 = models["qwen2.5-vl-7b"]
    m3 = models["qwen2.5-vl-3b"]
    for kind in ("sft", "stable_reinforce"):
        recipe = load_yaml(RECIPES / "qwen2.5-vl-3b" / f"{kind}.yaml")
        trainable = lora_trainable("qwen2.5-vl-3b-instruct", recipe)
        share = recipe.get("vllm_gpu_memory_utilization", 0.0) if recipe.get("use_vllm") else 0.0
        for method in ("full", "lora", "qlora"):
            extra = {"trainable_params": m3["params"] if method == "full" else trainable}
            if share:
                extra |= vllm_room(m3, share * gpu)
            plan.append(plan_entry(
                m3, recipe=f"qwen2.5-vl-3b/{kind}.yaml", method=method, gpus=1,
                micro_batch=recipe["per_device_train_batch_size"], seq_len=seq, gpu_gb=gpu,
                states_bytes=single_gpu_states(m3, method, trainable), vllm_share=share,
                vllm_sleeps=bool(recipe.get("vllm_enable_sleep_mode")), extra=extra,
            ))  # fmt: skip
    referee_share = 0.9 * gpu
    referee = {"recipe": "referee: vllm serve Qwen/Qwen2.5-VL-7B-Instruct", "method": "inference", "gpus": 1,
               "weights_gb": round(m7["params"] * 2 / GB, 2), "per_gpu_gb": round(referee_share, 2),
               **vllm_room(m7, referee_share)}  # fmt: skip
    referee["fits"] = referee["vllm_kv_cache_gb"] > 0
    plan.append(referee)
    result = {
        "benchmark": "memory_plan", "machine": machine(), "gpu_memory_gb": gpu, "seq_len": seq,
        "models": models, "recipes": plan, "assumptions": ASSUMPTIONS,
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    for name, m in models.items():
        print(f"{name}: {m['params'] / 1e9:.3f}B parameters ({m['vision_params'] / 1e9:.3f}B vision)")
    print(f"| recipe | method | GPUs | per GPU (GB) | fits {gpu:.0f} GB | max tokens / micro-batch |")
    for row in plan:
        print(f"| {row['recipe']} | {row['method']} | {row['gpus']} | {row['per_gpu_gb']:.1f} | "
              f"{'yes' if row['fits'] else 'no'} | {row.get('max_tokens_per_micro_batch', '')} |")
    print(f"-> {args.output}")
    return result


if __name__ == "__main__":
    main()
