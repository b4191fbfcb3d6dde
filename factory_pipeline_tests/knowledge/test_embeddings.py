"""Embedders: hashing determinism and normalisation, the OpenAI backend against the local fake
server through the real openai SDK, the offline MiniLM model, and backend selection."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from factory_pipeline.errors import ConfigError, LLMError
from factory_pipeline.knowledge.embeddings import (
    Embedder,
    HashingEmbedder,
    LocalMiniLMEmbedder,
    OpenAIEmbedder,
    build_embedder,
)
from factory_pipeline.settings import load_settings
from factory_pipeline_tests.fakes.openai_server import FakeOpenAIServer, embedding_vector

TEXTS = [
    "A protective stop below the swing low caps the loss of each trade.",
    "Breakouts above the Donchian channel start a new trend.",
    "",
    "the and of",  # stop words only
]


def _bucket_and_sign(feature: str, dim: int) -> tuple[int, float]:
    """Independent re-derivation of the documented hashing rule (BLAKE2b-64)."""
    value = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
    return (value >> 1) % dim, 1.0 if value & 1 else -1.0


# Hashing ------------------------------------------------------------------------------------


def test_hashing_embedder_rows_are_unit_float32() -> None:
    embedder = HashingEmbedder(dim=64)
    vectors = embedder.embed(TEXTS)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert isinstance(embedder, Embedder)


def test_hashing_embedder_single_word_is_one_signed_bucket() -> None:
    dim = 64
    vector = HashingEmbedder(dim=dim).embed(["Breakout"])[0]
    bucket, sign = _bucket_and_sign("breakout", dim)
    expected = np.zeros(dim, dtype=np.float32)
    expected[bucket] = sign
    np.testing.assert_array_equal(vector, expected)


def test_hashing_embedder_two_words_add_unigrams_and_bigram() -> None:
    dim = 4096  # large enough that the three features do not collide
    vector = HashingEmbedder(dim=dim).embed(["donchian breakout"])[0]
    expected = np.zeros(dim)
    for feature in ("donchian", "breakout", "donchian breakout"):
        bucket, sign = _bucket_and_sign(feature, dim)
        expected[bucket] += sign
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(vector, expected, atol=1e-7)


def test_hashing_embedder_is_identical_in_another_process() -> None:
    here = HashingEmbedder(dim=32).embed(TEXTS[:2])
    code = (
        "import sys, numpy as np\n"
        "from factory_pipeline.knowledge.embeddings import HashingEmbedder\n"
        f"v = HashingEmbedder(dim=32).embed({TEXTS[:2]!r})\n"
        "sys.stdout.write(v.tobytes().hex())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    there = np.frombuffer(bytes.fromhex(result.stdout), dtype=np.float32).reshape(here.shape)
    np.testing.assert_array_equal(here, there)


def test_hashing_embedder_shared_words_score_higher() -> None:
    vectors = HashingEmbedder().embed(
        ["stop loss below the swing low", "a stop loss under the swing low", "funding rate"]
    )
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


# OpenAI-compatible ---------------------------------------------------------------------------


@pytest.fixture
def openai_server() -> FakeOpenAIServer:
    with FakeOpenAIServer(embedding_dim=48) as server:
        yield server


def test_openai_embedder_returns_server_vectors_in_order_across_batches(
    openai_server: FakeOpenAIServer,
) -> None:
    texts = [f"chunk number {i} about risk" for i in range(5)]
    embedder = OpenAIEmbedder(
        "fake-embed", base_url=openai_server.base_url, api_key="test", batch_size=2, max_retries=0
    )
    vectors = embedder.embed(texts)
    expected = np.array([embedding_vector(t, 48) for t in texts], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert vectors.dtype == np.float32
    assert embedder.dim == 48
    bodies = [r.body for r in openai_server.requests if r.path.endswith("/embeddings")]
    assert [b["input"] for b in bodies] == [texts[0:2], texts[2:4], texts[4:5]]
    assert all(b["model"] == "fake-embed" and b["encoding_format"] == "float" for b in bodies)


def test_openai_embedder_probes_dim_and_passes_dimensions(openai_server: FakeOpenAIServer) -> None:
    probed = OpenAIEmbedder("fake-embed", base_url=openai_server.base_url, api_key="k")
    assert probed.dim == 48
    sized = OpenAIEmbedder(
        "fake-embed", base_url=openai_server.base_url, api_key="k", dimensions=16
    )
    assert sized.dim == 16  # known without a request
    assert sized.embed(["x"]).shape == (1, 16)
    assert openai_server.requests[-1].body["dimensions"] == 16
    assert sized.name != probed.name


def test_openai_embedder_unreachable_server_raises_llm_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    embedder = OpenAIEmbedder(
        "fake-embed",
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key="k",
        max_retries=0,
        timeout_s=5,
    )
    with pytest.raises(LLMError, match="unreachable.*fake-embed"):
        embedder.embed(["hello"])


class _RejectingHandler(BaseHTTPRequestHandler):
    """Answers every request with HTTP 401 and an OpenAI-style error body."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({"error": {"message": "bad key", "type": "auth", "code": None}}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Silence request logging."""


def test_openai_embedder_http_error_raises_llm_error() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        embedder = OpenAIEmbedder(
            "fake-embed", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0
        )
        with pytest.raises(LLMError, match="HTTP 401.*fake-embed"):
            embedder.embed(["hello"])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# Local MiniLM --------------------------------------------------------------------------------


@pytest.mark.slow
def test_local_minilm_loads_offline_and_ranks_paraphrase_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = LocalMiniLMEmbedder()
    vectors = embedder.embed(
        [
            "Place a protective stop to cap the loss on each position.",
            "A stop-loss order limits how much a trade can lose.",
            "The museum opens at nine on Sunday mornings.",
        ]
    )
    assert vectors.shape == (3, embedder.dim) == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


# Selection -----------------------------------------------------------------------------------


def test_build_embedder_selects_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("FACTORY_OPENAI_API_KEY", raising=False)
    assert isinstance(build_embedder(load_settings(embedding_backend="hash")), HashingEmbedder)
    local = build_embedder(load_settings(embedding_backend="local"))
    assert isinstance(local, LocalMiniLMEmbedder) and local.dim == 384
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_embedder(load_settings(embedding_backend="openai"))
    remote = build_embedder(
        load_settings(
            embedding_backend="openai",
            openai_api_key="k",
            openai_base_url="http://127.0.0.1:9/v1",
            embedding_model="text-embedding-3-small",
        )
    )
    assert isinstance(remote, OpenAIEmbedder) and remote.dim == 1536
