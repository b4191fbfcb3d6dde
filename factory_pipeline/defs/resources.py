"""Dagster resources, all built from the one FactorySettings object.

Resources are thin: they hold configuration (paths, URLs, model names, secret references) and hand
out core objects (Store, MarketSource, VectorIndex, LLM backend, embedder). Secrets are passed as
``dg.EnvVar`` references, so Dagster resolves them at run time and never shows their values in the
UI or run config; they are only referenced when the environment variable is set.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field, SecretStr

from factory_pipeline.defs.knowledge.resources import knowledge_resource
from factory_pipeline.defs.research.resources import research_resource
from factory_pipeline.defs.trading.resources import trading_resource
from factory_pipeline.settings import FactorySettings, default_settings
from factory_pipeline.store import Store


class FactoryStoreResource(dg.ConfigurableResource):
    """The DuckDB store (market tables and documents) over dagster-duckdb's DuckDBResource."""

    duckdb: DuckDBResource

    def store(self) -> Store:
        return Store(self.duckdb.database, connection_factory=self.duckdb.get_connection)


class MarketDataResource(dg.ConfigurableResource):
    """Where market data comes from: synthetic (default), files, or Bybit public REST."""

    source: str = "synthetic"
    base_timeframe: str = "15m"
    files_dir: str = ""
    bybit_rest_url: str = "https://api.bybit.com"
    synthetic_seed: int = 7
    synthetic_start: str = "2024-01-01"
    synthetic_end: str = "2025-12-31"
    resample_timeframes: list[str] = Field(default_factory=lambda: ["1h", "4h", "1d"])

    def settings(self) -> FactorySettings:
        overrides: dict[str, Any] = {
            "market_source": self.source,
            "base_timeframe": self.base_timeframe,
            "bybit_rest_url": self.bybit_rest_url,
            "synthetic_seed": self.synthetic_seed,
            "synthetic_start": dt.date.fromisoformat(self.synthetic_start),
            "synthetic_end": dt.date.fromisoformat(self.synthetic_end),
        }
        if self.files_dir:
            overrides["market_files_dir"] = Path(self.files_dir)
        return default_settings().model_copy(update=overrides)

    def build_source(self) -> Any:
        from factory_pipeline.market.source import build_source

        return build_source(self.settings())


class VectorIndexResource(dg.ConfigurableResource):
    """Qdrant: local mode on a path by default, a server when ``url`` is set."""

    path: str = ""
    url: str = ""
    api_key: str | None = None

    @contextmanager
    def open(self, embedder: Any) -> Iterator[Any]:
        """A VectorIndex that is always closed (local mode allows one client per path)."""
        from factory_pipeline.knowledge.index import VectorIndex

        index = VectorIndex(
            location=Path(self.path) if self.path and not self.url else None,
            url=self.url or None,
            api_key=self.api_key,
            embedder=embedder,
        )
        try:
            yield index
        finally:
            index.close()


class EmbeddingsResource(dg.ConfigurableResource):
    """Embedding backend: local MiniLM (default), an OpenAI-compatible endpoint, or hashing."""

    backend: str = "local"
    model: str = "text-embedding-3-small"
    base_url: str = ""
    api_key: str | None = None

    def build(self) -> Any:
        from factory_pipeline.knowledge.embeddings import build_embedder

        return build_embedder(
            _settings_with(self, embedding_backend=self.backend, embedding_model=self.model)
        )


class LLMResource(dg.ConfigurableResource):
    """LLM backend: offline deterministic (default) or an OpenAI-compatible endpoint."""

    backend: str = "offline"
    model: str = "gpt-4o-mini"
    base_url: str = ""
    api_key: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 2

    def build(self, store: Store) -> Any:
        from factory_pipeline.llm import build_llm

        settings = _settings_with(
            self,
            llm_backend=self.backend,
            llm_model=self.model,
            llm_timeout_s=self.timeout_s,
            llm_max_retries=self.max_retries,
        )
        return build_llm(settings, store)


def _settings_with(resource: Any, **overrides: Any) -> FactorySettings:
    """The process settings with this resource's values applied (secrets stay SecretStr)."""
    update: dict[str, Any] = dict(overrides)
    if getattr(resource, "base_url", ""):
        update["openai_base_url"] = resource.base_url
    if getattr(resource, "api_key", None):
        update["openai_api_key"] = SecretStr(resource.api_key)
    return default_settings().model_copy(update=update)


def _secret(env_name: str) -> Any:
    """An EnvVar reference when the variable is set, else None (never the value itself)."""
    return dg.EnvVar(env_name) if os.environ.get(env_name) else None


def build_resources(settings: FactorySettings | None = None) -> dict[str, Any]:
    """All resources of the factory, from settings (the environment by default)."""
    s = settings or default_settings()
    duckdb = DuckDBResource(database=str(s.database_path))
    return {
        "duckdb": duckdb,
        "factory_store": FactoryStoreResource(duckdb=duckdb),
        "market_data": MarketDataResource(
            source=s.market_source,
            base_timeframe=s.base_timeframe,
            files_dir=str(s.market_files_path),
            bybit_rest_url=s.bybit_rest_url,
            synthetic_seed=s.synthetic_seed,
            synthetic_start=s.synthetic_start.isoformat(),
            synthetic_end=s.synthetic_end.isoformat(),
        ),
        "vector_index": VectorIndexResource(
            path=str(s.qdrant_location),
            url=s.qdrant_url or "",
            api_key=_secret("FACTORY_QDRANT_API_KEY"),
        ),
        "embeddings": EmbeddingsResource(
            backend=s.embedding_backend,
            model=s.embedding_model,
            base_url=s.openai_base_url or "",
            api_key=_secret("OPENAI_API_KEY") or _secret("FACTORY_OPENAI_API_KEY"),
        ),
        "llm": LLMResource(
            backend=s.llm_backend,
            model=s.llm_model,
            base_url=s.openai_base_url or "",
            api_key=_secret("OPENAI_API_KEY") or _secret("FACTORY_OPENAI_API_KEY"),
            timeout_s=s.llm_timeout_s,
            max_retries=s.llm_max_retries,
        ),
        "knowledge": knowledge_resource(s),
        "research": research_resource(s),
        "trading": trading_resource(s),
    }


@dg.definitions
def resource_definitions() -> dg.Definitions:
    """Resources are not collected from module scope: the defs loader takes them from here."""
    return dg.Definitions(resources=build_resources())
