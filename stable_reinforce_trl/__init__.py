"""StableReinforce (R1-Reward) for Hugging Face TRL.

Names are imported on first use, so `stable-reinforce --help` and the data tools do not pay for
importing TRL and torch.
"""

import logging
from importlib import import_module

# peft imports bitsandbytes whenever it is installed (the `dev` extra has it), and bitsandbytes then warns on every
# run that an optional CPU 4-bit kernel is missing; nothing here runs 4-bit on CPU, so the warning only misleads.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

_EXPORTS = {
    "StableReinforceConfig": ".config",
    "StableReinforceTrainer": ".trainer",
    "JUDGE_PROMPT": ".prompts",
    "judge_messages": ".prompts",
    "parse_verdict": ".prompts",
    "per_token_policy_loss": ".algorithms",
    "pre_clipped_ratio": ".algorithms",
    "stable_reinforce_advantages": ".algorithms",
    "standardize_and_filter": ".algorithms",
    "R1Reward": ".rewards",
    "format_reward": ".rewards",
    "result_reward": ".rewards",
    "Judge": ".judge",
    "JudgeReward": ".judge",
    "best_of_n": ".judge",
    "make_tiny_model": ".tiny",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'stable_reinforce_trl' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
