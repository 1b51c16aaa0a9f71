"""benchmarks/cold_start_sight.py: reading a judge's sampled traces against the image's true colour."""

from benchmarks.cold_start_sight import SHOWS, TRUTH, read_traces


def test_the_trace_and_the_truth_are_read_from_the_synthetic_texts():
    from stable_reinforce_trl.data.synthetic import make_synthetic_pairs, synthetic_trace

    pair = make_synthetic_pairs(1, seed=3, difficulty="basic")[0]
    truth = TRUTH.search(pair.chosen).group(1)
    trace = synthetic_trace(f"a {truth} circle", pair.chosen, pair.rejected, "1")
    assert truth in ("red", "blue") and SHOWS.search(trace).group(1) == truth


def test_every_sample_is_counted_once_as_reasoned_or_terse(tiny_model_dir):
    read = read_traces(tiny_model_dir, seed=0, pairs=4, k=2)
    counts = read["counts"]
    assert counts["samples"] == 4 * 2 * 2  # pairs x k x both orders
    assert counts["reasoned"] + counts["terse"] == counts["samples"]
    assert counts["saw"] <= counts["reasoned"] and counts["right_saw"] <= counts["saw"]
    assert all(v is None or 0.0 <= v <= 1.0 for k, v in read.items() if k != "counts")
