"""A small, real OpenAI-compatible chat-completions server for tests, demos and benchmarks.

It speaks HTTP on 127.0.0.1 and answers from a Python rule, so code that talks to a vLLM or
OpenAI endpoint can be exercised end to end (the real `openai` client, real sockets) without
a model or a network. Faults (HTTP 500, slow answers, non-JSON bodies, dropped connections)
are part of the script, so failure handling is tested the same way.

    with ScriptedOpenAIServer(lambda body: "yes", latency_s=0.1) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="EMPTY")

From a shell, the same server with a scripted teacher (for `annotate`) or referee (for `--referee openai`):

    python -m stable_reinforce_trl.openai_server --port 8000 --role teacher --latency-s 0.2 --fault-rate 0.1
"""

from __future__ import annotations

import argparse
import json
import random
import re
import select
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Literal

__all__ = ["Fault", "ScriptedOpenAIServer", "dead_port_url", "scripted_referee", "scripted_teacher"]


@dataclass
class Fault:
    """What a `respond` rule may return instead of text, to make one request fail.

    - `"http_500"`: answer with status 500 and an OpenAI-style error body.
    - `"timeout"`: hold the request unanswered until the client gives up and closes the connection
      (its timeout), the server stops, or `seconds` pass; a client still waiting then gets `text`.
      Being held until the client leaves, the fault times out whatever the client's timeout and
      however busy the machine: a test's outcome never hangs on a race between two clocks.
    - `"malformed"`: status 200 with a body that is not JSON.
    - `"close"`: drop the connection without answering.
    """

    kind: Literal["http_500", "timeout", "malformed", "close"]
    seconds: float = 30.0
    text: str = ""


Respond = Callable[[dict], "str | Fault"]


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as the openai client (httpx) expects of vLLM.
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the client's delayed ACK adds ~40 ms to each answer.
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - silence per-request stderr noise
        pass

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": "scripted", "object": "model", "owned_by": "test"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self):
        owner = self.server.owner
        try:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, json.JSONDecodeError) as exc:
            self._send_json(400, {"error": {"message": f"bad request body: {exc}", "type": "invalid_request_error"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        owner._record(body, {name.lower(): value for name, value in self.headers.items()})
        if owner.latency_s > 0 and owner._stopping.wait(owner.latency_s):
            return self._drop()
        try:
            answer = owner.respond(body)
        except Exception as exc:  # a broken rule is a server error, as it would be in a real server
            self._send_json(500, {"error": {"message": f"respond() raised {exc!r}", "type": "server_error"}})
            return
        if isinstance(answer, Fault):
            self._fault(answer, body)
        else:
            self._send_json(200, _completion(body, str(answer)))

    def _fault(self, fault: Fault, body: dict):
        if fault.kind == "http_500":
            self._send_json(500, {"error": {"message": "scripted failure", "type": "server_error"}})
        elif fault.kind == "timeout":
            if self._held_until_client_leaves(fault.seconds):
                return self._drop()
            self._send_json(200, _completion(body, fault.text))
        elif fault.kind == "malformed":
            self._send_raw(200, b"this is not json {", "application/json")
        elif fault.kind == "close":
            self._drop()
        else:
            raise ValueError(f"unknown Fault kind {fault.kind!r}")

    def _held_until_client_leaves(self, limit_s: float) -> bool:
        """Wait, interruptibly (stop() must not wait out a 30 s fault), until the client closes the
        connection or the server stops (True), or `limit_s` pass (False)."""
        deadline = time.monotonic() + limit_s
        while not self.server.owner._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select([self.connection], [], [], min(0.05, remaining))
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return True  # end of stream: the client gave up
                except OSError:
                    return True
                self.server.owner._stopping.wait(0.05)  # bytes of a pipelined request: not a goodbye
        return True

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_json(self, status: int, payload: dict):
        self._send_raw(status, json.dumps(payload).encode(), "application/json")

    def _send_raw(self, status: int, data: bytes, content_type: str):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout); nothing to tell it


def _completion(body: dict, text: str) -> dict:
    n = int(body.get("n") or 1)
    prompt_chars = sum(len(json.dumps(m.get("content", ""))) for m in body.get("messages", []))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "scripted"),
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
            for i in range(n)
        ],
        # Rough counts (4 characters a token): enough for code that reads `usage`.
        "usage": {
            "prompt_tokens": prompt_chars // 4,
            "completion_tokens": n * (len(text) // 4),
            "total_tokens": prompt_chars // 4 + n * (len(text) // 4),
        },
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog (5) refuses connections when a benchmark opens dozens at once.
    request_queue_size = 256
    owner: "ScriptedOpenAIServer"

    def process_request(self, request, client_address):
        self.owner._track(request, +1)
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.owner._track(request, -1)


class ScriptedOpenAIServer:
    """An OpenAI-compatible `/v1/chat/completions` endpoint on 127.0.0.1 whose answers come from `respond`.

    `respond(body)` receives the parsed request JSON (`model`, `messages`, `temperature`, `n`, ...) and
    returns the assistant's text, or a `Fault`. Every request waits `latency_s` first. Each connection is
    handled on its own thread, so concurrent clients see real concurrency. `requests` holds the bodies
    received, in order, and `headers` their HTTP headers. Use as a context manager, or call `start()` / `stop()`.
    """

    def __init__(self, respond: Respond, *, latency_s: float = 0.0, port: int = 0):
        self.respond = respond
        self.port = port
        self.latency_s = latency_s
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []  # HTTP headers (names lowercased), in the order of `requests`
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("ScriptedOpenAIServer is not started: use `with ScriptedOpenAIServer(...)` or start().")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "ScriptedOpenAIServer":
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-openai-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, drain_s: float = 2.0) -> None:
        """Stop serving; wake sleeping handlers and give them `drain_s` to finish so no threads leak."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        # Keep-alive connections park their handler threads in a read: close them to free the threads.
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + drain_s
        while self._connections and time.monotonic() < deadline:
            time.sleep(0.01)
        self._server = self._thread = None

    def __enter__(self) -> "ScriptedOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _record(self, body: dict, headers: dict) -> None:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)

    def _track(self, conn: socket.socket, delta: int) -> None:
        with self._lock:
            (self._connections.add if delta > 0 else self._connections.discard)(conn)


def dead_port_url() -> str:
    """A base_url on 127.0.0.1 where nothing listens (a port the OS just handed out, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# ------------------------------------------------------------------------------------------- command line


def _prompt_text(body: dict) -> str:
    content = (body.get("messages") or [{}])[-1].get("content") or ""
    return content if isinstance(content, str) else "".join(p.get("text") or "" for p in content if p.get("type") == "text")


def scripted_teacher(seed: int = 0) -> Respond:
    """A teacher for `annotate` that answers in the judge format with a seeded random verdict, so pairs need
    1, 2, 3... attempts (or fail), as with a weak teacher, and `select-hard` has every difficulty to sort."""
    rng, lock = random.Random(seed), threading.Lock()

    def respond(body: dict) -> str:
        with lock:
            verdict = rng.choice((1, 2))
        return f"<think>Both responses answer the question. So Response {verdict} is better.</think><answer>{verdict}</answer>"

    return respond


def scripted_referee() -> Respond:
    """A referee for `--referee openai`: "Yes." when the judge's reasoning states the verdict its final answer
    gives (read as the rule referee reads it), "No." otherwise."""
    from .rewards.referees import RuleReferee

    rule = RuleReferee()

    def respond(body: dict) -> str:
        text = _prompt_text(body)
        found = re.search(r"\[Judge's reasoning\]\n(.*)\n\n\[Judge's final answer\]\nResponse (\d)", text, re.DOTALL)
        if not found:
            return "No."
        return "Yes." if rule.stated_verdict(found.group(1)) == int(found.group(2)) else "No."

    return respond


def _with_faults(respond: Respond, rate: float, kind: str, seed: int) -> Respond:
    rng, lock = random.Random(seed + 1), threading.Lock()

    def faulty(body: dict):
        with lock:
            fail = rng.random() < rate
        return Fault(kind) if fail else respond(body)  # type: ignore[arg-type]

    return faulty


def main(argv: list[str] | None = None) -> int:
    from .cli import HelpFormatter, stop_on_sigterm_as_on_ctrl_c

    parser = argparse.ArgumentParser(prog="python -m stable_reinforce_trl.openai_server", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--role", choices=("teacher", "referee", "fixed"), default="teacher",
                        help="teacher: judge-format answers with a random verdict (for annotate); referee: yes/no "
                             "on whether a judge's reasoning states its verdict (for --referee openai); fixed: "
                             "always --text")
    parser.add_argument("--text", default="Yes.", help="the answer of --role fixed")
    parser.add_argument("--latency-s", type=float, default=0.0, help="seconds every request waits before its answer")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail (0..1)")
    parser.add_argument("--fault", choices=("http_500", "timeout", "malformed", "close"), default="http_500",
                        help="how a failing request fails (see Fault)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the teacher's verdicts and of the faults")
    args = parser.parse_args(argv)
    if not 0 <= args.fault_rate <= 1 or args.latency_s < 0 or not 0 <= args.port < 65536:
        parser.error("--fault-rate must be in 0..1, --latency-s >= 0, --port in 0..65535")
    respond = {"teacher": lambda: scripted_teacher(args.seed), "referee": scripted_referee,
               "fixed": lambda: (lambda body: args.text)}[args.role]()
    if args.fault_rate:
        respond = _with_faults(respond, args.fault_rate, args.fault, args.seed)
    server = ScriptedOpenAIServer(respond, latency_s=args.latency_s, port=args.port)
    try:
        server.start()
    except OSError as error:
        print(f"error: cannot listen on 127.0.0.1:{args.port} ({error.strerror}). Fix: pick a free --port "
              "(or 0 for any)", file=sys.stderr)
        return 2
    stop_on_sigterm_as_on_ctrl_c()
    print(f"serving a scripted {args.role} at {server.base_url} (Ctrl-C or SIGTERM stops it)", flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
