"""Backtest metrics with written definitions (docs/backtest_semantics.md, "Metrics").

Metrics are accumulated *while* the simulator runs (one pass, O(1) memory per configuration), so
a parameter sweep never needs a per-configuration equity curve. The accumulators live in a small
float64 vector whose slots are defined here; the simulator kernel updates them with
:func:`equity_step` every bar and :func:`record_trade_stats` on every closed trade, and
:func:`metrics_from_stats` turns them into the reported numbers. A single backtest, a sweep row
and :func:`equity_curve_metrics` on a hand-made curve therefore run the same arithmetic.

Annualization: Sharpe and Sortino use daily returns of the equity curve (the equity at the last
bar closing in each UTC day, relative to the previous day's, starting from the initial equity),
annualized with ``sqrt(periods_per_year)``, 365 by default (crypto trades every day).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from factory_pipeline.errors import BacktestError
from factory_pipeline.market.timeframes import DAY_MS, HOUR_MS

if TYPE_CHECKING:
    from factory_pipeline.engine.results import BacktestResult

DAYS_PER_YEAR = 365.0


def compute_metrics(
    result: BacktestResult, periods_per_year: float = DAYS_PER_YEAR
) -> dict[str, float]:
    """All metrics of a backtest result, as a flat name -> float mapping (see module doc)."""
    return metrics_from_stats(
        result.stats,
        initial_equity=result.initial_cash,
        start_ms=int(result.open_time[0]) if len(result.open_time) else 0,
        end_ms=int(result.close_time[-1]) if len(result.close_time) else 0,
        n_bars=len(result.close_time),
        open_trades=len(result.open_trade),
        ambiguous_bars=result.ambiguous_bars,
        skipped_orders=result.skipped_orders,
        periods_per_year=periods_per_year,
    )


def equity_curve_metrics(
    equity: np.ndarray,
    open_time: np.ndarray,
    close_time: np.ndarray,
    initial_equity: float,
    periods_per_year: float = DAYS_PER_YEAR,
) -> dict[str, float]:
    """Equity-only metrics of any curve (return, CAGR, Sharpe, Sortino, drawdown, stagnation).

    Runs the same per-bar accumulation as the simulator, so it doubles as the reference that
    tests check by hand. ``equity[i]`` is the equity at ``close_time[i]``.
    """
    equity = np.ascontiguousarray(equity, dtype=np.float64)
    close_time = np.ascontiguousarray(close_time, dtype=np.int64)
    if equity.shape[0] == 0 or equity.shape != close_time.shape:
        raise BacktestError(
            f"equity_curve_metrics needs one equity value per bar, got {equity.shape[0]} values "
            f"for {close_time.shape[0]} bars"
        )
    stats = init_stats(initial_equity, int(open_time[0]), int(close_time[0]))
    _accumulate_curve(stats, equity, close_time)
    metrics = metrics_from_stats(
        stats,
        initial_equity=initial_equity,
        start_ms=int(open_time[0]),
        end_ms=int(close_time[-1]),
        n_bars=equity.shape[0],
        open_trades=0,
        ambiguous_bars=0,
        skipped_orders=0,
        periods_per_year=periods_per_year,
    )
    return {name: metrics[name] for name in EQUITY_METRICS}


EQUITY_METRICS: tuple[str, ...] = (
    "final_equity",
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "stagnation_bars",
    "stagnation_ms",
    "stagnation_days",
    "days",
)

METRIC_NAMES: tuple[str, ...] = (
    "final_equity",
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "stagnation_bars",
    "stagnation_ms",
    "stagnation_days",
    "days",
    "trades",
    "open_trades",
    "win_rate",
    "expectancy_r",
    "expectancy_pct",
    "profit_factor",
    "avg_bars_held",
    "avg_hold_hours",
    "exposure",
    "fees_paid",
    "funding_paid",
    "ambiguous_bars",
    "skipped_orders",
)


def metrics_from_stats(
    stats: np.ndarray,
    *,
    initial_equity: float,
    start_ms: int,
    end_ms: int,
    n_bars: int,
    open_trades: int,
    ambiguous_bars: int,
    skipped_orders: int,
    periods_per_year: float = DAYS_PER_YEAR,
) -> dict[str, float]:
    """Turn the accumulator vector into the metric mapping (names in METRIC_NAMES)."""
    s = stats.copy()
    finalize_stats(s)
    final_equity = s[M_LAST_EQ]
    total_return = final_equity / initial_equity - 1.0
    years = (end_ms - start_ms) / (DAYS_PER_YEAR * DAY_MS)
    if final_equity <= 0:
        cagr = -1.0
    elif years > 0:
        cagr = (final_equity / initial_equity) ** (1.0 / years) - 1.0
    else:
        cagr = math.nan
    n_days = s[M_N_DAYS]
    mean = s[M_MEAN]
    annual = math.sqrt(periods_per_year)
    std = math.sqrt(s[M_M2] / (n_days - 1)) if n_days > 1 else math.nan
    sharpe = mean / std * annual if std > 0 else math.nan
    downside = math.sqrt(s[M_DOWN2] / n_days) if n_days > 0 else math.nan
    if downside > 0:
        sortino = mean / downside * annual
    elif n_days > 0 and mean > 0:
        sortino = math.inf
    else:
        sortino = math.nan
    trades = s[M_TRADES]
    gross_profit, gross_loss = s[M_GROSS_PROFIT], s[M_GROSS_LOSS]
    if gross_loss > 0:
        profit_factor = gross_profit / gross_loss
    elif gross_profit > 0:
        profit_factor = math.inf
    else:
        profit_factor = math.nan
    per_trade = (lambda total: total / trades) if trades > 0 else (lambda total: math.nan)
    return {
        "final_equity": float(final_equity),
        "total_return": float(total_return),
        "cagr": float(cagr),
        "sharpe": float(sharpe),
        "sortino": float(sortino),
        "max_drawdown": float(s[M_MAX_DD]),
        "stagnation_bars": float(s[M_STAG_BARS]),
        "stagnation_ms": float(s[M_STAG_MS]),
        "stagnation_days": float(s[M_STAG_MS] / DAY_MS),
        "days": float(n_days),
        "trades": float(trades),
        "open_trades": float(open_trades),
        "win_rate": float(per_trade(s[M_WINS])),
        "expectancy_r": float(s[M_SUM_R] / s[M_N_R]) if s[M_N_R] > 0 else math.nan,
        "expectancy_pct": float(per_trade(s[M_SUM_RET_PCT])),
        "profit_factor": float(profit_factor),
        "avg_bars_held": float(per_trade(s[M_SUM_BARS])),
        "avg_hold_hours": float(per_trade(s[M_SUM_HOLD_MS]) / HOUR_MS),
        "exposure": float(s[M_EXPOSURE_BARS] / n_bars) if n_bars > 0 else math.nan,
        "fees_paid": float(s[M_FEES]),
        "funding_paid": float(s[M_FUNDING]),
        "ambiguous_bars": float(ambiguous_bars),
        "skipped_orders": float(skipped_orders),
    }


# --- accumulator layout ------------------------------------------------------------------------

M_PEAK = 0  # highest equity so far (initial equity before the first bar)
M_PEAK_IDX = 1  # bar index of that high (-1: the initial equity)
M_PEAK_T = 2  # its time: close time of that bar (first open time for the initial equity)
M_TROUGH = 3  # lowest equity since the current high
M_MAX_DD = 4
M_STAG_BARS = 5
M_STAG_MS = 6
M_DAY_END = 7  # end (ms, exclusive of later bars) of the UTC day being accumulated
M_DAY_PREV_EQ = 8  # equity at the end of the previous day (initial equity at the start)
M_LAST_EQ = 9  # equity at the last processed bar's close
M_LAST_IDX = 10
M_LAST_T = 11
M_N_DAYS = 12
M_MEAN = 13  # Welford running mean of daily returns
M_M2 = 14  # Welford sum of squared deviations
M_DOWN2 = 15  # sum of min(r, 0)^2
M_EXPOSURE_BARS = 16
M_TRADES = 17
M_WINS = 18
M_GROSS_PROFIT = 19
M_GROSS_LOSS = 20
M_SUM_RET_PCT = 21
M_SUM_R = 22
M_N_R = 23
M_SUM_BARS = 24
M_SUM_HOLD_MS = 25
M_SUM_NET = 26
M_FEES = 27
M_FUNDING = 28
N_STATS = 29


def init_stats(initial_equity: float, first_open_ms: int, first_close_ms: int) -> np.ndarray:
    """Fresh accumulators for a run starting at ``first_open_ms`` with ``initial_equity``."""
    s = np.zeros(N_STATS, dtype=np.float64)
    s[M_PEAK] = initial_equity
    s[M_PEAK_IDX] = -1.0
    s[M_PEAK_T] = float(first_open_ms)
    s[M_TROUGH] = initial_equity
    s[M_DAY_END] = float(_day_end(first_close_ms))
    s[M_DAY_PREV_EQ] = initial_equity
    s[M_LAST_EQ] = initial_equity
    s[M_LAST_IDX] = -1.0
    s[M_LAST_T] = float(first_open_ms)
    return s


def _day_end(close_ms: int) -> int:
    """End of the UTC day a bar closing at ``close_ms`` belongs to (a midnight close counts for
    the day it ends)."""
    return ((close_ms - 1) // DAY_MS + 1) * DAY_MS


@njit(cache=True, inline="always", error_model="numpy")
def equity_step(
    i, t_close, eq, peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms,
    day_end, day_prev_eq, last_eq, n_days, mean, m2, down2,
):  # fmt: skip
    """Fold bar ``i`` (closing at ``t_close`` with equity ``eq``) into the equity accumulators.

    Scalars in, scalars out (argument order; ``last_eq`` becomes ``eq``) so the simulator keeps
    them in registers. Daily returns use Welford's running mean and variance.
    """
    if t_close > day_end:  # the previous bar closed the last day: push that day's return
        r = last_eq / day_prev_eq - 1.0 if day_prev_eq > 0 else 0.0
        n_days += 1.0
        delta = r - mean
        mean += delta / n_days
        m2 += delta * (r - mean)
        if r < 0:
            down2 += r * r
        day_prev_eq = last_eq
        day_end = ((t_close - 1) // 86_400_000 + 1) * 86_400_000
    if eq >= peak:
        if i - peak_idx >= 2.0:  # at least one bar spent below the high: a spell ends here
            spell = i - peak_idx
            if spell > stag_bars:
                stag_bars = spell
                stag_ms = t_close - peak_t
        peak = eq
        peak_idx = i
        peak_t = t_close
        trough = eq
    else:
        trough, max_dd = below_peak(eq, peak, trough, max_dd)
    return (
        peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end, day_prev_eq, eq,
        n_days, mean, m2, down2,
    )  # fmt: skip


@njit(cache=True, inline="always", error_model="numpy")
def below_peak(eq, peak, trough, max_dd):
    """(trough, maximum drawdown) after a bar closing below the peak at ``eq``: a new low
    (``eq < trough``) lowers the trough and, when the peak is positive, may deepen the
    drawdown ``1 - eq / peak``.

    Selected, not branched on: after each trade's fees the equity makes frequent, unpredictable
    new lows, and a mispredicted branch costs more than the division (the simulator's trade
    cost fell by a fifth). The values are those of the plain ``if eq < trough`` update."""
    new_low = eq < trough
    dd = 1.0 - eq / peak
    deeper = new_low & (peak > 0) & (dd > max_dd)
    return (eq if new_low else trough), (dd if deeper else max_dd)


@njit(cache=True, inline="always")
def load_equity(stats):
    """The equity accumulators as a tuple in :func:`equity_step`'s order (without ``i``,
    ``t_close``, ``eq``)."""
    return (
        stats[M_PEAK], stats[M_PEAK_IDX], stats[M_PEAK_T], stats[M_TROUGH], stats[M_MAX_DD],
        stats[M_STAG_BARS], stats[M_STAG_MS], np.int64(stats[M_DAY_END]), stats[M_DAY_PREV_EQ],
        stats[M_LAST_EQ], stats[M_N_DAYS], stats[M_MEAN], stats[M_M2], stats[M_DOWN2],
    )  # fmt: skip


@njit(cache=True, inline="always")
def save_equity(
    stats, peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end, day_prev_eq,
    last_eq, n_days, mean, m2, down2,
):  # fmt: skip
    """Store the accumulators returned by :func:`equity_step` back into ``stats``."""
    stats[M_PEAK] = peak
    stats[M_PEAK_IDX] = peak_idx
    stats[M_PEAK_T] = peak_t
    stats[M_TROUGH] = trough
    stats[M_MAX_DD] = max_dd
    stats[M_STAG_BARS] = stag_bars
    stats[M_STAG_MS] = stag_ms
    stats[M_DAY_END] = day_end
    stats[M_DAY_PREV_EQ] = day_prev_eq
    stats[M_LAST_EQ] = last_eq
    stats[M_N_DAYS] = n_days
    stats[M_MEAN] = mean
    stats[M_M2] = m2
    stats[M_DOWN2] = down2


@njit(cache=True, error_model="numpy")
def push_day(stats, day_close_eq):
    """Close a UTC day whose last equity was ``day_close_eq``: Welford update of the daily
    return relative to the previous day's close."""
    prev = stats[M_DAY_PREV_EQ]
    r = day_close_eq / prev - 1.0 if prev > 0 else 0.0
    n_days = stats[M_N_DAYS] + 1.0
    delta = r - stats[M_MEAN]
    mean = stats[M_MEAN] + delta / n_days
    stats[M_N_DAYS] = n_days
    stats[M_MEAN] = mean
    stats[M_M2] += delta * (r - mean)
    if r < 0:
        stats[M_DOWN2] += r * r
    stats[M_DAY_PREV_EQ] = day_close_eq


@njit(cache=True)
def end_spell(stats, bars, ms):
    """A stagnation spell of ``bars`` bars / ``ms`` milliseconds ended (or the data did)."""
    if bars > stats[M_STAG_BARS]:
        stats[M_STAG_BARS] = bars
        stats[M_STAG_MS] = ms


@njit(cache=True)
def record_trade_stats(stats, net, ret_pct, r_multiple, bars_held, hold_ms):
    """Fold one closed trade into the trade accumulators (called by the simulator)."""
    stats[M_TRADES] += 1.0
    if net > 0:
        stats[M_WINS] += 1.0
        stats[M_GROSS_PROFIT] += net
    elif net < 0:
        stats[M_GROSS_LOSS] -= net
    stats[M_SUM_NET] += net
    stats[M_SUM_RET_PCT] += ret_pct
    if r_multiple == r_multiple:
        stats[M_SUM_R] += r_multiple
        stats[M_N_R] += 1.0
    stats[M_SUM_BARS] += bars_held
    stats[M_SUM_HOLD_MS] += hold_ms


@njit(cache=True)
def finalize_stats(s):
    """Close the last (partial) day and any stagnation spell still open at the end. In place;
    call on a copy (the simulator's own vector stays resumable)."""
    if s[M_LAST_IDX] < 0:
        return
    push_day(s, s[M_LAST_EQ])
    if s[M_LAST_EQ] < s[M_PEAK]:
        end_spell(s, s[M_LAST_IDX] - s[M_PEAK_IDX], s[M_LAST_T] - s[M_PEAK_T])


@njit(cache=True)
def _accumulate_curve(s, equity, close_time):
    """Run :func:`equity_step` over a whole curve (reference path for hand-made curves)."""
    (
        peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end, day_prev_eq,
        last_eq, n_days, mean, m2, down2,
    ) = load_equity(s)  # fmt: skip
    for i in range(equity.shape[0]):
        (
            peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end, day_prev_eq,
            last_eq, n_days, mean, m2, down2,
        ) = equity_step(
            float(i), close_time[i], equity[i], peak, peak_idx, peak_t, trough, max_dd,
            stag_bars, stag_ms, day_end, day_prev_eq, last_eq, n_days, mean, m2, down2,
        )  # fmt: skip
    save_equity(
        s, peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end, day_prev_eq,
        last_eq, n_days, mean, m2, down2,
    )  # fmt: skip
    n = equity.shape[0]
    if n > 0:
        s[M_LAST_IDX] = n - 1
        s[M_LAST_T] = close_time[n - 1]
