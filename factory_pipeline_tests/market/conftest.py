"""Fixtures for the market tests: a fake Bybit server, a market store, small synthetic data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.store.db import Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline_tests.fakes.bybit_server import FakeBybitServer, run_fake_bybit


@pytest.fixture
def fake_bybit() -> Iterator[FakeBybitServer]:
    """A running fake Bybit v5 server on 127.0.0.1 (load data with ``.state.load(batch)``)."""
    with run_fake_bybit() as server:
        yield server


@pytest.fixture
def market_store(tmp_path: Path) -> Iterator[MarketStore]:
    store = Store(tmp_path / "market.duckdb")
    yield MarketStore(store)
    store.close()


@pytest.fixture(scope="session")
def week_source() -> SyntheticSource:
    """Six days of synthetic data (2024-01-01 .. 2024-01-06)."""
    return SyntheticSource(seed=11, start_date=dt.date(2024, 1, 1), end_date=dt.date(2024, 1, 6))
