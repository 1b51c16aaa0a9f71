"""`stable-reinforce <command>`: one entry point, each command living beside the code it runs.

Each entry maps a command to `module:function`; the function receives the remaining argv and
builds its own parser, so importing the CLI stays cheap (no torch import for `--help`).

A user's mistake (`UserError`: a missing file, a bad row, an impossible option) ends any command with
one `error: ...` message and exit code 2, never a traceback; a bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from importlib.metadata import PackageNotFoundError, version

USAGE_ERROR = 2  # argparse's exit code for a bad command line; every user error shares it


class UserError(Exception):
    """A mistake in what the user gave (file, row, field or option), with the fix in its message."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so a command stops the same way."""


def stop_on_sigterm_as_on_ctrl_c() -> None:
    """A process manager (Slurm preemption, `docker stop`, Kubernetes) stops a job with SIGTERM, which by
    default kills Python without running any `except KeyboardInterrupt` or `finally`."""

    def terminated(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, terminated)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Module docstrings keep their layout; every option's help ends with its default (once: a help that
    already says its default in words keeps its own wording, and a required one has none)."""

    def _get_help_string(self, action):
        if action.required or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def package_version() -> str:
    try:
        return version("stable-reinforce-trl")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown"

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


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return ("usage: stable-reinforce [--version] <command> [args]\n\ncommands:\n" + "\n".join(lines)
            + "\n\n`stable-reinforce <command> --help` lists a command's options.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"stable-reinforce {package_version()}")
        return 0
    if argv[0] not in COMMANDS:
        what = "option" if argv[0].startswith("-") else "command"
        print(f"{_usage()}\n\nerror: unknown {what} {argv[0]!r}; choose one of: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return USAGE_ERROR
    module_name, func_name = COMMANDS[argv[0]][0].split(":")
    return exit_code(getattr(importlib.import_module(module_name), func_name), argv[1:])


def exit_code(command, argv: list[str] | None = None) -> int:
    """Run a command's `main(argv)`; a `UserError` becomes its one-line message and exit code 2.

    Also the entry of `python -m stable_reinforce_trl.scripts.rl` (what `accelerate launch -m` runs), so a
    typo in a launched recipe reads as it does under `stable-reinforce rl`."""
    try:
        return int(command(argv) or 0)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
