"""The README's "Swap your trainer" block runs as written: with the line it tells CPU users to add, the tiny
model for the 7B one, tiny sizes, and a pairs file like the one it describes."""

import json
import re
from pathlib import Path

from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def snippet() -> str:
    section = README.read_text().split("## Swap your trainer", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_swap_your_trainer_snippet_trains(tiny_model_dir, tmp_path, monkeypatch):
    code = snippet()
    assert 'model="Qwen/Qwen2.5-VL-7B-Instruct"' in code and "use_cpu=True, bf16=False" in README.read_text()
    rows = []
    for i, (colour, other) in enumerate([("red", "blue"), ("blue", "red")] * 2):
        Image.new("RGB", (56, 56), colour).save(tmp_path / f"{i}.png")
        rows.append({"id": str(i), "prompt": "What colour is the image?", "chosen": f"It is {colour}.",
                     "rejected": f"It is {other}.", "image": f"{i}.png"})  # fmt: skip
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    cpu = ('use_cpu=True, bf16=False, max_steps=1, per_device_train_batch_size=8, max_completion_length=8, '
           'report_to="none", save_strategy="no")')  # fmt: skip
    run = code.replace('"Qwen/Qwen2.5-VL-7B-Instruct"', repr(tiny_model_dir)).replace("num_iterations=2)",
                                                                                       "num_iterations=2, " + cpu)
    assert run != code and cpu in run
    scope: dict = {}
    exec(compile(run, str(README), "exec"), scope)
    trainer = scope["trainer"]
    assert trainer.state.global_step == 1 and len(scope["dataset"]) == 4
    assert set(scope["dataset"]["label"]) == {"1", "2"}
    logged = trainer.state.log_history[0]
    assert "stable_reinforce/pre_clip_frac" in logged and "r1_reward/format" in logged
    # and the synthetic alternative the block names builds the same columns
    synthetic = scope["synthetic_judge_dataset"](8)
    assert {"prompt", "images", "label"} <= set(synthetic.column_names)
