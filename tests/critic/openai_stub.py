"""A small OpenAI-compatible chat-completions server of our own, for failure modes vLLM won't show.

Why: the labeller must survive servers that answer garbage, fail with 5xx, or vanish and come
back. vLLM with a random model answers valid JSON (the schema is enforced), so these paths are
tested against this real HTTP server on loopback (stdlib `ThreadingHTTPServer`, a thread of
the test process). Modes:

- `garbage`: HTTP 200, a well-formed chat completion whose content is not JSON;
- `valid`: a valid answer built from the request's `response_format` schema (all steps `good`);
- `error500`: HTTP 500 to every completion request.

`auth` (an exact `Authorization` header value, e.g. "Bearer KEY") makes it answer 401 to any
request without it, as vLLM started with `--api-key` does; `headers` lists the Authorization
header of every request received.

`delay` (seconds) makes each completion slow, like a loaded replica. `gate` (a
`threading.Event`) holds every completion until it is set (at most `gate_timeout` s): a replica
that is busy for exactly as long as a test needs, with no race against the clock.

    with StubServer("valid") as stub:
        stub.url        # http://127.0.0.1:PORT/v1
        stub.requests   # completion requests received
        stub.stop(); stub.start()   # same port: a replica that vanishes and comes back
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from srft_megatron.ports import free_port

GARBAGE = "Sure! Here are the labels: step one looks good, step two is ~harmful~ <|im_end|>"


def _valid_answer(payload: dict) -> str:
    schema = payload["response_format"]["json_schema"]["schema"]
    k = schema["properties"]["steps"]["minItems"]
    return json.dumps({"ideal_path": "stub", "steps": [{"step": i, "label": "good", "confidence": 0.5}
                                                        for i in range(1, k + 1)]})


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refused(self) -> bool:
        """Record the Authorization header; answer 401 when it is not the one required."""
        got = self.headers.get("Authorization")
        with self.server.lock:
            self.server.headers.append(got)
        if self.server.auth is not None and got != self.server.auth:
            self._send(401, {"error": "Unauthorized"})
            return True
        return False

    def do_GET(self) -> None:
        if self._refused():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": self.server.model, "object": "model",
                                                         "max_model_len": self.server.max_model_len}]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        payload = json.loads(self.rfile.read(length))
        if self._refused():
            return
        with self.server.lock:
            self.server.requests += 1
            self.server.last_payload = payload
        time.sleep(self.server.delay)
        if self.server.gate is not None:
            self.server.gate.wait(self.server.gate_timeout)
        if self.server.mode == "error500":
            self._send(500, {"error": "stub failure"})
            return
        content = GARBAGE if self.server.mode == "garbage" else _valid_answer(payload)
        self._send(200, {"id": "stub", "object": "chat.completion", "model": payload.get("model"),
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class StubServer:
    def __init__(self, mode: str = "valid", model: str = "tiny", max_model_len: int = 65536, port: int | None = None,
                 delay: float = 0.0, gate: threading.Event | None = None, gate_timeout: float = 60.0,
                 auth: str | None = None):
        self.mode, self.model, self.max_model_len, self.delay = mode, model, max_model_len, delay
        self.auth, self.headers = auth, []
        self.gate, self.gate_timeout = gate, gate_timeout
        self.port = port or free_port()
        self._past_requests = 0  # served by earlier starts
        self._server: _Server | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "StubServer":
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.mode, server.model, server.max_model_len = self.mode, self.model, self.max_model_len
        server.requests, server.lock, server.delay, server.last_payload = 0, self._lock, self.delay, None
        server.gate, server.gate_timeout = self.gate, self.gate_timeout
        server.auth, server.headers = self.auth, self.headers
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._past_requests += self._server.requests
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def last_payload(self) -> dict | None:
        """The body of the last completion request (while running)."""
        return self._server.last_payload if self._server else None

    @property
    def requests(self) -> int:
        """Completion requests received over every start."""
        return self._past_requests + (self._server.requests if self._server else 0)

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
