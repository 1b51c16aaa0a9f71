"""The names TRL's test files import from their `tests/testing_utils.py`, written here with TRL's meaning.

TRL's own module is not copied: each decorator skips on the condition its name states, and `TrlTestCase` gives each
test a fresh `self.tmp_dir`. The runner copies this file beside the upstream test file as `testing_utils.py`.
"""

import importlib.util

import pytest
import torch


def _skip_unless(condition: bool, reason: str):
    return pytest.mark.skipif(not condition, reason=reason)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _accelerator() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


require_peft = _skip_unless(_has("peft"), "test requires peft")
require_bitsandbytes = _skip_unless(_has("bitsandbytes"), "test requires bitsandbytes")
require_jmespath = _skip_unless(_has("jmespath"), "test requires jmespath")
require_kernels = _skip_unless(_has("kernels"), "test requires kernels")
require_liger_kernel = _skip_unless(_has("liger_kernel"), "test requires liger-kernel")
require_vllm = _skip_unless(_has("vllm"), "test requires vllm")
require_vision = _skip_unless(_has("PIL") and _has("torchvision"), "test requires vision extras (PIL, torchvision)")
require_torch_accelerator = _skip_unless(_accelerator(), "test requires an accelerator")
require_ampere_or_newer = _skip_unless(
    torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8, "test requires an Ampere or newer GPU"
)


class TrlTestCase:
    @pytest.fixture(autouse=True)
    def _trl_tmp_dir(self, tmp_path):
        self.tmp_dir = str(tmp_path)
