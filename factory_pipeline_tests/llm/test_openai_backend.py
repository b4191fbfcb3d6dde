"""OpenAIBackend against the fake OpenAI-compatible server, driven by the real openai client."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from factory_pipeline.errors import ConfigError, LLMError
from factory_pipeline.llm import CachedBackend, LLMOutputError, OfflineBackend, build_llm
from factory_pipeline.llm.openai_backend import OpenAIBackend
from factory_pipeline.settings import FactorySettings
from factory_pipeline.store.db import Store
from factory_pipeline_tests.fakes.openai_server import (
    content_reply,
    delayed,
    error_reply,
    rate_limit_reply,
    refusal_reply,
    server_error_reply,
    structured_reply,
)


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str
    score: int


def ask(backend: OpenAIBackend, user: str = "classify this"):
    return backend.complete_structured("classify", "v1", "You classify.", user, Verdict)


def test_valid_structured_output(fake_openai_server, make_backend):
    fake_openai_server.script(
        structured_reply({"label": "trend", "score": 3}, prompt_tokens=11, completion_tokens=7)
    )
    result = ask(make_backend())
    assert result.value == Verdict(label="trend", score=3)
    assert (result.prompt_tokens, result.completion_tokens) == (11, 7)
    assert result.attempts == 1 and not result.cached and result.model == "fake-model"
    (request,) = fake_openai_server.chat_requests()
    assert request.body["model"] == "fake-model"
    assert [m["role"] for m in request.messages] == ["system", "user"]
    schema = request.response_schema
    assert schema is not None and schema["name"] == "Verdict" and schema["strict"] is True
    assert schema["schema"]["additionalProperties"] is False
    assert request.headers["authorization"] == "Bearer sk-test-secret-key"


def test_malformed_json_is_retried_with_the_error_fed_back(fake_openai_server, make_backend):
    fake_openai_server.script(
        content_reply('{"label": "trend", "score": ', prompt_tokens=5, completion_tokens=2),
        structured_reply({"label": "range", "score": 1}, prompt_tokens=9, completion_tokens=4),
    )
    backend = make_backend()
    result = ask(backend)
    assert result.value.label == "range"
    assert result.attempts == 2
    assert (result.prompt_tokens, result.completion_tokens) == (14, 6)
    first, second = fake_openai_server.chat_requests()
    assert len(second.messages) == len(first.messages) + 2
    assistant, feedback = second.messages[-2:]
    assert assistant == {"role": "assistant", "content": '{"label": "trend", "score": '}
    assert feedback["role"] == "user"
    assert "Invalid JSON" in feedback["content"] and "Verdict" in feedback["content"]


def test_malformed_json_until_exhaustion_raises(fake_openai_server, make_backend):
    fake_openai_server.script(*[content_reply("not json at all") for _ in range(3)])
    backend = make_backend(max_validation_attempts=3)
    with pytest.raises(LLMOutputError) as info:
        ask(backend)
    message = str(info.value)
    assert "'classify'" in message and "Verdict" in message and "3 attempt" in message
    assert isinstance(info.value, LLMError)
    assert len(fake_openai_server.chat_requests()) == 3
    assert fake_openai_server.pending_replies == 0


@pytest.mark.parametrize(
    ("bad_payload", "expected_in_feedback"),
    [
        ({"label": "x", "score": "high"}, "score"),
        ({"label": "x"}, "score: Field required"),
        ({"label": "x", "score": 1, "status": "production"}, "status: Extra inputs"),
    ],
)
def test_schema_violations_are_fed_back(
    fake_openai_server, make_backend, bad_payload, expected_in_feedback
):
    fake_openai_server.script(
        content_reply(json.dumps(bad_payload)), structured_reply({"label": "ok", "score": 2})
    )
    result = ask(make_backend())
    assert result.value == Verdict(label="ok", score=2)
    feedback = fake_openai_server.chat_requests()[1].messages[-1]["content"]
    assert expected_in_feedback in feedback


def test_refusal_raises_naming_the_task(fake_openai_server, make_backend):
    fake_openai_server.script(refusal_reply("I will not do that."))
    with pytest.raises(LLMOutputError, match=r"'classify'.*refused: I will not do that"):
        ask(make_backend())
    assert len(fake_openai_server.chat_requests()) == 1


def test_rate_limit_then_success_honours_retry_after(fake_openai_server, make_backend, sleeps):
    fake_openai_server.script(rate_limit_reply(1.5), structured_reply({"label": "a", "score": 1}))
    result = ask(make_backend(backoff_base_s=0.25))
    assert result.value.label == "a" and result.attempts == 2
    assert sleeps.delays == [1.5]


def test_server_error_then_success_backs_off(fake_openai_server, make_backend, sleeps):
    fake_openai_server.script(server_error_reply(), structured_reply({"label": "b", "score": 2}))
    result = ask(make_backend(backoff_base_s=0.25))
    assert result.value.label == "b" and result.attempts == 2
    assert sleeps.delays == [0.25]


def test_persistent_server_errors_exhaust_bounded_exponential_backoff(
    fake_openai_server, make_backend, sleeps
):
    fake_openai_server.script(*[server_error_reply() for _ in range(4)])
    backend = make_backend(max_retries=3, backoff_base_s=1.0, backoff_max_s=3.0)
    with pytest.raises(LLMError, match=r"'classify'.*HTTP 500.*4 request"):
        ask(backend)
    assert sleeps.delays == [1.0, 2.0, 3.0]  # 1, 2, 4 capped at 3
    assert len(fake_openai_server.chat_requests()) == 4


def test_timeout_raises_after_retries(fake_openai_server, make_backend, sleeps):
    slow = delayed(structured_reply({"label": "late", "score": 0}), 2.0)
    fake_openai_server.script(slow, slow)
    backend = make_backend(timeout_s=0.2, max_retries=1, backoff_base_s=0.01)
    with pytest.raises(LLMError, match="timed out") as info:
        ask(backend)
    assert not isinstance(info.value, LLMOutputError)
    assert len(fake_openai_server.chat_requests()) == 2
    assert sleeps.delays == [0.01]


def test_client_errors_are_not_retried_and_never_show_the_key(fake_openai_server, make_backend):
    fake_openai_server.script(error_reply(401, "Incorrect API key provided"))
    backend = make_backend()
    with pytest.raises(LLMError, match="HTTP 401") as info:
        ask(backend)
    assert "sk-test-secret-key" not in str(info.value)
    assert "sk-test-secret-key" not in repr(backend)
    assert len(fake_openai_server.chat_requests()) == 1


def test_token_accounting_is_summed_per_backend_instance(fake_openai_server, make_backend):
    fake_openai_server.script(
        structured_reply({"label": "a", "score": 1}, prompt_tokens=10, completion_tokens=3),
        content_reply("{oops", prompt_tokens=20, completion_tokens=1),
        structured_reply({"label": "b", "score": 2}, prompt_tokens=25, completion_tokens=4),
        structured_reply({"label": "c", "score": 3}, prompt_tokens=100, completion_tokens=50),
    )
    backend = make_backend()
    ask(backend, "first")
    second = ask(backend, "second")
    assert (second.prompt_tokens, second.completion_tokens) == (45, 5)
    assert (backend.usage.prompt_tokens, backend.usage.completion_tokens) == (55, 8)
    assert backend.usage.requests == 3 and backend.usage.total_tokens == 63
    other = make_backend()
    ask(other, "third")
    assert (other.usage.prompt_tokens, backend.usage.prompt_tokens) == (100, 55)


def test_missing_url_or_key_is_a_config_error():
    with pytest.raises(ConfigError, match="openai_api_key"):
        OpenAIBackend(base_url="http://127.0.0.1:9/v1", api_key=SecretStr(""), model="m")
    with pytest.raises(ConfigError, match="openai_base_url"):
        OpenAIBackend(base_url="", api_key="k", model="m")


def test_build_llm_from_settings(tmp_path, fake_openai_server):
    assert isinstance(build_llm(FactorySettings(data_dir=tmp_path)), OfflineBackend)
    with pytest.raises(ConfigError, match="FACTORY_OPENAI_API_KEY"):
        build_llm(
            FactorySettings(
                data_dir=tmp_path,
                llm_backend="openai",
                openai_base_url=fake_openai_server.base_url,
                openai_api_key=None,
            )
        )
    settings = FactorySettings(
        data_dir=tmp_path,
        llm_backend="openai",
        openai_base_url=fake_openai_server.base_url,
        openai_api_key=SecretStr("sk-from-settings"),
        llm_model="model-x",
        llm_max_retries=0,
    )
    store = Store(tmp_path / "f.duckdb")
    backend = build_llm(settings, store)
    assert isinstance(backend, CachedBackend) and backend.model == "model-x"
    assert isinstance(build_llm(settings), OpenAIBackend)
    fake_openai_server.script(server_error_reply())
    with pytest.raises(LLMError, match="1 request"):  # llm_max_retries=0: no retry
        backend.complete_structured("t", "v1", "s", "u", Verdict)
    assert (
        fake_openai_server.chat_requests()[0].headers["authorization"] == "Bearer sk-from-settings"
    )
