"""The synthetic task and the pair -> judge/SFT conversion."""

from collections import Counter

import pytest

from stable_reinforce_trl.data import (
    PreferencePair,
    SyntheticDifficulty,
    balanced_labels,
    judge_dataset,
    make_synthetic_pairs,
    synthetic_judge_dataset,
    synthetic_sft_dataset,
    to_judge_example,
)
from stable_reinforce_trl.data.synthetic import COLOURS, NUMBERS
from stable_reinforce_trl.prompts import is_well_formatted, judge_text, parse_verdict


def test_balanced_labels_exact_and_seeded():
    labels = balanced_labels(101, seed=3)
    assert Counter(labels) == {"1": 51, "2": 50}
    assert labels == balanced_labels(101, seed=3)
    assert labels != balanced_labels(101, seed=4)


def test_to_judge_example_puts_chosen_at_label():
    pair = PreferencePair(id="a", question="Q?", chosen="good", rejected="bad", images=["/x.png"], category="c")
    first, second = to_judge_example(pair, "1"), to_judge_example(pair, "2")
    assert first["prompt"][0]["content"][-1]["text"] == judge_text("Q?", "good", "bad")
    assert second["prompt"][0]["content"][-1]["text"] == judge_text("Q?", "bad", "good")
    assert (first["label"], second["label"]) == ("1", "2")
    assert first["prompt"][0]["content"][0] == {"type": "image"} and first["images"] == ["/x.png"]


def test_video_frames_go_to_videos_or_images():
    pair = PreferencePair(id="v", question="Q?", chosen="a", rejected="b", video=["/f0.png", "/f1.png"])
    row = to_judge_example(pair, "1")
    assert row["videos"] == [["/f0.png", "/f1.png"]] and row["images"] == []
    assert row["prompt"][0]["content"][0] == {"type": "video"}
    flat = to_judge_example(pair, "2", frames_as_images=True)
    assert "videos" not in flat and flat["images"] == ["/f0.png", "/f1.png"]
    assert [p["type"] for p in flat["prompt"][0]["content"]] == ["image", "image", "text"]


def test_synthetic_is_deterministic_per_seed():
    a, b, c = (make_synthetic_pairs(12, seed=s, difficulty="hard") for s in (5, 5, 6))
    assert [p.chosen for p in a] == [p.chosen for p in b]
    assert [p.images[0].tobytes() for p in a] == [p.images[0].tobytes() for p in b]
    assert [p.chosen for p in a] != [p.chosen for p in c]


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_synthetic_judge_dataset_columns_and_balance(difficulty):
    ds = synthetic_judge_dataset(40, seed=1, difficulty=difficulty)
    assert set(ds.column_names) == {"prompt", "images", "label", "id", "category", "source"}
    assert Counter(ds["label"]) == {"1": 20, "2": 20}
    assert len(set(ds["id"])) == 40
    row = ds[0]
    assert row["images"][0].size[0] <= 112 and row["images"][0].mode == "RGB"
    assert row["prompt"][0]["role"] == "user" and row["source"] == f"synthetic-{difficulty}"
    # the label really is where the chosen response sits
    pair = make_synthetic_pairs(40, seed=1, difficulty=difficulty)[0]
    assert row["prompt"][0]["content"][-1]["text"] == judge_text(pair.question, *pair.responses(row["label"]))


def test_both_orders_gives_each_pair_twice():
    ds = synthetic_judge_dataset(10, seed=0, both_orders=True)
    assert len(ds) == 20
    by_id = Counter((i, l) for i, l in zip(ds["id"], ds["label"]))
    assert all(v == 1 for v in by_id.values()) and len({i for i, _ in by_id}) == 10


def test_sft_rows_are_traces_ending_in_the_verdict():
    ds = synthetic_sft_dataset(30, seed=2, difficulty="medium")
    assert Counter(ds["label"]) == {"1": 15, "2": 15}
    for row in ds:
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        target = assistant["content"][0]["text"]
        assert is_well_formatted(target)
        assert parse_verdict(target) == int(row["label"])
        last_sentence = target.split("</think>")[0].rsplit(". ", 1)[-1]
        assert last_sentence == f"So Response {row['label']} is better."


def test_terse_traces_keep_the_verdict_and_drop_the_reasoning_for_an_exact_share():
    full = make_synthetic_pairs(50, seed=4, difficulty="basic")
    mixed = make_synthetic_pairs(50, seed=4, difficulty="basic", terse_traces=0.6)
    terse = [m for m in mixed if m.reasoning == f"So Response {m.reasoning_label} is better."]
    assert len(terse) == 30  # exactly 60%, not about
    for f, m in zip(full, mixed):  # same pairs, same orders: only the trace's length differs
        same = ("question", "chosen", "rejected", "reasoning_label")
        assert [getattr(f, k) for k in same] == [getattr(m, k) for k in same]
        assert m.reasoning in (f.reasoning, f"So Response {f.reasoning_label} is better.")
    again = make_synthetic_pairs(50, seed=4, difficulty="basic", terse_traces=0.6)
    assert {m.id for m in terse} == {m.id for m in again if m.reasoning.startswith("So ")}  # seeded
    rows = synthetic_sft_dataset(50, seed=4, difficulty="basic", terse_traces=0.6)
    targets = [row["messages"][1]["content"][0]["text"] for row in rows]
    assert sum(t.startswith("<think>So Response") for t in targets) == 30
    assert all(parse_verdict(t) == int(row["label"]) for t, row in zip(targets, rows))
    assert {p.chosen.split()[-1] for p in full} == {"red.", "blue."}  # basic: two colours
    with pytest.raises(ValueError, match="share of the pairs"):
        make_synthetic_pairs(4, terse_traces=1.5)


def test_terse_verdicts_guess_or_name_one_position_and_reasoned_traces_stay_right():
    right = make_synthetic_pairs(50, seed=4, difficulty="basic", terse_traces=0.6)
    for mode in ("guess", "1"):
        teacher = make_synthetic_pairs(50, seed=4, difficulty="basic", terse_traces=0.6, terse_verdicts=mode)
        terse = [t for t in teacher if t.reasoning.startswith("So Response")]
        assert len(terse) == 30
        wrong = [t for t in terse if _dominant_colour(t.images[0]) != t.chosen.split()[-1].rstrip(".")]
        assert len(wrong) == (15 if mode == "guess" else sum(r.reasoning_label == "2" for r in right
                                                             if r.reasoning.startswith("So")))  # fmt: skip
        if mode == "1":  # a position-biased teacher: right exactly where the truth sits first
            assert {t.reasoning_label for t in terse} == {"1"}
            assert 10 < len(wrong) < 20
        for r, t in zip(right, teacher):
            assert t.question == r.question and {t.chosen, t.rejected} == {r.chosen, r.rejected}
            if not t.reasoning.startswith("So Response"):  # a reasoned trace: unchanged, and right
                assert (t.reasoning, t.reasoning_label, t.chosen) == (r.reasoning, r.reasoning_label, r.chosen)
        rows = synthetic_sft_dataset(50, seed=4, difficulty="basic", terse_traces=0.6, terse_verdicts=mode)
        targets = [row["messages"][1]["content"][0]["text"] for row in rows]
        assert all(parse_verdict(t) == int(p.reasoning_label) for t, p in zip(targets, teacher))
    with pytest.raises(ValueError, match="terse_verdicts must be one of"):
        make_synthetic_pairs(4, terse_traces=0.5, terse_verdicts="2")


def _dominant_colour(image) -> str:
    pixels = Counter(p for p in image.getdata() if p != (255, 255, 255))
    rgb = pixels.most_common(1)[0][0]
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], rgb)))


def test_answer_depends_on_the_image_not_the_text():
    pairs = make_synthetic_pairs(600, seed=0, difficulty=SyntheticDifficulty(tasks=("colour", "count"), max_count=4))
    colour = [p for p in pairs if p.category == "colour"]
    # the image shows the chosen colour...
    assert all(_dominant_colour(p.images[0]) == p.chosen.split()[-1].rstrip(".") for p in colour)
    # ...and the text alone does not: chosen and rejected values are drawn from the same distribution
    chosen = Counter(p.chosen.split()[-1] for p in colour)
    rejected = Counter(p.rejected.split()[-1] for p in colour)
    assert max(abs(chosen[k] - rejected[k]) for k in chosen | rejected) < 0.2 * len(colour)
    counts = [p for p in pairs if p.category == "count"]
    bigger = sum(NUMBERS.index(p.chosen.split()[2]) > NUMBERS.index(p.rejected.split()[2]) for p in counts)
    assert 0.35 < bigger / len(counts) < 0.65


def test_bad_difficulty_is_refused():
    with pytest.raises(ValueError, match="difficulty must be one of"):
        make_synthetic_pairs(2, difficulty="impossible")
    with pytest.raises(ValueError, match="one object per grid cell"):
        SyntheticDifficulty(tasks=("count",), max_count=6, distractors=4)
    with pytest.raises(ValueError, match="one object per grid cell"):
        SyntheticDifficulty(grid=1, distractors=1)
    with pytest.raises(ValueError, match="3 for the position task"):
        SyntheticDifficulty(tasks=("position",), grid=1)


def test_grid_one_draws_a_single_object_that_fills_the_image():
    pairs = make_synthetic_pairs(30, seed=0, difficulty="easy")
    for pair in pairs:
        image = pair.images[0]
        coloured = sum(p != (255, 255, 255) for p in image.getdata())
        assert coloured > 0.3 * image.size[0] * image.size[1]  # every image token sees the object
        assert _dominant_colour(image) == pair.chosen.split()[-1].rstrip(".")


def test_judge_dataset_from_in_memory_pairs_round_trips_images():
    pairs = make_synthetic_pairs(4, seed=9)
    ds = judge_dataset(pairs, seed=0)
    assert [r["images"][0].tobytes() for r in ds] == [p.images[0].tobytes() for p in pairs]
