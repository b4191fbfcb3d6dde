"""Forecast documents: expectations from a system's backtest trades (hand-computed), stable ids,
the regime known at decision time, and a stored round trip."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow as pa
import pytest

from factory_pipeline.demo.decisions import Decision, PositionState
from factory_pipeline.demo.forecasts import (
    BacktestExpectations,
    build_forecast,
    forecast_id,
    regime_at,
)
from factory_pipeline.market.regimes import REGIME_SCHEMA
from factory_pipeline.schemas import BacktestDoc, BacktestTrade, ForecastDoc, SystemDoc
from factory_pipeline.store import DocumentStore, Store

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _system(spec_hash: str = "h1") -> SystemDoc:
    return SystemDoc(id="sys-a", name="A", spec_hash=spec_hash, spec={})


def _backtest(bid: str, symbol: str, regime: str, spec_hash: str = "h1") -> BacktestDoc:
    return BacktestDoc(
        id=bid, system_id="sys-a", spec_hash=spec_hash, symbol=symbol, regime=regime,
        partition_key=f"{regime}|{symbol}", data_start=T0, data_end=T0, engine_version="1.0",
    )  # fmt: skip


def _trade(tid: str, bid: str, net: float, r: float, qty: float = 1.0) -> BacktestTrade:
    return BacktestTrade(
        id=tid, backtest_id=bid, system_id="sys-a", partition_key="p", side="long",
        entry_time=T0, exit_time=T0, entry_price=100.0, exit_price=100.0 + net, qty=qty,
        gross_pnl=net, net_pnl=net, fees=0.0, funding=0.0, mae=0.0, mfe=0.0, r_multiple=r,
        exit_reason="signal", bars_held=4,
    )  # fmt: skip


@pytest.fixture()
def docs():
    raw = Store(":memory:")
    store = DocumentStore(raw)
    store.upsert(
        [
            _backtest("bt-1", "BTCUSDT", "trend_up"),
            _backtest("bt-2", "ETHUSDT", "range"),
            _backtest("bt-old", "BTCUSDT", "trend_up", spec_hash="h0"),
        ]
    )
    store.upsert(
        [
            _trade("t1", "bt-1", 10.0, 1.0),
            _trade("t2", "bt-1", -5.0, -0.5),
            _trade("t3", "bt-1", 20.0, math.nan),  # no stop: no R
            _trade("t4", "bt-2", -2.0, -1.0),
            _trade("t5", "bt-old", 100.0, 9.0),  # another spec version: ignored
        ]
    )
    yield store
    raw.close()


def test_expectations_use_only_the_current_spec_and_split_by_symbol_and_regime(docs):
    exp = BacktestExpectations.load(docs, _system()).expected("BTCUSDT", "range")
    assert exp["n_trades"] == 4
    assert exp["win_probability"] == pytest.approx(2 / 4)
    assert exp["expected_r"] == pytest.approx((1.0 - 0.5 - 1.0) / 3)
    assert exp["expected_return_pct"] == pytest.approx((10 - 5 + 20 - 2) / 4)  # notional 100
    assert exp["n_trades_symbol"] == 3
    assert exp["win_probability_symbol"] == pytest.approx(2 / 3)
    assert exp["expected_r_symbol"] == pytest.approx(0.25)
    assert exp["n_trades_regime"] == 1 and exp["win_probability_regime"] == 0.0
    assert "n_trades_regime" not in BacktestExpectations.load(docs, _system()).expected(
        "BTCUSDT", "high_vol"
    )
    assert BacktestExpectations.load(docs, _system("h-new")).expected("BTCUSDT") == {}


def test_expectations_of_many_systems_equal_one_load_each(docs):
    other = SystemDoc(id="sys-b", name="B", spec_hash="h1", spec={})
    many = BacktestExpectations.load_many(docs, [_system(), other, _system("h0")])
    assert many["sys-a"].spec_hash == "h0"  # the last version asked for wins
    fresh = BacktestExpectations.load_many(docs, [_system(), other])
    assert repr(fresh["sys-a"]) == repr(BacktestExpectations.load(docs, _system()))  # NaN R
    assert fresh["sys-a"].backtest_ids == ("bt-1", "bt-2")
    assert fresh["sys-b"].trades == () and fresh["sys-b"].backtest_ids == ()
    assert BacktestExpectations.load_many(docs, []) == {}


def test_regime_at_is_the_last_window_that_has_ended():
    day = 86_400_000
    labels = pa.table(
        {
            "window_start": [0, day, 2 * day],
            "window_end": [day, 2 * day, 3 * day],
            "regime": ["range", "trend_up", "high_vol"],
            "score": [0.0, 1.0, 2.0],
        },
        schema=REGIME_SCHEMA,
    )
    assert regime_at(labels, day - 1) == ""
    assert regime_at(labels, day) == "range"
    assert regime_at(labels, 2 * day + 5) == "trend_up"
    assert regime_at(REGIME_SCHEMA.empty_table(), day) == ""


def test_forecast_document_has_a_stable_id_and_survives_the_store(docs):
    bar = int(T0.timestamp() * 1000) + 900_000
    decision = Decision(
        action="reverse", bar_close_ms=bar, reference_price=100.0, side=-1, exit_qty=1.0,
        exit_reason="reverse", entry_qty=2.0, stop_loss=math.nan,
        features={"close": 100.0, "signal.stop_distance": math.nan},
        position_after=PositionState(side=-1, qty=2.0, entry_price=99.98, entry_time_ms=bar),
    )  # fmt: skip
    doc = build_forecast(
        _system(), "BTCUSDT", decision, regime="range", expected={"win_probability": 0.5},
        orders=["oid-1", "oid-2"],
    )  # fmt: skip
    assert doc.id == forecast_id("sys-a", "BTCUSDT", bar)
    assert doc.id != forecast_id("sys-a", "BTCUSDT", bar + 900_000)
    assert doc.id != forecast_id("sys-a", "ETHUSDT", bar)
    assert doc.action == "enter" and "action=reverse" in doc.provenance.notes
    assert doc.decision_time == dt.datetime.fromtimestamp(bar / 1000, tz=dt.UTC)
    assert "signal.stop_distance" not in doc.features  # NaN is not stored
    docs.upsert([doc])
    docs.upsert([doc])  # a re-run replaces
    stored = docs.list(ForecastDoc, {"system_id": "sys-a"})
    assert len(stored) == 1 and stored[0].orders == ["oid-1", "oid-2"]
    state = PositionState.from_features(stored[0].features)
    assert (state.side, state.qty, state.entry_time_ms) == (-1, 2.0, bar)
    assert math.isnan(state.stop_price)
