"""`stable-reinforce eval` and `evaluate` with the tiny model on small fixture files in each format."""

import json

import datasets
import pytest
from PIL import Image

from stable_reinforce_trl.cli import main as cli_main
from stable_reinforce_trl.data.records import pair_key, pair_to_record
from stable_reinforce_trl.data.synthetic import make_synthetic_pairs
from stable_reinforce_trl.evaluation import GenerationCache, evaluate, load_benchmark, orders_for
from stable_reinforce_trl.judge import Judge
from stable_reinforce_trl.prompts import judge_output, judge_text

ALWAYS_ONE = "<think>ok</think><answer>1</answer>"
VL_SOURCES = ["WildVision", "RLAIF-V", "POVID", "RLHF-V", "MMMU-Pro", "MathVerse", "rlaif-v", "wildvision"]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _png(path, colour="red"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (56, 56), colour).save(path)
    return path.name


@pytest.fixture(scope="module")
def pairs():
    return make_synthetic_pairs(8, seed=5)


@pytest.fixture(scope="module")
def always_one(tiny_model_dir):
    return Judge.from_pretrained(tiny_model_dir, backend="transformers", max_new_tokens=8, force_output=ALWAYS_ONE)


def vl_rewardbench_parquet(tmp_path, pairs):
    """The released layout: two responses, `human_ranking`, `query_source`, the image embedded."""
    rows = []
    for i, p in enumerate(pairs):
        first_preferred = i % 2 == 0
        rows.append({
            "id": f"item-{i}", "query": p.question, "image": p.images[0], "query_source": VL_SOURCES[i],
            "response": [p.chosen, p.rejected] if first_preferred else [p.rejected, p.chosen],
            "human_ranking": [0, 1] if first_preferred else [1, 0],
        })
    features = datasets.Features({
        "id": datasets.Value("string"), "query": datasets.Value("string"), "image": datasets.Image(),
        "query_source": datasets.Value("string"), "response": datasets.List(datasets.Value("string")),
        "human_ranking": datasets.List(datasets.Value("int64")),
    })
    path = tmp_path / "vl_rewardbench.parquet"
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path


def test_always_one_judge_on_vl_rewardbench(tmp_path, pairs, tiny_model_dir, capsys):
    data = vl_rewardbench_parquet(tmp_path, pairs)
    cache = tmp_path / "generations.jsonl"
    reports = {}
    for order in ("both", "chosen-first", "random"):
        output = tmp_path / f"{order}.json"
        rc = cli_main(["eval", "--benchmark", "vl-rewardbench", "--data", str(data), "--model", tiny_model_dir,
                       "--order", order, "--max-new-tokens", "8", "--force-output", ALWAYS_ONE,
                       "--output", str(output), "--cache", str(cache)])
        assert rc == 0
        reports[order] = json.loads(output.read_text())
    both, first, rand = reports["both"], reports["chosen-first"], reports["random"]
    assert first["overall"] == 1.0  # the reference evaluation would report this judge as perfect
    assert both["overall"] == 0.0 and both["any_at_k"] == 0.0
    assert rand["overall"] == 0.5
    assert both["p_verdict_1"] == 1.0 and both["position_bias"] == 1.0 and both["order_consistency"] == 0.0
    assert both["accuracy_by_order"]["chosen_first"] == {"n": 8, "accuracy": 1.0}
    assert both["accuracy_by_order"]["chosen_second"] == {"n": 8, "accuracy": 0.0}
    assert both["parse_failure_rate"] == 0.0
    assert both["categories"] == {
        "general": {"n": 2, "accuracy": 0.0, "any_at_k": 0.0},
        "hallucination": {"n": 4, "accuracy": 0.0, "any_at_k": 0.0},
        "reasoning": {"n": 2, "accuracy": 0.0, "any_at_k": 0.0},
    }
    assert both["macro"] == 0.0 and both["n"] == 8 and both["skipped"]["total"] == 0
    # chosen-first prompts are half of `both`'s: all came from the shared cache
    assert both["samples_generated"] == 16
    assert first["prompts_cached"] == first["prompts"] == 8 and first["samples_generated"] == 0
    assert [both["accuracy"][name]["accuracy"] for name in both["accuracy"]] == [0.5, 0.0, 1.0]
    assert both["accuracy"]["order_averaged"]["categories"]["hallucination"] == {"n": 4, "accuracy": 0.5}
    assert list(rand["accuracy"]) == ["random_order"] and rand["accuracy"]["random_order"]["accuracy"] == 0.5
    markdown = (tmp_path / "both.md").read_text()
    table = markdown[markdown.index("| number |"):]
    assert table.splitlines()[2].startswith("| **order-averaged** accuracy (greedy) | 50.00 | 8 | each pair judged")
    assert "| both orders accuracy (greedy) | 0.00 | 8 |" in markdown
    assert "| chosen first accuracy (greedy) | 100.00 | 8 |" in markdown
    assert "| hallucination | 4 | 50.00 | 0.00 | 100.00 |" in markdown
    assert "| position bias (first - second) | 100.00 |" in markdown
    for named in (f"- model: `{tiny_model_dir}`", f"- data: `{data}` (8 pairs)", "- protocol: `ours`",
                  "- order: `both`", "- k: 1 (greedy)"):
        assert named in markdown
    assert "judging" in capsys.readouterr().err  # the progress bar


def test_converted_vl_rewardbench_ids_give_the_categories(tmp_path, pairs, always_one):
    ids = ["hallucination_pair_1", "RLAIF-V_2", "rlhf-v-3", "Mathverse_4", "MMMU_Pro_5", "wildvision_6",
           "vlfeedback_7", "Hallucination_Pair_8"]
    records = [{**pair_to_record(p, tmp_path / "media"), "id": i, "category": ""} for p, i in zip(pairs, ids)]
    loaded, skipped = load_benchmark("vl-rewardbench", _jsonl(tmp_path / "export.jsonl", records))
    report = evaluate(loaded, always_one, benchmark="vl-rewardbench", progress=False)
    counts = {name: c["n"] for name, c in report["categories"].items()}
    assert counts == {"general": 2, "hallucination": 4, "reasoning": 2}
    assert skipped.total == 0


def mm_rlhf_jsonl(tmp_path, pairs):
    """Pairs grouped by prompt id (g0: 3 pairs, g1: 2, g2: 1, g3: 1 video) in the common converted form."""
    for f in range(3):
        _png(tmp_path / f"clip/{f:03d}.jpg", (f * 80, 0, 0))
    rows = []
    for i, (p, group) in enumerate(zip(pairs, ["g0", "g0", "g0", "g1", "g1", "g2", "g3"])):
        image = "clip" if group == "g3" else _png(tmp_path / f"img{i}.png")
        rows.append({"id": group, "prompt": p.question, "chosen": p.chosen, "rejected": p.rejected, "image": image})
    return _jsonl(tmp_path / "mm_rlhf.jsonl", rows)


def test_known_verdicts_through_the_cache_give_voting_any_and_acc_plus(tmp_path, pairs, always_one):
    """A judge with known verdicts: every sample is written to the generation cache first, so `evaluate`
    generates nothing and its figures follow from the verdicts alone."""
    loaded, _ = load_benchmark("mm-rlhf-rewardbench", mm_rlhf_jsonl(tmp_path, pairs))
    assert loaded[6].video is not None and len(loaded[6].video) == 3
    # per pair, the verdicts (Voting@3 right?, Any@3 right?) for chosen-first and chosen-second:
    chosen_right = {"1": [1, 1, 2], "2": [2, 2, 1]}  # majority right in both orders
    any_right = {"1": [2, 2, 1], "2": [1, "x", 2]}  # majority wrong, one right sample in each
    wrong = {"1": [2, 2, 2], "2": [1, 1, 1]}
    plan = [chosen_right, chosen_right, chosen_right, chosen_right, any_right, wrong, chosen_right]
    cache = GenerationCache(tmp_path / "cache.jsonl", always_one.settings(3))
    for pair, verdicts in zip(loaded, plan):
        for label in ("1", "2"):
            texts = [judge_output("known", v) if v != "x" else "no answer" for v in verdicts[label]]
            cache.add(pair_key(pair), label, texts)
    report = evaluate(loaded, always_one, benchmark="mm-rlhf-rewardbench", k=3, cache=tmp_path / "cache.jsonl",
                      progress=False)
    assert report["samples_generated"] == 0 and report["prompts_cached"] == 14
    assert report["overall"] == pytest.approx(5 / 7)  # Voting@3
    assert report["any_at_k"] == pytest.approx(6 / 7)
    assert report["acc_plus"] == pytest.approx(2 / 4) and report["n_groups"] == 4  # g0 and g3 all right
    assert report["parse_failure_rate"] == pytest.approx(1 / 42)
    assert report["generation"]["do_sample"] and report["generation"]["temperature"] == 1.0


def test_a_killed_run_resumes_from_the_cache(tmp_path, pairs, tiny_model_dir):
    judge = Judge.from_pretrained(tiny_model_dir, backend="transformers", max_new_tokens=4, batch_size=4)
    loaded, _ = load_benchmark("mm-rlhf-rewardbench", mm_rlhf_jsonl(tmp_path, pairs))
    cache = tmp_path / "cache.jsonl"
    first = evaluate(loaded, judge, benchmark="mm-rlhf-rewardbench", k=2, cache=cache, progress=False)
    assert first["samples_generated"] == 28 and first["prompts_cached"] == 0
    # The random tiny judge writes no answer tag: every sample is a parse failure and no pair is right.
    assert first["parse_failure_rate"] == 1.0 and first["overall"] == 0.0 and first["p_verdict_1"] is None
    lines = cache.read_text().splitlines(keepends=True)
    cache.write_text("".join(lines[:3]) + lines[3][:20])  # killed mid-write: one unit whole, one half, a torn line
    resumed = evaluate(loaded, judge, benchmark="mm-rlhf-rewardbench", k=2, cache=cache, progress=False)
    assert resumed["prompts_cached"] == 1 and resumed["samples_generated"] == 25
    kept = [json.loads(line) for line in cache.read_text().splitlines() if line.startswith("{") and line.endswith("}")]
    assert len({(r["pair"], r["order"], r["sample"]) for r in kept}) == 28
    again = evaluate(loaded, judge, benchmark="mm-rlhf-rewardbench", k=2, cache=cache, progress=False)
    assert again["samples_generated"] == 0
    # other settings (k = 1: greedy) share nothing with the sampled run
    assert evaluate(loaded[:1], judge, k=1, cache=cache, progress=False)["samples_generated"] == 2


def test_r1_reward_and_pairs_files(tmp_path, pairs, always_one):
    rows = []
    for i, (p, label) in enumerate(zip(pairs[:4], "1221")):
        a1, a2 = p.responses(label)
        chat = [{"role": "user", "content": [{"type": "image", "image": _png(tmp_path / f"r{i}.png")},
                                             {"type": "text", "text": judge_text(p.question, a1, a2)}]}]
        rows.append({"id": f"r1-{i}", "message": json.dumps(chat), "question": p.question,
                     "answer": [f"<answer>{label}</answer>"]})
    loaded, _ = load_benchmark("pairs", _jsonl(tmp_path / "r1.jsonl", rows))
    assert [p.chosen for p in loaded] == [p.chosen for p in pairs[:4]]
    report = evaluate(loaded, always_one, order="random", seed=1, progress=False)
    assert report["overall"] == 0.5 and report["n"] == 4
    assert report["accuracy_by_order"] == {"chosen_first": {"n": 2, "accuracy": 1.0},
                                           "chosen_second": {"n": 2, "accuracy": 0.0}}
    assert [labels for labels in orders_for(4, "random", 1)].count(("1",)) == 2


def test_missing_images_are_listed_or_skipped(tmp_path, pairs, tiny_model_dir, capsys):
    records = [pair_to_record(p, tmp_path / "media") for p in pairs[:6]]
    records[1]["images"] = ["media/missing-a.png"]
    records[4]["images"] = ["media/missing-b.png"]
    data = _jsonl(tmp_path / "pairs.jsonl", records)
    args = ["eval", "--benchmark", "pairs", "--data", str(data), "--model", tiny_model_dir, "--max-new-tokens", "8",
            "--force-output", ALWAYS_ONE, "--output", str(tmp_path / "out.json"), "--no-progress"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "2 row(s)" in err and "line 2" in err and "line 5" in err
    assert "missing-a.png" in err and "missing-b.png" in err
    assert "--skip-invalid" in err and not (tmp_path / "out.json").exists()
    assert cli_main([*args, "--skip-invalid"]) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["skipped"] == {"total": 2, "reasons": {"missing image": 2}} and report["n"] == 4
    assert "2 invalid rows skipped" in (tmp_path / "out.md").read_text()
