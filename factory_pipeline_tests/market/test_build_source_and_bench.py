"""build_source picks the configured source; the market bench runs and reports its figures."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from factory_pipeline.bench import market as market_bench
from factory_pipeline.market.bybit import BybitSource
from factory_pipeline.market.files import FileSource
from factory_pipeline.market.source import MarketSource, build_source
from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.settings import FactorySettings


def test_build_source_for_each_kind(tmp_path: Path) -> None:
    synthetic = build_source(
        FactorySettings(
            synthetic_seed=3,
            synthetic_start=dt.date(2024, 2, 1),
            synthetic_end=dt.date(2024, 2, 3),
            data_dir=tmp_path,
        )
    )
    assert isinstance(synthetic, SyntheticSource) and isinstance(synthetic, MarketSource)
    assert (synthetic.seed, synthetic.start_date, synthetic.end_date) == (
        3,
        dt.date(2024, 2, 1),
        dt.date(2024, 2, 3),
    )
    files = build_source(FactorySettings(market_source="files", data_dir=tmp_path))
    assert isinstance(files, FileSource) and files.folder == tmp_path / "market_files"
    bybit = build_source(
        FactorySettings(
            market_source="bybit", bybit_rest_url="http://127.0.0.1:9/", data_dir=tmp_path
        )
    )
    assert isinstance(bybit, BybitSource)
    assert bybit.session.endpoint == "http://127.0.0.1:9"
    assert {s.name for s in (synthetic, files, bybit)} == {"synthetic", "files", "bybit"}


def test_market_bench_quick_run_reports_every_figure() -> None:
    figures = market_bench.run(quick=True)
    assert figures["bars"] == 100_000
    for name in ("generate_bars_per_s", "store_bars_per_s", "resample_bars_per_s"):
        assert figures[name] > 0, name
    assert set(market_bench.TARGETS) <= set(figures)
    assert figures["resample_bars_per_s"] == pytest.approx(
        3 * figures["bars"] / figures["resample_s"]
    )
