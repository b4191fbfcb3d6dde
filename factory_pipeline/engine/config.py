"""Simulator configuration: one frozen dataclass holding every execution assumption.

A backtest is only reproducible when all of its assumptions (fills, sizing, costs, funding,
liquidation, trade management) are named in one hashable value, so the same ``SimConfig`` can be
stored next to the result and replayed. The numeric kernel receives the config packed into a flat
float64 vector (:func:`pack_config`); the slot names below are the single place that layout is
defined. Semantics are documented in docs/backtest_semantics.md.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any, Literal

import numpy as np

from factory_pipeline.errors import ConfigError
from factory_pipeline.market.timeframes import HOUR_MS

FillMode = Literal["next_open", "signal_close"]
SizingMode = Literal["fraction", "risk", "fixed"]

#: backtesting.py's default order size (``1 - machine epsilon`` of the available margin).
BACKTESTING_PY_FULL_EQUITY = 1.0 - sys.float_info.epsilon


class ExitReason(IntEnum):
    """Why a trade (or its last part) was closed; stored as an int in trade records."""

    SIGNAL = 1
    STOP = 2
    TAKE_PROFIT = 3
    TRAILING = 4
    BREAKEVEN = 5
    TIME = 6
    LIQUIDATION = 7
    REVERSE = 8
    END = 9


@dataclass(frozen=True)
class SimConfig:
    """Execution assumptions of one backtest (see docs/backtest_semantics.md).

    Distances (stop, take-profit, trailing) come per bar with the signals; this config holds the
    rules that turn them into orders.
    """

    initial_cash: float = 10_000.0
    #: ``next_open``: decide at bar close, fill at the next bar's open; ``signal_close``: fill at
    #: the decision bar's close.
    fill: FillMode = "next_open"
    #: ``fraction``: notional = size x equity x leverage; ``risk``: qty = size x equity / stop
    #: distance; ``fixed``: qty = size. A per-bar ``Signals.size`` overrides ``size``.
    sizing: SizingMode = "fraction"
    size: float = 1.0
    #: Isolated-margin leverage: margin = notional / leverage; also the notional cap.
    leverage: float = 1.0
    #: Quantities are rounded down to a multiple of this (0 = continuous).
    qty_step: float = 0.0
    #: Orders whose notional is below this are skipped (and counted).
    min_notional: float = 0.0
    #: Fee rates on notional: taker for market fills and stops, maker for take-profit limits.
    taker_fee: float = 0.00055
    maker_fee: float = 0.0002
    #: Slippage against the trader on market fills and stop fills, in basis points of price.
    slippage_bps: float = 0.0
    #: Funding settlement grid (epoch-aligned); 0 disables funding (spot-like tests).
    funding_interval_ms: int = 8 * HOUR_MS
    maintenance_margin_rate: float = 0.005
    liquidation: bool = True
    #: Move the stop to the entry price once price went ``breakeven_r`` x R in favour (0 = off).
    breakeven_r: float = 0.0
    #: Trailing stop at ``trail_mult`` x ``Signals.trail_distance`` from the extreme (0 = off).
    trail_mult: float = 0.0
    #: Close after this many bars in the trade (0 = off).
    max_bars: int = 0
    #: Take ``partial_tp_fraction`` of the position off at ``partial_tp_r`` x R (0 = off).
    partial_tp_r: float = 0.0
    partial_tp_fraction: float = 0.5
    #: Reproduce backtesting.py's float arithmetic for fraction sizing (parity mode only).
    backtesting_py_sizing: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def backtesting_py(
        cls, cash: float = 10_000.0, commission: float = 0.002, trade_on_close: bool = False
    ) -> SimConfig:
        """The parity preset: backtesting.py 0.6.6 with ``Backtest(data, strategy, cash=cash,
        commission=commission, trade_on_close=trade_on_close)`` and ``buy()``/``sell()`` at the
        default size: whole units, commission charged on entry and exit notional, no slippage,
        no funding, no liquidation."""
        return cls(
            initial_cash=cash,
            fill="signal_close" if trade_on_close else "next_open",
            sizing="fraction",
            size=BACKTESTING_PY_FULL_EQUITY,
            leverage=1.0,
            qty_step=1.0,
            min_notional=0.0,
            taker_fee=commission,
            maker_fee=commission,
            slippage_bps=0.0,
            funding_interval_ms=0,
            liquidation=False,
            backtesting_py_sizing=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping for storing next to a result (BacktestDoc.config)."""
        return asdict(self)


# --- packed layout for the numba kernel (slot indices are compile-time constants there) ------

C_FILL_CLOSE = 0
C_SIZING = 1
C_SIZE = 2
C_LEVERAGE = 3
C_QTY_STEP = 4
C_MIN_NOTIONAL = 5
C_TAKER = 6
C_MAKER = 7
C_SLIP = 8
C_MMR = 9
C_LIQUIDATION = 10
C_BREAKEVEN_R = 11
C_TRAIL_MULT = 12
C_MAX_BARS = 13
C_PARTIAL_R = 14
C_PARTIAL_FRAC = 15
C_BT_SIZING = 16
C_LAST_BAR = 17
N_CONFIG = 18

SIZING_CODES: dict[str, int] = {"fraction": 0, "risk": 1, "fixed": 2}


def pack_config(config: SimConfig, n_bars: int) -> np.ndarray:
    """The config as the float64 vector the kernel reads (``n_bars`` fixes the last bar)."""
    packed = np.zeros(N_CONFIG, dtype=np.float64)
    packed[C_FILL_CLOSE] = 1.0 if config.fill == "signal_close" else 0.0
    packed[C_SIZING] = SIZING_CODES[config.sizing]
    packed[C_SIZE] = config.size
    packed[C_LEVERAGE] = config.leverage
    packed[C_QTY_STEP] = config.qty_step
    packed[C_MIN_NOTIONAL] = config.min_notional
    packed[C_TAKER] = config.taker_fee
    packed[C_MAKER] = config.maker_fee
    packed[C_SLIP] = config.slippage_bps * 1e-4
    packed[C_MMR] = config.maintenance_margin_rate
    packed[C_LIQUIDATION] = 1.0 if config.liquidation else 0.0
    packed[C_BREAKEVEN_R] = config.breakeven_r
    packed[C_TRAIL_MULT] = config.trail_mult
    packed[C_MAX_BARS] = config.max_bars
    packed[C_PARTIAL_R] = config.partial_tp_r
    packed[C_PARTIAL_FRAC] = config.partial_tp_fraction
    packed[C_BT_SIZING] = 1.0 if config.backtesting_py_sizing else 0.0
    packed[C_LAST_BAR] = n_bars - 1
    return packed


def _validate(config: SimConfig) -> None:
    """Reject configs the kernel cannot interpret, naming the field and the bad value."""

    def fail(field: str, rule: str) -> None:
        raise ConfigError(f"SimConfig.{field} {rule}, got {getattr(config, field)!r}")

    if config.fill not in ("next_open", "signal_close"):
        fail("fill", "must be 'next_open' or 'signal_close'")
    if config.sizing not in SIZING_CODES:
        fail("sizing", "must be 'fraction', 'risk' or 'fixed'")
    finite_fields = (
        "initial_cash",
        "size",
        "leverage",
        "qty_step",
        "min_notional",
        "taker_fee",
        "maker_fee",
        "slippage_bps",
        "maintenance_margin_rate",
        "breakeven_r",
        "trail_mult",
        "partial_tp_r",
        "partial_tp_fraction",
    )
    for name in finite_fields:
        value = getattr(config, name)
        if not isinstance(value, int | float) or not math.isfinite(value):
            fail(name, "must be a finite number")
    if config.initial_cash <= 0:
        fail("initial_cash", "must be > 0")
    if config.size <= 0:
        fail("size", "must be > 0")
    if config.leverage <= 0:
        fail("leverage", "must be > 0")
    for name in (
        "qty_step",
        "min_notional",
        "slippage_bps",
        "breakeven_r",
        "trail_mult",
        "partial_tp_r",
    ):
        if getattr(config, name) < 0:
            fail(name, "must be >= 0")
    for name in ("taker_fee", "maker_fee"):
        if not -0.1 <= getattr(config, name) < 0.1:
            fail(name, "must be a rate in [-0.1, 0.1) (e.g. 0.00055 for 0.055%)")
    if not 0 <= config.maintenance_margin_rate < 1:
        fail("maintenance_margin_rate", "must be in [0, 1)")
    if config.liquidation and config.maintenance_margin_rate >= 1 / config.leverage:
        fail("maintenance_margin_rate", "must be below 1 / leverage (else entries liquidate)")
    if not 0 < config.partial_tp_fraction <= 1:
        fail("partial_tp_fraction", "must be in (0, 1]")
    if not isinstance(config.max_bars, int) or config.max_bars < 0:
        fail("max_bars", "must be an int >= 0")
    if not isinstance(config.funding_interval_ms, int) or config.funding_interval_ms < 0:
        fail("funding_interval_ms", "must be an int >= 0 (0 disables funding)")
