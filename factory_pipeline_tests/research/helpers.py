"""Shared builders for the research tests: hand-made frames, a tiny module library with an
always-long entry, and system documents."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np

from factory_pipeline.engine.system_backtest import DEFAULT_EXECUTION
from factory_pipeline.market.frame import MarketFrame, make_frame
from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.market.timeframes import DAY_MS, timeframe_ms
from factory_pipeline.schemas import ModuleDoc, SystemDoc
from factory_pipeline.strategy.modules import load_module_library
from factory_pipeline.strategy.systems import SystemSpec, to_system_doc

START_MS = int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)

#: No costs, no funding: hand-derivable equity.
FREE = dataclasses.replace(
    DEFAULT_EXECUTION, taker_fee=0.0, maker_fee=0.0, slippage_bps=0.0, funding_interval_ms=0
)
#: Real fees and slippage but no funding (hand frames have no funding history).
COSTLY = dataclasses.replace(DEFAULT_EXECUTION, funding_interval_ms=0)


def library() -> dict[str, ModuleDoc]:
    """The project's library plus test modules: an always-long/always-short entry, an entry
    whose parameter changes nothing, and an exit that never fires."""
    lib = load_module_library()
    template = lib["entry_sma_cross"]
    exit_template = lib["exit_ma_cross"]
    extra = {
        "entry_always_long": template.model_copy(
            update={"id": "entry_always_long", "parameters": {},
                    "logic": {"long": "close > 0", "short": "close < 0"}}
        ),
        "entry_always_short": template.model_copy(
            update={"id": "entry_always_short", "parameters": {},
                    "logic": {"long": "close < 0", "short": "close > 0"}}
        ),
        "entry_inert_param": template.model_copy(
            update={"id": "entry_inert_param", "parameters": {"k": template.parameters["fast"]},
                    "logic": {"long": "close > 0 * k", "short": "close < 0 * k"}}
        ),
        "exit_never": exit_template.model_copy(
            update={"id": "exit_never", "parameters": {},
                    "logic": {"long": "close < 0", "short": "close < 0"}}
        ),
    }  # fmt: skip
    return {**lib, **extra}


def system(
    lib: dict[str, ModuleDoc],
    *,
    name: str = "always long",
    entry: str = "entry_always_long",
    entry_params: dict[str, Any] | None = None,
    symbols: tuple[str, ...] = ("BTCUSDT",),
    direction: str = "long_only",
    timeframes: dict[str, str] | None = None,
    exits: list[dict[str, Any]] | None = None,
) -> SystemDoc:
    spec = SystemSpec.model_validate(
        {
            "name": name,
            "symbols": list(symbols),
            "timeframes": timeframes or {"H": "1d", "M": "4h", "L": "1h"},
            "direction": direction,
            "entry": {"module": entry, "params": entry_params or {}},
            "exits": exits if exits is not None else [{"module": "exit_never"}],
            "risk": {"module": "risk_fixed_fraction", "params": {"fraction": 1.0}},
        }
    )
    return to_system_doc(spec, lib)


def trend_frame(
    n_days: int,
    *,
    symbol: str = "BTCUSDT",
    timeframe: str = "1h",
    drift: float = 0.0005,
    noise: float = 0.002,
    seed: int = 1,
) -> MarketFrame:
    """Log-normal walk with ``drift`` per bar; open = previous close; +-0.1 % wicks."""
    bar = timeframe_ms(timeframe)
    n = n_days * DAY_MS // bar
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(drift + noise * rng.standard_normal(n)))
    open_ = np.r_[100.0, close[:-1]]
    open_time = START_MS + np.arange(n, dtype=np.int64) * bar
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    return make_frame(symbol, timeframe, open_time, open_, high, low, close)


def synthetic_frame(symbol: str, days: int, timeframe: str = "15m", seed: int = 11) -> MarketFrame:
    """A short stretch of the embedded synthetic market (with funding and open interest)."""
    start = dt.date(2024, 1, 1)
    source = SyntheticSource(
        seed=seed, start_date=start, end_date=start + dt.timedelta(days=days - 1)
    )
    h = source.history(symbol, timeframe)
    return make_frame(
        symbol, timeframe, h.open_time, h.open, h.high, h.low, h.close, h.volume, h.mark,
        h.funding_time, h.funding_rate, h.oi_time, h.oi,
    )  # fmt: skip


def day_span(first_day: int, n_days: int) -> tuple[int, int]:
    """``[start_ms, end_ms)`` of days ``first_day .. first_day + n_days - 1`` after START_MS."""
    return (START_MS + first_day * DAY_MS, START_MS + (first_day + n_days) * DAY_MS)
