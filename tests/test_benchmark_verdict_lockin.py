"""benchmarks/verdict_lockin.py (and demo_seeds' resumable per-seed runs under it) on the quick demo."""

import json

from benchmarks import common, demo_seeds, verdict_lockin


def test_lockin_reads_each_generations_verdicts_and_a_rerun_reuses_the_seed(tmp_path, monkeypatch):
    for module in (common, demo_seeds, verdict_lockin):
        monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    argv = ["--seeds", "1", "--jobs", "1", "--output-dir", str(tmp_path / "runs"), "--", "--quick"]
    result = verdict_lockin.main(argv)
    run = result["runs"][0]
    assert run["seed"] == 1 and set(run) >= {"sft", "rl", "curves", "windows"}
    report = json.loads((tmp_path / "runs" / "seed-1" / "report.json").read_text())
    generations = report["plan"]["rl_steps"] // report["plan"]["rl_steps_per_generation"]
    # The quick demo's judge is untrained: its rollouts hold no parseable verdict to split by label, but every
    # generation still says whether some sample was right.
    for name in ("groups_sampling_right", "result_reward"):
        points = run["curves"][name]
        assert points and len(points) <= generations and all(0.0 <= v <= 1.0 for _, v in points), name
    assert set(run["curves"]) == set(verdict_lockin.CURVES)
    assert set(run["windows"]["result_reward"]) == {"first", "middle", "last"}
    assert json.loads((tmp_path / "results" / "verdict_lockin.json").read_text())["runs"][0]["seed"] == 1
    assert (tmp_path / "results" / "verdict_lockin.png").stat().st_size > 10_000
    # A rerun with the same flags reads the finished seed instead of running the demo again.
    log = tmp_path / "runs" / "seed-1" / "terminal.log"
    before = log.stat().st_mtime_ns
    assert verdict_lockin.main(argv)["runs"][0]["rl"] == run["rl"] and log.stat().st_mtime_ns == before


def test_windows_average_the_first_middle_and_last_fifth():
    points = [(step, float(step)) for step in range(1, 11)]
    assert verdict_lockin.windows(points) == {"first": 1.5, "middle": 5.5, "last": 9.5}
    assert verdict_lockin.windows([]) == {"first": None, "middle": None, "last": None}
