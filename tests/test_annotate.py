"""`annotate` against a real local OpenAI-compatible server that answers wrongly, fails, and dies."""

import asyncio
import base64
import io
import itertools
import json
import re
import threading
from collections import Counter

import pytest
from PIL import Image

from stable_reinforce_trl.data.annotate import AnnotateConfig, annotate, annotate_async, teacher_messages
from stable_reinforce_trl.data.loaders import load_pairs
from stable_reinforce_trl.data.records import pair_key
from stable_reinforce_trl.data.synthetic import make_synthetic_pairs
from stable_reinforce_trl.openai_server import Fault, ScriptedOpenAIServer, dead_port_url

N = 12


def _pairs(n, seed):
    """Pairs with distinct texts (the scripted teacher recognises a pair by its prompt text)."""
    pairs = make_synthetic_pairs(n, seed=seed)
    for i, p in enumerate(pairs):
        p.id, p.question, p.chosen, p.rejected = f"p-{i}", f"Question {i}?", f"Good answer {i}.", f"Bad answer {i}."
    return pairs


def planned_wrong(pair) -> int:
    """How many wrong answers the teacher gives a pair before the right one (3 = fails all 3 tries)."""
    return int(pair.id.rsplit("-", 1)[1]) % 4


class Teacher:
    """A scripted teacher: reads the prompt, answers wrongly `planned_wrong` times, then rightly.

    Endpoint faults are sprinkled in (they must be retried, never counted as attempts): one on the
    first request of each of the first pairs to arrive, so no pair draws two in a row and runs out
    of retries, whatever order concurrent requests arrive in. After `die_after` requests it drops
    every connection and the server is stopped.
    """

    FAULTS = ("http_500", "malformed", "close", "timeout", "http_500")

    def __init__(self, pairs, die_after=None):
        self.by_question = {p.question + p.chosen + p.rejected: p for p in pairs}
        self.answers = Counter()  # per pair: real answers given so far
        self.faults_dealt: list[str] = []
        self.requested = Counter()  # per pair: requests received, faults included
        self.die_after, self.requests = die_after, 0
        self.dead = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, body):
        text = body["messages"][0]["content"][-1]["text"]
        q = re.search(r"\[Question\]:\n(.*?)  \n", text).group(1)
        r1 = re.search(r"\[Response 1\]:\n(.*?)  \n", text).group(1)
        r2 = re.search(r"\[Response 2\]:\n(.*?)  \n", text).group(1)
        pair = self.by_question.get(q + r1 + r2) or self.by_question[q + r2 + r1]
        right = "1" if r1 == pair.chosen else "2"
        with self.lock:
            self.requests += 1
            if self.die_after is not None and self.requests > self.die_after:
                self.dead.set()
                return Fault("close")
            self.requested[pair.id] += 1
            if self.requested[pair.id] == 1 and len(self.faults_dealt) < len(self.FAULTS):
                kind = self.FAULTS[len(self.faults_dealt)]
                self.faults_dealt.append(kind)
                return Fault(kind)  # a "timeout" is held until the client gives up
            self.answers[pair.id] += 1
            wrong = self.answers[pair.id] <= planned_wrong(pair)
        if wrong and self.answers[pair.id] == 2:
            return "I cannot decide."  # no answer tag: a wrong attempt too
        verdict = ("2" if right == "1" else "1") if wrong else right
        return f"<think>Looking at the image, response {verdict} fits.</think><answer>{verdict}</answer>"


def _config(url, **kw):
    # Answers take milliseconds; 3 s is far from them on a loaded machine, and only a "timeout" fault waits it out.
    settings = dict(concurrency=4, request_retries=2, retry_delay_s=0.0, timeout_s=3.0)
    return AnnotateConfig(base_url=url, model="teacher", **{**settings, **kw})


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_attempts(records, pairs):
    by_id = {p.id: p for p in pairs}
    for r in records:
        wrong = planned_wrong(by_id[r["id"]])
        assert r["failed"] == (wrong == 3)
        assert r["attempts"] == min(wrong + 1, 3)
        assert len(r["verdicts"]) == r["attempts"]
        if not r["failed"]:
            assert str(r["verdicts"][-1]) == r["reasoning_label"] and r["reasoning"].startswith("Looking at")
        else:
            assert r["reasoning"] is None


def test_attempts_counted_faults_retried_and_death_resumed(tmp_path):
    pairs = _pairs(N, seed=0)
    out = tmp_path / "ann.jsonl"
    teacher = Teacher(pairs, die_after=14)
    with ScriptedOpenAIServer(teacher) as server:
        stopper = threading.Thread(target=lambda: teacher.dead.wait(10) and server.stop(drain_s=0.2))
        stopper.start()
        first = annotate(pairs, out, _config(server.base_url), progress=False)
        stopper.join()
    done = _records(out)
    assert 1 <= len(done) < N and first.errored == N - len(done)
    assert len({r["key"] for r in done}) == len(done)
    _check_attempts(done, pairs)
    errors = _records(tmp_path / "ann.jsonl.errors.jsonl")
    assert len(errors) == first.errored and all(e["error"] for e in errors)

    teacher = Teacher(pairs)
    with ScriptedOpenAIServer(teacher) as server:
        second = annotate(pairs, out, _config(server.base_url), progress=False)
        asked = {json.dumps(b["messages"][0]["content"][-1]["text"]) for b in server.requests}
    assert teacher.faults_dealt == list(Teacher.FAULTS[: N - len(done)])  # every kind, when enough pairs are left
    assert second.skipped_done == len(done) and second.errored == 0  # its faults were all retried
    records = _records(out)
    assert sorted(r["key"] for r in records) == sorted(pair_key(p) for p in pairs)  # none lost, none twice
    _check_attempts(records, pairs)
    assert len(asked) == N - len(done)  # finished pairs were not asked again
    assert Counter(r["reasoning_label"] for r in records) == {"1": N // 2, "2": N // 2}
    # the file is a valid pairs file: it loads back with its annotation
    loaded = load_pairs(out, format="pairs")
    assert sorted(p.attempts for p in loaded) == sorted(min(planned_wrong(p) + 1, 3) for p in pairs)


def test_killed_run_with_cut_line_resumes_without_duplicates(tmp_path):
    pairs = _pairs(N, seed=1)
    out = tmp_path / "ann.jsonl"

    answered, gate = itertools.count(), threading.Event()

    def three_then_held(body):  # the kill comes while the rest are in flight, however fast the machine
        if next(answered) >= 3:
            gate.wait(30)
        return "<think>x</think><answer>1</answer>"

    async def run_then_kill():
        with ScriptedOpenAIServer(three_then_held) as server:
            run = annotate_async(pairs, out, _config(server.base_url, attempts=1), progress=False)
            task = asyncio.create_task(run)
            while not out.exists() or out.read_text().count("\n") < 3:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            gate.set()

    asyncio.run(run_then_kill())
    before = out.read_text().count("\n")
    assert before == 3
    with open(out, "a") as f:
        f.write('{"key": "half-written rec')  # a kill in the middle of a write
    with ScriptedOpenAIServer(lambda body: "<think>x</think><answer>2</answer>") as server:
        summary = annotate(pairs, out, _config(server.base_url, attempts=1), progress=False)
    records = _records(out)  # every line parses: the cut line was trimmed
    assert summary.skipped_done == before and len(records) == N
    assert sorted(r["key"] for r in records) == sorted(pair_key(p) for p in pairs)


def test_dead_endpoint_stops_early_and_writes_nothing_to_the_results(tmp_path):
    pairs = make_synthetic_pairs(30, seed=2)
    out = tmp_path / "ann.jsonl"
    summary = annotate(pairs, out, _config(dead_port_url(), max_consecutive_errors=5, request_retries=0),
                       progress=False)
    assert summary.errored >= 5 and summary.errored + summary.not_attempted == 30
    assert out.read_text() == ""
    assert "stopped early" in str(summary)


def test_request_carries_image_data_url_and_settings(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (10, 10), (0, 0, 255)).save(path)
    pair = make_synthetic_pairs(1)[0]
    pair.images = [str(path)]
    messages = teacher_messages(pair, "2")
    url = messages[0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).getpixel((0, 0)) == (0, 0, 255)
    with ScriptedOpenAIServer(lambda body: "<answer>2</answer>") as server:
        summary = annotate([pair], tmp_path / "o.jsonl", _config(server.base_url, temperature=0.7, max_tokens=99),
                           progress=False)
        bodies = list(server.requests)
    assert [(b["temperature"], b["max_tokens"], b["model"]) for b in bodies] == [(0.7, 99, "teacher")] * 3
    assert summary.failed == 1  # one pair, label "1" (balanced_labels(1)), always answered "2": 3 tries


def test_annotate_cli_end_to_end(tmp_path, capsys):
    from stable_reinforce_trl.cli import main as cli

    Image.new("RGB", (8, 8), "green").save(tmp_path / "g.png")
    rows = [{"id": f"r{i}", "prompt": f"Q{i}", "chosen": f"yes {i}", "rejected": f"no {i}", "image": "g.png"}
            for i in range(4)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def always_first(body):  # right for label "1", wrong (3 times) for label "2"
        return "<think>The first one.</think><answer>1</answer>"

    with ScriptedOpenAIServer(always_first) as server:
        argv = ["annotate", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "a.jsonl"), "--base-url",
                server.base_url, "--model", "t", "--retry-delay-s", "0", "--temperature", "1.0"]
        assert cli(argv) == 0
        assert len(server.requests) == 2 * 1 + 2 * 3
    assert "succeeded: 2 (1 attempt(s): 2); failed all attempts: 2" in capsys.readouterr().out
    records = _records(tmp_path / "a.jsonl")
    assert sorted((r["reasoning_label"], r["attempts"], r["failed"]) for r in records) == [
        ("1", 1, False), ("1", 1, False), ("2", 3, True), ("2", 3, True)]
    assert records[0]["images"] == [str(tmp_path / "g.png")]
