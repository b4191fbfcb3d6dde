"""A fake OpenAI-compatible HTTP server on 127.0.0.1 for tests that drive the real `openai` SDK.

Why a real server: openai 3.x uses its own HTTP library, so HTTP-mocking libraries do not intercept
it; a threaded server on loopback exercises the SDK end to end (request building, JSON schema
response formats, status-code errors, retry-after headers, timeouts).

Endpoints:

- ``POST /v1/chat/completions`` answers from a FIFO queue of scripted :class:`ChatReply` objects,
  or, when the queue is empty, from ``server.handler(request) -> ChatReply`` if one is set. With
  neither, it answers HTTP 400 "no scripted reply" so a test that under-scripts fails loudly.
- ``POST /v1/embeddings`` returns deterministic hash-based unit vectors (sha256 of the input
  text, expanded to the requested ``dimensions``, default :attr:`FakeOpenAIServer.embedding_dim`),
  as floats or base64 float32 as the request's ``encoding_format`` asks (the SDK asks base64).

Every request is recorded (:attr:`FakeOpenAIServer.requests`) so tests can assert on what was
sent. Use it as a context manager, or through the :func:`fake_openai_server` pytest fixture.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel

DEFAULT_EMBEDDING_DIM = 64


@dataclass(frozen=True)
class ChatReply:
    """One scripted answer to a chat completion request.

    ``status`` != 200 sends an OpenAI-style error body (``error_message``) with ``headers``
    (e.g. ``retry-after``). ``delay_s`` sleeps before answering (use it to exceed the client
    timeout). Token counts default to word counts of the request messages and of the content.
    """

    content: str | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    status: int = 200
    error_message: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received: path, lower-cased headers and the JSON body."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of a chat completion request (empty for other endpoints)."""
        if isinstance(self.body, dict):
            return list(self.body.get("messages", []))
        return []

    @property
    def response_schema(self) -> dict[str, Any] | None:
        """The ``response_format.json_schema`` block of a chat request, if any."""
        if not isinstance(self.body, dict):
            return None
        response_format = self.body.get("response_format") or {}
        schema = response_format.get("json_schema")
        return schema if isinstance(schema, dict) else None


ChatHandler = Callable[[RecordedRequest], ChatReply]


# Reply constructors -----------------------------------------------------------------------------


def structured_reply(
    payload: Mapping[str, Any] | BaseModel,
    *,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> ChatReply:
    """A valid structured answer: ``payload`` serialized as the message content."""
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
    return ChatReply(
        content=json.dumps(data),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def content_reply(text: str, **kwargs: Any) -> ChatReply:
    """Arbitrary message content, e.g. malformed JSON or schema-violating JSON."""
    return ChatReply(content=text, **kwargs)


def refusal_reply(text: str = "I can't help with that.") -> ChatReply:
    """A model refusal (``message.refusal`` set, no content)."""
    return ChatReply(content=None, refusal=text)


def error_reply(
    status: int, message: str = "", headers: Mapping[str, str] | None = None
) -> ChatReply:
    """An HTTP error with an OpenAI-style ``{"error": {...}}`` body."""
    return ChatReply(
        status=status, error_message=message or f"fake error {status}", headers=headers or {}
    )


def rate_limit_reply(retry_after_s: float = 0.0) -> ChatReply:
    """HTTP 429 with a ``retry-after`` header (seconds)."""
    return error_reply(429, "Rate limit reached", {"retry-after": f"{retry_after_s:g}"})


def server_error_reply() -> ChatReply:
    """HTTP 500."""
    return error_reply(500, "The server had an error while processing your request.")


def delayed(reply: ChatReply, seconds: float) -> ChatReply:
    """``reply`` sent after sleeping ``seconds`` (longer than the client timeout -> timeout)."""
    return replace(reply, delay_s=seconds)


def embedding_vector(text: str, dim: int) -> list[float]:
    """Deterministic unit vector for ``text``: sha256 blocks mapped to [-1, 1], L2-normalized.

    Stable across processes (no ``hash()``), so other helpers' tests can compute the expected
    vector independently.
    """
    values: list[float] = []
    counter = 0
    while len(values) < dim:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        for i in range(0, len(digest), 4):
            (word,) = struct.unpack(">I", digest[i : i + 4])
            values.append(word / 0xFFFFFFFF * 2.0 - 1.0)
        counter += 1
    values = values[:dim]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


# Server -----------------------------------------------------------------------------------------


class FakeOpenAIServer:
    """A threaded OpenAI-compatible server on 127.0.0.1 (ephemeral port)."""

    def __init__(self, *, embedding_dim: int = DEFAULT_EMBEDDING_DIM) -> None:
        self.embedding_dim = embedding_dim
        self.handler: ChatHandler | None = None
        self.requests: list[RecordedRequest] = []
        self._replies: deque[ChatReply] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle
    def start(self) -> FakeOpenAIServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler_class(self))
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every open (keep-alive) connection, end delayed replies."""
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The ``base_url`` for ``openai.OpenAI`` (ends with ``/v1``)."""
        if self._httpd is None:
            raise RuntimeError("fake OpenAI server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    # Scripting
    def script(self, *replies: ChatReply) -> None:
        """Queue replies for the next chat completion requests, in order."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._replies)

    def chat_requests(self) -> list[RecordedRequest]:
        """Recorded chat completion requests, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self.requests.clear()
            self.handler = None

    # Called from handler threads
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_reply(self, request: RecordedRequest) -> ChatReply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
            handler = self.handler
        if handler is not None:
            return handler(request)
        return error_reply(400, "fake OpenAI server: no scripted reply left")

    def _sleep(self, seconds: float) -> None:
        self._closing.wait(seconds)

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


def _make_handler_class(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10

        def setup(self) -> None:
            super().setup()
            server._track(self.connection, True)

        def finish(self) -> None:
            server._track(self.connection, False)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            """Silence per-request logging."""

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = raw.decode(errors="replace")
            request = RecordedRequest(
                method="POST",
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            server._record(request)
            if self.path.rstrip("/").endswith("/chat/completions"):
                self._chat(request)
            elif self.path.rstrip("/").endswith("/embeddings"):
                self._embeddings(request)
            else:
                self._send_json(404, {"error": {"message": f"unknown path {self.path}"}})

        def _chat(self, request: RecordedRequest) -> None:
            reply = server._next_reply(request)
            if reply.delay_s > 0:
                server._sleep(reply.delay_s)
            if reply.status != 200:
                error = {"message": reply.error_message, "type": "fake_error", "code": None}
                self._send_json(reply.status, {"error": error}, reply.headers)
                return
            self._send_json(200, _chat_completion_body(request, reply), reply.headers)

        def _embeddings(self, request: RecordedRequest) -> None:
            body = request.body if isinstance(request.body, dict) else {}
            dim = int(body.get("dimensions") or server.embedding_dim)
            inputs = _embedding_inputs(body.get("input"))
            as_base64 = body.get("encoding_format") == "base64"
            data = []
            for index, text in enumerate(inputs):
                vector = embedding_vector(text, dim)
                encoded: Any = vector
                if as_base64:
                    encoded = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
                data.append({"object": "embedding", "index": index, "embedding": encoded})
            tokens = sum(len(t.split()) for t in inputs)
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model", "fake-embedding"),
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                },
            )

        def _send_json(
            self, status: int, payload: Any, headers: Mapping[str, str] | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (e.g. it timed out while we were delaying).
                self.close_connection = True

    return Handler


def _chat_completion_body(request: RecordedRequest, reply: ChatReply) -> dict[str, Any]:
    body = request.body if isinstance(request.body, dict) else {}
    prompt_tokens = reply.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.messages)
    completion_tokens = reply.completion_tokens
    if completion_tokens is None:
        completion_tokens = len((reply.content or reply.refusal or "").split())
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content,
        "refusal": reply.refusal,
    }
    return {
        "id": f"chatcmpl-fake-{_response_id(request)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _response_id(request: RecordedRequest) -> str:
    """A short deterministic id for a response (hash of the request body)."""
    return hashlib.sha256(json.dumps(request.body, sort_keys=True).encode()).hexdigest()[:12]


def _embedding_inputs(value: Any) -> list[str]:
    """Normalize the ``input`` field (string, list of strings, token arrays) to strings."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        items = list(value)
        if items and all(isinstance(i, int) for i in items):
            return [" ".join(str(i) for i in items)]
        return [i if isinstance(i, str) else " ".join(str(t) for t in i) for i in items]
    return []


@pytest.fixture
def fake_openai_server() -> Iterator[FakeOpenAIServer]:
    """A running :class:`FakeOpenAIServer`, stopped after the test.

    Other test folders can use it with ``from factory_pipeline_tests.fakes.openai_server import
    fake_openai_server`` in their conftest.py (or request it through pytest_plugins).
    """
    with FakeOpenAIServer() as server:
        yield server
