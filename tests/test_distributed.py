"""`accelerate launch --num_processes 2` on CPU: training runs and the advantage filter is global."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stable_reinforce_trl.algorithms import stable_reinforce_advantages
from stable_reinforce_trl.position_balance import flip_label
from stable_reinforce_trl.prompts import swap_responses

ROOT = Path(__file__).resolve().parents[1]


def accelerate_launch(num_processes: int, script: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
        str(script), *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)


def test_two_processes_filter_with_global_statistics(tiny_model_dir, tmp_path):
    result = accelerate_launch(2, ROOT / "tests/scripts/record_advantages.py", tiny_model_dir, str(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for rank in (0, 1) for line in (tmp_path / f"advantages_rank{rank}.jsonl").open()]
    assert {r["num_processes"] for r in records} == {2}
    rank0 = [r for r in records if r["process_index"] == 0]
    rank1 = [r for r in records if r["process_index"] == 1]
    assert len(rank0) == len(rank1) >= 1
    for r0, r1 in zip(rank0, rank1):
        assert r0["rewards_per_func"] == r1["rewards_per_func"]  # both hold the gathered (global) rewards
        rewards = torch.tensor(r0["rewards_per_func"]).sum(dim=1)
        assert rewards.numel() == 2 * len(r0["local_advantages"])
        expected, _ = stable_reinforce_advantages(rewards, baseline="batch", group_size=4, sigma=3.0)
        combined = torch.tensor(r0["local_advantages"] + r1["local_advantages"])
        assert torch.allclose(combined, expected, atol=1e-6)
        # What a per-process standardization would have given rank 0: it must not be what rank 0 got
        # (unless the two computations happen to agree on this batch).
        local_only, _ = stable_reinforce_advantages(rewards[: rewards.numel() // 2], baseline="batch", group_size=4, sigma=3.0)
        if not torch.allclose(local_only, expected[: local_only.numel()], atol=1e-6):
            assert not torch.allclose(torch.tensor(r0["local_advantages"]), local_only, atol=1e-6)
        # Position-balanced (the default): the global batch holds both orders of each pair, half labelled "1",
        # though a pair's two orders may sit on different processes.
        rows = {json.dumps(prompt): label for prompt, label in r0["rows"] + r1["rows"]}
        labels = [label for _, label in r0["rows"] + r1["rows"]]
        assert labels.count("1") * 2 == len(labels) == rewards.numel()
        for prompt, label in rows.items():
            assert rows[json.dumps(swap_responses(json.loads(prompt)))] == flip_label(label)
    history = json.loads((tmp_path / "log_history.json").read_text())
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4]


def test_two_processes_match_a_pairs_orders_for_order_consistency(tiny_model_dir, tmp_path):
    """`order_consistency_weight` pairs each rollout with its pair's other order over the global batch: a red
    pair (read right in both orders) earns 1 and a blue one (always "1") earns 0 wherever the two orders sit."""
    result = accelerate_launch(2, ROOT / "tests/scripts/record_advantages.py", tiny_model_dir, str(tmp_path),
                               "--order-consistency")  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [[json.loads(line) for line in (tmp_path / f"advantages_rank{rank}.jsonl").open()] for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) >= 1
    history = json.loads((tmp_path / "log_history.json").read_text())
    logged = [e["stable_reinforce/order_consistency"] for e in history if "stable_reinforce/order_consistency" in e]
    assert len(logged) == len(ranks[0])
    seen, straddling = set(), 0
    for r0, r1, consistency in zip(*ranks, logged):
        texts = [prompt[-1]["content"][-1]["text"] for prompt, _ in r0["rows"] + r1["rows"]]
        orders = r0["orders"] + r1["orders"]
        assert sorted(orders) == [0] * (len(orders) // 2) + [1] * (len(orders) // 2)
        red = [("It is red." in text) for text in texts]
        assert consistency == pytest.approx(sum(red) / len(red))
        seen.update(red)
        advantages = r0["local_advantages"] + r1["local_advantages"]
        if len(set(red)) == 2:  # red up, blue down, on both ranks
            assert all((a > 0) == is_red and (a < 0) != is_red for a, is_red in zip(advantages, red))
        else:  # one colour only: every rollout earns the same
            assert not any(advantages)
        straddling += len(set(r0["pairs"]) & set(r1["pairs"]))
    assert seen == {True, False}
    assert straddling  # some pair had one order on each process: matched only over the gathered batch
