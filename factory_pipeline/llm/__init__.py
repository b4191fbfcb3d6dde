"""LLM backends: OpenAI-compatible client, offline deterministic backend, response cache.

Entry point: :func:`build_llm` turns :class:`~factory_pipeline.settings.FactorySettings` into a
backend. ``llm_backend="offline"`` (the default) needs no key and no network; ``"openai"`` talks to
``openai_base_url`` with ``openai_api_key`` and is wrapped in the DuckDB response cache when a
store is given. See docs/llm_agents.md.
"""

from __future__ import annotations

from factory_pipeline.errors import ConfigError
from factory_pipeline.llm.backend import (
    LLMBackend,
    LLMOutputError,
    StructuredResult,
    TokenUsage,
    describe_validation_error,
)
from factory_pipeline.llm.cache import CachedBackend, ResponseCache, cache_key
from factory_pipeline.llm.offline import (
    OFFLINE_MODEL,
    OfflineBackend,
    OfflineRequest,
    register_offline_task,
    registered_offline_tasks,
)
from factory_pipeline.settings import FactorySettings
from factory_pipeline.store.db import Store

__all__ = [
    "OFFLINE_MODEL",
    "CachedBackend",
    "LLMBackend",
    "LLMOutputError",
    "OfflineBackend",
    "OfflineRequest",
    "ResponseCache",
    "StructuredResult",
    "TokenUsage",
    "build_llm",
    "cache_key",
    "describe_validation_error",
    "register_offline_task",
    "registered_offline_tasks",
]


def build_llm(settings: FactorySettings, store: Store | None = None) -> LLMBackend:
    """The configured backend.

    - ``offline``: :class:`OfflineBackend` (deterministic and free, so it is not cached).
    - ``openai``: :class:`~factory_pipeline.llm.openai_backend.OpenAIBackend` over
      ``openai_base_url`` / ``openai_api_key`` / ``llm_model`` / ``llm_timeout_s`` /
      ``llm_max_retries``, wrapped in :class:`CachedBackend` when ``store`` is given.
      A missing URL or key raises :class:`ConfigError` (the key itself is never shown).
    """
    if settings.llm_backend == "offline":
        return OfflineBackend()
    if settings.llm_backend != "openai":
        raise ConfigError(f"unknown llm_backend {settings.llm_backend!r} (FACTORY_LLM_BACKEND)")
    missing = [
        name
        for name, value in (
            ("FACTORY_OPENAI_BASE_URL", settings.openai_base_url),
            ("FACTORY_OPENAI_API_KEY", settings.openai_api_key),
        )
        if not value or (hasattr(value, "get_secret_value") and not value.get_secret_value())
    ]
    if missing:
        raise ConfigError(
            f"llm_backend=openai needs {' and '.join(missing)} (or OPENAI_BASE_URL/OPENAI_API_KEY)"
        )
    from factory_pipeline.llm.openai_backend import OpenAIBackend  # imports the SDK lazily

    assert settings.openai_base_url is not None and settings.openai_api_key is not None
    backend: LLMBackend = OpenAIBackend(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        model=settings.llm_model,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
    )
    return CachedBackend(backend, store) if store is not None else backend
