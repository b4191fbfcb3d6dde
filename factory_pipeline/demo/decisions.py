"""One system's decision at one bar close: the backtest's rules, applied to a live position.

Why a separate, pure module: demo and live must trade the *same* compiled spec the backtest
tested (design principle 6). The simulator decides inside a numba loop over history; here the
same rules are applied to one bar with the position fed in from outside (the venue), so a test can
replay decisions bar by bar and compare them with ``engine.system_backtest.run_system``.

Rules (docs/demo_runner.md, mirroring docs/backtest_semantics.md "Decisions"):

- in a long: ``exit_long`` closes (reason ``signal``), else ``entry_short`` closes and reverses
  (``reverse``), else the time stop closes when the position would have been held
  ``time_stop_bars`` at the next open (``time``), else a tracked stop level the bar touched closes
  at market (``stop``), else a tracked take-profit level the bar touched (``take_profit``);
  shorts mirror this. The stop is checked first, as the simulator assumes when both are touched;
- entries: ``entry_long`` alone opens a long, ``entry_short`` alone a short; an entry in the
  direction of a position that is not being closed is ignored (no pyramiding);
- sizing is ``engine_inputs``' mapping evaluated at this bar with the decision price (the close,
  moved by the configured slippage) standing in for the next open;
- stop-loss / take-profit prices are the signals' distances from the decision price; management
  (breakeven after R, trailing stop) is evaluated at the close and returns the new stop level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from factory_pipeline.engine.config import SimConfig
from factory_pipeline.engine.system_backtest import DEFAULT_EXECUTION, engine_inputs
from factory_pipeline.errors import SpecError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.market.timeframes import timeframe_ms
from factory_pipeline.strategy.language import EvalContext, IndicatorCache
from factory_pipeline.strategy.signals import CompiledSystem, SystemSignals

Action = Literal["enter", "exit", "reverse", "hold", "skip"]

#: Bars loaded before the decision bar beyond the system's warm-up (recursive indicators such
#: as EMAs converge over this many bars, so a window decides like the full history).
MIN_EXTRA_BARS = 500


@dataclass(frozen=True)
class PositionState:
    """A system's position on one symbol as the runner tracks it between bar closes.

    ``entry_time_ms`` is the fill time (the open of the bar after the entry decision);
    ``risk`` the initial stop distance R (NaN without a stop); ``stop_price`` the current stop
    level (moved by breakeven / trailing), ``take_profit_price`` the target (NaN: none).
    """

    side: int = 0
    qty: float = 0.0
    entry_price: float = math.nan
    entry_time_ms: int = 0
    risk: float = math.nan
    stop_price: float = math.nan
    take_profit_price: float = math.nan
    breakeven_done: bool = False

    @property
    def is_flat(self) -> bool:
        return self.side == 0

    def to_features(self) -> dict[str, float]:
        """The state as ``state.*`` numbers (stored in the ForecastDoc's features)."""
        return {
            "state.side": float(self.side),
            "state.qty": float(self.qty),
            "state.entry_price": float(self.entry_price),
            "state.entry_time_ms": float(self.entry_time_ms),
            "state.risk": float(self.risk),
            "state.stop_price": float(self.stop_price),
            "state.take_profit_price": float(self.take_profit_price),
            "state.breakeven_done": 1.0 if self.breakeven_done else 0.0,
        }

    @classmethod
    def from_features(cls, features: Mapping[str, float]) -> PositionState:
        """Inverse of :meth:`to_features` (missing keys: flat)."""
        if "state.side" not in features:
            return FLAT

        def get(key: str) -> float:
            value = features.get(f"state.{key}")
            return math.nan if value is None else float(value)

        return cls(
            side=int(get("side")),
            qty=get("qty"),
            entry_price=get("entry_price"),
            entry_time_ms=int(get("entry_time_ms")),
            risk=get("risk"),
            stop_price=get("stop_price"),
            take_profit_price=get("take_profit_price"),
            breakeven_done=get("breakeven_done") == 1.0,
        )


FLAT = PositionState()


@dataclass(frozen=True)
class Decision:
    """What the runner does for one system and symbol at one bar close.

    ``action``: ``enter`` (flat -> position), ``exit`` (position -> flat), ``reverse`` (close and
    open a new position, opposite or same side), ``hold`` (keep the position; ``new_stop`` may
    move its stop), ``skip`` (flat and staying flat; ``reason`` says why when an entry signal
    was dropped). ``exit_qty`` closes the current position, ``entry_qty`` (>0) opens ``side``.
    Prices are NaN when absent. ``position_after`` is the state expected once the orders fill
    at the decision price.
    """

    action: Action
    bar_close_ms: int
    reference_price: float
    side: int
    exit_qty: float = 0.0
    exit_reason: str = ""
    entry_qty: float = 0.0
    stop_loss: float = math.nan
    take_profit: float = math.nan
    partial_tp_price: float = math.nan
    partial_tp_qty: float = 0.0
    new_stop: float = math.nan
    reason: str = ""
    features: dict[str, float] = field(default_factory=dict)
    position_after: PositionState = FLAT

    @property
    def target_qty(self) -> float:
        """Signed position once the decision's orders fill."""
        return self.position_after.side * self.position_after.qty


@dataclass
class SignalWindow:
    """A frame and the system's signals on it, computed once and read at any bar.

    The replay and the bar-by-bar test evaluate the signals on a long frame once (the language is
    causal, so values at bar i equal those on the frame truncated at i) and decide at each bar.
    """

    system: CompiledSystem
    frame: MarketFrame
    signals: SystemSignals
    cache: IndicatorCache
    engine_size: np.ndarray | None
    config: SimConfig

    @classmethod
    def compute(
        cls,
        system: CompiledSystem,
        frame: MarketFrame,
        base: SimConfig = DEFAULT_EXECUTION,
        cache: IndicatorCache | None = None,
    ) -> SignalWindow:
        cache = cache if cache is not None else IndicatorCache()
        signals = system.signals(frame, cache)
        engine_signals, config = engine_inputs(signals, base)
        return cls(system, frame, signals, cache, engine_signals.size, config)

    def index_of_close(self, bar_close_ms: int) -> int | None:
        """Index of the bar closing exactly at ``bar_close_ms`` (None when absent)."""
        i = int(np.searchsorted(self.frame.close_time, bar_close_ms, side="left"))
        if i < len(self.frame) and int(self.frame.close_time[i]) == bar_close_ms:
            return i
        return None


def decision_window_bars(system: CompiledSystem) -> int:
    """Bars to load before (and including) the decision bar: three times the warm-up, at least
    the warm-up plus :data:`MIN_EXTRA_BARS` (so EMA-type indicators have converged)."""
    warmup = system.warmup_bars
    return max(3 * warmup, warmup + MIN_EXTRA_BARS)


def decide(
    system: CompiledSystem,
    frame: MarketFrame,
    position: PositionState,
    equity: float,
    *,
    base: SimConfig = DEFAULT_EXECUTION,
    qty_step: float = 0.0,
    min_notional: float = 0.0,
) -> Decision:
    """The decision at the close of the frame's last bar (see the module docstring)."""
    if len(frame) == 0:
        raise SpecError(f"system '{system.spec.name}': no bars to decide on")
    window = SignalWindow.compute(system, frame, base)
    return decide_at(
        window, len(frame) - 1, position, equity, qty_step=qty_step, min_notional=min_notional
    )


def decide_at(
    window: SignalWindow,
    i: int,
    position: PositionState,
    equity: float,
    *,
    qty_step: float = 0.0,
    min_notional: float = 0.0,
    with_features: bool = True,
) -> Decision:
    """The decision at the close of bar ``i`` of ``window`` for ``position`` and ``equity``.

    ``qty_step`` / ``min_notional`` are the venue's (0: continuous, none); quantities are
    rounded down to the step and an entry below the minimum notional is skipped, as the
    simulator does with the same config fields.
    """
    frame, sig, config = window.frame, window.signals, window.config
    close = float(frame.close[i])
    bar_close = int(frame.close_time[i])
    features = _features(window, i) if with_features else {}
    slip = config.slippage_bps * 1e-4

    go_long = bool(sig.entry_long[i])
    go_short = bool(sig.entry_short[i])
    side = position.side
    exit_reason = ""
    if side > 0:
        if sig.exit_long[i]:
            exit_reason = "signal"
        elif go_short:
            exit_reason = "reverse"
    elif side < 0:
        if sig.exit_short[i]:
            exit_reason = "signal"
        elif go_long:
            exit_reason = "reverse"
    max_bars = config.max_bars
    held = _bars_held_at_next_open(frame, i, position.entry_time_ms) if side != 0 else 0
    if side != 0 and not exit_reason and max_bars > 0 and held >= max_bars:
        exit_reason = "time"
    if side != 0 and not exit_reason and _stop_touched(frame, i, position):
        exit_reason = "stop"
    if side != 0 and not exit_reason and _target_touched(frame, i, position):
        exit_reason = "take_profit"

    enter = 0
    if go_long and not go_short:
        enter = 1
    elif go_short and not go_long:
        enter = -1
    if enter == side and not exit_reason:
        enter = 0  # already positioned that way: no pyramiding

    base_decision = Decision(
        action="skip", bar_close_ms=bar_close, reference_price=close, side=0, features=features
    )
    # Management of a position that stays open: breakeven and trailing, effective next bar.
    if side != 0 and not exit_reason:
        new_stop, be_done = _managed_stop(window, i, position)
        after = replace(
            position,
            stop_price=new_stop if math.isfinite(new_stop) else position.stop_price,
            breakeven_done=be_done,
        )
        moved = math.isfinite(new_stop) and not _same(new_stop, position.stop_price)
        return replace(
            base_decision,
            action="hold",
            side=side,
            new_stop=new_stop if moved else math.nan,
            position_after=after,
        )

    exit_qty = position.qty if exit_reason else 0.0
    if enter == 0:
        if exit_reason:
            return replace(
                base_decision,
                action="exit",
                side=0,
                exit_qty=exit_qty,
                exit_reason=exit_reason,
            )
        reason = "both entry signals" if go_long and go_short else ""
        return replace(base_decision, reason=reason)

    fill_price = close * (1.0 + enter * slip)
    entry_qty, skip_reason = _entry_qty(
        window, i, enter, fill_price, equity, qty_step, min_notional
    )
    if entry_qty <= 0.0:
        if exit_reason:
            return replace(
                base_decision,
                action="exit",
                exit_qty=exit_qty,
                exit_reason=exit_reason,
                reason=f"entry skipped: {skip_reason}",
            )
        return replace(base_decision, reason=f"entry skipped: {skip_reason}")

    stop_d = float(sig.stop_distance[i])
    tp_d = float(sig.take_profit_distance[i])
    risk = stop_d if stop_d > 0 else math.nan
    stop_loss = fill_price - enter * risk if math.isfinite(risk) else math.nan
    take_profit = fill_price + enter * tp_d if tp_d > 0 else math.nan
    partial_price, partial_qty = math.nan, 0.0
    if config.partial_tp_r > 0 and math.isfinite(risk):
        part = _round_down(entry_qty * config.partial_tp_fraction, qty_step)
        if 0.0 < part < entry_qty:
            partial_price = fill_price + enter * config.partial_tp_r * risk
            partial_qty = part
    after = PositionState(
        side=enter,
        qty=entry_qty,
        entry_price=fill_price,
        entry_time_ms=bar_close,
        risk=risk,
        stop_price=stop_loss,
        take_profit_price=take_profit,
    )
    return replace(
        base_decision,
        action="reverse" if exit_reason else "enter",
        side=enter,
        exit_qty=exit_qty,
        exit_reason=exit_reason,
        entry_qty=entry_qty,
        stop_loss=stop_loss,
        take_profit=take_profit,
        partial_tp_price=partial_price,
        partial_tp_qty=partial_qty,
        position_after=after,
    )


# -- helpers ---------------------------------------------------------------------------------


def _entry_qty(
    window: SignalWindow,
    i: int,
    direction: int,
    fill_price: float,
    equity: float,
    qty_step: float,
    min_notional: float,
) -> tuple[float, str]:
    """The simulator's ``_open`` sizing at bar ``i`` (same formulas, same cap, same skips)."""
    config = window.config
    f = config.size
    if window.engine_size is not None and math.isfinite(float(window.engine_size[i])):
        f = float(window.engine_size[i])
    elif window.engine_size is not None:
        return 0.0, "volatility undefined"
    if not (equity > 0.0 and f > 0.0 and fill_price > 0.0):
        return 0.0, f"equity {equity:.2f} or size {f} not positive"
    fee = config.taker_fee
    lev = config.leverage
    if config.sizing == "fraction":
        q = f * equity * lev / (fill_price * (1.0 + fee))
    elif config.sizing == "risk":
        stop_d = float(window.signals.stop_distance[i])
        if not stop_d > 0.0:
            return 0.0, "no stop distance for risk sizing"
        q = f * equity / stop_d
    else:
        q = f
    q = min(q, equity * lev / (fill_price * (1.0 + fee)))
    q = _round_down(q, max(qty_step, config.qty_step))
    notional_min = max(min_notional, config.min_notional)
    if not q > 0.0:
        return 0.0, "quantity rounds to zero"
    if q * fill_price < notional_min:
        return 0.0, f"notional {q * fill_price:.2f} below minimum {notional_min:.2f}"
    return q, ""


def _bars_held_at_next_open(frame: MarketFrame, i: int, entry_time_ms: int) -> int:
    """Bars the position will have been held at the next open (the simulator's
    ``i + 1 - entry_bar``); by time when the entry bar is outside the frame."""
    entry_bar = int(np.searchsorted(frame.open_time, entry_time_ms, side="left"))
    if entry_bar < len(frame) and int(frame.open_time[entry_bar]) == entry_time_ms:
        return i + 1 - entry_bar
    return (int(frame.close_time[i]) - entry_time_ms) // timeframe_ms(frame.timeframe)


def _stop_touched(frame: MarketFrame, i: int, position: PositionState) -> bool:
    """The bar's range reached the tracked stop (a level the venue did not execute)."""
    stop = position.stop_price
    if not math.isfinite(stop):
        return False
    if position.side > 0:
        return bool(frame.low[i] <= stop)
    return bool(frame.high[i] >= stop)


def _target_touched(frame: MarketFrame, i: int, position: PositionState) -> bool:
    """The bar's range reached the tracked take-profit level."""
    target = position.take_profit_price
    if not math.isfinite(target):
        return False
    if position.side > 0:
        return bool(frame.high[i] >= target)
    return bool(frame.low[i] <= target)


def _managed_stop(window: SignalWindow, i: int, position: PositionState) -> tuple[float, bool]:
    """Stop level after breakeven and trailing at the close of bar ``i`` (the simulator's
    management step: extremes since the entry bar, breakeven once, trailing only tightens)."""
    frame, config = window.frame, window.config
    side, entry, risk = position.side, position.entry_price, position.risk
    stop = position.stop_price
    be_done = position.breakeven_done
    start = int(np.searchsorted(frame.open_time, position.entry_time_ms, side="left"))
    start = min(max(start, 0), i)
    hh = float(np.max(frame.high[start : i + 1]))
    ll = float(np.min(frame.low[start : i + 1]))
    if config.breakeven_r > 0 and not be_done and risk > 0:
        if side > 0 and hh >= entry + config.breakeven_r * risk:
            be_done = True
            if not stop >= entry:
                stop = entry
        elif side < 0 and ll <= entry - config.breakeven_r * risk:
            be_done = True
            if not stop <= entry:
                stop = entry
    if config.trail_mult > 0:
        distance = config.trail_mult * float(window.signals.trail_distance[i])
        if distance > 0:
            if side > 0 and not hh - distance <= stop:
                stop = hh - distance
            elif side < 0 and not ll + distance >= stop:
                stop = ll + distance
    return stop, be_done


def _features(window: SignalWindow, i: int) -> dict[str, float]:
    """Snapshot at bar ``i``: the bar, the combined signals, and every module expression."""
    frame, sig = window.frame, window.signals
    out: dict[str, float] = {
        name: float(getattr(frame, name)[i])
        for name in ("open", "high", "low", "close", "volume", "mark")
    }
    for name in ("funding_rate", "open_interest"):
        value = float(getattr(frame, name)[i])
        if math.isfinite(value):
            out[name] = value
    for name in ("entry_long", "entry_short", "exit_long", "exit_short"):
        out[f"signal.{name}"] = 1.0 if getattr(sig, name)[i] else 0.0
    for name in ("stop_distance", "take_profit_distance", "trail_distance", "volatility"):
        value = float(getattr(sig, name)[i])
        if math.isfinite(value):
            out[f"signal.{name}"] = value
    if window.engine_size is not None and math.isfinite(float(window.engine_size[i])):
        out["signal.size"] = float(window.engine_size[i])
    ctx = EvalContext(frame, window.cache)
    for part in window.system.parts:
        for key in part.expressions:
            value = float(np.asarray(part.evaluate(key, ctx))[i])
            if math.isfinite(value):
                out[f"{part.path}.{key}"] = value
    return out


def _round_down(q: float, step: float) -> float:
    """The simulator's rounding: down to a multiple of ``step`` (0 = unchanged)."""
    if step <= 0.0:
        return q
    k = math.floor(q / step)
    if (k + 1.0) * step <= q:
        k += 1.0
    elif k * step > q:
        k -= 1.0
    return k * step


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b
