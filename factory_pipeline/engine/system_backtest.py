"""Backtesting a system spec: SystemSignals -> simulator inputs, plus stress and the audit.

This is the one place where a compiled system (strategy.signals) meets the simulator
(engine.simulator). Backtest, stress tests, the lookahead audit and (later) the demo runner all
go through :func:`engine_inputs`, so the same spec produces the same orders everywhere.

Sizing rules map onto SimConfig as documented in docs/modules_and_systems.md:
``fixed_fraction`` -> fraction sizing with notional = fraction x equity (leverage cap =
max_leverage); ``risk_per_trade`` -> risk sizing, qty = risk_fraction x equity / stop distance;
``volatility_target`` -> fraction sizing with a per-bar size = min(target_vol / volatility,
max_leverage) / max_leverage; ``fixed_qty`` -> fixed quantity. Management rules set
``breakeven_r``, ``max_bars``, ``partial_tp_r``/``partial_tp_fraction`` and ``trail_mult = 1``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from factory_pipeline.engine.config import SimConfig
from factory_pipeline.engine.lookahead import AuditReport, audit_signals
from factory_pipeline.engine.metrics import compute_metrics
from factory_pipeline.engine.results import BacktestResult
from factory_pipeline.engine.robustness import (
    STRESS_CASES,
    StressCase,
    StressReport,
    delay_signals,
    run_stress,
)
from factory_pipeline.engine.simulator import Signals, simulate
from factory_pipeline.errors import SpecError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.strategy.language import IndicatorCache
from factory_pipeline.strategy.signals import CompiledSystem, SystemSignals

#: Bumped whenever fills, costs or metrics change meaning; stored with every backtest.
ENGINE_VERSION = "1.0"

#: Execution assumptions of the factory's backtests (Bybit linear perpetual, non-VIP fees).
DEFAULT_EXECUTION = SimConfig(
    initial_cash=10_000.0,
    taker_fee=0.00055,
    maker_fee=0.0002,
    slippage_bps=2.0,
    leverage=1.0,
)


@dataclass(frozen=True)
class SystemRun:
    """One backtest of one system on one frame."""

    result: BacktestResult
    metrics: dict[str, float]
    signals: SystemSignals
    config: SimConfig


def engine_inputs(
    signals: SystemSignals, base: SimConfig = DEFAULT_EXECUTION, *, extra_delay_bars: int = 0
) -> tuple[Signals, SimConfig]:
    """The simulator's Signals and SimConfig for ``signals`` under execution assumptions ``base``."""
    p = signals.sizing_params
    rule = signals.sizing_rule
    max_lev = float(p.get("max_leverage", max(base.leverage, 1.0)))
    size_per_bar: np.ndarray | None = None
    if rule == "fixed_fraction":
        sizing, leverage = "fraction", max(max_lev, float(p["fraction"]))
        size = float(p["fraction"]) / leverage
    elif rule == "risk_per_trade":
        sizing, leverage, size = "risk", max_lev, float(p["risk_fraction"])
    elif rule == "volatility_target":
        sizing, leverage, size = "fraction", max_lev, 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            size_per_bar = (
                np.minimum(float(p["target_vol"]) / signals.volatility, max_lev) / max_lev
            )
        size_per_bar[~np.isfinite(size_per_bar)] = np.nan
    elif rule == "fixed_qty":
        sizing, leverage, size = "fixed", max_lev, float(p["qty"])
    else:
        raise SpecError(f"risk rule {rule!r} has no engine mapping")
    m = signals.management
    config = dataclasses.replace(
        base,
        sizing=sizing,
        size=size,
        leverage=leverage,
        breakeven_r=float(m.get("breakeven_after_r", 0.0)),
        max_bars=int(m.get("time_stop_bars", 0)),
        partial_tp_r=float(m.get("partial_tp_r", 0.0)),
        partial_tp_fraction=float(m.get("partial_tp_fraction", base.partial_tp_fraction)),
        trail_mult=1.0 if m.get("trailing_stop") else 0.0,
    )
    d = extra_delay_bars

    def delayed(values: np.ndarray) -> np.ndarray:
        return delay_signals(values, d) if d else values

    engine_signals = Signals(
        entry_long=delayed(signals.entry_long),
        exit_long=delayed(signals.exit_long),
        entry_short=delayed(signals.entry_short),
        exit_short=delayed(signals.exit_short),
        stop_distance=delayed(signals.stop_distance),
        take_profit_distance=delayed(signals.take_profit_distance),
        size=delayed(size_per_bar) if size_per_bar is not None else None,
        trail_distance=delayed(signals.trail_distance),
    )
    return engine_signals, config


def run_system(
    system: CompiledSystem,
    frame: MarketFrame,
    base: SimConfig = DEFAULT_EXECUTION,
    *,
    cache: IndicatorCache | None = None,
    signals: SystemSignals | None = None,
    extra_delay_bars: int = 0,
) -> SystemRun:
    """Compute the system's signals on ``frame`` (unless given) and backtest them."""
    sig = signals if signals is not None else system.signals(frame, cache)
    engine_signals, config = engine_inputs(sig, base, extra_delay_bars=extra_delay_bars)
    result = simulate(frame, engine_signals, config)
    return SystemRun(result=result, metrics=compute_metrics(result), signals=sig, config=config)


def stress_system(
    system: CompiledSystem,
    frame: MarketFrame,
    base: SimConfig = DEFAULT_EXECUTION,
    *,
    cache: IndicatorCache | None = None,
    cases: tuple[StressCase, ...] = STRESS_CASES,
) -> StressReport:
    """Baseline, doubled costs, one extra bar of delay, and both (robustness.run_stress)."""
    sig = system.signals(frame, cache)

    def run_case(case: StressCase) -> dict[str, float]:
        stressed = dataclasses.replace(
            base,
            taker_fee=base.taker_fee * case.fee_multiplier,
            maker_fee=base.maker_fee * case.fee_multiplier,
            slippage_bps=base.slippage_bps * case.slippage_multiplier,
        )
        return run_system(
            system, frame, stressed, signals=sig, extra_delay_bars=case.extra_delay_bars
        ).metrics

    return run_stress(run_case, cases)


def audit_system(
    system: CompiledSystem, frame: MarketFrame, *, n_cuts: int = 6, seed: int = 0
) -> AuditReport:
    """The lookahead audit on every signal array the system produces (fresh cache per cut)."""

    def compute(f: MarketFrame) -> dict[str, np.ndarray]:
        sig = system.signals(f, IndicatorCache())
        return {
            name: getattr(sig, name)
            for name in (
                "entry_long",
                "entry_short",
                "exit_long",
                "exit_short",
                "stop_distance",
                "take_profit_distance",
                "trail_distance",
                "volatility",
            )
        }

    return audit_signals(
        compute, frame, n_cuts=n_cuts, seed=seed, min_prefix=min(400, len(frame) // 2)
    )


def run_summary(run: SystemRun, limit_trades: int = 20) -> dict[str, Any]:
    """JSON-serializable summary for tools and metadata (metrics + the last trades)."""
    trades = run.result.trades_table().to_pylist()
    for row in trades:
        for key in ("entry_time", "exit_time"):
            row[key] = row[key].isoformat() if row.get(key) is not None else None
    return {
        "metrics": {k: _json_float(v) for k, v in run.metrics.items()},
        "trades": trades[-limit_trades:],
        "open_trade": bool(len(run.result.open_trade)),
        "config": run.config.to_dict(),
        "engine_version": ENGINE_VERSION,
    }


def _json_float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
