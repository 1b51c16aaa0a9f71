"""Can StableReinforceTrainer train sharded on 2 CPU processes? The evidence behind recipes/README.md's
"Sharded training on CPU": each way tried, launched as a user would, and what each rank reports.

    python -m benchmarks.fsdp_cpu_probe          # three 2-process launches on the tiny model, ~2 min

- `accelerate`: an accelerate config with `distributed_type: FSDP` (FSDP2), `use_cpu: true`;
- `accelerate-gpu-flags`: the same with `use_cpu: false`;
- `fully_shard`: the model sharded by `torch.distributed.fsdp.fully_shard` before the trainer sees it, under
  recipes/accelerate_configs/cpu.yaml.
Each rank prints the distributed type accelerate chose, and after 2 steps how its parameters are held.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

CPU_CONFIG = Path(__file__).resolve().parent.parent / "recipes" / "accelerate_configs" / "cpu.yaml"
FSDP2 = {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_offload_params": False,
         "fsdp_reshard_after_forward": True, "fsdp_state_dict_type": "SHARDED_STATE_DICT"}  # fmt: skip


def rank_main(mode: str, model_dir: str, out: str) -> None:
    import torch
    from torch.distributed.tensor import DTensor

    from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer
    from stable_reinforce_trl.data.synthetic import synthetic_judge_dataset

    from .trainer_overhead import varied_reward

    torch.set_num_threads(1)
    args = StableReinforceConfig(
        output_dir=out, per_device_train_batch_size=4, num_generations=2, max_completion_length=8, max_steps=2,
        use_cpu=mode != "accelerate-gpu-flags", bf16=False, report_to="none", save_strategy="no", logging_steps=1,
        disable_tqdm=True, log_completions=False,
    )  # fmt: skip
    model, processor = model_dir, None
    if mode == "fully_shard":
        from torch.distributed.fsdp import fully_shard
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        args.distributed_state  # accelerate's PartialState starts the gloo process group fully_shard needs
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir)
        for block in [*model.model.language_model.layers, *model.model.visual.blocks, model]:
            fully_shard(block)
        processor = AutoProcessor.from_pretrained(model_dir)
    trainer = StableReinforceTrainer(model=model, processing_class=processor, reward_funcs=varied_reward, args=args,
                                     train_dataset=synthetic_judge_dataset(32, seed=0))  # fmt: skip
    rank = os.environ.get("RANK")
    print(f"PROBE {mode} rank {rank}: distributed_type {trainer.accelerator.distributed_type.value}, "
          f"is_fsdp_enabled {trainer.is_fsdp_enabled}", flush=True)  # fmt: skip
    try:
        trainer.train()
    except Exception as error:  # the finding is the error: print it, do not hide it in a traceback
        print(f"PROBE {mode} rank {rank}: train() raised {type(error).__name__}: {error}".splitlines()[0], flush=True)
        raise SystemExit(1)
    params = list(trainer.model.parameters())
    local = sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in params)
    print(f"PROBE {mode} rank {rank}: trained 2 steps as {type(trainer.model_wrapped).__name__}, "
          f"{sum(isinstance(p, DTensor) for p in params)} sharded parameters, {local} of "
          f"{sum(p.numel() for p in params)} parameter values held locally", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> list[str]:
    from stable_reinforce_trl.tiny import make_tiny_model

    found = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(make_tiny_model(f"{tmp}/tiny"))
        fsdp_config = yaml.safe_load(CPU_CONFIG.read_text()) | {"distributed_type": "FSDP", "fsdp_config": FSDP2}
        Path(f"{tmp}/fsdp.yaml").write_text(yaml.safe_dump(fsdp_config))
        for mode, config in [("accelerate", f"{tmp}/fsdp.yaml"), ("accelerate-gpu-flags", f"{tmp}/fsdp.yaml"),
                             ("fully_shard", str(CPU_CONFIG))]:  # fmt: skip
            command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes",
                       "2", "-m", "benchmarks.fsdp_cpu_probe", "--rank", mode, model_dir, f"{tmp}/{mode}"]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            lines = sorted({line.strip() for line in done.stdout.splitlines() if line.startswith("PROBE")})
            found += lines or [f"PROBE {mode}: exit {done.returncode}, {done.stderr.strip().splitlines()[-1:]}"]
    print("\n".join(found))
    return found


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rank"]:
        rank_main(*sys.argv[2:5])
    else:
        main()
