"""A loopback HTTP server that speaks enough of the OpenAI and Anthropic APIs for their official
Python clients: chat completions (JSON and SSE streams), embeddings, messages (JSON and SSE
event streams), and error responses in each provider's error format.

It is a stand-in for the providers' services (which a test cannot call); the clients talking to
it are the real libraries. The model name picks the behaviour: a model starting with `error-`
gets an HTTP error (`error-429`, `error-400`, ...), anything else a canned answer whose token
counts are fixed below so tests can assert them. Every request body is kept in `requests`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The canned usage the fake server reports.
OPENAI_USAGE = {"prompt_tokens": 57, "completion_tokens": 17, "total_tokens": 74,
                "prompt_tokens_details": {"cached_tokens": 32},
                "completion_tokens_details": {"reasoning_tokens": 5}}
ANTHROPIC_USAGE = {"input_tokens": 21, "output_tokens": 13, "cache_read_input_tokens": 40,
                   "cache_creation_input_tokens": 8}
EMBEDDING_TOKENS = 6
ANSWER = "Paris is rainy today."
# Delay before a stream's first chunk, so time to first chunk is measurably non-zero.
FIRST_CHUNK_DELAY_S = 0.05


@dataclass
class FakeLLM:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


def _openai_completion(model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake-1", "object": "chat.completion", "created": 1_700_000_000,
            "model": f"{model}-2024-08-06",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": ANSWER}}],
            "usage": OPENAI_USAGE}


def _openai_chunks(model: str, include_usage: bool) -> Iterator[dict[str, Any]]:
    base = {"id": "chatcmpl-fake-2", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": f"{model}-2024-08-06"}
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    for word in ANSWER.split(" "):
        yield {**base, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    if include_usage:
        yield {**base, "choices": [], "usage": OPENAI_USAGE}


def _anthropic_message(model: str) -> dict[str, Any]:
    return {"id": "msg_fake_1", "type": "message", "role": "assistant", "model": f"{model}-20250514",
            "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": ANTHROPIC_USAGE}


def _anthropic_events(model: str) -> Iterator[tuple[str, dict[str, Any]]]:
    start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": {
        "id": "msg_fake_2", "type": "message", "role": "assistant", "model": f"{model}-20250514", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": start_usage}}
    yield "content_block_start", {"type": "content_block_start", "index": 0,
                                  "content_block": {"type": "text", "text": ""}}
    for word in ANSWER.split(" "):
        yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": word + " "}}
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]}}
    yield "message_stop", {"type": "message_stop"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse_start(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()
        time.sleep(FIRST_CHUNK_DELAY_S)

    def _sse(self, data: str, event: str | None = None) -> None:
        text = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
        self.wfile.write(text.encode())
        self.wfile.flush()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.fake.requests.append({"path": self.path, "body": body})
        model = str(body.get("model", ""))
        anthropic = self.path.endswith("/messages")
        if model.startswith("error-"):
            status = int(model.split("-", 1)[1])
            if anthropic:
                self._json(status, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
            else:
                self._json(status, {"error": {"message": "slow down", "type": "requests", "code": "rate_limit"}})
            return
        if self.path.endswith("/chat/completions"):
            if body.get("stream"):
                self._sse_start()
                include = bool((body.get("stream_options") or {}).get("include_usage"))
                for chunk in _openai_chunks(model, include):
                    self._sse(json.dumps(chunk))
                self._sse("[DONE]")
            else:
                self._json(200, _openai_completion(model))
        elif self.path.endswith("/embeddings"):
            inputs = body.get("input")
            count = len(inputs) if isinstance(inputs, list) else 1
            self._json(200, {"object": "list", "model": model,
                             "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                                      for i in range(count)],
                             "usage": {"prompt_tokens": EMBEDDING_TOKENS, "total_tokens": EMBEDDING_TOKENS}})
        elif anthropic:
            if body.get("stream"):
                self._sse_start()
                for event, data in _anthropic_events(model):
                    self._sse(json.dumps(data), event)
            else:
                self._json(200, _anthropic_message(model))
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeLLM) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


@contextmanager
def serve() -> Iterator[FakeLLM]:
    fake = FakeLLM(base_url="")
    server = _Server(fake)
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
