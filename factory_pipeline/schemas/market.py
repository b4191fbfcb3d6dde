"""Row models of the market tables, used to validate imported rows and API pages.

The store keeps these in columnar DuckDB tables (not JSON documents); the models document the
columns and give one place to validate a row coming from outside.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OhlcvBar(BaseModel):
    """A bar stamped at its open time; known at ``close_time``."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    open_time: int = Field(description="ms since epoch, UTC")
    close_time: int
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> OhlcvBar:
        if not (self.low <= min(self.open, self.close) and max(self.open, self.close) <= self.high):
            raise ValueError("OHLC inconsistent: need low <= open, close <= high")
        if self.close_time <= self.open_time:
            raise ValueError("close_time must be after open_time")
        return self


class FundingRate(BaseModel):
    model_config = ConfigDict(frozen=True)

    symbol: str
    funding_time: int = Field(description="settlement time, ms since epoch")
    rate: float


class OpenInterest(BaseModel):
    model_config = ConfigDict(frozen=True)

    symbol: str
    ts: int = Field(description="publication time, ms since epoch")
    open_interest: float = Field(ge=0)


class MarkPrice(BaseModel):
    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    open_time: int
    close: float = Field(gt=0)
