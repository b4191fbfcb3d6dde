"""A DuckDB-backed response cache for structured LLM calls.

Why: re-materializing an asset must not pay for (or change) answers already obtained. A response
is reused only when everything that could change it is the same, so the key is

    sha256(json([model, prompt_version, schema_name, schema_json, input_hash]))
    input_hash = sha256(json([task, system, user]))

where ``schema_json`` is the schema's canonical JSON schema (so editing a field invalidates the
entry). Entries live in the ``llm_cache`` table (migration 3). A hit is re-validated against the
schema; an entry that no longer validates is treated as a miss and overwritten. Only validated
answers are stored, never errors.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from pydantic import BaseModel, ValidationError

from factory_pipeline.errors import StoreError
from factory_pipeline.llm.backend import LLMBackend, StructuredResult, T, TokenUsage
from factory_pipeline.store.db import Store


def cache_key(
    model: str, prompt_version: str, schema: type[BaseModel], task: str, system: str, user: str
) -> str:
    """The cache key of one call (see the module docstring for the exact recipe)."""
    input_hash = _sha256([task, system, user])
    schema_json = json.dumps(schema.model_json_schema(), sort_keys=True)
    return _sha256([model, prompt_version, schema.__name__, schema_json, input_hash])


class ResponseCache:
    """Reads and writes ``llm_cache`` rows through short-lived store connections."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, key: str) -> tuple[str, int, int] | None:
        """(response JSON, prompt tokens, completion tokens) for ``key``, or None."""
        with self.store.connect() as con:
            row = con.execute(
                "SELECT response, prompt_tokens, completion_tokens FROM llm_cache WHERE cache_key = ?",
                [key],
            ).fetchone()
        if row is None:
            return None
        return str(row[0]), int(row[1] or 0), int(row[2] or 0)

    def put(
        self,
        key: str,
        *,
        model: str,
        prompt_version: str,
        schema_name: str,
        response_json: str,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Insert or replace one entry atomically."""
        try:
            with self.store.transaction() as con:
                con.execute("DELETE FROM llm_cache WHERE cache_key = ?", [key])
                con.execute(
                    "INSERT INTO llm_cache (cache_key, model, prompt_version, schema_name, response, "
                    "prompt_tokens, completion_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, now())",
                    [
                        key,
                        model,
                        prompt_version,
                        schema_name,
                        response_json,
                        prompt_tokens,
                        completion_tokens,
                    ],
                )
        except Exception as exc:  # duckdb errors -> one clear line
            raise StoreError(f"llm_cache: cannot store response for {schema_name}: {exc}") from exc

    def count(self) -> int:
        with self.store.connect() as con:
            row = con.execute("SELECT count(*) FROM llm_cache").fetchone()
        return int(row[0]) if row else 0


class CachedBackend:
    """Wraps a backend: answers from ``llm_cache`` when possible, stores new validated answers."""

    def __init__(self, inner: LLMBackend, store: Store) -> None:
        self.inner = inner
        self.cache = ResponseCache(store)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def usage(self) -> TokenUsage:
        """Tokens actually spent (cache hits spend none)."""
        return self.inner.usage

    def complete_structured(
        self,
        task: str,
        prompt_version: str,
        system: str,
        user: str,
        schema: type[T],
        *,
        context: Any = None,
    ) -> StructuredResult[T]:
        key = cache_key(self.inner.model, prompt_version, schema, task, system, user)
        entry = self.cache.get(key)
        if entry is not None:
            response_json, prompt_tokens, completion_tokens = entry
            try:
                value = schema.model_validate_json(response_json)
            except ValidationError:
                value = None  # stale or corrupt entry: fall through and overwrite it
            if value is not None:
                with self._lock:
                    self.hits += 1
                return StructuredResult(
                    value=value,
                    model=self.inner.model,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    cached=True,
                    attempts=0,
                )
        with self._lock:
            self.misses += 1
        result = self.inner.complete_structured(
            task, prompt_version, system, user, schema, context=context
        )
        self.cache.put(
            key,
            model=self.inner.model,
            prompt_version=prompt_version,
            schema_name=schema.__name__,
            response_json=result.value.model_dump_json(),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
        )
        return result


def _sha256(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
