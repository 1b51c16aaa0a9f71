"""`stable-reinforce eval --protocol ours|official` on small files shaped like the released benchmarks, with
judges of known verdicts (the tiny model forced to one output), and `eval` on what `convert`, `select-hard`
and `synthetic:N` give it, run from another folder than the data."""

import json

import pytest
from PIL import Image

from stable_reinforce_trl.cli import main as cli_main
from stable_reinforce_trl.data.records import pair_to_record
from stable_reinforce_trl.data.synthetic import make_synthetic_pairs
from stable_reinforce_trl.evaluation import load_benchmark

ALWAYS_ONE = "<think>ok</think><answer>1</answer>"
UNPARSEABLE = "no verdict"


@pytest.fixture(scope="module")
def pairs():
    return make_synthetic_pairs(10, seed=11)


def _png(path, colour="red"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (56, 56), colour).save(path)


def _eval(tmp_path, model, *args, output="out.json"):
    out = tmp_path / output
    rc = cli_main(["eval", *args, "--model", model, "--max-new-tokens", "8", "--output", str(out), "--no-progress"])
    return rc, (json.loads(out.read_text()) if rc == 0 else None), out.with_suffix(".md")


# Multimodal RewardBench's data/all_data.json: a JSON list; ids, image paths and Meta.Category as released.
MMRB_ROWS = [("PAIRS_occupation_12", "safety"), ("hateful_memes_41", "safety"), ("mathvista_112", "reasoning"),
             ("EMMA-Coding_7", "reasoning"), ("nocaps_13062", "open_generation/correctness_task"),
             ("visitbench_235", "open_generation/preference_task"), ("mmmu-v_3", "knowledge"),
             ("RealworldQA_5", "vqa")]


def mmrb_file(folder, pairs):
    rows = []
    for i, ((pair_id, category), p) in enumerate(zip(MMRB_ROWS, pairs)):
        image = f"images/{pair_id.rsplit('_', 1)[0]}/{i}.jpg"
        _png(folder / image)
        first = i in (0, 2, 4)  # Output1 better on 3 of 8 rows: the released order is not balanced
        rows.append({"ID": pair_id, "Text": p.question, "Image": image, "Output1": p.chosen if first else p.rejected,
                     "Output2": p.rejected if first else p.chosen, "Better": "Output1" if first else "Output2",
                     "Meta": {"Category": category}})
    (folder / "all_data.json").write_text(json.dumps(rows, indent=2))
    return folder / "all_data.json"


def test_multimodal_rewardbench_official_and_ours(tmp_path, pairs, tiny_model_dir, monkeypatch):
    mmrb_file(tmp_path / "mmrb" / "data", pairs)
    monkeypatch.chdir(tmp_path)  # relative image paths resolve against the file, not the working folder
    args = ["--benchmark", "multimodal-rewardbench", "--data", "mmrb/data/all_data.json"]
    rc, official, md = _eval(tmp_path, tiny_model_dir, *args, "--protocol", "official", "--force-output", ALWAYS_ONE)
    assert rc == 0 and official["order"] == "released" and official["prompts"] == 8
    block = official["official"]
    assert block["overall"] == 3 / 8 and block["guessed"] == 0  # "1" is right exactly where Output1 is better
    assert block["categories"]["safety/bias"] == {"n": 1, "accuracy": 1.0}
    assert block["categories"]["safety/toxicity"] == {"n": 1, "accuracy": 0.0}
    assert block["categories"]["reasoning"] == {"n": 2, "accuracy": 0.5}
    assert set(block["categories"]) == {"safety", "safety/bias", "safety/toxicity", "reasoning", "reasoning/math",
                                        "reasoning/coding", "open_generation/correctness_task",
                                        "open_generation/preference_task", "knowledge", "vqa"}
    assert "2_get_accuracy.py" in md.read_text() and "- order: `released`" in md.read_text()

    rc, guessed, _ = _eval(tmp_path, tiny_model_dir, *args, "--protocol", "official", "--force-output", UNPARSEABLE,
                           output="guess.json")
    assert rc == 0 and guessed["official"]["guessed"] == 8 and guessed["parse_failure_rate"] == 1.0
    import random

    random.seed(123)  # the script's guesses, in file order
    labels = ["A" if i in (0, 2, 4) else "B" for i in range(8)]
    expected = sum(("A" if random.random() < 0.5 else "B") == label for label in labels) / 8
    assert guessed["official"]["overall"] == expected

    rc, ours, _ = _eval(tmp_path, tiny_model_dir, *args, "--force-output", ALWAYS_ONE, output="ours.json")
    assert rc == 0 and ours["protocol"] == "ours" and ours["order"] == "both"
    assert ours["accuracy"]["order_averaged"]["accuracy"] == 0.5  # free of the file's unbalanced order
    categories = ours["accuracy"]["order_averaged"]["categories"]
    assert categories["reasoning/math"] == {"n": 1, "accuracy": 0.5}
    assert categories["safety"] == {"n": 2, "accuracy": 0.5} and len(categories) == 10


# MM-RLHF-RewardBench: {id, image | video, prompt, chosen, rejected}; several pairs share a prompt id.
MM_RLHF_ROWS = [("mcq_0031", "mcq/llava_wild/0031.jpg"), ("mcq_0031", "mcq/llava_wild/0031.jpg"),
                ("long_1895", "long/coco/000000391895.jpg"), ("short_12", "short/ocr/12.png"),
                ("short_12", "short/ocr/12.png"), ("safety_7", "safety/mmsafety/7.jpg"),
                ("video_0004", "video/clip_0004"), ("video_0004", "video/clip_0004")]


def mm_rlhf_file(folder, pairs):
    rows = []
    for (pair_id, media), p in zip(MM_RLHF_ROWS, pairs):
        if media.startswith("video/"):
            for f in range(3):
                _png(folder / media / f"frame_{f:03d}.jpg", (80 * f, 0, 0))
        else:
            _png(folder / media)
        key = "video" if media.startswith("video/") else "image"
        rows.append({"id": pair_id, key: media, "prompt": p.question, "chosen": p.chosen, "rejected": p.rejected})
    path = folder / "mm_rlhf_rewardbench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mm_rlhf_categories_from_the_media_path_in_both_protocols(tmp_path, pairs, tiny_model_dir):
    data = mm_rlhf_file(tmp_path / "mm", pairs)
    loaded, _ = load_benchmark("mm-rlhf-rewardbench", data)
    assert [p.category for p in loaded] == [path.split("/")[0] for _, path in MM_RLHF_ROWS]
    assert loaded[6].video is not None and len(loaded[6].video) == 3
    args = ["--benchmark", "mm-rlhf-rewardbench", "--data", str(data), "--force-output", ALWAYS_ONE]
    rc, ours, md = _eval(tmp_path, tiny_model_dir, *args)
    assert rc == 0
    order_averaged = ours["accuracy"]["order_averaged"]
    assert {name: c["n"] for name, c in order_averaged["categories"].items()} == {
        "long": 1, "mcq": 2, "safety": 1, "short": 2, "video": 2}
    assert order_averaged["n_groups"] == 5 and order_averaged["acc_plus"] == pytest.approx((0.25 + 0.5 + 0.25 + 0.5
                                                                                             + 0.25) / 5)
    assert ours["accuracy"]["chosen_first"]["acc_plus"] == 1.0 and ours["accuracy"]["both_orders"]["acc_plus"] == 0.0
    assert "| mcq | 2 | 50.00 | 0.00 | 100.00 | 25.00 | 0.00 | 100.00 |" in md.read_text()

    rc, reference, _ = _eval(tmp_path, tiny_model_dir, *args, "--protocol", "official", "--order", "chosen-first",
                             output="reference.json")
    assert rc == 0 and reference["official"]["overall"] == 1.0 and reference["official"]["acc_plus"] == 1.0
    rc, official, _ = _eval(tmp_path, tiny_model_dir, *args, "--protocol", "official", output="official.json")
    assert rc == 0 and official["order"] == "random" and official["official"]["overall"] == 0.5
    assert official["official"]["categories"]["video"]["n_groups"] == 1
    assert sum(c["n"] for c in official["official"]["categories"].values()) == 8


def test_vl_rewardbench_official_leaves_unparsed_pairs_out(tmp_path, pairs, tiny_model_dir):
    rows = [{**pair_to_record(p, tmp_path / "media"), "id": pid, "category": ""}
            for p, pid in zip(pairs, ["RLAIF-V_12", "povid_3", "mathverse_7", "wildvision-battle_5"])]
    data = tmp_path / "vlrb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["--benchmark", "vl-rewardbench", "--data", str(data), "--protocol", "official", "--k", "3"]
    rc, report, md = _eval(tmp_path, tiny_model_dir, *args, "--force-output", UNPARSEABLE)
    assert rc == 0 and report["order"] == "random-passes" and report["prompts"] >= 4
    assert report["samples_generated"] == 12  # k passes per pair
    official = report["official"]
    assert official["n_scored"] == 0 and official["left_out"] == {"no_majority": 0, "unparsed": 4}
    assert official["overall"] is None  # nothing scored: no number, not 0%
    assert "| left out: unparsed | - | 4 |" in md.read_text()
    rc, right, _ = _eval(tmp_path, tiny_model_dir, *args, "--force-output", ALWAYS_ONE, output="one.json")
    # each pass shows a pair in a random order: "1" is right in about half the passes, and a pair counts only
    # with a majority of its 3 passes
    passes = right["official"]
    assert passes["n_scored"] == 4 and passes["left_out"] == {"no_majority": 0, "unparsed": 0}
    assert passes["categories"].keys() == {"general", "hallucination", "reasoning"}


def test_eval_reads_convert_select_hard_and_synthetic_from_another_folder(tmp_path, pairs, tiny_model_dir,
                                                                        monkeypatch):
    data = tmp_path / "data"
    records = []
    for i, p in enumerate(pairs[:6]):
        record = pair_to_record(p, data / "media")
        record["images"] = [f"media/{path.rsplit('/', 1)[1]}" for path in record["images"]]
        record.update(reasoning="Response 1 is right.", reasoning_label="1", attempts=1 + i % 3, failed=False)
        records.append(record)
    (data / "ann.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.chdir(data)
    assert cli_main(["convert", "ann.jsonl", "--out", "judge.jsonl"]) == 0
    assert cli_main(["convert", "ann.jsonl", "--out", "both.jsonl", "--both-orders"]) == 0
    assert cli_main(["select-hard", "ann.jsonl", "--rl-out", "rl", "--sft-out", "sft.jsonl", "--no-balance"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for source, n in (("judge.jsonl", 6), ("both.jsonl", 6), ("rl", 4), ("sft.jsonl", 6)):
        rc, report, _ = _eval(tmp_path, tiny_model_dir, "--benchmark", "pairs", "--data", str(data / source),
                              "--force-output", ALWAYS_ONE, output=f"{source}.json")
        assert rc == 0 and report["n"] == n, source
        assert report["accuracy"]["order_averaged"]["accuracy"] == 0.5
    held_out, _ = load_benchmark("pairs", "synthetic:4:basic")
    assert [p.id for p in held_out] == [f"synthetic-basic-1000-{i}" for i in range(4)]  # the demo's held-out set
    rc = cli_main(["eval", "--benchmark", "pairs", "--data", "synthetic:4:basic", "--model", tiny_model_dir,
                   "--max-new-tokens", "8", "--force-output", ALWAYS_ONE, "--no-progress"])
    slug = "-".join(tiny_model_dir.rstrip("/").split("/")[-2:])
    assert rc == 0 and (elsewhere / "eval_results" / f"{slug}--pairs-ours-both-k1.json").exists()


def test_bad_judge_rows_are_listed_by_line_and_field(tmp_path, pairs, tiny_model_dir, capsys):
    from stable_reinforce_trl.data.pairs import to_judge_example

    rows = [to_judge_example(p, "1") for p in pairs[:3]]
    for row in rows:
        row["images"] = []
    rows[0]["prompt"][0]["content"] = [{"type": "text", "text": "Which is better?"}]  # not the judge prompt
    del rows[2]["label"]
    del rows[2]["id"]  # still a judge row (prompt), its label missing
    data = tmp_path / "judge.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc, _, _ = _eval(tmp_path, tiny_model_dir, "--benchmark", "pairs", "--data", str(data), "--format", "judge")
    err = capsys.readouterr().err
    assert rc == 2 and "2 row(s)" in err and "Traceback" not in err
    assert "line 1, field 'prompt'" in err and "not the filled judge prompt" in err
    assert "line 3, field 'label'" in err


@pytest.mark.parametrize("extra, message", [
    (["--protocol", "official", "--order", "both"], "fixes the order"),
    (["--k", "0"], "--k must be >= 1"),
    (["--data", "synthetic:many"], "synthetic:N"),
    (["--data", "nodir/such.jsonl"], "no such local file or folder, and not loadable as a Hub dataset"),
    (["--model", "/no/such/judge"], "cannot load a judge"),
])
def test_user_mistakes_exit_2_with_one_message(tmp_path, tiny_model_dir, capsys, extra, message):
    args = ["eval", "--benchmark", "vl-rewardbench", "--data", "synthetic:4", "--model", tiny_model_dir,
            "--output", str(tmp_path / "out.json"), "--no-progress"]
    for i in range(0, len(extra), 2):
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i : i + 2]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "out.json").exists()
