"""Settings: defaults are the embedded profile; bad values give one clear line; secrets hidden."""

from __future__ import annotations

import pytest

from factory_pipeline.errors import ConfigError
from factory_pipeline.settings import load_settings


def test_defaults_are_embedded(monkeypatch, tmp_path):
    monkeypatch.setenv("FACTORY_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.database_path == tmp_path / "factory.duckdb"
    assert s.qdrant_location == tmp_path / "qdrant"
    assert s.qdrant_url is None
    assert s.market_source == "synthetic"
    assert s.llm_backend == "offline"
    assert s.exchange == "local"


def test_symbols_from_comma_separated_env(monkeypatch):
    monkeypatch.setenv("FACTORY_SYMBOLS", "BTCUSDT, ETHUSDT")
    assert load_settings().symbols == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("FACTORY_SYMBOLS", "btc-usdt", "symbol"),
        ("FACTORY_MARKET_SOURCE", "carrier-pigeon", "market_source"),
        ("FACTORY_SYNTHETIC_END", "2000-01-01", "synthetic_end"),
    ],
)
def test_bad_values_raise_config_error_naming_the_setting(monkeypatch, var, value, needle):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert needle in str(info.value)


def test_secrets_never_in_repr(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("BYBIT_DEMO_API_SECRET", "bybit-very-secret")
    s = load_settings()
    assert s.openai_api_key.get_secret_value() == "sk-very-secret"
    text = repr(s) + str(s.model_dump())
    assert "sk-very-secret" not in text
    assert "bybit-very-secret" not in text
