"""The GPU-facing benchmarks run here too: the scale benchmark at tiny dims, the memory plan from the real configs."""

import json

import pytest


def test_scale_smoke_runs_both_arms_on_identical_work(tmp_path):
    from benchmarks import scale

    out = tmp_path / "scale.json"
    result = scale.main(["--smoke", "--output", str(out)])
    assert json.loads(out.read_text())["step_time_ratio"] == pytest.approx(result["step_time_ratio"])
    arms = result["arms"]
    for arm in ("stable_reinforce", "grpo"):
        for key in ("step_time_s", "peak_memory_gb", "tokens_per_s"):
            assert arms[arm][key] > 0, (arm, key)
    ours, grpo = arms["stable_reinforce"]["step_time_s"], arms["grpo"]["step_time_s"]
    assert result["step_time_ratio"] == pytest.approx(ours / grpo)
    # Fixed-length completions and the same rows: both arms see exactly the same number of tokens.
    tokens = {arm: [run["num_tokens"] for run in arms[arm]["runs"]] for arm in arms}
    assert tokens["stable_reinforce"] == tokens["grpo"]
    assert result["settings"]["smoke"] and not result["settings"]["vllm"]


def test_memory_plan_counts_the_real_models_and_plans_every_recipe(tmp_path):
    pytest.importorskip("deepspeed", reason="the dev extra installs deepspeed for its ZeRO estimators")
    from benchmarks import memory_plan

    out = tmp_path / "plan.json"
    result = memory_plan.main(["--output", str(out)])
    assert json.loads(out.read_text())["models"] == result["models"]
    # The published parameter counts of Qwen2.5-VL-7B-Instruct and 3B-Instruct, within 3%.
    assert result["models"]["qwen2.5-vl-7b"]["params"] == pytest.approx(8.29e9, rel=0.03)
    assert result["models"]["qwen2.5-vl-3b"]["params"] == pytest.approx(3.75e9, rel=0.03)
    # Qwen3-VL-8B-Instruct: 8.77B published; Qwen3.5-9B: its language model's 8.95B (the card says "9B" for it).
    assert result["models"]["qwen3-vl-8b"]["params"] == pytest.approx(8.77e9, rel=0.03)
    q35 = result["models"]["qwen3.5-9b"]
    assert q35["params"] - q35["vision_params"] == pytest.approx(8.95e9, rel=0.03)
    # Only Qwen3.5's 8 full-attention layers of 32 keep a KV cache per token (16 x 4 heads of 256 there).
    assert q35["kv_bytes_per_token"] == 2 * 8 * 4 * 256 * 2
    rows = {(row["recipe"], row["method"]): row for row in result["recipes"]}
    rl3 = "qwen2.5-vl-3b/stable_reinforce.yaml"
    assert rows[(rl3, "qlora")]["per_gpu_gb"] < rows[(rl3, "lora")]["per_gpu_gb"] < rows[(rl3, "full")]["per_gpu_gb"]
    # The 7B RL recipe holds the vLLM share (0.3 of 80 GB) on top of what SFT needs.
    for folder in ("qwen3-vl-8b", "qwen3.5-9b"):  # the new families' recipes, planned as the 7B's
        for name in ("sft.yaml", "stable_reinforce.yaml"):
            assert rows[(f"{folder}/{name}", "full, ZeRO-3")]["fits"]
    rl7 = rows[("qwen2.5-vl-7b/stable_reinforce.yaml", "full, ZeRO-3")]
    sft7 = rows[("qwen2.5-vl-7b/sft.yaml", "full, ZeRO-3")]
    assert rl7["vllm_gb"] == pytest.approx(24.0) and rl7["per_gpu_gb"] == pytest.approx(sft7["per_gpu_gb"] + 24.0)
    assert all("fits" in row and row["per_gpu_gb"] > 0 for row in result["recipes"])
    # A 24 GB card holds the 3B QLoRA run (vLLM's share is then 6 GB), not the full fine-tune.
    small = memory_plan.main(["--output", str(tmp_path / "small.json"), "--gpu-memory-gb", "24"])
    small_rows = {(r["recipe"], r["method"]): r for r in small["recipes"]}
    assert not small_rows[(rl3, "full")]["fits"] and small_rows[(rl3, "qlora")]["fits"]
