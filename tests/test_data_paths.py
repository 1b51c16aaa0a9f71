"""Files the package writes are used from any folder: `convert` run inside the data folder, its output
trained on by the RL entry point and evaluated from elsewhere; annotations and `select-hard` output likewise."""

import json
import os
from pathlib import Path

import datasets
import pytest
from PIL import Image

from stable_reinforce_trl.cli import main as cli
from stable_reinforce_trl.data.loaders import load_pairs
from stable_reinforce_trl.scripts.judge_datasets import JudgeScriptArguments, load_recipe_dataset

TINY_RL = Path(__file__).resolve().parents[1] / "recipes" / "tiny-cpu" / "stable_reinforce.yaml"


def _data_folder(root: Path, n: int = 4) -> Path:
    """`root/data`: pairs.jsonl naming its images relative to itself (`img/k.png`) and a video as a folder."""
    data = root / "data"
    (data / "img").mkdir(parents=True)
    (data / "clip").mkdir()
    for k in range(3):
        Image.new("RGB", (16, 16), (40 * k, 0, 0)).save(data / "clip" / f"{k:03d}.png")
    rows = []
    for i in range(n):
        Image.new("RGB", (16, 16), "red" if i % 2 else "blue").save(data / "img" / f"{i}.png")
        rows.append({"id": f"p{i}", "prompt": f"What colour is shape {i}?", "chosen": "Red." if i % 2 else "Blue.",
                     "rejected": "Green.", "image": f"img/{i}.png"})
    rows.append({"id": "v0", "prompt": "What happens?", "chosen": "It darkens.", "rejected": "Nothing.",
                 "image": "clip"})
    (data / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def _absolute_media(rows: list[dict]) -> list[str]:
    return [p for row in rows for p in [*row["images"], *(f for v in row.get("videos") or [] for f in v)]]


def test_convert_in_the_data_folder_then_train_and_evaluate_from_another(tmp_path, monkeypatch, tiny_model_dir):
    data = _data_folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(data)
    assert cli(["convert", "pairs.jsonl", "--out", "../out/rl.jsonl", "--frames-as-images"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "rl.jsonl").read_text().splitlines()]
    media = _absolute_media(rows)
    assert len(rows) == 5 and len(media) == 4 + 3 and all(os.path.isabs(p) and os.path.isfile(p) for p in media)

    monkeypatch.chdir(elsewhere)  # no img/ or clip/ here: a path relative to the data folder would not resolve
    out = elsewhere / "rl-run"
    assert cli(["rl", "--config", str(TINY_RL), "--model_name_or_path", tiny_model_dir, "--dataset_name",
                "../out/rl.jsonl", "--output_dir", str(out), "--max_steps", "1", "--save_strategy", "no",
                "--generation_batch_size", "4", "--per_device_train_batch_size", "4", "--num_generations", "2",
                "--max_completion_length", "4"]) == 0  # fmt: skip
    assert (out / "model.safetensors").exists()
    assert cli(["eval", "--benchmark", "pairs", "--data", "../out/rl.jsonl", "--model", tiny_model_dir,
                "--max-new-tokens", "4", "--output", "eval.json", "--no-progress", "--no-cache"]) == 0  # fmt: skip
    report = json.loads((elsewhere / "eval.json").read_text())
    assert report["skipped"]["total"] == 0 and "accuracy" in json.dumps(report)


def test_annotations_and_selected_sets_read_from_another_folder(tmp_path, monkeypatch):
    from stable_reinforce_trl.data.pairs import PreferencePair
    from stable_reinforce_trl.data.records import pair_to_record

    data = _data_folder(tmp_path)
    pairs = load_pairs(data / "pairs.jsonl")
    assert all(os.path.isabs(p) for pair in pairs for p in [*pair.images, *(pair.video or [])])
    # Annotations as `annotate` writes them, from inside the data folder, with an in-memory image among them.
    monkeypatch.chdir(data)
    pairs.append(PreferencePair("mem", "Which?", "This.", "That.", images=[Image.new("RGB", (8, 8), "red")]))
    with open("ann.jsonl", "w") as f:
        for i, pair in enumerate(pairs):
            annotated = pair.with_annotation(f"So Response {1 + i % 2} is better.", str(1 + i % 2), 1 + i % 3, False)
            f.write(json.dumps(pair_to_record(annotated, "ann.jsonl.media")) + "\n")
    assert cli(["select-hard", "ann.jsonl", "--rl-out", "sets/rl.jsonl", "--sft-out", "sets/sft.jsonl",
                "--no-balance", "--frames-as-images"]) == 0  # fmt: skip
    monkeypatch.chdir(tmp_path)
    for kind in ("rl", "sft"):
        rows = load_recipe_dataset(JudgeScriptArguments(dataset_name=f"data/sets/{kind}.jsonl"), kind)["train"]
        assert len(rows) == (4 if kind == "rl" else 6)
        assert all(img.size in ((16, 16), (8, 8)) for row in rows for img in row["images"])
    assert len(load_pairs("data/ann.jsonl")) == 6


def test_a_judge_file_with_paths_relative_to_another_folder_lists_every_missing_image(tmp_path, monkeypatch):
    """Relative paths in a judge-row file start from the file's folder, never the working folder; the rows
    whose image is not there are all named, before training starts."""
    data = _data_folder(tmp_path)
    monkeypatch.chdir(data)
    assert cli(["convert", "pairs.jsonl", "--out", "rl.jsonl"]) == 0
    rows = [json.loads(line) for line in Path("rl.jsonl").read_text().splitlines()]
    for row in rows[:2]:  # written relative to the working folder, as the old convert did
        row["images"] = [os.path.relpath(p, tmp_path) for p in row["images"]]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)  # where those relative paths would happen to resolve
    from stable_reinforce_trl.data.validation import InvalidRowsError

    with pytest.raises(InvalidRowsError) as info:
        load_recipe_dataset(JudgeScriptArguments(dataset_name="sub/rl.jsonl"), "rl")
    message = str(info.value)
    assert "row 0, field 'images'" in message and "row 1, field 'images'" in message and "row 2" not in message
    kept = load_recipe_dataset(JudgeScriptArguments(dataset_name="sub/rl.jsonl", skip_invalid=True), "rl")["train"]
    assert len(kept) == len(rows) - 2 and isinstance(kept.features["images"].feature, datasets.Image)
