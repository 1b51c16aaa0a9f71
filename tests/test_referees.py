"""Referees against a real local OpenAI-compatible server (no mocks), the rule referee, and a tiny local model."""

import asyncio
import base64
import io
import logging
import re
import threading
import time

import pytest
from PIL import Image

from stable_reinforce_trl.openai_server import Fault, ScriptedOpenAIServer, dead_port_url
from stable_reinforce_trl.rewards import OpenAIReferee, RefereeRequest, RuleReferee, TransformersReferee, parse_yes_no
from stable_reinforce_trl.rewards.referees import last_lines

# Answers take milliseconds; 3 s is far from them on a loaded machine. A "timeout" fault is held until
# the client gives up, so it times out at exactly this, whatever the machine is doing.
FAST = dict(timeout=3.0, max_retries=1, backoff_s=0.01)


def prompt_of(body: dict) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else next(c["text"] for c in content if c["type"] == "text")


def referee_rule(body: dict):
    """A referee that reads the request like a careful model would, with faults on request."""
    prompt = prompt_of(body)
    reasoning = prompt.split("[Judge's reasoning]\n", 1)[1].split("\n\n[Judge's final answer]", 1)[0]
    answer = int(re.search(r"\[Judge's final answer\]\nResponse (\d)", prompt).group(1))
    for marker, fault in {
        "FAULT500": Fault("http_500"),
        "FAULTTIMEOUT": Fault("timeout"),
        "FAULTMALFORMED": Fault("malformed"),
        "FAULTCLOSE": Fault("close"),
    }.items():
        if marker in reasoning:
            return fault
    if "GARBLE" in reasoning:
        return "I cannot say."
    stated = RuleReferee().stated_verdict(reasoning)
    return "Yes." if stated == answer else "No, the reasoning favours the other response."


def run(coro):
    return asyncio.run(coro)


def test_rule_referee_reads_the_last_stated_verdict():
    rule = RuleReferee()
    assert rule.stated_verdict("Both are fine. So Response 2 is better.") == 2
    assert rule.stated_verdict("response 1 is clearly better than the other") == 1
    assert rule.stated_verdict("Response 1 is the better one") == 1
    assert rule.stated_verdict("At first Response 1 is better, but on reflection Response 2 is better.") == 2
    assert rule.stated_verdict("Response 1 is not better; Response 2 isn't better either") is None
    assert rule.stated_verdict("Response 2 is worse.") is None
    got = run(rule.judge([RefereeRequest("So Response 2 is better.", 2), RefereeRequest("Response 1 is better", 2),
                          RefereeRequest("no conclusion here", 1)]))  # fmt: skip
    assert [j.consistent for j in got] == [True, False, None]
    assert "states no" in got[2].error


def test_rule_referee_counts_no_negated_or_ambiguous_verdict_as_consistent():
    rule = RuleReferee()
    for reasoning in (
        "I would not say Response 2 is better.",
        "There is no way Response 2 is better.",
        "Response 1 is better and Response 2 is better.",
        "Response 1 or 2 is better.",
        "Response 1 is fine. Response 1/2 is better.",  # the verdict sentence names no one response
    ):
        assert rule.stated_verdict(reasoning) is None, reasoning
        assert run(rule.judge([RefereeRequest(reasoning, 2)]))[0].consistent is None, reasoning
    # Negations elsewhere in the sentence, after the verdict, leave it clear.
    assert rule.stated_verdict("Response 2 is better as it has no errors, not Response 1.") == 2
    assert "heuristic" in RuleReferee.__doc__ and "openai" in RuleReferee.__doc__


def test_parse_yes_no_and_last_lines():
    assert parse_yes_no("Yes.") is True
    assert parse_yes_no("**No** - it favours response 1") is False
    assert parse_yes_no("The answer is yes") is True
    assert parse_yes_no("I cannot say.") is None
    assert parse_yes_no("Could be yes, could be no") is None
    assert parse_yes_no("Nobody knows") is None  # "no" must be a word
    assert parse_yes_no("yes/no") is None  # the question's options echoed back are no answer
    assert parse_yes_no("Yes or no: yes") is None
    assert parse_yes_no("Yes, no contradiction") is True
    assert last_lines("a\n\nb\nc\n\nd\n", 3) == "b\nc\nd"
    assert last_lines(" a\nb ", None) == "a\nb"
    with pytest.raises(ValueError):
        last_lines("a", 0)


def test_openai_referee_judges_through_a_real_server():
    reasonings = [f"Case {i}.\nline two\nline three\nSo Response {1 + i % 2} is better." for i in range(8)]
    requests = [RefereeRequest(reasoning, 1 + (i // 2) % 2) for i, reasoning in enumerate(reasonings)]
    expected = [(1 + i % 2) == (1 + (i // 2) % 2) for i in range(8)]
    with ScriptedOpenAIServer(referee_rule, latency_s=0.02) as server:
        referee = OpenAIReferee(server.base_url, "judge-model", reasoning_lines=3, **FAST)
        got = run(referee.judge(requests))
        sent = list(server.requests)
    assert [j.consistent for j in got] == expected
    assert all(j.error is None and j.latency_s >= 0.02 for j in got)
    assert len(sent) == 8
    assert {b["model"] for b in sent} == {"judge-model"} and {b["temperature"] for b in sent} == {0.0}
    # Only the last 3 lines of the reasoning travel.
    prompts = [prompt_of(b) for b in sent]
    assert not any("Case " in p for p in prompts)
    assert sum("line two\nline three\nSo Response 1 is better." in p for p in prompts) == 4


def test_openai_referee_survives_every_fault():
    markers = ["FAULT500", "FAULTTIMEOUT", "FAULTMALFORMED", "FAULTCLOSE", "GARBLE", "fine"]
    requests = [RefereeRequest(f"{m}. So Response 1 is better.", 1) for m in markers]
    with ScriptedOpenAIServer(referee_rule) as server:
        referee = OpenAIReferee(server.base_url, "m", **FAST)
        got = run(referee.judge(requests))
        attempts = {m: sum(m in prompt_of(b) for b in server.requests) for m in markers}
    assert len(got) == len(requests)
    assert [j.consistent for j in got] == [None, None, None, None, None, True]
    assert "HTTP 500" in got[0].error and "timeout" in got[1].error.lower() and "unparseable" in got[4].error
    assert attempts == {m: 2 for m in markers[:5]} | {"fine": 1}  # one retry each, none for the good answer


def test_openai_referee_retry_recovers_from_a_transient_500():
    seen = []

    def flaky(body):
        seen.append(body)
        return Fault("http_500") if len(seen) == 1 else "Yes"

    with ScriptedOpenAIServer(flaky) as server:
        got = run(OpenAIReferee(server.base_url, "m", **FAST).judge([RefereeRequest("Response 1 is better", 1)]))
    assert got[0].consistent is True and len(seen) == 2


def test_openai_referee_dead_port_fails_fast_and_counts():
    referee = OpenAIReferee(dead_port_url(), "m", **{**FAST, "timeout": 60.0})
    start = time.perf_counter()
    got = run(referee.judge([RefereeRequest("Response 1 is better", 1)] * 4))
    assert [j.consistent for j in got] == [None] * 4
    assert all("Connection" in j.error for j in got)  # refused, not timed out
    assert time.perf_counter() - start < 60.0  # no request waited for its timeout


def test_openai_referee_bounds_concurrency():
    """The first requests are held until 4 are in flight together, and every request is held 0.2 s, so a
    5th that the bound let through would be seen: the bound is met exactly, however slowly the machine
    schedules the client."""
    lock, in_flight, peak = threading.Condition(), [0], [0]

    def gathered(body):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            lock.notify_all()
            lock.wait_for(lambda: peak[0] >= 4, timeout=30)
        time.sleep(0.2)
        with lock:
            in_flight[0] -= 1
        return "yes"

    with ScriptedOpenAIServer(gathered) as server:
        referee = OpenAIReferee(server.base_url, "m", max_concurrency=4, **{**FAST, "timeout": 60.0})
        got = run(referee.judge([RefereeRequest(f"r{i}", 1) for i in range(24)]))
    assert all(j.consistent for j in got) and len(server.requests) == 24
    assert peak[0] == 4  # never more than the bound, and the bound used


def test_openai_referee_caches_exact_requests_and_keeps_one_client():
    with ScriptedOpenAIServer(referee_rule) as server:
        referee = OpenAIReferee(server.base_url, "m", **FAST)

        async def twice():
            first = await referee.judge([RefereeRequest("Response 2 is better", 2)])
            client = referee._client
            again, changed = RefereeRequest("Response 2 is better", 2), RefereeRequest("Response 2 is better", 1)
            second = await referee.judge([again, changed])
            assert referee._client is client
            await referee.aclose()
            return first, second

        first, second = run(twice())
        assert len(server.requests) == 2  # the repeat came from the cache; the changed verdict did not
    assert first[0].consistent is True and first[0].latency_s is not None
    assert second[0].consistent is True and second[0].latency_s is None
    assert second[1].consistent is False


def test_openai_referee_attaches_the_image_as_a_data_url():
    image = Image.new("RGB", (12, 7), (200, 10, 10))
    with ScriptedOpenAIServer(referee_rule) as server:
        referee = OpenAIReferee(server.base_url, "m", attach_image=True, **FAST)
        requests = [RefereeRequest("Response 1 is better", 1, image), RefereeRequest("Response 1 is better", 2)]
        got = run(referee.judge(requests))
        # Concurrent requests arrive in any order.
        with_image, without = sorted(server.requests, key=lambda b: isinstance(b["messages"][0]["content"], str))
    assert [j.consistent for j in got] == [True, False]
    parts = with_image["messages"][0]["content"]
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (12, 7)
    assert "about an image" in parts[1]["text"]
    assert isinstance(without["messages"][0]["content"], str)


def test_openai_referee_reads_the_environment_and_never_logs_the_key(monkeypatch, caplog):
    secret = "sk-test-very-secret-123"
    monkeypatch.setenv("STABLE_REINFORCE_REFEREE_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with ScriptedOpenAIServer(referee_rule) as server:
        monkeypatch.setenv("STABLE_REINFORCE_REFEREE_BASE_URL", server.base_url)
        referee = OpenAIReferee(model="m", **FAST)
        ok = run(referee.judge([RefereeRequest("Response 1 is better", 1)]))
        assert server.headers[0]["authorization"] == f"Bearer {secret}"  # the key is sent...
    referee = OpenAIReferee(dead_port_url(), "m", **FAST)
    failed = run(referee.judge([RefereeRequest("Response 1 is better", 1)]))
    assert ok[0].consistent is True and failed[0].consistent is None
    assert caplog.text  # the client did log its requests at DEBUG...
    # ...but never the key.
    assert secret not in repr(referee) and secret not in caplog.text and secret not in failed[0].error
    monkeypatch.delenv("STABLE_REINFORCE_REFEREE_BASE_URL")
    with pytest.raises(ValueError, match="STABLE_REINFORCE_REFEREE_BASE_URL"):
        OpenAIReferee(model="m")


def test_transformers_referee_gives_a_judgement_per_input(tiny_model_dir):
    referee = TransformersReferee(tiny_model_dir, batch_size=2, attach_image=True, max_new_tokens=4, device="cpu")
    image = Image.new("RGB", (56, 56), (0, 120, 0))
    requests = [
        RefereeRequest("So Response 1 is better.", 1),
        RefereeRequest("So Response 2 is better.", 1, image),
        RefereeRequest("line\nSo Response 2 is better.", 2),
    ]
    got = run(referee.judge(requests))
    assert len(got) == 3
    for j in got:
        # A random model answers garbage: either it happens to say yes/no, or it is an unparseable failure.
        assert isinstance(j.text, str) and j.latency_s > 0
        assert (j.consistent is None) == (j.error is not None)
        if j.consistent is None:
            assert j.error.startswith("unparseable referee answer")


def test_scripted_server_speaks_chat_completions_and_stops_cleanly():
    import json
    import urllib.request

    before = threading.active_count()
    with ScriptedOpenAIServer(lambda body: f"{len(body['messages'])} message(s)") as server:
        request = urllib.request.Request(
            server.base_url + "/chat/completions",
            data=json.dumps({"model": "teacher", "messages": [{"role": "user", "content": "hi"}], "n": 2}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        # A connection parked in a slow answer, its client still waiting, must not keep stop() waiting 30 s.
        slow = ScriptedOpenAIServer(lambda body: Fault("timeout", seconds=30)).start()
        waiting = threading.Thread(target=lambda: run(
            OpenAIReferee(slow.base_url, "m", timeout=60, max_retries=0).judge([RefereeRequest("x", 1)])))
        waiting.start()
        while not slow.requests:
            time.sleep(0.01)
        start = time.perf_counter()
        slow.stop()
        assert time.perf_counter() - start < 20.0  # far below the fault's 30 s
        waiting.join()
    assert answer["object"] == "chat.completion" and answer["model"] == "teacher"
    assert answer["id"].startswith("chatcmpl-")
    assert [c["message"] for c in answer["choices"]] == [{"role": "assistant", "content": "1 message(s)"}] * 2
    assert answer["choices"][1]["index"] == 1 and answer["choices"][0]["finish_reason"] == "stop"
    assert set(answer["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert server.requests[0]["n"] == 2
    time.sleep(0.1)
    assert threading.active_count() <= before
