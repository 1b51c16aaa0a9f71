#!/usr/bin/env bash
# Issue 17, item 4: the one prepared GPU check. The scale benchmark for Qwen2.5-VL-3B full fine-tuning and
# 7B LoRA (random init at the real dimensions, StableReinforceTrainer vs GRPOTrainer on identical batches)
# and the environment it ran in. About 6 minutes on one H200.
#   here:   bash benchmarks/gpu_wheels.sh
#   there:  bash benchmarks/gpu_run.sh        (the device tool: carry [".whl"], timeout_s 600)
# Results go to $OUT (the device tool brings them back) or benchmarks/results/; copy them into
# benchmarks/results/ and the figures into README.md's Benchmarks table, with the GPU from gpu.txt.
# vLLM is left out: its wheels are far over what a device call may carry; with vLLM installed, the same
# commands use it (--vllm auto).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys, torch, transformers, trl, peft, accelerate, datasets; print(sys.version.split()[0], *(f'{m.__name__} {m.__version__}' for m in (torch, transformers, trl, peft, accelerate, datasets)))"
} 2>&1 | tee "$OUT/gpu.txt"
status=0
run() {  # name, then the scale benchmark's arguments
  local name=$1; shift
  timeout 280 python3 -m benchmarks.scale "$@" --output "$OUT/scale_$name.json" > "$OUT/scale_$name.log" 2>&1 || status=1
  tail -n 3 "$OUT/scale_$name.log"
}
run qwen2.5-vl-3b-instruct_none --model qwen2.5-vl-3b-instruct --peft none --steps 4
run qwen2.5-vl-7b-instruct_lora --model qwen2.5-vl-7b-instruct --peft lora --steps 4
exit $status
