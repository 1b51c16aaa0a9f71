"""The README and docs/ hold together: every relative link resolves, every page is reachable from the README,
and every command in a code block is either run by a test or listed in docs/gpu-only-commands.txt."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "recipes" / "README.md"]
GPU_ONLY = ROOT / "docs" / "gpu-only-commands.txt"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)

# Where the suite runs each CPU command of a code block, as written (a test reading it from the page, or the
# same command line with only ports, folders or step counts of its own).
RUN_BY = {
    "make test": ".ci/run",
    "make demo": "tests/test_demo.py::test_quick_demo_writes_a_complete_finite_report",
    "stable-reinforce make-tiny-model outputs/tiny-cpu/model": "tests/test_recipes.py::documented_cpu_commands",
    "stable-reinforce sft --config recipes/tiny-cpu/sft.yaml": "tests/test_recipes.py::documented_cpu_commands",
    "stable-reinforce rl --config recipes/tiny-cpu/stable_reinforce.yaml":
        "tests/test_recipes.py::documented_cpu_commands",
    "accelerate launch --config_file recipes/accelerate_configs/cpu.yaml --num_processes 1 -m "
    "stable_reinforce_trl.scripts.sft --config recipes/tiny-cpu/sft.yaml": "tests/test_recipes.py::launch",
    "accelerate launch --config_file recipes/accelerate_configs/cpu.yaml --num_processes 1 -m "
    "stable_reinforce_trl.scripts.rl --config recipes/tiny-cpu/stable_reinforce.yaml": "tests/test_recipes.py::launch",
}  # fmt: skip
LOCAL_ENDPOINT = "## A local endpoint"


def commands(text: str) -> list[str]:
    """The command lines of a page's shell blocks: continuations joined, comments and a trailing `&` dropped."""
    found = []
    for lang, body in BLOCK.findall(text):
        if lang not in ("bash", "sh", "shell"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip().removesuffix("&").strip()
            if line:
                found.append(" ".join(line.split()))
    return found


def gpu_only() -> set[str]:
    lines = (line.strip() for line in GPU_ONLY.read_text().splitlines())
    return {" ".join(line.split()) for line in lines if line and not line.startswith("#")}


def local_endpoint_block() -> list[str]:
    section = (ROOT / "recipes" / "README.md").read_text().split(LOCAL_ENDPOINT, 1)[1].split("\n## ", 1)[0]
    return commands(section)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                headings = {slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(), re.M)}
                if anchor not in headings:
                    broken.append(f"{page.relative_to(ROOT)}: {target} (no heading #{anchor})")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_reachable_from_the_readme():
    seen, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md" or not page.exists():
            continue
        seen.add(page)
        todo += [(page.parent / t.partition("#")[0]).resolve() for t in LINK.findall(page.read_text())
                 if not re.match(r"[a-z]+:", t) and t.partition("#")[0]]  # fmt: skip
    assert set(PAGES) <= seen, sorted(str(p.relative_to(ROOT)) for p in set(PAGES) - seen)


def test_every_code_block_command_is_run_by_a_test_or_listed_gpu_only():
    documented = {c for page in PAGES for c in commands(page.read_text())}
    local = set(local_endpoint_block())
    listed = gpu_only()
    unaccounted = documented - listed - set(RUN_BY) - local
    assert not unaccounted, "run these in a test or add them to docs/gpu-only-commands.txt:\n" + "\n".join(
        sorted(unaccounted))
    assert not (listed - documented), f"listed GPU-only but in no page: {sorted(listed - documented)}"
    assert not (set(RUN_BY) - documented), f"RUN_BY names commands no page shows: {set(RUN_BY) - documented}"
    assert not (listed & (set(RUN_BY) | local)), "a command is both run by a test and listed GPU-only"
    for command, where in RUN_BY.items():
        path, _, name = where.partition("::")
        source = (ROOT / path).read_text()
        assert not name or re.search(rf"def {name}\(", source), f"{command!r}: {where} does not exist"
        assert command.split()[0] in source or "README.md" in source, f"{where} runs nothing like {command!r}"


def test_makefile_demo_is_the_cli_demo_the_quick_test_runs():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: .*\n\t\$\(VENV\)/bin/stable-reinforce demo \$\(DEMO_ARGS\)$", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_endpoint_block_runs_as_written(tmp_path):
    """recipes/README.md's local-endpoint block, line by line from a folder holding only the tiny RL recipe:
    a teacher server, annotate, select-hard, a referee server, make-tiny-model, two RL steps against it.
    Only the ports are the test's own (two free ones for 8000 and 8001)."""
    block = local_endpoint_block()
    assert [c.split()[:3] for c in block] == [
        ["python", "-m", "stable_reinforce_trl.openai_server"], ["stable-reinforce", "annotate", "synthetic:16:basic"],
        ["stable-reinforce", "select-hard", "data/annotations.jsonl"], ["python", "-m", "stable_reinforce_trl.openai_server"],
        ["stable-reinforce", "make-tiny-model", "outputs/tiny-cpu/model"], ["stable-reinforce", "rl", "--config"],
    ]  # fmt: skip
    (tmp_path / "recipes" / "tiny-cpu").mkdir(parents=True)
    recipe = ROOT / "recipes" / "tiny-cpu" / "stable_reinforce.yaml"
    (tmp_path / "recipes" / "tiny-cpu" / "stable_reinforce.yaml").write_text(recipe.read_text())
    ports = {"8000": str(free_port()), "8001": str(free_port())}
    bin_dir = Path(sys.executable).parent
    servers, outputs = [], []
    try:
        for command in block:
            argv = [re.sub(r"\b(8000|8001)\b", lambda m: ports[m.group(1)], a) for a in command.split()]
            argv[0] = sys.executable if argv[0] == "python" else str(bin_dir / argv[0])
            if "openai_server" in command:
                server = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
                servers.append(server)
                assert "serving" in server.stdout.readline()  # ready before the next command
                continue
            result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
            outputs.append(result.stdout + result.stderr)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    annotate, select = outputs[0], outputs[1]
    assert re.search(r"succeeded: \d+", annotate) and (tmp_path / "data" / "annotations.jsonl").exists()
    assert "RL set" in select and (tmp_path / "data" / "rl.jsonl").exists()
    checkpoints = sorted((tmp_path / "outputs").glob("**/checkpoint-2"))
    trained = [p for p in (tmp_path / "outputs").glob("**/model.safetensors") if "tiny-cpu/model" not in str(p)]
    assert checkpoints or trained, sorted(str(p) for p in (tmp_path / "outputs").glob("**/*"))[:50]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_paragraph_is_repeated(page):
    paragraphs = [" ".join(p.split()) for p in page.read_text().split("\n\n") if len(p.split()) > 12]
    repeated = {p for p in paragraphs if paragraphs.count(p) > 1}
    assert not repeated, repeated


def test_readme_fits_ten_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_demo_seed_tables_are_the_committed_benchmarks():
    """The README's and docs/demo.md's seed tables are what `benchmarks.demo_seeds --table` prints from the
    committed JSON: a rerun of the sweep that changes a figure fails here until the pages are rewritten."""
    from benchmarks.demo_seeds import seed_table, summary_table

    assert summary_table().strip() in (ROOT / "README.md").read_text()
    demo = (ROOT / "docs" / "demo.md").read_text()
    assert seed_table().strip() in demo and summary_table().strip() in demo
    assert not re.search(r"\bDEMO_SEEDS_\w+", (ROOT / "README.md").read_text() + demo)


TABLE_MARK = re.compile(r"<!-- [\w-]+: written by `python -m benchmarks\.(verdict_lockin|cold_start_sight) --table"
                        r"(?: --name (\S+))?` -->\n(.*?)<!-- /", re.S)


def test_benchmark_tables_in_the_demo_page_are_the_committed_benchmarks():
    """Each table docs/demo.md marks as written by `benchmarks.verdict_lockin` or `cold_start_sight` is what
    that command prints from the committed JSON."""
    import importlib

    marks = TABLE_MARK.findall((ROOT / "docs" / "demo.md").read_text())
    assert len(marks) >= 6, marks  # the lock-in arms and the cold starts, old plan and new
    for module, name, text in marks:
        table = importlib.import_module(f"benchmarks.{module}").table
        assert text.strip() == (table(name) if name else table()).strip(), (module, name)
