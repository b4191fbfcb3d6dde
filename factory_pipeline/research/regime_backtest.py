"""Backtests of candidate systems on the windows of one regime of one symbol (a partition).

The backtest track is partitioned by symbol x regime so results can be read per market
condition. A regime is not one contiguous stretch of history but a set of windows (days labelled
``trend_up``, ...), so a partition's backtest is a chain of window backtests. The semantics (see
docs/research.md) are chosen so that every window is an honest, self-contained trading episode:

- signals are computed ONCE per system on the whole symbol frame: the signal language is causal,
  so the value at a bar is the same as on any prefix, and every window has its warm-up history;
- the account is flat at each window's start: entries are allowed only when decided inside the
  window, from its first bar up to its third-to-last bar;
- a position still open near the window's end is closed by a forced exit decided at the
  window's second-to-last bar and filled like any exit (next bar's open, taker fee, slippage), so
  it is flat during the window's last bar; the trade's exit reason is ``window_end``;
- equity is chained: each window starts with the previous window's final equity.

Because the account is flat outside the windows, this is computed with ONE simulator run over
the bars spanning the windows with masked signals (entries only inside windows, forced exits at
window ends): the equity outside windows is constant, so the in-window equity is exactly the
chained curve, and the engine's fills, costs and funding apply unchanged. Metrics come from
``engine.metrics`` (trade metrics from the run, equity metrics from the chained curve).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from factory_pipeline.engine.config import ExitReason, SimConfig
from factory_pipeline.engine.metrics import M_EXPOSURE_BARS, compute_metrics, equity_curve_metrics
from factory_pipeline.engine.results import BacktestResult
from factory_pipeline.engine.robustness import sharpe_ratio
from factory_pipeline.engine.simulator import Signals, simulate
from factory_pipeline.engine.system_backtest import DEFAULT_EXECUTION, ENGINE_VERSION, engine_inputs
from factory_pipeline.engine.trials import Trial, hash_config
from factory_pipeline.errors import BacktestError, MarketDataError, SpecError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.market.regimes import REGIMES
from factory_pipeline.market.timeframes import DAY_MS
from factory_pipeline.schemas import ModuleDoc, Provenance, SystemDoc
from factory_pipeline.schemas.documents import BacktestDoc, BacktestTrade, stable_id
from factory_pipeline.strategy.language import IndicatorCache
from factory_pipeline.strategy.signals import CompiledSystem, SystemSignals, compile_system
from factory_pipeline.strategy.systems import SystemSpec

#: Windows with fewer bars (at the system's decision timeframe) are skipped: a window needs a
#: decision bar, a fill bar, the forced-exit decision bar and its fill bar to hold a trade.
MIN_WINDOW_BARS = 8
#: Trial-ledger family of every candidate-system configuration backtested on the full history
#: (the family the DSR deflates by: its Sharpe ratios are of the same statistic).
TRIAL_FAMILY = "candidate_systems"
#: Trial-ledger family of the regime-partition backtests: regime-conditioned Sharpe ratios are
#: another statistic (a hindsight-labelled subset of days), so they are counted apart.
REGIME_TRIAL_FAMILY = "candidate_systems_regimes"
#: Exit reason of a trade closed because its regime window ended.
WINDOW_END = "window_end"


@dataclass(frozen=True)
class SystemBacktest:
    """One system on one partition: the stored documents and the chained equity curve."""

    backtest: BacktestDoc
    trades: list[BacktestTrade]
    #: ``(close times in ms, equity)`` of the in-window bars, chained across windows.
    equity: tuple[np.ndarray, np.ndarray]

    @property
    def system_id(self) -> str:
        return self.backtest.system_id


@dataclass(frozen=True)
class PartitionBacktest:
    """Every active candidate on one symbol x regime partition."""

    symbol: str
    regime: str
    partition_key: str
    results: tuple[SystemBacktest, ...]
    #: One trial per backtested system (record them in the TrialLedger; idempotent by id).
    trials: tuple[Trial, ...]
    #: System id -> why it was not backtested here (symbol not traded, no usable window, ...).
    skipped: Mapping[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[SystemBacktest]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def backtests(self) -> list[BacktestDoc]:
        return [r.backtest for r in self.results]

    @property
    def all_trades(self) -> list[BacktestTrade]:
        return [t for r in self.results for t in r.trades]

    def by_system(self, system_id: str) -> SystemBacktest:
        for result in self.results:
            if result.system_id == system_id:
                return result
        raise KeyError(f"partition {self.partition_key} has no backtest of {system_id!r}")


def partition_key(regime: str, symbol: str) -> str:
    """The Dagster multi-partition key of symbol x regime (dimensions sorted: regime first)."""
    return f"{regime}|{symbol}"


def backtest_partition(
    systems: Sequence[SystemDoc],
    frame: MarketFrame,
    spans: list[tuple[int, int]],
    *,
    symbol: str,
    regime: str,
    library: Mapping[str, ModuleDoc],
    base: SimConfig = DEFAULT_EXECUTION,
    cache: IndicatorCache | None = None,
    min_window_bars: int = MIN_WINDOW_BARS,
) -> PartitionBacktest:
    """Backtest every system on the ``spans`` (``[start_ms, end_ms)``, the regime's windows) of
    ``frame`` (the symbol's base frame; resampled to a system's decision timeframe if needed).

    Systems whose spec does not trade ``symbol``, whose stored spec hash does not match the
    library, or with no window of at least ``min_window_bars`` bars are skipped (with a reason in
    ``.skipped``). Pass the same ``cache`` for every partition of a symbol to share indicators.
    """
    if regime not in REGIMES:
        raise MarketDataError(f"unknown regime {regime!r}; known: {', '.join(REGIMES)}")
    if frame.symbol != symbol:
        raise MarketDataError(f"partition {symbol}: the frame given is of {frame.symbol}")
    key = partition_key(regime, symbol)
    cache = cache if cache is not None else IndicatorCache()
    frames: dict[str, MarketFrame] = {frame.timeframe: frame}
    windows_by_tf: dict[str, list[tuple[int, int]]] = {}
    results: list[SystemBacktest] = []
    trials: list[Trial] = []
    skipped: dict[str, str] = {}
    for doc in systems:
        spec = system_spec(doc)
        if symbol not in spec.symbols:
            skipped[doc.id] = f"does not trade {symbol}"
            continue
        timeframe = spec.timeframes.L
        if timeframe not in frames:
            frames[timeframe] = frame.resample(timeframe)
        if timeframe not in windows_by_tf:
            windows_by_tf[timeframe] = bar_windows(frames[timeframe], spans, min_window_bars)
        windows = windows_by_tf[timeframe]
        if not windows:
            skipped[doc.id] = (
                f"no {regime} window of at least {min_window_bars} {timeframe} bars on {symbol}"
            )
            continue
        compiled = compile_system(spec, library)
        if compiled.spec_hash != doc.spec_hash:
            skipped[doc.id] = (
                f"stored spec hash {doc.spec_hash[:12]} differs from the library's "
                f"{compiled.spec_hash[:12]} (a module changed): re-register the system"
            )
            continue
        signals = compiled.signals(frames[timeframe], cache)
        run = run_windows(frames[timeframe], signals, windows, base)
        result = _system_backtest(doc, run, symbol=symbol, regime=regime, key=key)
        results.append(result)
        trials.append(_partition_trial(doc, run, symbol=symbol, regime=regime, key=key))
    return PartitionBacktest(
        symbol=symbol,
        regime=regime,
        partition_key=key,
        results=tuple(results),
        trials=tuple(trials),
        skipped=skipped,
    )


# --- the window runner (also used by the assessment's walk-forward) ----------------------------


@dataclass(frozen=True, eq=False)
class WindowRun:
    """A chained multi-window backtest (semantics in the module docstring)."""

    #: The simulator's result over bars ``[offset, offset + len)`` of the frame.
    result: BacktestResult
    offset: int
    #: ``[start, stop)`` bar indices of the windows in the frame, sorted, non-overlapping.
    windows: tuple[tuple[int, int], ...]
    #: Closed trades (TRADE_DTYPE; bar indices relative to ``offset``) and, per trade, whether
    #: it was closed by the window end.
    trades: np.ndarray
    window_end: np.ndarray
    #: The chained in-window curve: open/close times (ms) and equity at each close.
    open_time: np.ndarray
    close_time: np.ndarray
    equity: np.ndarray
    metrics: dict[str, float]
    config: SimConfig

    @property
    def daily_returns(self) -> np.ndarray:
        """Daily returns of the chained curve (engine definition, see :func:`daily_returns`)."""
        return daily_returns(self.equity, self.close_time, self.config.initial_cash)


def run_windows(
    frame: MarketFrame,
    signals: SystemSignals,
    windows: Sequence[tuple[int, int]],
    base: SimConfig = DEFAULT_EXECUTION,
    *,
    extra_delay_bars: int = 0,
) -> WindowRun:
    """Backtest ``signals`` (computed on all of ``frame``) on bar ``windows`` of ``frame``:
    flat at each window start, forced exit at each window end, equity chained."""
    checked = _checked_windows(windows, len(frame))
    lo, hi = checked[0][0], checked[-1][1]
    sub = frame if (lo, hi) == (0, len(frame)) else frame.slice(lo, hi)
    engine_signals, config = engine_inputs(signals, base, extra_delay_bars=extra_delay_bars)
    n = hi - lo
    in_window = np.zeros(n, dtype=np.bool_)
    may_enter = np.zeros(n, dtype=np.bool_)
    forced = np.zeros(n, dtype=np.bool_)
    for start, stop in checked:
        s, e = start - lo, stop - lo
        in_window[s:e] = True
        may_enter[s : e - 2] = True
        forced[e - 2] = True
    own_exit_long = _truthy(engine_signals.exit_long, lo, hi)
    own_exit_short = _truthy(engine_signals.exit_short, lo, hi)
    masked = Signals(
        entry_long=_truthy(engine_signals.entry_long, lo, hi) & may_enter,
        exit_long=(own_exit_long & in_window) | forced,
        entry_short=_truthy(engine_signals.entry_short, lo, hi) & may_enter,
        exit_short=(own_exit_short & in_window) | forced,
        **{
            name: _cut(getattr(engine_signals, name), lo, hi)
            for name in ("stop_distance", "take_profit_distance", "size", "trail_distance")
        },
    )
    result = simulate(sub, masked, config)
    if len(result.open_trade):
        raise BacktestError(
            f"{frame.symbol}: a position is open after the last window (internal error)"
        )
    trades = result.trades
    window_end = _window_end_exits(
        trades, checked, lo, config, own_exit_long=own_exit_long, own_exit_short=own_exit_short
    )
    open_time, close_time = sub.open_time[in_window], sub.close_time[in_window]
    equity = result.equity[in_window]
    metrics = _window_metrics(result, open_time, close_time, equity, checked, window_end)
    return WindowRun(
        result=result,
        offset=lo,
        windows=tuple(checked),
        trades=trades,
        window_end=window_end,
        open_time=open_time,
        close_time=close_time,
        equity=equity,
        metrics=metrics,
        config=config,
    )


def bar_windows(
    frame: MarketFrame, spans: Sequence[tuple[int, int]], min_bars: int = MIN_WINDOW_BARS
) -> list[tuple[int, int]]:
    """``[start, stop)`` bar indices of the bars lying wholly inside each ``[start_ms, end_ms)``
    span (open >= start, close <= end); windows shorter than ``min_bars`` are dropped."""
    if min_bars < 3:
        raise BacktestError(f"min_window_bars must be >= 3, got {min_bars}")
    windows: list[tuple[int, int]] = []
    for start_ms, end_ms in sorted(spans):
        start = int(np.searchsorted(frame.open_time, start_ms, side="left"))
        stop = int(np.searchsorted(frame.close_time, end_ms, side="right"))
        if stop - start >= min_bars:
            if windows and start < windows[-1][1]:
                raise BacktestError(f"{frame.symbol}: regime spans overlap at {start_ms}")
            windows.append((start, stop))
    return windows


def daily_returns(equity: np.ndarray, close_time: np.ndarray, initial_equity: float) -> np.ndarray:
    """Daily simple returns as engine.metrics defines them: the equity at the last bar closing
    in each UTC day (a bar closing at midnight belongs to the day it ends) over the previous such
    day's value, starting from ``initial_equity``; days with no bar closing are absent."""
    if equity.shape[0] == 0:
        return np.empty(0)
    day = (np.asarray(close_time, dtype=np.int64) - 1) // DAY_MS
    last = np.flatnonzero(np.r_[day[1:] != day[:-1], True])
    closes = np.asarray(equity, dtype=np.float64)[last]
    previous = np.r_[initial_equity, closes[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(previous > 0, closes / previous - 1.0, 0.0)


def system_spec(doc: SystemDoc) -> SystemSpec:
    """The SystemSpec stored in a SystemDoc (SpecError naming the system when it is invalid)."""
    try:
        return SystemSpec.model_validate(doc.spec)
    except ValueError as exc:
        raise SpecError(f"system {doc.id}: stored spec is invalid: {exc}") from exc


def compiled_for(doc: SystemDoc, library: Mapping[str, ModuleDoc]) -> CompiledSystem:
    """Compile a stored system, refusing a library that gives another spec hash."""
    compiled = compile_system(system_spec(doc), library)
    if compiled.spec_hash != doc.spec_hash:
        raise SpecError(
            f"system {doc.id}: stored spec hash {doc.spec_hash[:12]} differs from the module "
            f"library's {compiled.spec_hash[:12]} (a module changed): re-register the system"
        )
    return compiled


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Only the finite values: NaN/inf are not JSON (pydantic's ``model_dump_json`` writes null,
    which does not validate back into a float), so an undefined metric is absent."""
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


def ms_to_datetime(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


# --- helpers ------------------------------------------------------------------------------------


def _checked_windows(windows: Sequence[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    checked = sorted((int(s), int(e)) for s, e in windows)
    if not checked:
        raise BacktestError("run_windows: no window given")
    previous_stop = 0
    for start, stop in checked:
        if start < previous_stop or stop > n or stop - start < 3:
            raise BacktestError(
                f"run_windows: window [{start}, {stop}) is invalid for {n} bars (windows must be "
                "inside the frame, non-overlapping and at least 3 bars long)"
            )
        previous_stop = stop
    return checked


def _truthy(values: np.ndarray | None, lo: int, hi: int) -> np.ndarray:
    """A signal as booleans over ``[lo, hi)`` (non-zero and not NaN is True, as the engine)."""
    if values is None:
        return np.zeros(hi - lo, dtype=np.bool_)
    part = np.asarray(values)[lo:hi]
    if part.dtype == np.bool_:
        return part.copy()
    part = part.astype(np.float64)
    return (part != 0) & ~np.isnan(part)


def _cut(values: np.ndarray | None, lo: int, hi: int) -> np.ndarray | None:
    return None if values is None else np.ascontiguousarray(np.asarray(values)[lo:hi])


def _window_end_exits(
    trades: np.ndarray,
    windows: Sequence[tuple[int, int]],
    lo: int,
    config: SimConfig,
    *,
    own_exit_long: np.ndarray,
    own_exit_short: np.ndarray,
) -> np.ndarray:
    """Per trade: closed by the forced window-end exit (a signal exit filled from the decision
    at a window's second-to-last bar that the system's own exit signal did not make)."""
    decision = np.array([e - 2 - lo for _, e in windows], dtype=np.int64)
    fill = decision if config.fill == "signal_close" else decision + 1
    if trades.shape[0] == 0:
        return np.zeros(0, dtype=np.bool_)
    at_fill = np.isin(trades["exit_bar"], fill)
    by_signal = trades["exit_reason"] == int(ExitReason.SIGNAL)
    decided = trades["exit_bar"] - (0 if config.fill == "signal_close" else 1)
    decided = np.clip(decided, 0, own_exit_long.shape[0] - 1)
    own = np.where(trades["side"] > 0, own_exit_long[decided], own_exit_short[decided])
    return at_fill & by_signal & ~own


def _window_metrics(
    result: BacktestResult,
    open_time: np.ndarray,
    close_time: np.ndarray,
    equity: np.ndarray,
    windows: Sequence[tuple[int, int]],
    window_end: np.ndarray,
) -> dict[str, float]:
    """Trade metrics of the run plus equity metrics of the chained curve.

    Sharpe, Sortino, drawdown and return use calendar time (daily returns of the chained curve);
    stagnation and CAGR use the regime clock: each window is shifted to start where the previous
    one ended, so only time spent inside the partition's windows counts.
    """
    initial = result.initial_cash
    metrics = compute_metrics(result)
    calendar = equity_curve_metrics(equity, open_time, close_time, initial)
    regime_clock = calendar
    if len(windows) > 1:  # shift each window to start where the previous one ended
        shift = np.zeros(open_time.shape[0], dtype=np.int64)
        position = 0
        previous_end: int | None = None
        for start, stop in windows:
            first_open = int(open_time[position])
            shift[position:] += 0 if previous_end is None else first_open - previous_end
            position += stop - start
            previous_end = int(close_time[position - 1])
        regime_clock = equity_curve_metrics(equity, open_time - shift, close_time - shift, initial)
    metrics.update({k: calendar[k] for k in ("final_equity", "total_return", "sharpe")})
    metrics.update({k: calendar[k] for k in ("sortino", "max_drawdown", "days")})
    metrics.update({k: regime_clock[k] for k in ("cagr", "stagnation_bars", "stagnation_ms")})
    metrics["stagnation_days"] = regime_clock["stagnation_days"]
    metrics["calendar_stagnation_days"] = calendar["stagnation_days"]
    n_bars = float(equity.shape[0])
    metrics["exposure"] = float(result.stats[M_EXPOSURE_BARS] / n_bars) if n_bars else math.nan
    metrics["bars"] = n_bars
    metrics["windows"] = float(len(windows))
    metrics["window_end_exits"] = float(window_end.sum())
    metrics["r_trades"] = float(np.isfinite(result.trades["r_multiple"]).sum())
    returns = daily_returns(equity, close_time, initial)
    metrics["sharpe_per_period"] = sharpe_ratio(returns) if returns.shape[0] >= 2 else math.nan
    return metrics


def _system_backtest(
    doc: SystemDoc, run: WindowRun, *, symbol: str, regime: str, key: str
) -> SystemBacktest:
    backtest_id = stable_id("backtest", doc.id, doc.spec_hash, key, ENGINE_VERSION)
    backtest = BacktestDoc(
        id=backtest_id,
        system_id=doc.id,
        spec_hash=doc.spec_hash,
        symbol=symbol,
        regime=regime,
        partition_key=key,
        data_start=ms_to_datetime(int(run.open_time[0])),
        data_end=ms_to_datetime(int(run.close_time[-1])),
        engine_version=ENGINE_VERSION,
        metrics=finite_metrics(run.metrics),
        config=run.config.to_dict(),
        provenance=Provenance(source=f"regime-backtest {ENGINE_VERSION}", system_ids=[doc.id]),
    )
    trades = [
        _trade_doc(record, bool(run.window_end[i]), backtest_id, doc.id, key, i)
        for i, record in enumerate(run.trades)
    ]
    return SystemBacktest(
        backtest=backtest, trades=trades, equity=(run.close_time.copy(), run.equity.copy())
    )


def _trade_doc(
    record: np.void, window_end: bool, backtest_id: str, system_id: str, key: str, index: int
) -> BacktestTrade:
    entry_ms, exit_ms = int(record["entry_time"]), int(record["exit_time"])
    reason = WINDOW_END if window_end else ExitReason(int(record["exit_reason"])).name.lower()
    return BacktestTrade(
        id=stable_id("bt-trade", backtest_id, index, entry_ms, exit_ms),
        backtest_id=backtest_id,
        system_id=system_id,
        partition_key=key,
        side="long" if int(record["side"]) > 0 else "short",
        entry_time=ms_to_datetime(entry_ms),
        exit_time=ms_to_datetime(exit_ms),
        entry_price=float(record["entry_price"]),
        exit_price=float(record["exit_price"]),
        qty=float(record["qty"]),
        gross_pnl=float(record["gross_pnl"]),
        net_pnl=float(record["net_pnl"]),
        fees=float(record["fees"]),
        funding=float(record["funding"]),
        mae=float(record["mae"]),
        mfe=float(record["mfe"]),
        r_multiple=float(record["r_multiple"]),
        exit_reason=reason,
        bars_held=int(record["bars_held"]),
    )


def _partition_trial(
    doc: SystemDoc, run: WindowRun, *, symbol: str, regime: str, key: str
) -> Trial:
    returns = run.daily_returns
    return Trial(
        family=REGIME_TRIAL_FAMILY,
        config_hash=hash_config(
            {"spec_hash": doc.spec_hash, "regime": regime, "execution": run.config.to_dict()}
        ),
        sharpe=run.metrics["sharpe_per_period"],
        n_periods=int(returns.shape[0]),
        data_start_ms=int(run.open_time[0]),
        data_end_ms=int(run.close_time[-1]),
        symbol=symbol,
        system_id=doc.id,
        detail={"partition_key": key, "engine_version": ENGINE_VERSION, "scope": "regime"},
    )
