"""Video in training: a dataset mixing image and video pairs trains in StableReinforceTrainer and both
recipes (Qwen2.5-VL's own video input), and is evaluated with the presentation the run recorded."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer
from stable_reinforce_trl.data.loaders import load_judge_dataset
from stable_reinforce_trl.judge import Judge, JudgeRequest
from stable_reinforce_trl.scripts import rl, sft
from stable_reinforce_trl.video import FRAME_RATE, attach_videos, record_presentation, video_token_cost

from .trl_helpers import verdict_reward

FRAMES = 4  # two temporal patches of Qwen2.5-VL's video tower
SIZE = 56
TINY = Path(__file__).resolve().parents[1] / "recipes/tiny-cpu"


@pytest.fixture(scope="module")
def mixed_pairs(tmp_path_factory):
    """A `pairs` jsonl with traces: image pairs and video pairs (a folder of frames) interleaved."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "media/clip").mkdir(parents=True)
    Image.new("RGB", (SIZE, SIZE), "red").save(root / "media/red.png")
    for i in range(FRAMES):
        Image.new("RGB", (SIZE, SIZE), (60 * i, 0, 200)).save(root / f"media/clip/{i:03d}.png")
    rows = []
    for i in range(4):
        rows.append({"id": f"img{i}", "prompt": "What colour?", "chosen": "Red.", "rejected": "Blue.",
                     "image": "media/red.png", "reasoning": "The image is red.", "reasoning_label": "1"})
        rows.append({"id": f"vid{i}", "prompt": "What moves?", "chosen": "A square.", "rejected": "Nothing.",
                     "image": "media/clip", "reasoning": "A square moves.", "reasoning_label": "1"})
    path = root / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def vision_grids(model):
    """Every grid the vision tower encodes while gradients flow: (t, h, w) rows, t = 1 for an image."""
    seen = []

    def hook(module, args, kwargs):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        if torch.is_grad_enabled() and grid is not None:
            seen.extend(tuple(g) for g in grid.tolist())

    return seen, model.model.visual.register_forward_pre_hook(hook, with_kwargs=True)


def test_attach_videos_fills_placeholders_in_order():
    prompt = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q"}]}]
    filled = attach_videos(prompt, [["f0", "f1"]])
    assert filled[0]["content"][0] == {"type": "video", "video": ["f0", "f1"]}
    assert "video" not in prompt[0]["content"][0]  # the dataset row is left alone
    with pytest.raises(ValueError, match="placeholders"):
        attach_videos(prompt, [["a"], ["b"]])


def test_trainer_trains_a_mixed_batch_on_native_video(mixed_pairs, tiny_model_dir, tmp_path, caplog):
    dataset = load_judge_dataset(mixed_pairs, num_frames=FRAMES)
    assert "videos" in dataset.column_names
    config = StableReinforceConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=2, max_completion_length=8,
        num_iterations=2, steps_per_generation=2, learning_rate=1e-3, max_steps=2, logging_steps=1, report_to="none",
        save_strategy="no", use_cpu=True, seed=0, log_completions=False, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = StableReinforceTrainer(tiny_model_dir, verdict_reward, args=config, train_dataset=dataset)
    before = {n: p.detach().clone() for n, p in trainer.model.model.visual.named_parameters()}
    seen, handle = vision_grids(trainer.model)
    seconds = []  # Qwen2.5-VL's time per temporal patch, as every forward got it
    timing = trainer.model.register_forward_pre_hook(
        lambda module, args, kwargs: seconds.extend(kwargs.get("second_per_grid_ts", torch.zeros(0)).tolist()),
        with_kwargs=True,
    )
    with caplog.at_level("WARNING", logger="stable_reinforce_trl.video"):
        trainer.train()
    handle.remove()
    timing.remove()
    assert [e["step"] for e in trainer.state.log_history if "loss" in e] == [1, 2]
    assert (2, 4, 4) in seen and (1, 4, 4) in seen  # the video (4 frames, 2 temporal patches) and the image
    # 2 frames a patch at FRAME_RATE; transformers' default for frames without metadata would be 24 fps.
    assert seconds and set(seconds) == {2 / FRAME_RATE}
    moved = [n for n, p in trainer.model.model.visual.named_parameters() if not torch.equal(p, before[n])]
    assert moved, "the vision tower got no gradient"
    costs = [r.message for r in caplog.records if "prompt tokens as a video" in r.message]
    assert costs == [f"A video of {FRAMES} frames at {SIZE}x{SIZE} costs 8 prompt tokens as a video "
                     "(16 as images with frames_as_images)."]  # logged once, and the numbers are the processor's
    assert video_token_cost(trainer.processing_class, [Image.new("RGB", (SIZE, SIZE))] * FRAMES) == (8, 16)


def recipe_args(config, model, out, data, *extra):
    return ["--config", str(config), "--model_name_or_path", str(model), "--output_dir", str(out),
            "--dataset_name", str(data), "--max_steps", "2", "--save_strategy", "no", *extra]  # fmt: skip


def run(script, args):
    trainer = script.main(*script.make_parser().parse_args_and_config(args))
    return [e for e in trainer.state.log_history if "loss" in e]


@pytest.fixture(scope="module")
def recipe_runs(mixed_pairs, tiny_model_dir, tmp_path_factory):
    """The SFT recipe then the RL recipe on the mixed raw pairs (no flag), in-process."""
    root = tmp_path_factory.mktemp("video-recipes")
    logs = {"sft": run(sft, recipe_args(TINY / "sft.yaml", tiny_model_dir, root / "sft", mixed_pairs))}
    logs["rl"] = run(rl, recipe_args(TINY / "stable_reinforce.yaml", root / "sft", root / "rl", mixed_pairs,
                                     "--generation_batch_size", "8", "--per_device_train_batch_size", "4",
                                     "--num_generations", "2", "--reward_funcs", "tests.test_recipes.length_reward"))
    return root, logs


def test_recipes_train_mixed_pairs_and_record_the_presentation(recipe_runs):
    root, logs = recipe_runs
    for stage in ("sft", "rl"):
        assert [e["step"] for e in logs[stage]] == [1, 2], stage
        assert all(e["grad_norm"] > 0 for e in logs[stage]), stage
        config = json.loads((root / stage / "config.json").read_text())
        assert config["frames_as_images"] is False, stage  # the native video, written with the model


def test_judge_presents_video_as_the_run_recorded(recipe_runs, tmp_path):
    frames = [Image.new("RGB", (SIZE, SIZE), (60 * i, 0, 200)) for i in range(FRAMES)]
    request = JudgeRequest("What moves?", "A square.", "Nothing.", video=frames)
    native = Judge.from_pretrained(recipe_runs[0] / "rl", backend="transformers", max_new_tokens=4, device="cpu")
    assert native.frames_as_images is False
    assert native.compare_many([request])[0].samples  # a real Qwen2.5-VL video input

    # A judge trained on frames as images is shown frames: the recorded setting reaches evaluation.
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(recipe_runs[0] / "rl")
    record_presentation(model, True)
    model.save_pretrained(tmp_path / "frames")
    AutoProcessor.from_pretrained(recipe_runs[0] / "rl").save_pretrained(tmp_path / "frames")
    framed = Judge.from_pretrained(tmp_path / "frames", backend="transformers", max_new_tokens=4, device="cpu")
    assert framed.frames_as_images is True and framed.settings(1)["frames_as_images"] is True
    shown = request.as_images()
    assert shown.video is None and len(shown.images) == FRAMES
    assert [p["type"] for p in shown.messages()[0]["content"]][:FRAMES] == ["image"] * FRAMES
    assert framed.compare_many([request])[0].samples


def test_eval_command_on_mixed_pairs(recipe_runs, mixed_pairs, tmp_path):
    from stable_reinforce_trl.cli import main as cli_main

    output = tmp_path / "eval.json"
    rc = cli_main(["eval", "--benchmark", "pairs", "--data", str(mixed_pairs), "--model", str(recipe_runs[0] / "rl"),
                   "--num-frames", str(FRAMES), "--max-new-tokens", "4", "--backend", "transformers", "--device",
                   "cpu", "--no-cache", "--no-progress", "--output", str(output)])  # fmt: skip
    assert rc == 0
    report = json.loads(output.read_text())
    assert report["n"] == 8 and report["skipped"]["total"] == 0
