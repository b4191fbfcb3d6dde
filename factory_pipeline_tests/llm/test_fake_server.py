"""The fake OpenAI server itself: embeddings, request recording, handler callables, defaults."""

from __future__ import annotations

import math

import openai
import pytest

from factory_pipeline_tests.fakes.openai_server import (
    ChatReply,
    FakeOpenAIServer,
    embedding_vector,
    structured_reply,
)


@pytest.fixture
def client(fake_openai_server):
    with openai.OpenAI(
        base_url=fake_openai_server.base_url, api_key="k", max_retries=0, timeout=5
    ) as c:
        yield c


def test_embeddings_are_deterministic_unit_vectors(fake_openai_server, client):
    response = client.embeddings.create(model="e", input=["alpha beta", "gamma"], dimensions=16)
    vectors = [d.embedding for d in response.data]
    assert [len(v) for v in vectors] == [16, 16]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    # base64 float32 by default in the SDK: equal to the float64 reference within float32 rounding
    assert vectors[0] == pytest.approx(embedding_vector("alpha beta", 16), abs=1e-6)
    again = client.embeddings.create(model="e", input="alpha beta", dimensions=16).data[0]
    assert again.embedding == vectors[0]
    assert vectors[0] != vectors[1]
    floats = client.embeddings.create(model="e", input="gamma", encoding_format="float")
    assert len(floats.data[0].embedding) == fake_openai_server.embedding_dim
    assert fake_openai_server.requests[0].body["dimensions"] == 16


def test_handler_callable_answers_when_the_queue_is_empty(fake_openai_server, client):
    fake_openai_server.handler = lambda request: ChatReply(
        content=f"echo {request.messages[-1]['content']}"
    )
    fake_openai_server.script(structured_reply({"first": True}))
    first = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
    second = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "b"}])
    assert first.choices[0].message.content == '{"first": true}'
    assert second.choices[0].message.content == "echo b"
    assert [r.messages[0]["content"] for r in fake_openai_server.chat_requests()] == ["a", "b"]


def test_unscripted_request_fails_loudly(fake_openai_server, client):
    with pytest.raises(openai.BadRequestError, match="no scripted reply"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_server_stops_and_frees_the_port():
    server = FakeOpenAIServer().start()
    url = server.base_url
    server.stop()
    with (
        pytest.raises(openai.APIConnectionError),
        openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=1) as c,
    ):
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
