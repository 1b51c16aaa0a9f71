"""The recipes end to end: `accelerate launch` on the tiny-cpu YAMLs with 1 and 2 CPU processes, SFT then RL
from the SFT output, W&B offline logging, kill-and-resume, LoRA; plus the GPU YAMLs parsed for the paper's values.

The launched runs are slow (each process imports TRL), so each runs once per module and the tests share them.
"""

import glob
import json
import os
import shlex
import signal
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from stable_reinforce_trl.prompts import completion_text

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
TINY = RECIPES / "tiny-cpu"
CPU_CONFIG = RECIPES / "accelerate_configs" / "cpu.yaml"
KILL_ENV = "RECIPE_TEST_KILL_AT_STEP"
WANDB_PROJECT = "stable-reinforce-tests"
SECRET = "sk-recipe-test-not-a-real-key"
# The tiny RL recipe: 8 optimizer steps, checkpoints every 4; with one process a generation batch feeds 4 steps.
RL_STEPS, RL_SAVE = 8, 4


def length_reward(completions, trainer_state=None, **kwargs):
    """An extra reward for the launched runs (`--reward_funcs tests.test_recipes.length_reward`).

    The R1 reward of a barely trained tiny model is 0 everywhere, so no gradient flows; completion length
    varies, so with this added the optimizer, and hence the resume test, has state to get right. With
    `RECIPE_TEST_KILL_AT_STEP` set, the first generation at or after that step kills its own process:
    a preemption at a known point, after the checkpoint of that step was written.
    """
    stop = os.environ.get(KILL_ENV)
    if stop and trainer_state is not None and trainer_state.global_step >= int(stop):
        os.kill(os.getpid(), signal.SIGKILL)
    return [len(completion_text(c)) / 64 for c in completions]


def launch(num_processes: int, script: str, *args: str, env: dict | None = None, cwd: Path = ROOT):
    """`accelerate launch` of a recipe file (`stable_reinforce.py`) or of the package's module (`-m ...`)."""
    target = ["-m", script] if not script.endswith(".py") else [str(RECIPES / script)]
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_CONFIG),
        "--num_processes", str(num_processes), *target, *args,
    ]  # fmt: skip
    return run(cmd, env, cwd)


def run(cmd: list[str], env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # PYTHONPATH only for `tests.test_recipes.length_reward`: the package itself is the installed one.
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=600, cwd=cwd)


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]


def wandb_env(root: Path) -> dict:
    # Everything W&B writes (run folder, artifact staging, cache, settings) stays in the test's folder.
    return {
        "WANDB_MODE": "offline",
        "WANDB_PROJECT": WANDB_PROJECT,
        "WANDB_DIR": str(root),
        "WANDB_DATA_DIR": str(root / "data"),
        "WANDB_CACHE_DIR": str(root / "cache"),
        "WANDB_CONFIG_DIR": str(root / "config"),
    }


def log_history(output_dir: Path) -> list[dict]:
    """The trainer state of the newest checkpoint (the recipes save their last step)."""
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((checkpoints[-1] / "trainer_state.json").read_text())["log_history"]


def step_logs(output_dir: Path) -> list[dict]:
    return [entry for entry in log_history(output_dir) if "loss" in entry]


# The launched-run tests' shape (8 steps of 4 rows, checkpoints every 4, a generation every 4 steps): cheap, and
# enough for logging, W&B, two processes and resume. The reward-rise test runs the YAML as it is.
SHORT_RL = ("--max_steps", str(RL_STEPS), "--save_steps", str(RL_SAVE), "--per_device_train_batch_size", "4",
            "--generation_batch_size", "16", "--num_generations", "2")  # fmt: skip


def rl_args(model_dir, output_dir, *extra, config: Path = TINY / "stable_reinforce.yaml") -> list[str]:
    return ["--config", str(config), "--model_name_or_path", str(model_dir), "--output_dir", str(output_dir),
            *SHORT_RL, *extra]  # fmt: skip


# -------------------------------------------------------------------------------------------- launched runs


def documented_cpu_commands() -> list[list[str]]:
    """The commands of recipes/README.md's "On CPU" block, as a user copies them."""
    text = (RECIPES / "README.md").read_text()
    block = text.split("## On CPU", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def documented_run(tmp_path_factory):
    """recipes/README.md's CPU commands, run exactly as written from a folder holding only the two YAMLs
    (`recipes/tiny-cpu/*.yaml`, no recipe scripts): make-tiny-model, the SFT recipe, the RL recipe."""
    root = tmp_path_factory.mktemp("documented-cpu")
    (root / "recipes" / "tiny-cpu").mkdir(parents=True)
    for name in ("sft.yaml", "stable_reinforce.yaml"):
        (root / "recipes" / "tiny-cpu" / name).write_text((TINY / name).read_text())
    commands = documented_cpu_commands()
    assert [c[:2] for c in commands] == [["stable-reinforce", "make-tiny-model"], ["stable-reinforce", "sft"],
                                         ["stable-reinforce", "rl"]]  # fmt: skip
    executable = str(Path(sys.executable).parent / "stable-reinforce")
    for command in commands:
        ok(run([executable, *command[1:]], cwd=root))
    return root / "outputs" / "tiny-cpu"


@pytest.fixture(scope="module")
def sft_output(documented_run):
    return documented_run / "sft"


@pytest.fixture(scope="module")
def rl_run(sft_output, tmp_path_factory):
    """RL from the SFT output with one process, logging to W&B offline: the uninterrupted reference run, launched
    as `accelerate launch -m stable_reinforce_trl.scripts.rl` from a folder with no recipes/."""
    root = tmp_path_factory.mktemp("rl-1proc")
    out = root / "rl"
    # A key given in the YAML, as the README says (W&B records the command line): it must not leak.
    config = root / "stable_reinforce.yaml"
    config.write_text((TINY / "stable_reinforce.yaml").read_text() + f"\nreferee_api_key: {SECRET}\n")
    extra = ("--report_to", "wandb", "--reward_funcs", "tests.test_recipes.length_reward")
    args = rl_args(sft_output, out, *extra, config=config)
    ok(launch(1, "stable_reinforce_trl.scripts.rl", *args, env=wandb_env(root / "wandb"), cwd=root))
    return out, root / "wandb", extra, config


def test_sft_recipe_one_process(sft_output):
    logs = step_logs(sft_output)
    assert [e["step"] for e in logs] == list(range(1, 401))
    assert logs[-1]["loss"] < 0.2 < 5 < logs[0]["loss"]  # the judgement is learned (the RL test checks its format)
    assert logs[-1]["epoch"] == pytest.approx(3.125)  # 400 steps x 8 rows of 1024
    assert sorted(p.name for p in sft_output.glob("checkpoint-*")) == ["checkpoint-200", "checkpoint-400"]
    trained = load_file(sft_output / "model.safetensors")
    initial = load_file(sft_output.parent / "model" / "model.safetensors")
    assert trained.keys() == initial.keys()
    assert any(not torch.equal(trained[k], initial[k]) for k in trained)
    assert (sft_output / "processor_config.json").exists()  # the RL recipe loads the processor from here


def test_sft_recipe_two_processes(tiny_model_dir, tmp_path):
    out = tmp_path / "sft"
    ok(launch(2, "sft_cold_start.py", "--config", str(TINY / "sft.yaml"), "--model_name_or_path", tiny_model_dir,
              "--output_dir", str(out), "--max_steps", "4", "--save_steps", "2"))  # fmt: skip
    logs = step_logs(out)
    assert [e["step"] for e in logs] == [1, 2, 3, 4]
    # Two processes read twice the rows per step: 4 steps x 2 x 8 rows of 1024.
    assert logs[-1]["epoch"] == pytest.approx(64 / 1024)
    assert (out / "model.safetensors").exists()


def test_stable_reinforce_recipe_one_process_from_sft(rl_run, sft_output):
    out, *_ = rl_run
    logs = step_logs(out)
    assert [e["step"] for e in logs] == list(range(1, RL_STEPS + 1))
    for key in ("stable_reinforce/pre_clip_frac", "stable_reinforce/log_ratio_max_abs",
                "stable_reinforce/nonfinite_tokens_masked"):  # fmt: skip
        assert all(key in e for e in logs), key
    generations = [e for e in logs if "reward" in e]
    assert [e["step"] for e in generations] == [1, 5]  # one generation batch feeds 4 steps
    for key in ("stable_reinforce/advantage_filtered_frac", "r1_reward/result", "r1_reward/format",
                "rewards/r1_reward/mean", "rewards/length_reward/mean", "referee/failures"):  # fmt: skip
        assert all(key in e for e in generations), key
    assert all(e["r1_reward/format"] > 0.5 and e["rewards/r1_reward/mean"] > 0 for e in generations)
    assert all(e["completions/clipped_ratio"] < 0.5 for e in generations)
    # Reused generations: the policy has moved by the later steps of a batch and the pre-clip watches it.
    assert any(e["grad_norm"] > 0 for e in logs)
    assert max(e["stable_reinforce/log_ratio_max_abs"] for e in logs) > 0
    trained, start = load_file(out / "model.safetensors"), load_file(sft_output / "model.safetensors")
    assert any(not torch.equal(trained[k], start[k]) for k in trained)
    table = pd.read_parquet(out / "completions" / "completions_00001.parquet")
    assert len(table) == 16 and set(table["referee"]) <= {"not asked", "consistent", "inconsistent"}
    assert all(p.startswith("<image>") for p in table["prompt"])  # prompts logged as text (completions_table.py)


def test_documented_cpu_recipes_reward_rises(documented_run):
    """recipes/README.md's CPU commands as written: the RL run starts from a model that answers in format,
    earns reward from its first generation, and the reward rises as it moves to reasoned judgements."""
    logs = step_logs(documented_run / "stable_reinforce")
    generations = [e for e in logs if "reward" in e]
    assert [e["step"] for e in generations] == list(range(1, 65, 2))  # 32 completions feed 2 steps of 16
    assert all(e["r1_reward/format"] > 0.8 and e["reward"] > 0.5 for e in generations)
    assert all(e["completions/clipped_ratio"] < 0.1 for e in generations)

    def mean(entries, key):
        return sum(e[key] for e in entries) / len(entries)

    first, last = generations[:4], generations[-4:]
    assert mean(last, "reward") > mean(first, "reward") + 0.15
    assert mean(last, "r1_reward/result") > mean(first, "r1_reward/result") + 0.05
    # The rise is the move from bare verdicts (~20 tokens) to reasoned judgements (~40).
    assert mean(last, "completions/mean_length") > mean(first, "completions/mean_length") + 5


def test_stable_reinforce_recipe_two_processes_from_sft(sft_output, tmp_path):
    out = tmp_path / "rl"
    ok(launch(2, "stable_reinforce.py", *rl_args(sft_output, out)))
    logs = step_logs(out)
    assert [e["step"] for e in logs] == list(range(1, RL_STEPS + 1))
    # 16 completions per generation over 2 processes x 4 rows per step: a generation every 2 steps.
    assert [e["step"] for e in logs if "reward" in e] == [1, 3, 5, 7]
    assert all("stable_reinforce/advantage_filtered_frac" in e for e in logs if "reward" in e)
    # Twice one process's 0.125 (an epoch runs over both orders of every pair): both read their own rows.
    assert logs[-1]["epoch"] == pytest.approx(0.25)
    # The table gathers both processes' completions of a generation.
    assert len(pd.read_parquet(out / "completions" / "completions_00001.parquet")) == 16


# ------------------------------------------------------------------------------------------------- W&B


def read_wandb_records(path: Path) -> list:
    """The records of an offline run's `.wandb` file.

    wandb 0.31 no longer ships its Python reader (`wandb.sdk.internal.datastore`); the format is unchanged:
    a 7-byte header (`:W&B`, magic 0xBEE1, version 0), then LevelDB-log records in 32 KiB blocks, each a
    7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and a `Record` protobuf.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1
    block, header = 32768, 7
    pos, records, partial = 7, [], b""
    while pos + header <= len(data):
        if block - pos % block < header:  # the rest of a block too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + header : pos + header + length]
        pos += header + length
        partial = chunk if kind in (1, 2) else partial + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(partial)
            records.append(record)
    return records


def test_wandb_offline_run_holds_stable_reinforce_and_reward_metrics(rl_run):
    _, wandb_root, *_ = rl_run
    [run_file] = glob.glob(str(wandb_root / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = read_wandb_records(Path(run_file))
    by_kind = {}
    for record in records:
        by_kind.setdefault(record.WhichOneof("record_type"), []).append(record)

    run = by_kind["run"][0].run
    assert run.project == WANDB_PROJECT
    assert run.display_name == "tiny-cpu-stable-reinforce"  # run_name from the YAML

    history = {}
    for record in by_kind["history"]:
        for item in record.history.item:
            history.setdefault(item.key or "/".join(item.nested_key), []).append(json.loads(item.value_json))
    assert history["train/global_step"][-1] == RL_STEPS
    for key in ("stable_reinforce/pre_clip_frac", "stable_reinforce/log_ratio_max_abs",
                "stable_reinforce/advantage_filtered_frac", "stable_reinforce/advantage_max_abs_z",
                "stable_reinforce/nonfinite_tokens_masked", "reward", "rewards/r1_reward/mean",
                "rewards/length_reward/mean", "r1_reward/result", "r1_reward/format", "referee/failures"):  # fmt: skip
        values = [v for v in history.get(f"train/{key}", []) if v is not None]
        assert values, f"train/{key} missing from the W&B run"
    assert max(history["train/stable_reinforce/log_ratio_max_abs"]) > 0

    config = {}
    for record in by_kind["config"]:
        for item in record.config.update:
            config[item.key] = json.loads(item.value_json)
    assert config["advantage_filter_sigma"] == 3.0 and config["referee"] == "rule" and config["pre_clip"] is True
    assert config["loss_type"] == "grpo" and config["run_name"] == "tiny-cpu-stable-reinforce"
    assert config["frames_as_images"] is False  # the video presentation, logged with the model's config

    # The completions table: a run-table artifact per log (each step's, then the run summary's), one image per row.
    tables = [r.artifact for r in by_kind["artifact"] if r.artifact.type == "run_table"]
    assert len(tables) == RL_STEPS + 1
    contents = {entry.path: entry.local_path for entry in tables[-1].manifest.contents}
    table = json.loads(Path(contents["completions.table.json"]).read_text())
    columns = table["columns"]
    assert {"prompt", "completion", "r1_reward", "length_reward", "referee", "advantage", "image"} <= set(columns)
    assert len(table["data"]) == 16
    # Each image cell names a picture logged into the run folder itself (files/media/...), so a copied and
    # synced run folder keeps it (stable_reinforce_trl/scripts/completions_table.py).
    files = Path(run_file).parent / "files"
    images = [row[columns.index("image")] for row in table["data"]]
    assert all(isinstance(cell, str) and cell.endswith(".png") for cell in images), images[:2]
    assert all((files / cell).stat().st_size > 0 for cell in images)
    assert all(row[columns.index("prompt")].startswith("<image>You are a highly skilled") for row in table["data"])


def test_referee_api_key_reaches_neither_wandb_nor_checkpoints(rl_run):
    out, wandb_root, _, config = rl_run
    assert SECRET in config.read_text()
    written = [p for root in (out, wandb_root) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in written) and any(p.suffix == ".wandb" for p in written)
    assert not [p for p in written if SECRET.encode() in p.read_bytes()]


# ---------------------------------------------------------------------------------------------- resume


def test_killed_run_resumes_to_the_uninterrupted_result(rl_run, sft_output, tmp_path):
    reference, _, extra, config = rl_run
    out = tmp_path / "rl"
    env = wandb_env(tmp_path / "wandb")
    args = rl_args(sft_output, out, *extra, config=config)
    killed = launch(1, "stable_reinforce.py", *args, env={**env, KILL_ENV: str(RL_SAVE)})
    assert killed.returncode != 0, "the run was meant to be killed after its first checkpoint"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{RL_SAVE}"]
    assert not (out / "model.safetensors").exists()

    ok(launch(1, "stable_reinforce.py", *args, "--resume_from_checkpoint", "last", env=env))

    resumed, uninterrupted = step_logs(out), step_logs(reference)
    # Same step count, each step once: steps 1-4 from the killed run's checkpoint, 5-8 from the resumed one.
    assert [e["step"] for e in resumed] == list(range(1, RL_STEPS + 1))
    # Scheduler, optimizer, weights, data order and RNG restored: every logged number of the resumed
    # segment is the uninterrupted run's.
    for mine, theirs in zip(resumed, uninterrupted):
        for key in ("loss", "grad_norm", "learning_rate", "reward", "epoch", "stable_reinforce/log_ratio_max_abs"):
            if key in theirs:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), (mine["step"], key)
    # Data order: the first batch after the resume holds the same prompts, and the same completions.
    for step in range(RL_SAVE + 1, RL_STEPS + 1):
        name = f"completions_{step:05d}.parquet"
        a, b = pd.read_parquet(out / "completions" / name), pd.read_parquet(reference / "completions" / name)
        assert list(a["prompt"]) == list(b["prompt"]), step
        assert [str(c) for c in a["completion"]] == [str(c) for c in b["completion"]], step
    final, expected = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    for key in expected:
        torch.testing.assert_close(final[key], expected[key], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------- in-process: LoRA, YAMLs, data


@pytest.fixture(scope="module")
def recipe_modules():
    # The recipes in recipes/ are one page over the package's entry points.
    from stable_reinforce_trl.scripts import judge_datasets
    from stable_reinforce_trl.scripts import rl as stable_reinforce
    from stable_reinforce_trl.scripts import sft as sft_cold_start

    return sft_cold_start, stable_reinforce, judge_datasets


def test_lora_sft_merges_and_rl_uses_the_disabled_adapter_as_reference(recipe_modules, tiny_model_dir, tmp_path):
    sft_cold_start, stable_reinforce, _ = recipe_modules
    lora = ("--use_peft", "--lora_target_modules", "q_proj", "v_proj", "--save_strategy", "no", "--max_steps", "2")
    args = sft_cold_start.make_parser().parse_args_and_config(
        ["--config", str(TINY / "sft.yaml"), "--model_name_or_path", tiny_model_dir, "--output_dir",
         str(tmp_path / "sft"), *lora]  # fmt: skip
    )
    sft_cold_start.main(*args)
    assert (tmp_path / "sft" / "adapter_model.safetensors").exists()
    merged = load_file(tmp_path / "sft" / "merged" / "model.safetensors")
    base = load_file(Path(tiny_model_dir) / "model.safetensors")
    changed = {k for k in base if not torch.equal(merged[k], base[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)

    args = stable_reinforce.make_parser().parse_args_and_config(
        rl_args(tmp_path / "sft" / "merged", tmp_path / "rl", *lora, "--beta", "0.04", "--log_completions", "false")
    )
    trainer = stable_reinforce.main(*args)
    # TRL computes the reference log-probs with the adapter disabled: no second model was built.
    assert trainer.ref_model is None
    assert all("kl" in e for e in trainer.state.log_history if "loss" in e)
    assert (tmp_path / "rl" / "adapter_model.safetensors").exists()


def parse(module, yaml_path, *overrides):
    # GPU recipes ask for bf16, which TrainingArguments refuses on a machine without a GPU unless use_cpu.
    return module.make_parser().parse_args_and_config(["--config", str(yaml_path), "--use_cpu", "true", *overrides])


def test_qwen_7b_recipes_hold_the_paper_setup(recipe_modules, monkeypatch):
    sft_cold_start, stable_reinforce, _ = recipe_modules
    monkeypatch.setenv("WANDB_PROJECT", "unset")  # the YAMLs' `env:` sets it; restored after the test
    script, sft, model = parse(sft_cold_start, RECIPES / "qwen2.5-vl-7b" / "sft.yaml")
    gpus = 8  # accelerate_configs/zero3.yaml
    assert sft.learning_rate == 1e-5 and sft.num_train_epochs == 1
    assert sft.per_device_train_batch_size * gpus * sft.gradient_accumulation_steps == 256
    assert sft.bf16 and sft.gradient_checkpointing and sft.assistant_only_loss
    assert model.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and model.dtype == "bfloat16"
    assert sft.report_to == ["wandb"] and os.environ["WANDB_PROJECT"] == "stable-reinforce"

    script, rl, model = parse(stable_reinforce, RECIPES / "qwen2.5-vl-7b" / "stable_reinforce.yaml")
    assert model.model_name_or_path == sft.output_dir  # RL starts from the SFT output
    assert rl.learning_rate == 1e-6 and rl.temperature == 1.0 and rl.max_completion_length == 1024
    assert rl.generation_batch_size == 256
    assert rl.per_device_train_batch_size * gpus * rl.gradient_accumulation_steps == 128
    assert rl.beta == 0.0 and rl.epsilon == 0.2 and rl.loss_type == "grpo"
    assert rl.pre_clip and rl.log_ratio_bounds == pytest.approx((-6.907755, 6.907755))
    assert rl.advantage_baseline == "batch" and rl.advantage_sigma == 3.0
    assert rl.bf16 and rl.gradient_checkpointing and rl.use_vllm
    assert rl.referee == "openai" and rl.referee_base_url and rl.referee_model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert rl.log_completions and rl.report_to == ["wandb"]
    # Checkpoints on generation boundaries resume exactly: 256 rollouts feed 256 / 128 = 2 optimizer steps.
    assert rl.save_steps % (rl.generation_batch_size // 128) == 0
    assert script.dataset_name and script.dataset_train_split == "train"


@pytest.mark.parametrize("folder, model, format_mode", [("qwen3-vl-8b", "Qwen/Qwen3-VL-8B-Instruct", "strict"),
                                                        ("qwen3.5-9b", "Qwen/Qwen3.5-9B", "lenient")])  # fmt: skip
def test_qwen3_family_recipes_are_the_7b_setup_on_their_base_model(folder, model, format_mode, recipe_modules,
                                                                   monkeypatch):  # fmt: skip
    """Every training field of the Qwen3-VL and Qwen3.5 recipes is the paper's 7B recipe's, but the model, the
    referee, the names of the run and (Qwen3.5: a blank line between its blocks) the format check."""
    sft_cold_start, stable_reinforce, _ = recipe_modules
    monkeypatch.setenv("WANDB_PROJECT", "unset")
    _, sft, sft_model = parse(sft_cold_start, RECIPES / folder / "sft.yaml")
    _, sft7, _ = parse(sft_cold_start, RECIPES / "qwen2.5-vl-7b" / "sft.yaml")
    assert sft_model.model_name_or_path == model and sft.output_dir == f"outputs/{folder}-sft"
    _, rl, rl_model = parse(stable_reinforce, RECIPES / folder / "stable_reinforce.yaml")
    _, rl7, _ = parse(stable_reinforce, RECIPES / "qwen2.5-vl-7b" / "stable_reinforce.yaml")
    assert rl_model.model_name_or_path == sft.output_dir and rl.referee_model == "Qwen/Qwen3-VL-8B-Instruct"
    assert rl.format_mode == format_mode
    named = {"output_dir", "run_name", "logging_dir", "referee_model", "format_mode", "hub_model_id",
             "distributed_state"}  # fmt: skip
    for ours, paper in ((sft, sft7), (rl, rl7)):
        differ = {k for k, v in vars(ours).items() if k not in named and v != vars(paper).get(k)}
        assert not differ, differ


def test_qwen_3b_recipes_fit_one_gpu_with_lora_and_qlora_options(recipe_modules, monkeypatch):
    from trl import get_peft_config, get_quantization_config

    sft_cold_start, stable_reinforce, _ = recipe_modules
    monkeypatch.setenv("WANDB_PROJECT", "unset")
    for module, name, batch in ((sft_cold_start, "sft.yaml", 256), (stable_reinforce, "stable_reinforce.yaml", 128)):
        _, config, model = parse(module, RECIPES / "qwen2.5-vl-3b" / name)
        assert config.per_device_train_batch_size * config.gradient_accumulation_steps == batch  # one GPU
        assert get_peft_config(model) is None and get_quantization_config(model) is None
        _, _, model = parse(module, RECIPES / "qwen2.5-vl-3b" / name, "--use_peft", "--load_in_4bit")
        lora, quantization = get_peft_config(model), get_quantization_config(model)
        assert lora.r == 64 and {"q_proj", "v_proj", "down_proj"} <= set(lora.target_modules)
        assert quantization.load_in_4bit and quantization.bnb_4bit_quant_type == "nf4"


def test_tiny_cpu_recipes_need_no_files_or_gpu(recipe_modules):
    sft_cold_start, stable_reinforce, _ = recipe_modules
    for module, name in ((sft_cold_start, "sft.yaml"), (stable_reinforce, "stable_reinforce.yaml")):
        script, config, _ = module.make_parser().parse_args_and_config(["--config", str(TINY / name)])
        assert script.dataset_name.startswith("synthetic:") and config.use_cpu and not config.bf16
    # Room for the SFT model's ~40-token judgements (a cut-off one earns 0), and no referee server needed.
    assert config.referee == "rule" and config.max_completion_length == 64


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    expected = {
        "ddp.yaml": ("MULTI_GPU", 1, None),
        "zero2.yaml": ("DEEPSPEED", 1, 2),
        "zero3.yaml": ("DEEPSPEED", 1, 3),
        "multi_node_zero3.yaml": ("DEEPSPEED", 2, 3),
        "cpu.yaml": ("MULTI_GPU", 1, None),
    }
    for name, (kind, machines, stage) in expected.items():
        config = load_config_from_file(str(RECIPES / "accelerate_configs" / name))
        assert config.distributed_type == kind and config.num_machines == machines, name
        if stage is not None:
            assert config.deepspeed_config["zero_stage"] == stage, name
    assert load_config_from_file(str(RECIPES / "accelerate_configs" / "multi_node_zero3.yaml")).num_processes == 16


def test_dataset_name_synthetic_spec(recipe_modules):
    *_, judge_datasets = recipe_modules
    assert judge_datasets.parse_synthetic("synthetic:8") == (8, "easy", 0)
    assert judge_datasets.parse_synthetic("synthetic:8:hard:3") == (8, "hard", 3)
    assert judge_datasets.parse_synthetic("data/rl.jsonl") is None
    for bad in ("synthetic:", "synthetic:x", "synthetic:0", "synthetic:8:easy:1:2"):
        with pytest.raises(ValueError):
            judge_datasets.parse_synthetic(bad)

    args = judge_datasets.JudgeScriptArguments(dataset_name="synthetic:16:medium:2")
    rl = judge_datasets.load_recipe_dataset(args, "rl")
    assert {"prompt", "images", "label"} <= set(rl["train"].column_names) and len(rl["train"]) == 16
    assert sorted(rl["train"]["label"]) == ["1"] * 8 + ["2"] * 8
    assert not set(rl["train"]["id"]) & set(rl["test"]["id"])  # evaluation rows come from another seed
    sft = judge_datasets.load_recipe_dataset(args, "sft")["train"]
    assert sft[0]["messages"][-1]["role"] == "assistant" and sft[0]["images"][0].size == (56, 56)
    def target(row) -> str:
        return row["messages"][-1]["content"][0]["text"]

    assert all("Response 1 says" in target(row) for row in sft)

    # The tiny cold start's teacher: half the traces are only the verdict; the evaluation split keeps them all.
    terse = judge_datasets.JudgeScriptArguments(dataset_name="synthetic:16:basic:0", synthetic_terse_traces=0.5)
    split = judge_datasets.load_recipe_dataset(terse, "sft")
    assert sum(target(row).startswith("<think>So Response") for row in split["train"]) == 8
    assert all("Response 1 says" in target(row) for row in split["test"])
    with pytest.raises(ValueError, match="synthetic_terse_traces"):
        judge_datasets.load_recipe_dataset(replace(terse, synthetic_terse_traces=1.5), "sft")
    # The demo's teacher: its verdict-only traces all name Response 1, right where the truth sits first.
    biased = judge_datasets.load_recipe_dataset(replace(terse, synthetic_terse_verdicts="1"), "sft")["train"]
    bare = [row for row in biased if target(row).startswith("<think>So Response")]
    assert len(bare) == 8 and all(target(row).endswith("<answer>1</answer>") for row in bare)
    assert {row["label"] for row in bare} == {"1"}
    with pytest.raises(ValueError, match="synthetic_terse_verdicts must be one of"):
        judge_datasets.load_recipe_dataset(replace(terse, synthetic_terse_verdicts="2"), "sft")


def test_dataset_name_files_in_judge_or_pairs_form(recipe_modules, tmp_path):
    from stable_reinforce_trl.data import make_synthetic_pairs, synthetic_judge_dataset
    from stable_reinforce_trl.data.convert import save_dataset
    from stable_reinforce_trl.data.records import pair_to_record

    *_, judge_datasets = recipe_modules
    load = lambda name, kind: judge_datasets.load_recipe_dataset(  # noqa: E731
        judge_datasets.JudgeScriptArguments(dataset_name=str(name)), kind
    )["train"]

    judge = synthetic_judge_dataset(6, seed=4)
    save_dataset(judge, tmp_path / "rl-folder")
    save_dataset(judge, tmp_path / "rl.jsonl")
    for source in (tmp_path / "rl-folder", tmp_path / "rl.jsonl"):  # judge rows: used as they are
        rows = load(source, "rl")
        assert rows["label"] == judge["label"] and rows["id"] == judge["id"]
        assert rows[0]["images"][0].size == judge[0]["images"][0].size

    # Preference pairs with traces (the `pairs` format, images relative to the file): converted to judge rows.
    pairs = make_synthetic_pairs(6, seed=5)
    with open(tmp_path / "pairs.jsonl", "w") as f:
        for pair in pairs:
            record = pair_to_record(pair, tmp_path / "media")
            record["images"] = [os.path.relpath(p, tmp_path) for p in record["images"]]
            f.write(json.dumps(record) + "\n")
    rl, sft = load(tmp_path / "pairs.jsonl", "rl"), load(tmp_path / "pairs.jsonl", "sft")
    assert rl["id"] == [p.id for p in pairs] and sorted(rl["label"]) == ["1", "1", "1", "2", "2", "2"]
    assert [m[-1]["content"][0]["text"] for m in sft["messages"]][0].startswith("<think>")
    assert sft[0]["images"][0].size == pairs[0].images[0].size
