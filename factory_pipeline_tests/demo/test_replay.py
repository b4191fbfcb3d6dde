"""replay_demo: a simulated day of demo trading against the in-process local exchange, its
report, a clean reconciliation, and a second replay of the same day that sends nothing new."""

from __future__ import annotations

import shutil

import pytest

from factory_pipeline.demo.replay import replay_demo
from factory_pipeline.errors import SpecError
from factory_pipeline.schemas import ForecastDoc
from factory_pipeline.settings import FactorySettings
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.trading import TradingLedger

from .conftest import rsi_time_stop_spec, sma_cross_spec
from .test_runner import put_in_demo


@pytest.fixture()
def store(market_db, tmp_path):
    path = tmp_path / "factory.duckdb"
    shutil.copyfile(market_db, path)
    return Store(path)


def test_without_demo_systems_the_replay_reports_it_and_trades_nothing(store, tmp_path):
    report = replay_demo(FactorySettings(data_dir=tmp_path), days=2, store=store)
    assert "no system is in demo" in report.message
    assert report.decisions == 0 and report.orders == 0
    with pytest.raises(SpecError):
        replay_demo(FactorySettings(data_dir=tmp_path), days=0, store=store)


@pytest.mark.slow
@pytest.mark.integration
def test_a_day_of_replay_trades_reconciles_and_is_idempotent(store, library, tmp_path):
    ids = put_in_demo(store, library, sma_cross_spec(), rsi_time_stop_spec())
    settings = FactorySettings(data_dir=tmp_path)
    steps: list[int] = []
    report = replay_demo(settings, days=1, store=store, progress=lambda s, n, t: steps.append(t))

    assert report.message == "" and report.refused == {}
    assert report.bar_closes == 96 and len(steps) == 96
    assert steps == sorted(steps) and steps[-1] == report.end_ms
    assert report.end_ms - report.start_ms == 95 * 900_000
    assert report.decisions == 96 * 3  # one system on one symbol, one on two
    assert report.orders > 0
    statuses = {k for s in report.systems.values() for k in s.order_statuses}
    assert "filled" in statuses
    assert report.reconciliation_clean is True and not report.kill_switch_tripped
    docs = DocumentStore(store)
    forecasts = docs.count(ForecastDoc)
    assert forecasts == report.decisions
    ledger = TradingLedger(store)
    for system_id in ids:
        figures = report.systems[system_id]
        fills = ledger.fills(system_id=system_id)
        assert figures.fills == len(fills)
        traded = sum(f.qty if f.side == "Buy" else -f.qty for f in fills if f.symbol == "BTCUSDT")
        assert figures.positions.get("BTCUSDT", 0.0) == pytest.approx(traded, abs=1e-9)

    again = replay_demo(settings, days=1, store=store)
    assert again.decisions == report.decisions and again.fills == 0
    sent_again = {k for s in again.systems.values() for k in s.order_statuses}
    assert sent_again <= {"logged"}  # every bar already decided: nothing sent again
    assert docs.count(ForecastDoc) == forecasts
    for system_id in ids:
        assert again.systems[system_id].equity == pytest.approx(report.systems[system_id].equity)
