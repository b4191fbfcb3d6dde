"""One settings object for the whole factory.

Values come from ``FACTORY_*`` environment variables (and ``OPENAI_*`` / ``BYBIT_*`` for the
credentials those ecosystems already name that way). Defaults give the embedded profile: a DuckDB
file and a Qdrant folder under ``data/``, synthetic market data, offline LLM and embedding
backends and the local exchange, so nothing needs keys, services or network.

Secrets are ``SecretStr``: they never appear in ``repr``, logs or Dagster metadata.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from factory_pipeline.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"


class FactorySettings(BaseSettings):
    """Configuration of one factory deployment (embedded by default)."""

    model_config = SettingsConfigDict(env_prefix="FACTORY_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="Root of stores and inputs.")
    duckdb_path: Path | None = Field(default=None, description="Default: <data_dir>/factory.duckdb")
    qdrant_path: Path | None = Field(default=None, description="Default: <data_dir>/qdrant")
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; local path if unset."
    )
    qdrant_api_key: SecretStr | None = None

    # Market data
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
        description="Comma-separated in FACTORY_SYMBOLS.",
    )
    base_timeframe: str = "15m"
    market_source: Literal["synthetic", "files", "bybit"] = "synthetic"
    market_files_dir: Path | None = Field(
        default=None, description="Default: <data_dir>/market_files"
    )
    synthetic_seed: int = 7
    synthetic_start: dt.date = dt.date(2024, 1, 1)
    synthetic_end: dt.date = dt.date(2025, 12, 31)
    bybit_rest_url: str = Field(
        default="https://api.bybit.com", description="Public market data host."
    )

    # Knowledge
    books_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Extra book folders, comma-separated."
    )
    embedding_backend: Literal["local", "openai", "hash"] = "local"
    embedding_model: str = "text-embedding-3-small"
    llm_backend: Literal["offline", "openai"] = "offline"
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = 60.0
    llm_max_retries: int = 2
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("FACTORY_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("FACTORY_OPENAI_API_KEY", "OPENAI_API_KEY")
    )

    # Trading venues: stages are separated by credentials, never by a flag alone.
    exchange: Literal["local", "bybit_demo", "bybit_live"] = "local"
    bybit_demo_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BYBIT_DEMO_API_KEY", "FACTORY_BYBIT_DEMO_API_KEY"),
    )
    bybit_demo_api_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BYBIT_DEMO_API_SECRET", "FACTORY_BYBIT_DEMO_API_SECRET"),
    )
    bybit_live_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BYBIT_LIVE_API_KEY", "FACTORY_BYBIT_LIVE_API_KEY"),
    )
    bybit_live_api_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BYBIT_LIVE_API_SECRET", "FACTORY_BYBIT_LIVE_API_SECRET"),
    )

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("books_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            value = [Path(p.strip()) for p in value.split(",") if p.strip()]
        return value

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one symbol is required")
        for symbol in value:
            if not symbol.isalnum() or symbol.upper() != symbol:
                raise ValueError(f"symbol {symbol!r} must be upper-case letters and digits")
        return value

    @model_validator(mode="after")
    def _check_range(self) -> FactorySettings:
        if self.synthetic_end < self.synthetic_start:
            raise ValueError("synthetic_end is before synthetic_start")
        return self

    # Derived paths -------------------------------------------------------------------------
    @property
    def database_path(self) -> Path:
        return self.duckdb_path or self.data_dir / "factory.duckdb"

    @property
    def qdrant_location(self) -> Path:
        return self.qdrant_path or self.data_dir / "qdrant"

    @property
    def market_files_path(self) -> Path:
        return self.market_files_dir or self.data_dir / "market_files"

    @property
    def all_books_dirs(self) -> list[Path]:
        return [self.data_dir / "books", *self.books_dirs]

    @property
    def policy_dir(self) -> Path:
        return self.data_dir / "policy"

    @property
    def modules_dir(self) -> Path:
        return self.data_dir / "modules"

    @property
    def goals_dir(self) -> Path:
        """Design goals of the idea track (data/goals/*.yaml)."""
        return self.data_dir / "goals"


def load_settings(**overrides: object) -> FactorySettings:
    """Build settings from the environment plus explicit overrides, with a one-line error."""
    try:
        return FactorySettings(**overrides)  # type: ignore[arg-type]
    except Exception as exc:  # pydantic ValidationError -> one clear line
        first = str(exc).splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) if len(first) > 1 else str(exc)
        raise ConfigError(f"invalid factory settings (FACTORY_* environment): {detail}") from exc


@lru_cache(maxsize=1)
def default_settings() -> FactorySettings:
    """Settings from the environment, cached for the process (Dagster definitions load)."""
    return load_settings()
