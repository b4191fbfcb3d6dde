"""The day-closed sensor with Dagster's sensor context over a store with demo fills: one run per
closed day with trades (run key = the day), the cursor advances over days without trades, the
current day is never requested, and nothing is launched before any demo trade."""

import datetime as dt

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from factory_pipeline.defs.resources import FactoryStoreResource
from factory_pipeline.defs.trading import sensors
from factory_pipeline.defs.trading.assets import demo_bar_decisions, demo_daily_evaluation
from factory_pipeline.defs.trading.resources import TradingResource
from factory_pipeline.defs.trading.sensors import demo_day_closed_sensor
from factory_pipeline.store import Store
from factory_pipeline_tests.defs_trading.helpers import demo_system, round_trip, round_trips

D1 = dt.date(2025, 6, 1)
D2 = D1 + dt.timedelta(days=1)
D3 = D1 + dt.timedelta(days=2)
D4 = D1 + dt.timedelta(days=3)


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "factory.duckdb"
    Store(path)  # schema
    return path


@pytest.fixture
def tick(db_path, monkeypatch):
    """Evaluate the sensor as of UTC day ``today`` with ``cursor``."""

    def evaluate(today: dt.date, cursor: str | None):
        monkeypatch.setattr(sensors, "utc_today", lambda: today)
        resources = {
            "factory_store": FactoryStoreResource(duckdb=DuckDBResource(database=str(db_path))),
            "trading": TradingResource(),
        }
        definitions = dg.Definitions(
            assets=[demo_bar_decisions, demo_daily_evaluation],
            sensors=[demo_day_closed_sensor],
            resources=resources,
        )
        with dg.build_sensor_context(
            cursor=cursor, resources=resources, definitions=definitions
        ) as context:
            return demo_day_closed_sensor.evaluate_tick(context)

    return evaluate


def test_nothing_before_any_demo_trade(tick, db_path):
    demo_system(Store(db_path))
    data = tick(D4, None)
    assert data.run_requests == []
    assert "no demo system has traded" in data.skip_message
    assert data.cursor is None


def test_one_run_per_closed_day_with_trades_and_the_cursor_advances(tick, db_path):
    store = Store(db_path)
    system = demo_system(store)
    round_trip(store, system.id, D1, entry=100.0, exit=101.0)
    round_trip(store, system.id, D3, entry=100.0, exit=101.0)  # nothing on D2

    # on D3 only D1 and D2 are closed: D1 is requested, D2 (no trades) passed over, D3 not yet
    first = tick(D3, None)
    assert [(r.run_key, r.partition_key) for r in first.run_requests] == [
        (D1.isoformat(), D1.isoformat())
    ]
    assert first.cursor == D2.isoformat()
    assert first.run_requests[0].tags["dagster/max_retries"] == "0"

    # same day again: nothing new has closed
    same = tick(D3, first.cursor)
    assert same.run_requests == []
    assert same.skip_message and same.cursor in (None, first.cursor)

    # once D3 has closed it is requested, exactly once
    second = tick(D4, first.cursor)
    assert [r.partition_key for r in second.run_requests] == [D3.isoformat()]
    assert second.cursor == D3.isoformat()
    third = tick(D4, second.cursor)
    assert third.run_requests == []


def test_closed_days_without_trades_only_move_the_cursor(tick, db_path):
    store = Store(db_path)
    system = demo_system(store)
    round_trip(store, system.id, D1, entry=100.0, exit=101.0)
    data = tick(D4, D1.isoformat())
    assert data.run_requests == []
    assert data.cursor == D3.isoformat()
    assert "no demo trades" in data.skip_message


def test_a_long_gap_is_caught_up_over_several_ticks(tick, db_path):
    store = Store(db_path)
    system = demo_system(store)
    days = [D1 + dt.timedelta(days=n) for n in range(0, 40, 3)]
    round_trips(store, system.id, days, entry=100.0, exit=101.0)
    today = D1 + dt.timedelta(days=60)
    requested, cursor = [], None
    for _ in range(3):
        data = tick(today, cursor)
        requested += [r.partition_key for r in data.run_requests]
        cursor = data.cursor or cursor
    assert requested == [d.isoformat() for d in days]
    assert cursor == (today - dt.timedelta(days=1)).isoformat()
