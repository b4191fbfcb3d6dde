"""The DuckDB response cache: key recipe, hits without requests, persistence, re-validation."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import BaseModel, ConfigDict

from factory_pipeline.llm import CachedBackend, LLMOutputError, cache_key
from factory_pipeline.store.db import Store
from factory_pipeline_tests.fakes.openai_server import refusal_reply, structured_reply


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    points: list[str]


class SummaryV2(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    points: list[str]
    confidence: float


def call(backend, user: str = "summarize page 3", schema: type[BaseModel] = Summary):
    return backend.complete_structured("summarize", "sum-v1", "You summarize.", user, schema)


def test_cache_key_follows_the_documented_recipe():
    schema_json = json.dumps(Summary.model_json_schema(), sort_keys=True)
    input_hash = hashlib.sha256(
        json.dumps(["task", "sys", "usr"], sort_keys=True).encode()
    ).hexdigest()
    expected = hashlib.sha256(
        json.dumps(["m", "p1", "Summary", schema_json, input_hash], sort_keys=True).encode()
    ).hexdigest()
    assert cache_key("m", "p1", Summary, "task", "sys", "usr") == expected


def test_cache_key_changes_with_every_component():
    base = cache_key("m", "p1", Summary, "task", "sys", "usr")
    variants = [
        cache_key("m2", "p1", Summary, "task", "sys", "usr"),
        cache_key("m", "p2", Summary, "task", "sys", "usr"),
        cache_key("m", "p1", SummaryV2, "task", "sys", "usr"),
        cache_key("m", "p1", Summary, "task2", "sys", "usr"),
        cache_key("m", "p1", Summary, "task", "sys!", "usr"),
        cache_key("m", "p1", Summary, "task", "sys", "usr!"),
    ]
    assert len({base, *variants}) == 7


def test_hit_avoids_a_request_and_survives_a_new_backend_instance(
    tmp_path, fake_openai_server, make_backend
):
    path = tmp_path / "factory.duckdb"
    fake_openai_server.script(
        structured_reply(
            {"title": "Stops", "points": ["2 ATR"]}, prompt_tokens=40, completion_tokens=9
        )
    )
    first = CachedBackend(make_backend(), Store(path))
    fresh = call(first)
    again = call(first)
    assert not fresh.cached and again.cached
    assert again.value == fresh.value and again.attempts == 0
    assert (again.prompt_tokens, again.completion_tokens) == (40, 9)  # what it cost originally
    assert (first.hits, first.misses) == (1, 1)
    assert first.usage.prompt_tokens == 40  # nothing spent on the hit
    assert len(fake_openai_server.chat_requests()) == 1

    second = CachedBackend(make_backend(), Store(path))  # new process-like instance, same file
    reopened = call(second)
    assert reopened.cached and reopened.value == fresh.value
    assert second.usage.requests == 0
    assert len(fake_openai_server.chat_requests()) == 1
    assert second.cache.count() == 1


def test_different_input_or_schema_misses(tmp_path, fake_openai_server, make_backend):
    fake_openai_server.script(
        structured_reply({"title": "a", "points": []}),
        structured_reply({"title": "b", "points": []}),
        structured_reply({"title": "c", "points": [], "confidence": 0.5}),
    )
    backend = CachedBackend(make_backend(), Store(tmp_path / "f.duckdb"))
    assert call(backend, "page 1").value.title == "a"
    assert call(backend, "page 2").value.title == "b"
    assert call(backend, "page 1", SummaryV2).value.title == "c"
    assert backend.misses == 3 and backend.hits == 0


def test_entry_that_no_longer_validates_is_a_miss_and_is_overwritten(
    tmp_path, fake_openai_server, make_backend
):
    store = Store(tmp_path / "f.duckdb")
    backend = CachedBackend(make_backend(), store)
    key = cache_key("fake-model", "sum-v1", Summary, "summarize", "You summarize.", "page 9")
    with store.transaction() as con:
        con.execute(
            "INSERT INTO llm_cache VALUES (?, 'fake-model', 'sum-v1', 'Summary', ?, 1, 1, now())",
            [key, json.dumps({"title": "stale", "points": "not a list"})],
        )
    fake_openai_server.script(structured_reply({"title": "fresh", "points": ["x"]}))
    result = call(backend, "page 9")
    assert result.value.title == "fresh" and not result.cached
    assert call(backend, "page 9").cached
    with store.connect() as con:
        rows = con.execute("SELECT response FROM llm_cache WHERE cache_key = ?", [key]).fetchall()
    assert len(rows) == 1 and json.loads(rows[0][0])["title"] == "fresh"


def test_failures_are_not_cached(tmp_path, fake_openai_server, make_backend):
    fake_openai_server.script(refusal_reply(), structured_reply({"title": "ok", "points": []}))
    backend = CachedBackend(make_backend(), Store(tmp_path / "f.duckdb"))
    with pytest.raises(LLMOutputError):
        call(backend)
    assert backend.cache.count() == 0
    assert call(backend).value.title == "ok"
    assert len(fake_openai_server.chat_requests()) == 2
