"""Host memory of restoring a full checkpoint on resume, per process: the whole model at once vs one tensor at a time.

    python -m benchmarks.resume_memory [--layers 19] [--processes 2]

Every process of a job restores the checkpoint at the same moment. This saves a random-init Qwen2.5-VL of
about 320M parameters (fp32, several safetensors shards), then starts `--processes` workers at once per
arm; each builds the model, restores the checkpoint with the arm's code from `stable_reinforce_trl.checkpoints`
(`whole_model`: `from_pretrained` then `load_state_dict`, the former path; `tensor_by_tensor`:
`load_checkpoint_weights`, the current one), checks every parameter equals the saved tensor bit for bit, and
reports its peak resident memory during the restore above its resident memory before it (Linux
`VmHWM`, reset through `/proc/self/clear_refs`). Writes `benchmarks/results/resume_memory.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .common import write_result

ARMS = ("whole_model", "tensor_by_tensor")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def build_model(layers: int):
    """The tiny Qwen2.5-VL's vocabulary and vision tower with a 1024-wide text model, untied `lm_head` (the 7B's
    layout): 16.8M parameters per decoder layer."""
    from stable_reinforce_trl.tiny import build_tiny_model, build_tiny_processor

    return build_tiny_model(build_tiny_processor(), seed=0, tie_word_embeddings=False, hidden_size=1024,
                            num_hidden_layers=layers, intermediate_size=4096, num_attention_heads=16,
                            num_key_value_heads=16)  # fmt: skip


def worker(arm: str, checkpoint: str, layers: int) -> dict:
    import torch
    from safetensors import safe_open

    from stable_reinforce_trl import checkpoints

    torch.set_num_threads(1)
    model = build_model(layers)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # so that a restore that loads nothing cannot pass the check below
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before, anon_before = _status_kb("VmRSS"), _status_kb("RssAnon")
    # VmHWM counts the safetensors file's mapped pages, which every rank shares through the page cache; the
    # private (anonymous) memory is what adds up per rank, and Linux keeps no peak of it: sample it.
    anon_peak, done = [anon_before], threading.Event()

    def sample():
        while not done.is_set():
            anon_peak[0] = max(anon_peak[0], _status_kb("RssAnon"))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    if arm == "whole_model":
        checkpoints._load_whole_model(model, checkpoint)
    elif not checkpoints.load_checkpoint_weights(model, checkpoint):
        raise RuntimeError("load_checkpoint_weights refused the checkpoint")
    seconds = time.perf_counter() - started
    peak = _status_kb("VmHWM")
    done.set()
    sampler.join()
    index = json.loads((Path(checkpoint) / "model.safetensors.index.json").read_text())["weight_map"]
    state = model.state_dict()
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightRenaming, rename_source_key

    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    others = [t for t in transforms if not isinstance(t, WeightRenaming)]
    exact = True
    for shard in sorted(set(index.values())):
        with safe_open(str(Path(checkpoint) / shard), framework="pt") as f:
            for key in f.keys():
                name, _ = rename_source_key(key, renamings, others, model.base_model_prefix, state)
                saved = f.get_tensor(key)
                exact &= state[name].dtype == saved.dtype and torch.equal(state[name], saved)
    return {"arm": arm, "peak_extra_mb": round((peak - before) / 1024, 1),
            "peak_extra_private_mb": round((anon_peak[0] - anon_before) / 1024, 1), "restore_s": round(seconds, 2),
            "exact": bool(exact)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=19, help="decoder layers of 16.8M parameters each")
    parser.add_argument("--processes", type=int, default=2, help="workers restoring at once, per arm")
    parser.add_argument("--shard-size", default="300MB")
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.checkpoint, args.layers)), flush=True)
        return {}

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "checkpoint"
        print(f"saving a random {args.layers}-layer Qwen2.5-VL in {args.shard_size} shards ...", flush=True)
        model = build_model(args.layers)
        params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(checkpoint, max_shard_size=args.shard_size)
        del model
        shards = sorted(checkpoint.glob("model-*.safetensors"))
        sizes = [s.stat().st_size for s in shards]
        arms = {}
        for arm in ARMS:
            print(f"{arm}: {args.processes} processes restoring at once ...", flush=True)
            command = [sys.executable, "-m", "benchmarks.resume_memory", "--worker", arm, "--checkpoint",
                       str(checkpoint), "--layers", str(args.layers)]  # fmt: skip
            workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(args.processes)]
            results = []
            for process in workers:
                out, _ = process.communicate(timeout=1800)
                if process.returncode:
                    raise SystemExit(f"{arm} worker failed (exit {process.returncode})")
                results.append(json.loads(out.strip().splitlines()[-1]))
            arms[arm] = results
            print(f"  peak extra per process: {[r['peak_extra_mb'] for r in results]} MB, of it private: "
                  f"{[r['peak_extra_private_mb'] for r in results]} MB; exact: "
                  f"{all(r['exact'] for r in results)}", flush=True)  # fmt: skip
    mb = 1024 * 1024
    result = {
        "parameters": params,
        "shards": len(shards),
        "largest_shard_mb": round(max(sizes) / mb, 1),
        "model_mb": round(sum(sizes) / mb, 1),
        "processes": args.processes,
        "arms": arms,
        "summary": {arm: {"peak_extra_mb": max(r["peak_extra_mb"] for r in arms[arm]),
                          "peak_extra_private_mb": max(r["peak_extra_private_mb"] for r in arms[arm])}
                    for arm in ARMS},
    }
    path = write_result("resume_memory", result)
    print(json.dumps(result["summary"]), f"(model {result['model_mb']} MB, largest shard {result['largest_shard_mb']} MB)")
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
