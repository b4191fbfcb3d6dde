"""materialize() of the market assets in a test instance: partitions, idempotency, checks,
range runs, regimes, and bad input leaving the previous good data intact."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from factory_pipeline.defs.market.assets import market_bars, regime_labels
from factory_pipeline.defs.resources import build_resources
from factory_pipeline.market.quality import QUALITY_CHECKS
from factory_pipeline.settings import load_settings
from factory_pipeline.store import Store

BARS_PER_DAY = 96  # 15-minute bars


@pytest.fixture
def resources(tmp_path):
    return build_resources(load_settings(data_dir=tmp_path, embedding_backend="hash"))


def _count(tmp_path, sql: str, params: list | None = None) -> int:
    with Store(tmp_path / "factory.duckdb").connect() as con:
        return int(con.execute(sql, params or []).fetchall()[0][0])


def test_one_partition_writes_one_day_and_passes_checks(tmp_path, resources):
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [market_bars],
            resources=resources,
            instance=instance,
            partition_key="2024-03-05|BTCUSDT",
        )
        assert result.success
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert set(checks) == set(QUALITY_CHECKS)
        assert all(c.passed for c in checks.values()), {k: c.metadata for k, c in checks.items()}
        mats = result.asset_materializations_for_node("market_bars")
        assert mats[0].metadata["bars_written"].value == BARS_PER_DAY
        assert "close_normalized" in mats[0].metadata  # small run: plot attached

    assert _count(tmp_path, "SELECT count(*) FROM ohlcv WHERE symbol='BTCUSDT'") == BARS_PER_DAY
    assert _count(tmp_path, "SELECT count(*) FROM ohlcv_resampled WHERE timeframe='1h'") == 24
    assert _count(tmp_path, "SELECT count(*) FROM funding WHERE symbol='BTCUSDT'") == 3


def test_rematerializing_a_partition_replaces_rows(tmp_path, resources):
    with dg.instance_for_test() as instance:
        for _ in range(2):
            assert dg.materialize(
                [market_bars],
                resources=resources,
                instance=instance,
                partition_key="2024-03-05|ETHUSDT",
            ).success
    assert _count(tmp_path, "SELECT count(*) FROM ohlcv") == BARS_PER_DAY
    assert _count(tmp_path, "SELECT count(*) - count(DISTINCT open_time) FROM ohlcv") == 0


def test_range_backfill_runs_once_per_run_and_feeds_regimes(tmp_path, resources):
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: "2024-01-01|BTCUSDT",
        ASSET_PARTITION_RANGE_END_TAG: "2024-02-29|ETHUSDT",
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize([market_bars], resources=resources, instance=instance, tags=tags)
        assert result.success
        # one run materialized every (day, symbol) partition of the rectangle
        keys = {m.partition for m in result.asset_materializations_for_node("market_bars")}
        assert len(keys) == 60 * 2
        regimes = dg.materialize(
            [market_bars, regime_labels],
            selection=[regime_labels],
            resources=resources,
            instance=instance,
            partition_key="BTCUSDT",
        )
        assert regimes.success
    days = 60
    assert _count(tmp_path, "SELECT count(*) FROM ohlcv") == 2 * days * BARS_PER_DAY
    labelled = _count(tmp_path, "SELECT count(*) FROM regimes WHERE symbol='BTCUSDT'")
    assert labelled == days  # one label per daily window


def _write_csv(folder, rows: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    header = "startTime,open,high,low,close,volume,turnover"
    (folder / "BTCUSDT_15m.csv").write_text("\n".join([header, *rows]) + "\n")


def _bars(day: dt.date, n: int, start_price: float = 100.0) -> list[str]:
    t0 = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
    out = []
    for i in range(n):
        p = start_price + i * 0.1
        out.append(f"{t0 + i * 900_000},{p},{p + 1},{p - 1},{p + 0.5},10,1000")
    return out


def test_malformed_file_fails_naming_file_and_keeps_previous_data(tmp_path):
    files_dir = tmp_path / "market_files"
    settings = load_settings(
        data_dir=tmp_path,
        market_source="files",
        market_files_dir=files_dir,
        embedding_backend="hash",
    )
    resources = build_resources(settings)
    day = dt.date(2024, 3, 5)
    _write_csv(files_dir, _bars(day, BARS_PER_DAY))
    with dg.instance_for_test() as instance:
        good = dg.materialize(
            [market_bars],
            resources=resources,
            instance=instance,
            partition_key="2024-03-05|BTCUSDT",
        )
        assert good.success
        funding = {c.check_name: c.passed for c in good.get_asset_check_evaluations()}
        assert funding["funding_complete"]  # no funding files: not expected for a files source
        bad_rows = _bars(day, BARS_PER_DAY)
        parts = bad_rows[10].split(",")
        parts[2] = str(float(parts[4]) - 5)  # high below low: OHLC inconsistent
        bad_rows[10] = ",".join(parts)
        _write_csv(files_dir, bad_rows)
        bad = dg.materialize(
            [market_bars],
            resources=resources,
            instance=instance,
            partition_key="2024-03-05|BTCUSDT",
            raise_on_error=False,
        )
        assert not bad.success
        failure = next(e for e in bad.all_events if e.is_step_failure)
        message = str(failure.step_failure_data.error.to_string())
        assert "BTCUSDT_15m.csv" in message
    # the previous good day is intact
    assert _count(tmp_path, "SELECT count(*) FROM ohlcv") == BARS_PER_DAY
    assert _count(tmp_path, "SELECT max(high) - min(low) FROM ohlcv") > 0
