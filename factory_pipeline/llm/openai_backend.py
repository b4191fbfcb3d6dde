"""LLM backend over any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, ...).

Why our own retry loop instead of the SDK's: the SDK retries transport errors but knows nothing of
our schemas. We disable its retries (``max_retries=0``) and handle two failure families ourselves:

- **Invalid output** (malformed JSON or a pydantic ``ValidationError`` against the schema, or an
  empty answer): the model's answer and the validation errors are fed back as messages and the
  request is sent again, up to ``max_validation_attempts`` requests in total; then
  :class:`LLMOutputError`.
- **Transient failures** (HTTP 429, HTTP >= 500, timeouts, connection errors): bounded exponential
  backoff (``backoff_base_s * 2**k``, capped at ``backoff_max_s``; a ``retry-after`` header is
  honoured up to the cap), up to ``max_retries`` retries per call; then :class:`LLMError`.

Refusals and truncated answers raise :class:`LLMOutputError` naming the task; other HTTP errors
(400, 401, 404 ...) raise :class:`LLMError` at once. The API key is never put in a message or log.
Tokens of every response (including ones that failed validation) are summed in :attr:`usage`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import openai
from pydantic import SecretStr, ValidationError

from factory_pipeline.errors import ConfigError, LLMError
from factory_pipeline.llm.backend import (
    LLMOutputError,
    StructuredResult,
    T,
    TokenUsage,
    describe_validation_error,
)

#: Feedback template sent after an answer failed validation.
VALIDATION_FEEDBACK = (
    "Your previous answer was rejected because it does not validate against the JSON schema "
    "'{schema}': {errors}. Answer again with only a JSON object that matches the schema exactly "
    "(no extra fields)."
)


class OpenAIBackend:
    """Structured completions through ``client.chat.completions.parse`` with our retry policy."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | str,
        model: str,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        max_validation_attempts: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        temperature: float | None = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url:
            raise ConfigError("OpenAI backend: openai_base_url is empty (FACTORY_OPENAI_BASE_URL)")
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not key:
            raise ConfigError("OpenAI backend: openai_api_key is empty (FACTORY_OPENAI_API_KEY)")
        if max_validation_attempts < 1:
            raise ConfigError("OpenAI backend: max_validation_attempts must be >= 1")
        if max_retries < 0:
            raise ConfigError("OpenAI backend: llm_max_retries must be >= 0")
        self.model = model
        self.base_url = base_url
        self.max_retries = max_retries
        self.max_validation_attempts = max_validation_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.temperature = temperature
        self.usage = TokenUsage()
        self._sleep = sleep
        self._client = openai.OpenAI(
            base_url=base_url, api_key=key, timeout=timeout_s, max_retries=0
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._client.close()

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
        """Send the prompt, validate the answer against ``schema``, retry as documented above."""
        del context  # network backends answer from the prompt only
        messages: list[dict[str, str]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        prompt_tokens = completion_tokens = 0
        requests = 0
        transient_retries = 0
        validation_attempts = 0
        while True:
            requests += 1
            try:
                raw = self._client.chat.completions.with_raw_response.parse(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    response_format=schema,
                    **({"temperature": self.temperature} if self.temperature is not None else {}),
                )
            except (
                openai.RateLimitError,
                openai.InternalServerError,
                openai.APIConnectionError,
            ) as exc:
                if transient_retries >= self.max_retries:
                    raise LLMError(
                        f"LLM task {task!r} ({self.model}): {_describe_transport(exc)} "
                        f"after {transient_retries + 1} request(s)"
                    ) from exc
                self._sleep(self._backoff_delay(transient_retries, exc))
                transient_retries += 1
                continue
            except openai.APIStatusError as exc:
                # any other 5xx class the SDK maps differently is transient too
                if exc.status_code >= 500 and transient_retries < self.max_retries:
                    self._sleep(self._backoff_delay(transient_retries, exc))
                    transient_retries += 1
                    continue
                raise LLMError(
                    f"LLM task {task!r} ({self.model}): HTTP {exc.status_code} from {self.base_url}: "
                    f"{exc.message}"
                ) from exc

            usage = _usage_of(raw)
            prompt_tokens += usage[0]
            completion_tokens += usage[1]
            self.usage.add(usage[0], usage[1])
            validation_attempts += 1
            content = _content_of(raw)
            try:
                completion = raw.parse()
            except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:
                raise LLMOutputError(
                    f"LLM task {task!r} ({self.model}): answer cut off ({type(exc).__name__})"
                ) from exc
            except ValidationError as exc:
                problem = describe_validation_error(exc)
            else:
                message = completion.choices[0].message if completion.choices else None
                if message is not None and message.refusal:
                    raise LLMOutputError(
                        f"LLM task {task!r} ({self.model}): the model refused: {message.refusal}"
                    )
                if message is not None and message.parsed is not None:
                    return StructuredResult(
                        value=message.parsed,
                        model=self.model,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                        cached=False,
                        attempts=requests,
                    )
                problem = "(root): the answer was empty"
            if validation_attempts >= self.max_validation_attempts:
                raise LLMOutputError(
                    f"LLM task {task!r} ({self.model}): output did not validate against schema "
                    f"{schema.__name__} after {validation_attempts} attempt(s): {problem}"
                )
            messages.append({"role": "assistant", "content": content or ""})
            messages.append(
                {
                    "role": "user",
                    "content": VALIDATION_FEEDBACK.format(schema=schema.__name__, errors=problem),
                }
            )

    def _backoff_delay(self, retry_index: int, exc: Exception) -> float:
        """Exponential backoff, or the server's retry-after when given; both capped."""
        delay = self.backoff_base_s * (2**retry_index)
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        if header is not None:
            with contextlib.suppress(ValueError):
                delay = float(header)
        return max(0.0, min(delay, self.backoff_max_s))


def _usage_of(raw: Any) -> tuple[int, int]:
    """(prompt, completion) tokens from the raw HTTP body; zeros when the server sends none."""
    try:
        usage = raw.http_response.json().get("usage") or {}
    except (ValueError, AttributeError):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _content_of(raw: Any) -> str:
    """The assistant message content of the raw body (fed back to the model on a retry)."""
    try:
        choices = raw.http_response.json().get("choices") or []
        return str((choices[0].get("message") or {}).get("content") or "")
    except (ValueError, AttributeError, IndexError):
        return ""


def _describe_transport(exc: Exception) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        return "cannot connect to the endpoint"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    return type(exc).__name__
