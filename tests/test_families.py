"""Judges on today's base models: the tiny Qwen3-VL and Qwen3.5 beside Qwen2.5-VL, through the paths a user
takes (make-tiny-model, the drop-in trainer, the SFT recipe, the Judge API)."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer
from stable_reinforce_trl.cli import main as cli
from stable_reinforce_trl.data.loaders import load_judge_dataset
from stable_reinforce_trl.data.synthetic import make_synthetic_pairs, synthetic_judge_dataset
from stable_reinforce_trl.judge import Judge
from stable_reinforce_trl.prompts import completion_text, generation_opening
from stable_reinforce_trl.tiny import FAMILIES
from stable_reinforce_trl.video import FRAME_RATE
from stable_reinforce_trl.vision_tokens import vision_placeholder_ids

from .test_video_training import FRAMES, mixed_pairs  # noqa: F401  (a fixture)

# family -> (model class, processor class, what its generation prompt writes of the answer)
EXPECTED = {
    "qwen2.5-vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", ""),
    "qwen3-vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", ""),
    "qwen3.5": ("Qwen3_5ForConditionalGeneration", "Qwen3VLProcessor", "<think>\n"),
}
NEW_FAMILIES = [f for f in FAMILIES if f != "qwen2.5-vl"]  # the default family's paths have their own tests


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    """Each family's tiny judge, written by the command a user runs."""
    dirs = {}
    for family in FAMILIES:
        path = tmp_path_factory.mktemp(family)
        assert cli(["make-tiny-model", str(path), "--family", family]) == 0
        dirs[family] = str(path)
    return dirs


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_loads_through_the_auto_classes_with_its_own_template(family, family_dirs):
    model_cls, processor_cls, opening = EXPECTED[family]
    model = AutoModelForImageTextToText.from_pretrained(family_dirs[family])
    processor = AutoProcessor.from_pretrained(family_dirs[family])
    assert (type(model).__name__, type(processor).__name__) == (model_cls, processor_cls)
    assert generation_opening(processor) == opening
    # The four placeholders the trainer keeps out of generation, at the tokenizer's ids.
    tokens = processor.tokenizer.convert_ids_to_tokens(vision_placeholder_ids(model.config))
    assert sorted(tokens) == sorted(["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"])
    # A real image goes through the real processor and the forward.
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which colour?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.new("RGB", (56, 56), "red")], return_tensors="pt")
    assert math.isfinite(model(**inputs).logits.float().sum().item())


def written_after_the_prompt(family: str, reasoning: str) -> str:
    """What a trained judge of `family` writes after the generation prompt: for Qwen3.5 its think block is
    already open there."""
    answer = f"{reasoning}</think><answer>1</answer>"
    return answer if EXPECTED[family][2] else "<think>" + answer


class RecordingReward:
    __name__ = "recording_reward"

    def __init__(self):
        self.completions = []

    def __call__(self, prompts, completions, **columns):
        self.completions += [completion_text(c) for c in completions]
        return [float(len(completion_text(c)) % 3) for c in completions]


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_drop_in_trainer_trains_each_family_and_rewards_read_the_whole_answer(family, family_dirs, tmp_path):
    reward = RecordingReward()
    args = StableReinforceConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4, max_completion_length=12,
        max_steps=2, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, bf16=False, seed=0,
        log_completions=False, learning_rate=1e-3,
    )  # fmt: skip
    trainer = StableReinforceTrainer(family_dirs[family], reward, args=args, train_dataset=synthetic_judge_dataset(8))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logs) == 2 and all(math.isfinite(e["loss"]) for e in logs)
    assert any(not p.equal(before[n]) for n, p in trainer.model.named_parameters())
    assert len(reward.completions) == 16  # a generation per step, each 2 prompts (one pair, both orders) x 4
    opening = EXPECTED[family][2]
    assert all(c.startswith(opening) for c in reward.completions)
    if opening:  # the rewards see the opening; the policy never wrote it
        assert not any(c[len(opening) :].startswith(opening) for c in reward.completions)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_sft_recipe_trains_each_family(family, family_dirs, tmp_path, capsys):
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny-cpu" / "sft.yaml"
    out = tmp_path / "sft"
    assert cli(["sft", "--config", str(recipe), "--model_name_or_path", family_dirs[family], "--output_dir", str(out),
                "--max_steps", "2", "--save_strategy", "no", "--report_to", "none"]) == 0  # fmt: skip
    assert type(AutoModelForImageTextToText.from_pretrained(out)).__name__ == EXPECTED[family][0]


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_judge_api_reads_each_familys_answer(family, family_dirs):
    written = written_after_the_prompt(family, "Red is right.")
    judge = Judge.from_pretrained(family_dirs[family], backend="transformers", force_output=written, max_new_tokens=24,
                                  device="cpu")  # fmt: skip
    result = judge.compare("Which colour?", "Red.", "Blue.", images=[Image.new("RGB", (56, 56), "red")])
    assert result.verdicts == [1, 2] and result.invalid == 0  # "1" in the swapped order names Response 2
    assert all(r == "Red is right." for r in result.reasoning)


# Qwen3-VL and Qwen3.5 write a timestamp before each temporal patch (2 frames) of a video, from its frame rate.
TIMESTAMPS = [f"<{(2 * t + 0.5) / FRAME_RATE:.1f} seconds>" for t in range(FRAMES // 2)]


def timestamps(processor, ids) -> list[str]:
    return re.findall(r"<[0-9.]+ seconds>", processor.decode(ids))


class RecordsPrompts(StableReinforceTrainer):
    """The trainer as it is, keeping the prompt ids each generation batch was sampled from."""

    prompt_ids = ()

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.prompt_ids = [*self.prompt_ids, *output["prompt_ids"]]
        return output


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_native_video_and_frames_as_images_train_each_family(
    family, family_dirs, mixed_pairs, tmp_path  # noqa: F811  (the fixture imported above)
):
    from .test_video_training import vision_grids

    args = StableReinforceConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=2, max_completion_length=8,
        max_steps=2, logging_steps=1, learning_rate=1e-3, report_to="none", save_strategy="no", use_cpu=True,
        bf16=False, seed=0, log_completions=False,
    )  # fmt: skip
    trainer = RecordsPrompts(family_dirs[family], RecordingReward(), args=args,
                             train_dataset=load_judge_dataset(mixed_pairs, num_frames=FRAMES))  # fmt: skip
    before = {n: p.detach().clone() for n, p in trainer.model.model.visual.named_parameters()}
    seen, handle = vision_grids(trainer.model)
    trainer.train()
    handle.remove()
    assert trainer.state.global_step == 2
    assert (2, 4, 4) in seen and (1, 4, 4) in seen  # the video (2 temporal patches) and the image, under gradients
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.model.visual.named_parameters())
    # The policy sampled from prompts whose frames carry their time at FRAME_RATE (transformers' default: 24 fps).
    stamps = [timestamps(trainer.processing_class, ids) for ids in trainer.prompt_ids]
    assert sorted(map(tuple, stamps)) == [()] * 8 + [tuple(TIMESTAMPS)] * 8

    reward = RecordingReward()
    frames = load_judge_dataset(mixed_pairs, num_frames=FRAMES, frames_as_images=True)
    trainer = StableReinforceTrainer(family_dirs[family], reward, args=args, train_dataset=frames)
    trainer.train()
    assert trainer.state.global_step == 2 and len(reward.completions) == 16


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_sft_recipe_trains_native_video_on_each_family(
    family, family_dirs, mixed_pairs, tmp_path  # noqa: F811  (the fixture imported above)
):
    from stable_reinforce_trl.scripts import sft

    from .test_video_training import TINY, recipe_args

    trainer = sft.main(*sft.make_parser().parse_args_and_config(
        recipe_args(TINY / "sft.yaml", family_dirs[family], tmp_path / "sft", mixed_pairs, "--report_to", "none")
    ))  # fmt: skip
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["step"] for e in logs] == [1, 2] and all(e["grad_norm"] > 0 for e in logs)
    video_row = next(row for row in trainer.train_dataset if row["videos"])
    batch = trainer.data_collator([video_row])
    assert timestamps(trainer.processing_class, batch["input_ids"][0]) == TIMESTAMPS
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4]]


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_judge_api_reads_a_native_video_on_each_family(family, family_dirs):
    written = written_after_the_prompt(family, "It moves.")
    judge = Judge.from_pretrained(family_dirs[family], backend="transformers", force_output=written, max_new_tokens=24,
                                  device="cpu")  # fmt: skip
    frames = [Image.new("RGB", (56, 56), (60 * i, 0, 200)) for i in range(FRAMES)]
    result = judge.compare("What moves?", "A square.", "Nothing.", video=frames)
    assert result.verdicts == [1, 2] and result.invalid == 0


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_eval_cli_scores_each_family(family, family_dirs, tmp_path):
    """`stable-reinforce eval` on a pairs file: a judge that always names Response 1 is right in one order only."""
    from stable_reinforce_trl.data.records import pair_to_record

    records = [pair_to_record(p, tmp_path / "media") for p in make_synthetic_pairs(4, seed=5)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    written = written_after_the_prompt(family, "ok")
    output = tmp_path / "report.json"
    assert cli(["eval", "--benchmark", "pairs", "--data", str(tmp_path / "pairs.jsonl"), "--model", family_dirs[family],
                "--max-new-tokens", "12", "--force-output", written, "--output", str(output), "--no-progress"]) == 0
    report = json.loads(output.read_text())
    assert report["p_verdict_1"] == 1.0 and report["parse_failure_rate"] == 0.0 and report["overall"] == 0.0
    assert report["accuracy_by_order"]["chosen_first"] == {"n": 4, "accuracy": 1.0}


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_rl_recipe_under_accelerate_launch_on_each_family(
    family, family_dirs, mixed_pairs, tmp_path  # noqa: F811  (the fixture imported above)
):
    """The tiny RL recipe, as `accelerate launch` runs it on 2 processes, from each family's tiny judge, on
    image and video pairs."""
    from .test_recipes import launch, ok, rl_args, step_logs

    out = tmp_path / "rl"
    result = launch(2, "stable_reinforce.py", *rl_args(family_dirs[family], out), "--max_steps", "2", "--save_steps",
                    "2", "--dataset_name", str(mixed_pairs), "--generation_batch_size", "8")  # fmt: skip
    ok(result)
    assert "A video of 4 frames at 56x56 costs" in result.stderr  # a generation batch held a video
    logs = step_logs(out)
    assert [e["step"] for e in logs] == [1, 2] and all(math.isfinite(e["loss"]) for e in logs)
    assert type(AutoModelForImageTextToText.from_pretrained(out)).__name__ == EXPECTED[family][0]


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_lora_cold_start_then_rl_with_kl_on_each_family(family, family_dirs, tmp_path):
    """The options a TRL user sets, on each family: a LoRA cold start merged into the base, then LoRA RL with a
    KL term (`beta`; TRL's reference is the base with the adapter disabled) and unscaled rewards."""
    from safetensors.torch import load_file

    from stable_reinforce_trl.scripts import rl, sft

    from .test_recipes import TINY, rl_args

    lora = ("--use_peft", "--lora_target_modules", "q_proj", "v_proj", "--save_strategy", "no", "--max_steps", "2")
    sft.main(*sft.make_parser().parse_args_and_config(
        ["--config", str(TINY / "sft.yaml"), "--model_name_or_path", family_dirs[family], "--output_dir",
         str(tmp_path / "sft"), "--report_to", "none", *lora]
    ))  # fmt: skip
    merged = tmp_path / "sft" / "merged"
    base = load_file(Path(family_dirs[family]) / "model.safetensors")
    changed = {k for k, v in load_file(merged / "model.safetensors").items() if not torch.equal(v, base[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    assert type(AutoModelForImageTextToText.from_pretrained(merged)).__name__ == EXPECTED[family][0]

    trainer = rl.main(*rl.make_parser().parse_args_and_config(rl_args(
        merged, tmp_path / "rl", *lora, "--beta", "0.04", "--scale_rewards", "none", "--log_completions", "false",
        "--report_to", "none",
    )))  # fmt: skip
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert trainer.ref_model is None and len(logs) == 2
    assert all(math.isfinite(e["kl"]) and math.isfinite(e["loss"]) for e in logs)
    assert (tmp_path / "rl" / "adapter_model.safetensors").exists()
