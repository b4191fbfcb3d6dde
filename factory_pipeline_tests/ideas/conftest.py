"""Shared fixtures of the idea-track tests: the real module library, small synthetic frames,
concept cards with known timestamps."""

from __future__ import annotations

import datetime as dt

import pytest

from factory_pipeline.market.frame import MarketFrame, make_frame
from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.schemas import EvidenceQuote, KbConcept, ModuleDoc, Provenance
from factory_pipeline.strategy.modules import load_module_library
from factory_pipeline_tests.fakes.openai_server import fake_openai_server  # noqa: F401

AS_OF = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def synthetic_frame(symbol: str, days: int = 32, seed: int = 3) -> MarketFrame:
    """About ``days`` x 96 bars of seeded synthetic 15m data as a MarketFrame."""
    source = SyntheticSource(
        seed=seed,
        start_date=dt.date(2024, 1, 1),
        end_date=dt.date(2024, 1, 1) + dt.timedelta(days=days - 1),
    )
    batch = source.fetch_all(symbol, "15m")
    bars = batch.ohlcv
    return make_frame(
        symbol,
        "15m",
        bars["open_time"].to_numpy(),
        bars["open"].to_numpy(),
        bars["high"].to_numpy(),
        bars["low"].to_numpy(),
        bars["close"].to_numpy(),
        volume=bars["volume"].to_numpy(),
        funding_time=batch.funding["funding_time"].to_numpy(),
        funding_rates=batch.funding["rate"].to_numpy(),
        oi_time=batch.open_interest["ts"].to_numpy(),
        oi_values=batch.open_interest["open_interest"].to_numpy(),
    )


def coverage_of(frames: dict[str, MarketFrame]) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (symbol, frame.timeframe): (int(frame.open_time[0]), int(frame.open_time[-1]))
        for symbol, frame in frames.items()
    }


def make_concept(
    cid: str,
    name: str,
    description: str,
    *,
    created_at: dt.datetime = AS_OF - dt.timedelta(days=30),
    book: str = "book-trend",
    page: int = 7,
    tags: tuple[str, ...] = (),
) -> KbConcept:
    return KbConcept(
        id=cid,
        name=name,
        description=description,
        entry_ideas=[description],
        tags=list(tags),
        evidence=[EvidenceQuote(segment_id=f"seg-{cid}", page=page, quote=description)],
        provenance=Provenance(book_ids=[book], pages=[page], segment_ids=[f"seg-{cid}"]),
        created_at=created_at,
    )


@pytest.fixture(scope="session")
def library() -> dict[str, ModuleDoc]:
    return load_module_library()


@pytest.fixture(scope="session")
def frames() -> dict[str, MarketFrame]:
    return {symbol: synthetic_frame(symbol) for symbol in SYMBOLS}


@pytest.fixture(scope="session")
def concepts() -> list[KbConcept]:
    return [
        make_concept(
            "concept-ma",
            "Moving average crossover",
            "Enter long when the fast moving average crosses above the slow moving average "
            "in the direction of the higher timeframe trend.",
            page=12,
        ),
        make_concept(
            "concept-rsi",
            "RSI oversold reversion",
            "Buy when RSI is oversold below 30 and exit when it returns to the mean.",
            book="book-mr",
            page=33,
        ),
        make_concept(
            "concept-squeeze",
            "Volatility squeeze breakout",
            "A Bollinger squeeze precedes a volatility breakout; trade the breakout with an ATR "
            "stop.",
            book="book-vol",
            page=5,
        ),
    ]
