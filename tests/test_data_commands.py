"""`convert` and `select-hard` (with the SFT builder), run through the CLI entry point in-process."""

import json
from collections import Counter

import datasets
from PIL import Image

from stable_reinforce_trl.cli import main as cli
from stable_reinforce_trl.data.difficulty import difficulty, select_hard, select_sft
from stable_reinforce_trl.data.pairs import PreferencePair
from stable_reinforce_trl.data.records import pair_to_record
from stable_reinforce_trl.prompts import judge_output


def _annotation_file(tmp_path):
    """20 annotated pairs: attempts 1, 2, 3 and failed, from two sources, labels mostly "1"."""
    Image.new("RGB", (8, 8), "red").save(tmp_path / "img.png")
    pairs = []
    for i in range(20):
        attempts, failed = (i % 3) + 1, i % 5 == 4
        label = "1" if i % 4 else "2"
        pairs.append(PreferencePair(
            id=f"a{i}", question=f"Q{i}", chosen=f"good {i}", rejected=f"bad {i}", images=[str(tmp_path / "img.png")],
            source="povid" if i < 10 else "wildvision", reasoning=None if failed else f"trace {i}",
            reasoning_label=label, attempts=3 if failed else attempts, failed=failed))
    path = tmp_path / "ann.jsonl"
    path.write_text("".join(json.dumps(pair_to_record(p)) + "\n" for p in pairs))
    return path, pairs


def test_selection_thresholds_and_sft_balance(tmp_path):
    _, pairs = _annotation_file(tmp_path)
    assert Counter(map(difficulty, pairs)) == {"1": 6, "2": 5, "3": 5, "failed": 4}
    assert {difficulty(p) for p in select_hard(pairs)} == {"2", "3", "failed"}
    assert len(select_hard(pairs)) == 14
    assert len(select_hard(pairs, min_attempts=3, include_failed=False)) == 5
    sft = select_sft(pairs)
    assert Counter(p.reasoning_label for p in sft) == {"1": 4, "2": 4}  # 12 vs 4 traces -> 4 and 4
    assert all(not p.failed for p in sft)
    assert len(select_sft(pairs, balance=False)) == 16 and len(select_sft(pairs, max_attempts=1, balance=False)) == 6


def test_select_hard_cli_writes_both_sets_and_prints_summary(tmp_path, capsys):
    path, _ = _annotation_file(tmp_path)
    assert cli(["select-hard", str(path), "--rl-out", str(tmp_path / "rl"), "--sft-out", str(tmp_path / "sft.jsonl"),
                "--no-balance"]) == 0
    printed = capsys.readouterr().out
    assert "annotations by difficulty and source" in printed and "RL set: 14 pairs" in printed
    assert any(line.split() == ["povid", "3", "2", "3", "2", "10"] for line in printed.splitlines())
    rl = datasets.load_from_disk(str(tmp_path / "rl"))
    assert len(rl) == 14 and Counter(rl["label"]) == {"1": 7, "2": 7}
    assert rl[0]["images"][0].size == (8, 8)
    sft = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert len(sft) == 16 and sft[0]["images"] == [str(tmp_path / "img.png")]
    first = sft[0]["messages"]
    assert first[1]["content"][0]["text"] == judge_output("trace 0", 2)


def test_convert_cli_folder_and_jsonl(tmp_path, capsys):
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "x.png")
    rows = [{"id": str(i), "prompt": "Q", "chosen": f"a{i}", "rejected": f"b{i}", "image": "x.png"} for i in range(6)]
    rows.append({"id": "bad", "prompt": "Q", "chosen": "same", "rejected": "same", "image": "x.png"})
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli(["convert", str(src), "--out", str(tmp_path / "judge"), "--skip-invalid", "--both-orders"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 invalid row(s) (identical responses: 1)" in printed
    assert "wrote 12 judge rows from 6 pairs" in printed
    ds = datasets.load_from_disk(str(tmp_path / "judge"))
    raw = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))[0]["images"][0]
    # datasets embeds the image bytes on save: the folder stands alone, without the source images
    assert raw["bytes"] == (tmp_path / "x.png").read_bytes()
    assert cli(["convert", str(src), "--out", str(tmp_path / "j.jsonl"), "--skip-invalid"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and Counter(r["label"] for r in lines) == {"1": 3, "2": 3}
    assert lines[0]["images"] == [str(tmp_path / "x.png")] and lines[0]["prompt"][0]["role"] == "user"
