"""Project exceptions.

Every error a user can cause (a bad file, a bad config, bad LLM output, an exchange rejection)
is raised as a :class:`FactoryError` subclass whose message names the input and what is wrong,
so the CLI and the Dagster UI can show one clear line instead of a traceback.
"""

from __future__ import annotations


class FactoryError(Exception):
    """Base class for errors caused by inputs, configuration or external services."""


class ConfigError(FactoryError):
    """A setting, policy file or YAML spec is missing or invalid."""


class StoreError(FactoryError):
    """The document or market store rejected a read or write."""


class MarketDataError(FactoryError):
    """Market data (a file, an API page, a generated batch) is malformed or inconsistent."""


class SignalLanguageError(FactoryError):
    """A signal-language expression failed to parse or compile.

    ``position`` is the 0-based character offset in the source text, when known.
    """

    def __init__(self, message: str, source: str = "", position: int | None = None) -> None:
        self.source = source
        self.position = position
        if position is not None and source:
            pointer = " " * position + "^"
            message = f"{message} at position {position}\n  {source}\n  {pointer}"
        super().__init__(message)


class SpecError(FactoryError):
    """A module or system spec is invalid; the message names the offending field."""


class BacktestError(FactoryError):
    """The simulator cannot run on the given inputs (e.g. missing funding while in a position)."""


class BookError(FactoryError):
    """A book file cannot be ingested (corrupt, truncated, encrypted, empty)."""


class LLMError(FactoryError):
    """An LLM backend failed or returned output that does not validate."""


class ExchangeError(FactoryError):
    """The exchange rejected a request or answered ambiguously."""

    def __init__(self, message: str, ret_code: int | None = None) -> None:
        self.ret_code = ret_code
        super().__init__(message)


class RiskLimitError(FactoryError):
    """An order or a limits file would breach a risk ceiling."""
