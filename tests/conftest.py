import os

import pytest

# Offline by necessity: nothing in the suite may reach a model hub or W&B's servers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny model's matrices are too small to gain from threads, and on a shared 2-core machine extra
# threads only contend (measured: 1 thread is up to 8x faster here). Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from stable_reinforce_trl.tiny import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-qwen2.5-vl")))


@pytest.fixture(scope="session")
def formatted_judge_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model after a short real SFT run that teaches it one well-formed judgement, answering "1".

    A random model never produces a parseable, correct answer, so the referee (asked only about
    correct answers) would never be called; this model does, every time its label is "1".
    """
    from trl import SFTConfig, SFTTrainer

    from stable_reinforce_trl.data.synthetic import make_synthetic_pairs
    from stable_reinforce_trl.data.pairs import sft_dataset

    pairs = make_synthetic_pairs(16, seed=7)
    for pair in pairs:
        pair.reasoning, pair.reasoning_label = "So Response 1 is better.", "1"
    out = tmp_path_factory.mktemp("formatted-judge")
    config = SFTConfig(
        output_dir=str(out), max_steps=40, per_device_train_batch_size=8, learning_rate=1e-2, assistant_only_loss=True,
        gradient_checkpointing=False, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = SFTTrainer(model=tiny_model_dir, args=config, train_dataset=sft_dataset(pairs))
    trainer.train()
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    return str(out)
