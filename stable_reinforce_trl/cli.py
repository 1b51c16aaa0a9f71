"""`stable-reinforce <command>`: one entry point, each command living beside the code it runs.

Each entry maps a command to `module:function`; the function receives the remaining argv and
builds its own parser, so importing the CLI stays cheap (no torch import for `--help`).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "make-tiny-model": ("stable_reinforce_trl.tiny_cli:main", "build the offline tiny Qwen2.5-VL into a folder"),
    "demo": ("stable_reinforce_trl.demo:main", "SFT cold start -> StableReinforce -> evaluation on CPU"),
    "convert": ("stable_reinforce_trl.data.convert:main", "a preference source -> judge dataset (folder or jsonl)"),
    "annotate": ("stable_reinforce_trl.data.annotate:main", "cold-start traces from a teacher endpoint (resumable)"),
    "select-hard": ("stable_reinforce_trl.data.difficulty:main", "annotations -> SFT traces + RL set of hard pairs"),
    "eval": ("stable_reinforce_trl.evaluation.cli:main", "a judge on a benchmark: both orders, Voting@k, categories"),
    "sft": ("stable_reinforce_trl.scripts.sft:cli_main", "SFT cold start of a judge from a YAML recipe (--config X.yaml)"),
    "rl": ("stable_reinforce_trl.scripts.rl:cli_main", "StableReinforce RL of a judge from a YAML recipe (--config X.yaml)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: stable-reinforce <command> [args]\n\ncommands:\n" + "\n".join(lines))
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module_name, func_name = COMMANDS[argv[0]][0].split(":")
    result = getattr(importlib.import_module(module_name), func_name)(argv[1:])
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
