"""The trading shell loads with the factory's resources, and the trading resource refuses venues
the demo stage must not use before anything is started."""

import dagster as dg
import pytest

from factory_pipeline.defs.resources import build_resources
from factory_pipeline.defs.trading import assets, resources, schedules, sensors
from factory_pipeline.defs.trading.resources import (
    TRADING_RESOURCE_KEY,
    TradingResource,
    trading_resource,
)
from factory_pipeline.errors import ConfigError
from factory_pipeline.settings import load_settings
from factory_pipeline.store import Store


def test_the_trading_definitions_load_with_the_factory_resources(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    definitions = dg.Definitions(
        assets=[assets.demo_bar_decisions, assets.demo_daily_evaluation],
        jobs=[schedules.demo_runner_job],
        schedules=[schedules.demo_runner_schedule],
        sensors=[sensors.demo_day_closed_sensor],
        resources=build_resources(settings),
    )
    dg.Definitions.validate_loadable(definitions)
    repo = definitions.get_repository_def()
    assert repo.has_job("demo_runner_job")
    assert {s.name for s in repo.schedule_defs} == {"demo_runner_schedule"}
    assert {s.name for s in repo.sensor_defs} == {"demo_day_closed_sensor"}
    assert TRADING_RESOURCE_KEY in definitions.resources
    assert resources.trading_resource(settings).venue == "local"


def test_the_resource_follows_the_settings(tmp_path):
    settings = load_settings(data_dir=tmp_path, exchange="bybit_demo", base_timeframe="1h")
    resource = trading_resource(settings)
    assert (resource.venue, resource.base_timeframe) == ("bybit_demo", "1h")
    assert resource.policy_path == str(tmp_path / "policy" / "promotion.yaml")


@pytest.mark.parametrize(
    ("venue", "message"),
    [("bybit_live", "trades on 'local' or 'bybit_demo'"), ("bybit_demo", "BYBIT_DEMO_API_KEY")],
)
def test_live_or_keyless_venues_are_refused(monkeypatch, venue, message):
    for name in ("BYBIT_DEMO_API_KEY", "BYBIT_DEMO_API_SECRET", "BYBIT_LIVE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"FACTORY_{name}", raising=False)
    store = Store(":memory:")
    with (
        pytest.raises(ConfigError, match=message),
        TradingResource(venue=venue).open_gateway(store),
    ):
        pass
