"""The LLM backend protocol and its result types.

Every agent call in the factory goes through one method, :meth:`LLMBackend.complete_structured`:
a named task, a prompt version, a system and a user message, and the pydantic schema the answer
must validate against. Why one narrow method: LLM output is data. It is only ever accepted as an
instance of a schema with ``extra="forbid"``, so nothing a model writes can reach a field the
schema does not have (a status, a threshold, a risk limit). The same call shape serves the OpenAI
backend, the offline deterministic backend and the response cache.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from factory_pipeline.errors import LLMError

T = TypeVar("T", bound=BaseModel)


class LLMOutputError(LLMError):
    """The model answered, but not usably: a refusal, output that never validated against the
    schema within the attempt budget, or a truncated answer.

    Callers that process many independent inputs (e.g. concept extraction over segment groups)
    record these per input and continue; any other :class:`LLMError` (connection, timeout after
    retries, authentication) means the backend itself is unusable and is re-raised.
    """


@dataclass(frozen=True)
class StructuredResult(Generic[T]):
    """A validated answer plus what it cost.

    ``attempts`` counts requests sent for this call (validation retries and transient retries
    included; 0 for a cache hit or the offline backend). For a cache hit ``cached`` is true and the
    token counts are those of the original response: nothing was spent now.
    """

    value: T
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    attempts: int = 0


@dataclass
class TokenUsage:
    """Tokens and requests summed over the lifetime of one backend instance (thread-safe)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, prompt_tokens: int, completion_tokens: int, requests: int = 1) -> None:
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.requests += requests

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class LLMBackend(Protocol):
    """Anything that turns (task, prompt, schema) into a validated :class:`StructuredResult`.

    ``model`` names the model (part of the cache key); ``usage`` sums tokens spent by this
    instance. ``context`` carries the structured input of the task (e.g. the segment group): the
    offline backend computes its answer from it, network backends ignore it.
    """

    model: str
    usage: TokenUsage

    def complete_structured(
        self,
        task: str,
        prompt_version: str,
        system: str,
        user: str,
        schema: type[T],
        *,
        context: Any = None,
    ) -> StructuredResult[T]: ...


def describe_validation_error(error: Exception, limit: int = 10) -> str:
    """A compact, model-readable list of validation problems (location: message).

    Used both in error messages and as the feedback sent back to the model on a retry, so it
    never includes the offending input values (which may be long or contain injected text).
    """
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    lines = []
    for item in errors(include_input=False, include_url=False)[:limit]:
        location = ".".join(str(part) for part in item.get("loc", ())) or "(root)"
        lines.append(f"{location}: {item.get('msg', '')}")
    more = len(errors()) - limit
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)
