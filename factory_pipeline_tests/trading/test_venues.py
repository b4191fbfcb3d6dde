"""Stage separation: credentials and hosts decide the venue; live keys never reach the demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory_pipeline.errors import ConfigError
from factory_pipeline.exchange.local import LOCAL_API_KEY, LOCAL_API_SECRET
from factory_pipeline.exchange.local.server import run_local_exchange
from factory_pipeline.settings import FactorySettings
from factory_pipeline.store import Store
from factory_pipeline.trading import OrderRequest, build_gateway, resolve_venue
from factory_pipeline_tests.trading.conftest import HOUR, SYMBOL, T0, new_state


def _settings(tmp_path: Path, **values: object) -> FactorySettings:
    return FactorySettings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_local_exchange_end_to_end_with_the_default_keys(tmp_path: Path) -> None:
    state = new_state()
    state.add_account(LOCAL_API_KEY, LOCAL_API_SECRET, usdt=10_000.0)
    with run_local_exchange(state) as server:
        gateway = build_gateway(
            _settings(tmp_path), Store(tmp_path / "f.duckdb"), base_url=server.url
        )
        gateway.clock_ms = state.clock
        outcome = gateway.submit(
            OrderRequest("sys-a", SYMBOL, "Buy", 1.0, T0 + HOUR, "entry", 100.0)
        )
    assert outcome.status == "filled"
    assert state.accounts[LOCAL_API_KEY].positions[SYMBOL].size == pytest.approx(1.0)


def test_local_exchange_needs_a_loopback_url(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(ConfigError, match="base_url"):
        resolve_venue(settings, stage="demo")
    with pytest.raises(ConfigError, match="loopback"):
        resolve_venue(settings, stage="demo", base_url="https://api-demo.bybit.com")


def test_bybit_demo_uses_the_demo_host_and_demo_keys(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, exchange="bybit_demo", bybit_demo_api_key="dk", bybit_demo_api_secret="ds"
    )
    assert resolve_venue(settings, stage="demo") == ("https://api-demo.bybit.com", "dk", "ds")
    with pytest.raises(ConfigError, match="BYBIT_DEMO_API_KEY"):
        resolve_venue(_settings(tmp_path, exchange="bybit_demo"), stage="demo")


@pytest.mark.parametrize(
    ("values", "base_url", "needle"),
    [
        (
            {"exchange": "bybit_live", "bybit_live_api_key": "lk", "bybit_live_api_secret": "ls"},
            None,
            "refused in the demo stage",
        ),
        (
            {
                "exchange": "bybit_demo",
                "bybit_demo_api_key": "same",
                "bybit_demo_api_secret": "s",
                "bybit_live_api_key": "same",
            },
            None,
            "live API key",
        ),
        (
            {"exchange": "bybit_demo", "bybit_demo_api_key": "dk", "bybit_demo_api_secret": "ds"},
            "https://api.bybit.com",
            "not the Bybit demo host",
        ),
    ],
)
def test_the_demo_stage_refuses_live_keys_and_hosts(
    tmp_path: Path, values: dict, base_url: str | None, needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        resolve_venue(_settings(tmp_path, **values), stage="demo", base_url=base_url)


def test_the_live_test_stage_refuses_demo_hosts_and_keys(tmp_path: Path) -> None:
    live = {"exchange": "bybit_live", "bybit_live_api_key": "lk", "bybit_live_api_secret": "ls"}
    assert (
        resolve_venue(_settings(tmp_path, **live), stage="live_test")[0] == "https://api.bybit.com"
    )
    with pytest.raises(ConfigError, match="refuses the host"):
        resolve_venue(
            _settings(tmp_path, **live), stage="live_test", base_url="https://api-demo.bybit.com"
        )
    with pytest.raises(ConfigError, match="needs FACTORY_EXCHANGE=bybit_live"):
        resolve_venue(_settings(tmp_path, exchange="bybit_demo"), stage="live_test")
    same = {**live, "bybit_demo_api_key": "lk"}
    with pytest.raises(ConfigError, match="demo API key"):
        resolve_venue(_settings(tmp_path, **same), stage="live_test")


def test_build_gateway_refuses_a_limits_file_above_the_ceilings(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    policy.mkdir()
    source = Path(__file__).resolve().parents[2] / "data" / "policy" / "risk_limits.yaml"
    text = source.read_text().replace("max_leverage: 3", "max_leverage: 20")
    (policy / "risk_limits.yaml").write_text(text)
    with pytest.raises(ConfigError, match="max_leverage = 20 is above the compiled ceiling"):
        build_gateway(_settings(tmp_path), Store(":memory:"), base_url="http://127.0.0.1:1")
