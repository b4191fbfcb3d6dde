"""Partition definitions shared across tracks.

- ``market_partitions``: symbol x day (dimensions ``date`` and ``symbol``; Dagster orders
  dimension names, so keys read ``"2024-01-01|BTCUSDT"``).
- ``symbol_partitions``: one partition per configured symbol.
- ``regime_partitions``: symbol x regime, used by the backtest track (keys ``"trend_up|BTCUSDT"``).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from factory_pipeline.market.regimes import REGIMES
from factory_pipeline.settings import FactorySettings, default_settings


def symbol_partitions_def(settings: FactorySettings | None = None) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(list((settings or default_settings()).symbols))


def daily_partitions_def(settings: FactorySettings | None = None) -> dg.DailyPartitionsDefinition:
    """Days of market data. The synthetic source has a fixed history; real sources run to today."""
    s = settings or default_settings()
    end = s.synthetic_end + dt.timedelta(days=1) if s.market_source == "synthetic" else None
    return dg.DailyPartitionsDefinition(
        start_date=s.synthetic_start.isoformat(),
        end_date=end.isoformat() if end else None,
        timezone="UTC",
    )


def market_partitions_def(settings: FactorySettings | None = None) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {"date": daily_partitions_def(settings), "symbol": symbol_partitions_def(settings)}
    )


def regime_partitions_def(settings: FactorySettings | None = None) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {
            "regime": dg.StaticPartitionsDefinition(list(REGIMES)),
            "symbol": symbol_partitions_def(settings),
        }
    )


symbol_partitions = symbol_partitions_def()
daily_partitions = daily_partitions_def()
market_partitions = market_partitions_def()
regime_partitions = regime_partitions_def()


def split_market_keys(partition_keys: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Group ``date|symbol`` keys into contiguous date spans per symbol: {symbol: [(first, last)]}.

    A single-run backfill hands an asset many keys at once; fetching one contiguous span per symbol
    is far cheaper than one fetch per day.
    """
    days: dict[str, list[dt.date]] = {}
    for key in partition_keys:
        date_part, symbol = key.split("|")
        days.setdefault(symbol, []).append(dt.date.fromisoformat(date_part))
    spans: dict[str, list[tuple[str, str]]] = {}
    for symbol, dates in sorted(days.items()):
        ordered = sorted(set(dates))
        start = prev = ordered[0]
        out: list[tuple[str, str]] = []
        for day in ordered[1:]:
            if day != prev + dt.timedelta(days=1):
                out.append((start.isoformat(), prev.isoformat()))
                start = day
            prev = day
        out.append((start.isoformat(), prev.isoformat()))
        spans[symbol] = out
    return spans
