"""demo_bar_decisions materialized against the local exchange started in-process by the trading
resource: the bar close traded is the configured one, the venue snapshot is persisted next to the
store, and the kill switch is a visible, blocking check (fails while the switch is latched)."""

import datetime as dt

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from factory_pipeline.defs.resources import FactoryStoreResource
from factory_pipeline.defs.trading.assets import demo_bar_decisions, latest_bar_close_ms
from factory_pipeline.defs.trading.resources import TradingResource
from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.store import Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline.trading import KillSwitch

BAR_CLOSE = int(dt.datetime(2025, 6, 1, 10, 15, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.fixture
def setup(tmp_path):
    db = tmp_path / "factory.duckdb"
    store = Store(db)
    source = SyntheticSource(seed=3, start_date=dt.date(2025, 5, 31), end_date=dt.date(2025, 6, 1))
    MarketStore(store).write_batch(source.fetch_all("BTCUSDT", "15m"))
    store.close()
    resources = {
        "factory_store": FactoryStoreResource(duckdb=DuckDBResource(database=str(db))),
        "trading": TradingResource(venue="local"),
    }
    return db, resources


def _run(resources):
    return dg.materialize(
        [demo_bar_decisions],
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"demo_bar_decisions": {"config": {"bar_close_ms": BAR_CLOSE}}}},
        raise_on_error=False,
    )


def test_runner_on_the_local_exchange_with_the_kill_switch_visible(setup):
    db, resources = setup
    result = _run(resources)
    assert result.success
    (event,) = result.asset_materializations_for_node("demo_bar_decisions")
    assert event.metadata["bar_close_ms"].value == BAR_CLOSE
    assert event.metadata["decisions"].value == 0  # no system in demo
    assert event.metadata["kill_switch_tripped"].value is False
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "kill_switch_clear" and check.passed
    assert (db.parent / "factory.duckdb.local_exchange.json").exists()

    KillSwitch(Store(db)).trip("test: daily loss", actor="gateway")
    tripped = _run(resources)
    (check,) = tripped.get_asset_check_evaluations()
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert "daily loss" in check.metadata["reason"].value
    assert not tripped.success  # blocking: the run reports the latched switch


def test_stale_market_data_trips_the_latched_kill_switch(setup):
    """A bar close a day after the last stored bar: the runner refuses to trade on stale data."""
    db, resources = setup
    late = BAR_CLOSE + 2 * 86_400_000
    result = dg.materialize(
        [demo_bar_decisions],
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"demo_bar_decisions": {"config": {"bar_close_ms": late}}}},
        raise_on_error=False,
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and "stale" in check.metadata["reason"].value
    assert KillSwitch(Store(db)).is_tripped()  # latched in the store, not only in the run
    assert not _run(resources).get_asset_check_evaluations()[0].passed  # fresh again: still latched


def test_latest_bar_close():
    assert latest_bar_close_ms(BAR_CLOSE + 14 * 60_000, "15m") == BAR_CLOSE
    assert latest_bar_close_ms(BAR_CLOSE, "15m") == BAR_CLOSE
