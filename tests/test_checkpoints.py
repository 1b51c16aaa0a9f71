"""Checkpoints of the tiny Qwen2.5-VL come back exactly: resume and `load_best_model_at_end`, each parameter in
its own dtype (bf16 body, fp32 head under `cast_lm_head_to_fp32`), with no log filter left behind."""

import logging

import pytest
import torch
from transformers import TrainerCallback

from stable_reinforce_trl import StableReinforceTrainer

from .test_trainer import make_config
from .trl_helpers import colour_judge_dataset, verdict_reward

BF16_WITH_FP32_HEAD = dict(model_init_kwargs={"dtype": torch.bfloat16}, cast_lm_head_to_fp32=True)


@pytest.fixture(scope="module")
def untied_model_dir(tmp_path_factory):
    # TRL's cast_lm_head_to_fp32 cannot handle Qwen2.5-VL with tied embeddings (it looks for
    # `model.model.embed_tokens`); the 7B unties them, and so does this model.
    from stable_reinforce_trl.tiny import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("untied"), tie_word_embeddings=False))


def params(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class Snapshots(TrainerCallback):
    """The model's parameters after each optimizer step, by global step."""

    def __init__(self):
        self.by_step = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = params(model)


def assert_same(actual: dict, expected: dict):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name].dtype == expected[name].dtype, name
        assert torch.equal(actual[name], expected[name]), name


def test_resume_restores_every_parameter_exactly_in_its_own_dtype(untied_model_dir, tmp_path):
    config = make_config(tmp_path, max_steps=1, save_strategy="steps", save_steps=1, **BF16_WITH_FP32_HEAD)
    first = StableReinforceTrainer(untied_model_dir, verdict_reward, args=config, train_dataset=colour_judge_dataset(8))
    first.train()
    saved = params(first.model)
    assert saved["lm_head.weight"].dtype == torch.float32
    assert {p.dtype for name, p in saved.items() if name != "lm_head.weight"} == {torch.bfloat16}

    second = StableReinforceTrainer(untied_model_dir, verdict_reward, args=config, train_dataset=colour_judge_dataset(8))
    assert not torch.equal(second.model.lm_head.weight, saved["lm_head.weight"])  # the initial weights
    second._load_from_checkpoint(str(tmp_path / "out" / "checkpoint-1"))
    assert_same(params(second.model), saved)
    assert not logging.getLogger("transformers.trainer").filters  # the key-warning filter was for that call only


def test_load_best_model_at_end_loads_the_best_checkpoints_weights(untied_model_dir, tmp_path):
    calls = []

    def fading_reward(completions, **kwargs):
        # Each call scores lower than the one before, so the first evaluation (step 1) is the best.
        calls.append(1)
        return [10.0 / len(calls) + 0.01 * i for i in range(len(completions))]

    config = make_config(
        tmp_path, max_steps=3, num_iterations=1, steps_per_generation=1, save_strategy="steps", save_steps=1,
        eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=4, load_best_model_at_end=True,
        metric_for_best_model="reward", greater_is_better=True, **BF16_WITH_FP32_HEAD,
    )  # fmt: skip
    snapshots = Snapshots()
    trainer = StableReinforceTrainer(
        untied_model_dir, fading_reward, args=config, train_dataset=colour_judge_dataset(8),
        eval_dataset=colour_judge_dataset(4), callbacks=[snapshots],
    )  # fmt: skip
    trainer.train()
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-1")
    final = params(trainer.model)
    assert any(not torch.equal(final[n], snapshots.by_step[3][n]) for n in final)  # not simply the last step
    assert_same(final, snapshots.by_step[1])
    assert not logging.getLogger("transformers.trainer").filters


@pytest.mark.parametrize("tied", [False, True])
def test_restore_goes_tensor_by_tensor_through_sharded_safetensors_exactly(tied, untied_model_dir, tiny_model_dir,
                                                                            tmp_path):  # fmt: skip
    from transformers import AutoModelForImageTextToText

    from stable_reinforce_trl.checkpoints import load_checkpoint_weights

    source = tiny_model_dir if tied else untied_model_dir
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.bfloat16)
    if not tied:
        model.lm_head.to(torch.float32)  # cast_lm_head_to_fp32's mixed dtypes
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.save_pretrained(tmp_path / "ckpt", max_shard_size="100KB")
    assert len(list((tmp_path / "ckpt").glob("model-*.safetensors"))) > 2  # several shards, an index
    fresh = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.bfloat16)
    if not tied:
        fresh.lm_head.to(torch.float32)
    assert load_checkpoint_weights(fresh, str(tmp_path / "ckpt"))
    assert_same(params(fresh), params(model))
    assert fresh.lm_head.weight.data_ptr() == fresh.model.language_model.embed_tokens.weight.data_ptr() or not tied

    other = AutoModelForImageTextToText.from_pretrained(untied_model_dir if tied else tiny_model_dir)
    with pytest.raises(KeyError):  # tied and untied disagree on lm_head: strict either way
        load_checkpoint_weights(other, str(tmp_path / "ckpt"))
    (tmp_path / "bin").mkdir()
    torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")  # an older run's .bin checkpoint
    assert not load_checkpoint_weights(fresh, str(tmp_path / "bin"))  # left to the whole-model fallback
