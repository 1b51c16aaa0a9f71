"""Run TRL's `tests/test_grpo_trainer.py` twice, stock and with only its import swapped, and compare the outcomes.

Both runs get the same file, the same offline stand-ins (see `standins.py`) and the same compatibility rewrites; the
swapped run differs by exactly one line, the import. TRL's file itself is not part of this repository: it is read
from `upstream/` (fetched once, from GitHub at the installed TRL's tag, or copied there by hand; `SOURCE.json` says
which), and pytest never collects it from there (`conftest.py` here ignores the folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from .standins import FULL_VOCAB_TESTS, NOT_STOOD_IN

HERE = Path(__file__).parent
REPO = HERE.parents[1]
UPSTREAM = HERE / "upstream"
TEST_FILE = "test_grpo_trainer.py"
STOCK_IMPORT = "from trl import GRPOConfig, GRPOTrainer"
SWAPPED_IMPORT = (
    "from stable_reinforce_trl import StableReinforceConfig as GRPOConfig, StableReinforceTrainer as GRPOTrainer"
)
# Rewrites applied identically to both runs, each for a name the file imports that the installed TRL no longer has.
COMPAT = [
    (
        "from trl.trainer.utils import get_kbit_device_map\n",
        "try:\n    from trl.trainer.utils import get_kbit_device_map\nexcept ImportError:  # gone from TRL 1.16\n"
        "    get_kbit_device_map = None\n",
        "trl.trainer.utils.get_kbit_device_map is gone from the installed TRL; only a GPU-only test calls it",
    ),
]
BF16_NOTE = (
    "transformers' bf16-GPU probe answers yes (the conftest both runs share): GRPOConfig defaults to bf16=True, which "
    "transformers refuses on a CPU-only machine; training then runs on the CPU in bf16 autocast"
)
# Tests skipped unless asked for: on 2 CPU cores each passes TRL's 900 s per-test limit.
TOO_SLOW_ON_CPU = {
    "test_training_with_tools": "51 steps of 128-token completions scored over the full 152k Qwen vocabulary "
    "(its hard-coded tool-call ids need it): over 15 minutes per test on 2 CPU cores",
}
# Loss types whose tests the swapped run is expected to fail: the config refuses them (the pre-clip cannot apply).
REFUSED_LOSS_TYPES = ("cispo", "sapo", "vespo")
DEFAULT_STANDINS = REPO / "outputs" / "trl_upstream" / "standins"
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "trl_grpo_tests.json"


class HarnessError(Exception):
    """A setup problem the user fixes (the upstream file missing, a rewrite that no longer applies)."""


def source_info() -> dict:
    path = UPSTREAM / TEST_FILE
    if not path.exists():
        raise HarnessError(
            f"{path} is missing. Fetch TRL's test file with `python -m tests.trl_upstream --fetch` (needs github.com), "
            f"or copy tests/{TEST_FILE} from a TRL checkout there and describe it in {UPSTREAM / 'SOURCE.json'}."
        )
    text = path.read_text()
    info = json.loads((UPSTREAM / "SOURCE.json").read_text()) if (UPSTREAM / "SOURCE.json").exists() else {}
    info["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    info["git_blob"] = hashlib.sha1(f"blob {len(text.encode())}\0".encode() + text.encode()).hexdigest()
    return info


def fetch(version: str | None = None) -> dict:
    """Download TRL's test file at the tag of the installed (or given) TRL version."""
    import trl

    tag = f"v{version or trl.__version__}"
    url = f"https://raw.githubusercontent.com/huggingface/trl/{tag}/tests/{TEST_FILE}"
    try:
        text = urllib.request.urlopen(url, timeout=30).read().decode()
    except OSError as exc:
        raise HarnessError(f"could not download {url} ({exc}); copy the file into {UPSTREAM} by hand instead") from exc
    UPSTREAM.mkdir(exist_ok=True)
    (UPSTREAM / TEST_FILE).write_text(text)
    (UPSTREAM / "SOURCE.json").write_text(json.dumps({"repo": "huggingface/trl", "ref": tag, "url": url}, indent=2))
    return source_info()


def rewrite(text: str, variant: str) -> str:
    """The file as the given run sees it: the compatibility rewrites, and for "swapped" the import line."""
    for old, new, _ in COMPAT:
        if old in text:
            text = text.replace(old, new)
    if text.count(STOCK_IMPORT + "\n") != 1:
        raise HarnessError(f"TRL's test file no longer has the line {STOCK_IMPORT!r} exactly once")
    if variant == "swapped":
        text = text.replace(STOCK_IMPORT + "\n", SWAPPED_IMPORT + "\n")
    elif variant != "stock":
        raise ValueError(variant)
    return text


CONFTEST = '''\
import os

import pytest

for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}.items():
    os.environ.setdefault(key, value)

import torch  # noqa: E402

torch.set_num_threads(1)

# TRL's GRPOConfig defaults to bf16=True, and transformers accepts that only where it finds a bf16 GPU. These runs
# are CPU-only: the probe answers "yes" so configs validate as on TRL's GPU CI, and training runs on the CPU (in bf16
# autocast, which CPUs support). Both variants get this alike.
import transformers.training_args  # noqa: E402

transformers.training_args.is_torch_bf16_gpu_available = lambda: True

NOT_STOOD_IN = __NOT_STOOD_IN__


FULL_VOCAB_TESTS = __FULL_VOCAB_TESTS__


@pytest.fixture(autouse=True)
def _full_vocab_stand_ins(request, monkeypatch):
    # These tests hard-code Qwen token ids (or rely on a 152k vocabulary): run them where the ids resolve to the
    # full-vocabulary Qwen2 stand-ins (tests/trl_upstream/standins.py says why the others have a small one).
    if any(name in request.node.nodeid for name in FULL_VOCAB_TESTS):
        monkeypatch.chdir(os.path.join(os.path.dirname(os.path.dirname(__file__)), "full-vocab"))


TOO_SLOW_ON_CPU = __TOO_SLOW_ON_CPU__


def pytest_collection_modifyitems(items):
    # A model family with no offline stand-in skips alike in both runs, counted apart from TRL's own skips; so do
    # the tests too slow for a CPU unless the runner was given --with-slow-tests.
    for item in items:
        for name, why in NOT_STOOD_IN.items():
            if name in item.nodeid:
                item.add_marker(pytest.mark.skip(reason=f"no offline stand-in: trl-internal-testing/{name} ({why})"))
        for name, why in TOO_SLOW_ON_CPU.items():
            if name in item.nodeid and os.environ.get("TRL_UPSTREAM_SLOW_TESTS") != "1":
                item.add_marker(pytest.mark.skip(reason=f"too slow on a CPU, run with --with-slow-tests: {why}"))
'''


def prepare(run_dir: Path, variant: str, standins: Path) -> Path:
    """A self-contained folder pytest runs from: tests/ (the rewritten file and helpers) and the stand-ins' link."""
    source_info()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    tests = run_dir / "tests"
    tests.mkdir(parents=True)
    (tests / "__init__.py").write_text("")
    conftest = CONFTEST.replace("__NOT_STOOD_IN__", repr(NOT_STOOD_IN))
    conftest = conftest.replace("__TOO_SLOW_ON_CPU__", repr(TOO_SLOW_ON_CPU))
    (tests / "conftest.py").write_text(conftest.replace("__FULL_VOCAB_TESTS__", repr(FULL_VOCAB_TESTS)))
    shutil.copy(HERE / "testing_utils.py", tests / "testing_utils.py")
    (tests / TEST_FILE).write_text(rewrite((UPSTREAM / TEST_FILE).read_text(), variant))
    (run_dir / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: TRL's slow tests\n")
    (run_dir / "trl-internal-testing").symlink_to(standins.resolve(), target_is_directory=True)
    (run_dir / "full-vocab").mkdir()
    (run_dir / "full-vocab" / "trl-internal-testing").symlink_to(standins.resolve() / "full-vocab", True)
    return run_dir


def run(variant: str, work: Path, standins: Path, select: list[str] | None = None, timeout: int = 5400,
        slow: bool = False) -> dict:
    """Run one variant under pytest; returns its counts and every test's outcome (with the failure's last line)."""
    run_dir = prepare(work / variant, variant, standins)
    report = run_dir / "report.xml"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "timeout=900",
               f"--junitxml={report}"]  # fmt: skip
    # `select` is node ids (tests/test_grpo_trainer.py::...) to run those alone, or pytest options such as -k.
    targets = [arg for arg in select or [] if arg.startswith("tests/")]
    command += (targets or [f"tests/{TEST_FILE}"]) + [arg for arg in select or [] if arg not in targets]
    env = {**os.environ, "HF_HOME": str(run_dir / "hf_home"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO), "TRL_UPSTREAM_SLOW_TESTS": str(int(slow))}  # fmt: skip
    start = time.time()
    log = run_dir / "pytest.log"  # streamed, so a long run can be followed with `tail -f`
    with log.open("w") as out:
        try:
            proc = subprocess.run(command, cwd=run_dir, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"the {variant} run passed --timeout ({timeout} s); its log: {log}") from exc
    if not report.exists():
        raise HarnessError(f"pytest wrote no report (exit {proc.returncode}):\n{log.read_text()[-3000:]}")
    tests = parse_junit(report)
    counts, skips = summarize(tests)
    return {"variant": variant, "exit_code": proc.returncode, "seconds": round(time.time() - start),
            "command": " ".join(["python", *command[1:]]), "counts": counts, "skips": skips, "tests": tests}  # fmt: skip


def summarize(tests: dict[str, dict]) -> tuple[dict, dict]:
    """Counts by outcome, and skips counted by their reason (TRL's own markers apart from missing stand-ins)."""
    counts: dict[str, int] = {}
    skips: dict[str, int] = {}
    for outcome in tests.values():
        counts[outcome["outcome"]] = counts.get(outcome["outcome"], 0) + 1
        if outcome["outcome"] == "skipped":
            skips[outcome["reason"]] = skips.get(outcome["reason"], 0) + 1
    return dict(sorted(counts.items())), dict(sorted(skips.items(), key=lambda kv: -kv[1]))


def merge(full: dict | None, partial: dict) -> dict:
    """A full run with a later selection's outcomes in place of its own for those tests (the rerun is recorded)."""
    if full is None:
        raise HarnessError("--merge needs a full run of that variant in the results file first")
    full = {**full, "tests": {**full["tests"], **partial["tests"]}}
    full["counts"], full["skips"] = summarize(full["tests"])
    full["reruns"] = full.get("reruns", []) + [
        {"command": partial["command"], "finished": partial["finished"], "tests": sorted(partial["tests"])}
    ]
    return full


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^E\s", line)]
    return (errors[-1][1:].strip() if errors else lines[-1] if lines else "")[:400]


def parse_junit(path: Path) -> dict[str, dict]:
    """test id -> {"outcome": passed|failed|error|skipped|xfailed, "reason": ...} from pytest's junit report."""
    tests = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        outcome, reason = "passed", ""
        for child in case:
            if child.tag == "failure":
                outcome, reason = "failed", _last_line(child.get("message", "") + "\n" + (child.text or ""))
            elif child.tag == "error":
                outcome, reason = "error", _last_line(child.get("message", "") + "\n" + (child.text or ""))
            elif child.tag == "skipped":
                xfail = child.get("type") == "pytest.xfail"
                outcome, reason = ("xfailed" if xfail else "skipped"), (child.get("message") or "")[:400]
        tests[name] = {"outcome": outcome, "reason": reason, "seconds": round(float(case.get("time", 0)), 1)}
    return tests


def refused_by_design(test_id: str) -> bool:
    return any(f"[{loss}]" in test_id for loss in REFUSED_LOSS_TYPES)


def compare(stock: dict, swapped: dict) -> dict:
    """Every test whose outcome differs; "unexpected" are the ones that are not a refused loss type."""
    differences = []
    for test_id, before in stock["tests"].items():
        after = swapped["tests"].get(test_id, {"outcome": "missing", "reason": ""})
        if after["outcome"] != before["outcome"]:
            differences.append({"test": test_id, "stock": before["outcome"], "swapped": after["outcome"],
                                "swapped_reason": after["reason"], "refused_by_design": refused_by_design(test_id)})  # fmt: skip
    unexpected = [d["test"] for d in differences if not d["refused_by_design"] and d["stock"] == "passed"]
    return {"differences": differences, "unexpected": unexpected}


# Why a test ends as it does where the cause is known: (regex on the test id, outcome it explains, explanation).
KNOWN = [
    (r"\[(cispo|sapo|vespo)\]", "swapped", "StableReinforceConfig refuses this loss type: it builds its own "
     "objective from the importance ratio instead of PPO's clip, so the pre-clipped PPO loss cannot apply"),
    (r"test_get_sapo_token_loss", "both", "the stored test file predates TRL 1.16, which no longer has "
     "GRPOTrainer.get_sapo_token_loss"),
    (r"test_tool_completion_idx_injection", "both", "the stored test file predates TRL 1.16, whose trainer has no "
     "_tools_accept_completion_idx"),
    (r"Gemma3ForConditionalGeneration|LlavaNextForConditionalGeneration", "both", "no offline stand-in for this "
     "model family (see not_stood_in)"),
]


def explain(record: dict) -> dict[str, str]:
    """test id -> why it fails (or differs), for every stock failure and every difference the KNOWN list covers."""
    notes = {}
    ids = set(record["stock"]["tests"]) | set(record["swapped"]["tests"])
    for test_id in sorted(ids):
        outcomes = {v: record[v]["tests"].get(test_id, {}).get("outcome") for v in ("stock", "swapped")}
        if all(o in ("passed", "skipped", "xfailed") for o in outcomes.values()):
            continue
        for pattern, scope, why in KNOWN:
            if re.search(pattern, test_id) and (scope == "both" or outcomes["stock"] == "passed"):
                notes[test_id] = why
                break
    return notes
