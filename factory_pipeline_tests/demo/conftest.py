"""Fixtures of the runner, forecast and replay tests (session-scoped: a seeded synthetic market
store with two months of 15m bars, its BTCUSDT frame, the module library) and the example specs
they trade. Evaluation tests may add their own fixtures here."""

from __future__ import annotations

import datetime as dt

import pytest

from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.store import Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline.strategy.modules import load_module_library
from factory_pipeline.strategy.systems import SystemSpec

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture(scope="session")
def library():
    return load_module_library()


@pytest.fixture(scope="session")
def market_db(tmp_path_factory):
    """A DuckDB file with two months of synthetic 15m BTCUSDT and ETHUSDT bars."""
    path = tmp_path_factory.mktemp("demo-market") / "factory.duckdb"
    source = SyntheticSource(seed=5, start_date=START.date(), end_date=END.date())
    market = MarketStore(Store(path))
    for symbol in ("BTCUSDT", "ETHUSDT"):
        market.write_batch(source.fetch(symbol, "15m", ms(START), ms(END)))
    return path


@pytest.fixture(scope="session")
def btc_frame(market_db):
    return MarketStore(Store(market_db)).load_frame("BTCUSDT", "15m")


def sma_cross_spec(**overrides) -> SystemSpec:
    """SMA crossover with an H-timeframe trend filter: decisions at the close only, no stops."""
    data = {
        "name": "Demo SMA cross",
        "symbols": ["BTCUSDT"],
        "timeframes": {"H": "4h", "M": "1h", "L": "15m"},
        "direction": "both",
        "entry": {"module": "entry_sma_cross", "params": {"fast": 10, "slow": 30}},
        "exits": [{"module": "exit_ma_cross", "params": {"fast": 5, "slow": 20}}],
        "filters": [{"module": "filter_trend_sma", "params": {"n": 20}, "timeframe": "H"}],
        "risk": {"module": "risk_fixed_fraction", "params": {"fraction": 0.5}},
    }
    data.update(overrides)
    return SystemSpec.model_validate(data)


def rsi_time_stop_spec(**overrides) -> SystemSpec:
    """RSI reversion, exit on recovery or after a time stop; volatility-target sizing."""
    data = {
        "name": "Demo RSI time stop",
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "timeframes": {"H": "4h", "M": "1h", "L": "15m"},
        "direction": "both",
        "entry": {
            "module": "entry_rsi_reversion",
            "params": {"n": 3, "oversold": 15, "overbought": 85},
        },
        "exits": [{"module": "exit_rsi_middle", "params": {"n": 3, "middle": 50}}],
        "risk": {"module": "risk_volatility_target", "params": {"target_vol": 0.004, "vol_n": 48}},
        "management": [{"module": "mgmt_time_stop", "params": {"max_bars": 6}}],
    }
    data.update(overrides)
    return SystemSpec.model_validate(data)
