"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests of the judge and the SFT teacher.

It speaks the wire format the `openai` client expects and lets each test decide the answer: a `respond(body,
times)` function returns a `Reply` (content, or an error status, optionally after a delay), where `times` is how
often this exact request body has been seen (1 on the first call, 2 on its first retry...), so "fail once, then
succeed" is easy to write. It counts calls, requests in flight and the bodies and keys it received, so tests check
retries, the cache and the concurrency bound from the outside. Using a real socket, not a mocked client, keeps the
timeout, retry and connection paths honest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """What the server sends back for one request: a completion (`status` 200), or an OpenAI-style error."""

    content: str | None = None
    status: int = 200
    message: str = ""  # the error message when status != 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (timeouts, concurrency)
    finish_reason: str | None = None  # default: "stop", or "length" when content is None


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, message=message, headers=headers or {})


Responder = Callable[[dict[str, Any], int], Reply]


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops concurrent connects, which then wait ~1 s for a retry


def body_digest(body: dict[str, Any]) -> str:
    """A request's identity as the server sees it (the whole body, canonically serialised)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class FakeOpenAIServer:
    """State shared by the handler threads: counters, the requests seen, and per-body call counts."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.lock = threading.Lock()
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.seen: Counter[str] = Counter()  # body digest -> times asked
        self.httpd = _Server(("127.0.0.1", 0), _make_handler(self))
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # do not wait for deliberately slow handlers at shutdown
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_settings(self) -> dict[str, Any]:
        """Options of a gtalign OpenAI client (judge, teacher) for this server: short timeouts, near-instant retries,
        and no abort on failures (the tests count them)."""
        return {
            "base_url": self.base_url,
            "timeout_s": 2.0,
            "max_retries": 2,
            "backoff_s": 0.01,
            "backoff_max_s": 0.05,
            "max_failure_rate": 1.0,
        }


def completion_payload(body: dict[str, Any], content: str | None, finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "test"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason or ("length" if content is None else "stop"),
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up (timeout tests)
                self.wfile.write(data)

        def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            self._send(status, {"error": {"message": message, "type": "test", "code": status}}, headers)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                self._error(404, f"no route {self.path}")
                return
            digest = body_digest(body)
            with server.lock:
                server.calls += 1
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
                server.bodies.append(body)
                server.auth.append(self.headers.get("Authorization"))
                server.seen[digest] += 1
                times = server.seen[digest]
            try:
                reply = server.respond(body, times)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200:
                    self._error(reply.status, reply.message, reply.headers)
                else:
                    self._send(200, completion_payload(body, reply.content, reply.finish_reason), reply.headers)
            finally:
                with server.lock:
                    server.in_flight -= 1

    return Handler
