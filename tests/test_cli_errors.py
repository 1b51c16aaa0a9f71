"""A user's mistake in any command: one message naming the file, row, field and fix, exit 2, no traceback;
`--version`, unknown commands, help with defaults; Ctrl-C on `annotate` against the local server says how to resume."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from stable_reinforce_trl.cli import COMMANDS, HelpFormatter
from stable_reinforce_trl.cli import main as cli
from stable_reinforce_trl.data.pairs import PreferencePair
from stable_reinforce_trl.data.records import pair_to_record
from stable_reinforce_trl.openai_server import dead_port_url

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run_cli(capsys, *argv):
    rc = cli(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def user_error(capsys, *argv) -> str:
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2, out + err
    assert "Traceback" not in err and "error: " in err
    return err


def _pairs_file(tmp_path: Path) -> Path:
    """Five rows: two good, then a missing image (line 3), an empty `chosen` (line 4), broken JSON (line 6)."""
    Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
    good = {"id": "a", "prompt": "Q?", "chosen": "Red.", "rejected": "Blue.", "image": "ok.png"}
    lines = [json.dumps(good), json.dumps({**good, "id": "b"}), json.dumps({**good, "image": "gone.png"}),
             json.dumps({**good, "chosen": ""}), "", '{"id": "broken",']
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _annotations(tmp_path: Path, attempts: list[int | None]) -> Path:
    Image.new("RGB", (8, 8), "red").save(tmp_path / "img.png")
    path = tmp_path / "ann.jsonl"
    with open(path, "w") as f:
        for i, n in enumerate(attempts):
            pair = PreferencePair(f"p{i}", f"Q{i}?", f"good {i}", f"bad {i}", images=[str(tmp_path / "img.png")])
            if n is not None:
                pair = pair.with_annotation(f"So Response {1 + i % 2} is better.", str(1 + i % 2), n, failed=False)
            f.write(json.dumps(pair_to_record(pair)) + "\n")
    return path


def test_top_level_version_unknown_command_and_help(capsys):
    rc, out, _ = run_cli(capsys, "--version")
    assert rc == 0 and out.startswith("stable-reinforce ") and out.split()[1][0].isdigit()
    rc, _, err = run_cli(capsys, "fooo")
    assert rc == 2 and "unknown command 'fooo'" in err and "convert" in err
    rc, _, err = run_cli(capsys, "--frobnicate")
    assert rc == 2 and "unknown option '--frobnicate'" in err
    rc, out, _ = run_cli(capsys, "--help")
    assert rc == 0 and all(name in out for name in COMMANDS)


@pytest.mark.parametrize("module", ["data.convert", "data.annotate", "data.difficulty", "tiny_cli"])
def test_every_option_has_help_with_its_default(module):
    import importlib

    parser = importlib.import_module(f"stable_reinforce_trl.{module}").build_parser()
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    options = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert options and all(a.help and a.help != argparse.SUPPRESS for a in options), [
        a.dest for a in options if not a.help]
    text = parser.format_help()
    assert text.count("(default:") >= len([a for a in options if a.option_strings and not a.required])


def test_convert_lists_every_bad_row_once_and_skip_invalid_reports_once(tmp_path, capsys):
    src = _pairs_file(tmp_path)
    err = user_error(capsys, "convert", str(src), "--out", str(tmp_path / "out.jsonl"))
    assert f"3 row(s) of {src} are invalid" in err
    assert f"{src}, line 3, field 'image': missing image" in err
    assert "line 4, field 'chosen': empty field" in err and "line 6, field '(whole line)': malformed line" in err
    assert err.count("--skip-invalid") == 1 and not (tmp_path / "out.jsonl").exists()

    rc, out, err = run_cli(capsys, "convert", str(src), "--out", str(tmp_path / "out.jsonl"), "--skip-invalid")
    assert rc == 0 and (out + err).count("skipped 3 invalid row(s)") == 1
    assert "line 3" in out and "skip-invalid" not in out and "wrote 2 judge rows" in out


def test_convert_source_and_option_mistakes(tmp_path, capsys):
    assert "nowhere.jsonl: no such file" in user_error(capsys, "convert", "nowhere.jsonl", "--out", "x.jsonl")
    src = _pairs_file(tmp_path)
    assert "--columns must look like" in user_error(capsys, "convert", str(src), "--out", "x", "--columns", "oops")
    assert "--num-frames must be >= 1" in user_error(capsys, "convert", str(src), "--out", "x", "--num-frames", "0")
    (tmp_path / "rows.jsonl").write_text(json.dumps({"foo": 1}) + "\n")
    err = user_error(capsys, "convert", str(tmp_path / "rows.jsonl"), "--out", "x.jsonl")
    assert "cannot tell the format" in err and "--format" in err
    (tmp_path / "folder").mkdir()
    assert "not one written by save_to_disk" in user_error(capsys, "convert", str(tmp_path / "folder"), "--out", "x")
    assert "difficulty must be one of" in user_error(capsys, "convert", "synthetic:4:nope", "--out", "x.jsonl")
    rc, out, _ = run_cli(capsys, "convert", "synthetic:4:basic", "--out", str(tmp_path / "syn.jsonl"))
    assert rc == 0 and "wrote 4 judge rows" in out  # the synthetic task is a source wherever a file is
    (tmp_path / "bad.json").write_text("{not json")
    assert "the whole file, field '(file)': malformed file" in user_error(
        capsys, "convert", str(tmp_path / "bad.json"), "--out", "x")


def test_select_hard_empty_rl_set_and_unannotated_input(tmp_path, capsys):
    path = _annotations(tmp_path, [1, 1, 1, 1])  # a strong teacher: right at the first attempt every time
    rc, out, err = run_cli(capsys, "select-hard", str(path), "--rl-out", str(tmp_path / "rl"),
                           "--sft-out", str(tmp_path / "sft.jsonl"))  # fmt: skip
    assert rc == 0, err
    assert "RL set is empty, not written: every annotated pair was right within 1 attempt(s)" in out
    assert "lower --min-attempts" in out and not (tmp_path / "rl").exists()
    assert "wrote SFT set (4 pairs)" in out and len((tmp_path / "sft.jsonl").read_text().splitlines()) == 4

    only_label_1 = _annotations(tmp_path, [2, None, 3, None])  # traces answer 1 only (p0, p2)
    rc, out, _ = run_cli(capsys, "select-hard", str(only_label_1), "--rl-out", str(tmp_path / "rl.jsonl"),
                         "--sft-out", str(tmp_path / "sft2.jsonl"))  # fmt: skip
    assert rc == 0 and "SFT set is empty, not written: every trace answers 1" in out and "--no-balance" in out
    assert len((tmp_path / "rl.jsonl").read_text().splitlines()) == 2 and not (tmp_path / "sft2.jsonl").exists()

    plain = _annotations(tmp_path, [None, None])
    err = user_error(capsys, "select-hard", str(plain), "--rl-out", str(tmp_path / "x"))
    assert "none of its 2 pairs is annotated" in err and "stable-reinforce annotate" in err
    assert "--min-attempts" in user_error(capsys, "select-hard", str(path), "--min-attempts", "0")


def test_annotate_option_and_endpoint_mistakes(tmp_path, capsys):
    src = _pairs_file(tmp_path)
    base = ["annotate", str(src), "--out", str(tmp_path / "ann.jsonl"), "--model", "t", "--skip-invalid"]
    assert "--attempts must be >= 1" in user_error(capsys, *base, "--base-url", "http://x/v1", "--attempts", "0")
    assert "--base-url must be an http(s) URL" in user_error(capsys, *base, "--base-url", "localhost:8000")
    err = user_error(capsys, *base, "--base-url", dead_port_url(), "--request-retries", "0", "--timeout-s", "2",
                     "--max-consecutive-errors", "1")  # fmt: skip
    assert "answered no request" in err and "--base-url" in err
    (tmp_path / "ann.jsonl").write_text("not a record\n")
    assert "line 1: not an annotation record" in user_error(capsys, *base, "--base-url", "http://x/v1")


def test_make_tiny_model_mistakes(tmp_path, capsys):
    assert "--hidden-size must be a multiple of 8" in user_error(capsys, "make-tiny-model", str(tmp_path), "--hidden-size", "60")
    (tmp_path / "file").write_text("x")
    assert "is a file" in user_error(capsys, "make-tiny-model", str(tmp_path / "file"))


def _default_sigint():
    """In the child, before Python starts: SIGINT back to its default. A job started in the background
    without job control (`nohup make test &`) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt; the tests must not depend on how their own parent was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_server(*args: str) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-m", "stable_reinforce_trl.openai_server", "--port", "0", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                              preexec_fn=_default_sigint)  # fmt: skip
    line = server.stdout.readline()
    assert "serving a scripted" in line, line + server.stderr.read()
    return server, line.split(" at ")[1].split()[0]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_local_server_as_teacher_then_ctrl_c_on_annotate_says_how_to_resume(stop, tmp_path):
    """The command-line server (a subprocess) answers as a teacher with latency; annotate (another subprocess)
    is sent SIGINT (Ctrl-C) or SIGTERM (a process manager's stop) mid-run, says how to resume without a
    traceback, and a rerun finishes the rest. The server stops cleanly on either signal too."""
    from stable_reinforce_trl.data.synthetic import make_synthetic_pairs

    pairs = make_synthetic_pairs(12, seed=3)
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(pair_to_record(p, tmp_path / "media")) + "\n" for p in pairs))
    out = tmp_path / "ann.jsonl"
    server, url = _start_server("--role", "teacher", "--latency-s", "0.3")
    try:
        cmd = [sys.executable, "-m", "stable_reinforce_trl.cli", "annotate", str(src), "--out", str(out),
               "--base-url", url, "--model", "teacher", "--concurrency", "1", "--temperature", "1"]  # fmt: skip
        run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                               preexec_fn=_default_sigint)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 2):
            time.sleep(0.1)
        run.send_signal(stop)
        stdout, stderr = run.communicate(timeout=30)
        assert run.returncode == 128 + stop, stdout + stderr
        assert "Traceback" not in stderr and "Rerun the same command to resume" in stderr
        assert ("terminated (SIGTERM)" in stderr) == (stop == signal.SIGTERM)
        done = len(out.read_text().splitlines())
        assert 2 <= done < 12 and f"{done} of 12 pairs are annotated" in stderr

        rerun = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert f"already done: {done}" in rerun.stdout and len(out.read_text().splitlines()) == 12
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert {r["attempts"] for r in records} > {1} and all(r["reasoning"] or r["failed"] for r in records)
    finally:
        server.send_signal(signal.SIGTERM if stop == signal.SIGINT else signal.SIGINT)
        server.wait(timeout=10)
    assert server.returncode == 0 and "Traceback" not in server.stderr.read()


def test_local_server_as_referee_and_a_port_in_use():
    import openai

    server, url = _start_server("--role", "referee")
    try:
        client = openai.OpenAI(base_url=url, api_key="EMPTY")
        from stable_reinforce_trl.rewards.referees import RefereeRequest, referee_prompt

        def ask(reasoning: str, verdict: int) -> str:
            text = referee_prompt(RefereeRequest(reasoning, verdict))
            reply = client.chat.completions.create(model="r", messages=[{"role": "user", "content": text}])
            return reply.choices[0].message.content

        assert ask("It is red. So Response 2 is better.", 2) == "Yes."
        assert ask("It is red. So Response 1 is better.", 2) == "No."
        port = url.split(":")[2].split("/")[0]
        taken = subprocess.run([sys.executable, "-m", "stable_reinforce_trl.openai_server", "--port", port],
                               capture_output=True, text=True, env=ENV, timeout=60)
        assert taken.returncode == 2 and "Traceback" not in taken.stderr and "pick a free --port" in taken.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)


@pytest.mark.parametrize("command", ["sft", "rl"])
def test_recipe_commands_wrong_model_path_and_unknown_field(command, tmp_path, capsys):
    config = ROOT / "recipes" / "tiny-cpu" / ("sft.yaml" if command == "sft" else "stable_reinforce.yaml")
    err = user_error(capsys, command, "--config", str(config), "--model_name_or_path", str(tmp_path / "nowhere"),
                     "--output_dir", str(tmp_path / "out"))  # fmt: skip
    assert f"model_name_or_path {tmp_path / 'nowhere'}: cannot load a model" in err and "make-tiny-model" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text() + "\nnot_a_field: 3\n")
    assert "not_a_field" in user_error(capsys, command, "--config", str(bad), "--output_dir", str(tmp_path / "out"))


@pytest.mark.parametrize(
    "target", [["-m", "stable_reinforce_trl.scripts.rl"], [str(ROOT / "recipes" / "sft_cold_start.py")]]
)
def test_launched_recipe_wrong_model_path_is_one_line_not_a_traceback(target, tmp_path):
    """What `accelerate launch -m stable_reinforce_trl.scripts.rl` and `accelerate launch recipes/X.py` run."""
    config = ROOT / "recipes" / "tiny-cpu" / ("stable_reinforce.yaml" if "-m" in target else "sft.yaml")
    taken = subprocess.run([sys.executable, *target, "--config", str(config), "--model_name_or_path",
                            str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "out")],
                           capture_output=True, text=True, env=ENV, timeout=120, cwd=tmp_path)  # fmt: skip
    assert taken.returncode == 2, taken.stderr[-2000:]
    assert "Traceback" not in taken.stderr and "cannot load a model" in taken.stderr
