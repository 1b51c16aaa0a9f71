"""The completions table on W&B, offline: every image cell points at a picture inside the run folder, so a
run copied to another machine and synced shows its images; and no API key is written anywhere there."""

import json
import os

import pytest

from stable_reinforce_trl import StableReinforceConfig, StableReinforceTrainer
from stable_reinforce_trl.scripts.completions_table import VisionCompletionsTable

from .trl_helpers import colour_judge_dataset, verdict_reward

FAKE_KEY = "sk-test-" + "9" * 32


class Trainer(VisionCompletionsTable, StableReinforceTrainer):
    pass


def test_offline_run_folder_holds_every_table_image_and_no_key(tiny_model_dir, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_PROJECT", "stable-reinforce-tests")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)  # a user's key in the environment must not reach the folder
    args = StableReinforceConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=2, max_completion_length=8,
        max_steps=2, logging_steps=1, report_to="wandb", save_strategy="no", use_cpu=True, seed=0,
        log_completions=True, dataloader_num_workers=0, referee="rule",
    )  # fmt: skip
    dataset = colour_judge_dataset(8)
    trainer = Trainer(model=tiny_model_dir, reward_funcs=verdict_reward, args=args, train_dataset=dataset)
    trainer.train()
    run_dir = wandb.run.dir  # .../offline-run-*/files
    wandb.finish()
    tables = [os.path.join(root, name) for root, _, names in os.walk(run_dir) for name in names
              if name.startswith("completions") and name.endswith(".table.json")]  # fmt: skip
    assert tables, os.listdir(run_dir)
    cells = 0
    for path in tables:
        table = json.load(open(path))
        column = table["columns"].index("image")
        for row in table["data"]:
            cell = row[column]  # the picture's path in the run folder, not the string "Image"
            assert isinstance(cell, str) and cell.endswith(".png"), cell
            assert os.path.isfile(os.path.join(run_dir, cell)), cell
            cells += 1
    assert cells >= 4
    run_folder = os.path.dirname(run_dir)
    for root, _, names in os.walk(run_folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                assert FAKE_KEY.encode() not in f.read(), name
