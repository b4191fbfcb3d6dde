"""The backtest simulator: one numba kernel with the full execution semantics.

``simulate(frame, signals, config)`` runs a strategy's per-bar decisions (entry/exit booleans,
optional stop / take-profit / trailing distances and sizes) against a MarketFrame under a
SimConfig and returns a BacktestResult. The rules (fills, sizing, fees, slippage, funding,
liquidation, stops, management) are written down in docs/backtest_semantics.md; the kernel
below is their only implementation.

Design for speed: the kernel keeps the hot state in locals, touches Python objects never, writes
trades into a preallocated structured array, accumulates metrics as it goes, and runs quiet bars
through a short fast path (see the kernel section: the next eventful bar is found first and its
fill prices prefetched). It runs on a bar range ``[start, stop)`` and
saves all of its state in two small vectors, so a sweep can run many configurations block by
block over the same cache-resident bars (engine/sweep.py) with results identical to a single
full run.
"""

from __future__ import annotations

import datetime as dt
import math
import weakref
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from factory_pipeline.engine.config import (
    C_BREAKEVEN_R,
    C_BT_SIZING,
    C_FILL_CLOSE,
    C_LAST_BAR,
    C_LEVERAGE,
    C_LIQUIDATION,
    C_MAKER,
    C_MAX_BARS,
    C_MIN_NOTIONAL,
    C_MMR,
    C_PARTIAL_FRAC,
    C_PARTIAL_R,
    C_QTY_STEP,
    C_SIZE,
    C_SIZING,
    C_SLIP,
    C_TAKER,
    C_TRAIL_MULT,
    ExitReason,
    SimConfig,
    pack_config,
)
from factory_pipeline.engine.metrics import (
    M_EXPOSURE_BARS,
    M_FEES,
    M_FUNDING,
    M_LAST_IDX,
    M_LAST_T,
    below_peak,
    equity_step,
    init_stats,
    load_equity,
    record_trade_stats,
    save_equity,
)
from factory_pipeline.engine.results import TRADE_DTYPE, BacktestResult
from factory_pipeline.errors import BacktestError
from factory_pipeline.market.frame import MarketFrame


@dataclass(frozen=True)
class Signals:
    """Per-bar decisions of a strategy, all aligned with the frame's bars.

    Booleans are read at the bar's close. Float arrays use NaN for "none": ``stop_distance`` and
    ``take_profit_distance`` (price units, taken from the decision bar and measured from the entry
    fill), ``size`` (overrides ``SimConfig.size`` for entries decided on that bar) and
    ``trail_distance`` (multiplied by ``SimConfig.trail_mult``, e.g. an ATR series).
    """

    entry_long: np.ndarray
    exit_long: np.ndarray | None = None
    entry_short: np.ndarray | None = None
    exit_short: np.ndarray | None = None
    stop_distance: np.ndarray | None = None
    take_profit_distance: np.ndarray | None = None
    size: np.ndarray | None = None
    trail_distance: np.ndarray | None = None


def simulate(frame: MarketFrame, signals: Signals, config: SimConfig) -> BacktestResult:
    """Backtest ``signals`` on ``frame`` under ``config`` (semantics: docs/backtest_semantics.md).

    Raises BacktestError when the inputs cannot be simulated, e.g. a signal array of the wrong
    length or a position open across a funding settlement with no rate in the frame.
    """
    n = len(frame)
    check_frame(frame)
    kernel_inputs = prepare_market(frame, config)
    codes, floats, flags, entries = _prepare_signals(signals, n, config)
    capacity = entries + 1
    trades = np.empty(capacity, dtype=TRADE_DTYPE)
    equity = np.empty(n, dtype=np.float64)
    state = init_state(config)
    stats = init_stats(config.initial_cash, int(frame.open_time[0]), int(frame.close_time[0]))
    run_bars(
        0, n, *kernel_inputs, 0, codes, *floats, *flags, pack_config(config, n), state, stats,
        trades, equity, True,
    )  # fmt: skip
    return backtest_result(frame, config, state, stats, trades, equity)


def check_frame(frame: MarketFrame) -> None:
    """Raise BacktestError for a frame that cannot be backtested (no bars)."""
    if len(frame) == 0:
        raise BacktestError(f"{frame.symbol} {frame.timeframe}: cannot backtest an empty frame")


def check_signal_needs(config: SimConfig, has_stop: bool, has_trail: bool) -> None:
    """Raise BacktestError when ``config`` needs a signal array that is absent."""
    if config.trail_mult > 0 and not has_trail:
        raise BacktestError("SimConfig.trail_mult > 0 needs Signals.trail_distance (e.g. an ATR)")
    if config.sizing == "risk" and not has_stop:
        raise BacktestError("SimConfig.sizing='risk' needs Signals.stop_distance")


def backtest_result(
    frame: MarketFrame,
    config: SimConfig,
    state: np.ndarray,
    stats: np.ndarray,
    trades: np.ndarray,
    equity: np.ndarray,
) -> BacktestResult:
    """The BacktestResult of a finished kernel run (raises its error, if it stopped on one)."""
    raise_on_error(state, frame)
    n_trades = int(state[S_N_TRADES])
    return BacktestResult(
        config=config,
        trades=trades[:n_trades],
        open_trade=open_trade(state, frame),
        equity=equity,
        open_time=frame.open_time,
        close_time=frame.close_time,
        ambiguous_bars=int(state[S_AMBIGUOUS]),
        skipped_orders=int(state[S_SKIPPED]),
        stats=stats,
    )


# --- kernel state layout -----------------------------------------------------------------------

S_CASH = 0
S_SIDE = 1
S_QTY = 2
S_ENTRY_PX = 3
S_STOP = 4
S_STOP_KIND = 5  # 0 initial stop, 1 moved to breakeven, 2 trailing
S_TP = 6
S_PARTIAL = 7  # partial take-profit level (NaN once taken or when off)
S_LIQ = 8
S_BANKRUPT = 9
S_HIGH = 10  # highest high since entry (MFE/MAE, breakeven, trailing)
S_LOW = 11
S_RISK = 12  # initial stop distance R (NaN without a stop)
S_BE_DONE = 13
S_ENTRY_BAR = 14
S_ENTRY_TIME = 15
S_QTY0 = 16
S_T_FEES = 17
S_T_FUNDING = 18
S_T_GROSS = 19
S_T_EXIT_VALUE = 20
S_T_PARTIAL_QTY = 21
S_PEND_EXIT = 22
S_PEND_ENTRY = 23
S_PEND_STOP = 24
S_PEND_TP = 25
S_PEND_SIZE = 26
S_FUND_PTR = 27
S_AMBIGUOUS = 28
S_SKIPPED = 29
S_N_TRADES = 30
S_ERROR = 31  # 0 ok, 1 missing funding, 2 trade capacity exceeded
S_ERROR_BAR = 32
S_ERROR_AUX = 33
N_STATE = 34

ERR_MISSING_FUNDING = 1
ERR_CAPACITY = 2

KIND_STOP = 0
KIND_BREAKEVEN = 1
KIND_TRAILING = 2

R_SIGNAL = int(ExitReason.SIGNAL)
R_STOP = int(ExitReason.STOP)
R_TAKE_PROFIT = int(ExitReason.TAKE_PROFIT)
R_TRAILING = int(ExitReason.TRAILING)
R_BREAKEVEN = int(ExitReason.BREAKEVEN)
R_TIME = int(ExitReason.TIME)
R_LIQUIDATION = int(ExitReason.LIQUIDATION)
R_REVERSE = int(ExitReason.REVERSE)
R_END = int(ExitReason.END)


def init_state(config: SimConfig) -> np.ndarray:
    """A flat account: all cash, no position, nothing pending."""
    state = np.zeros(N_STATE, dtype=np.float64)
    state[S_CASH] = config.initial_cash
    for slot in (
        S_STOP,
        S_TP,
        S_PARTIAL,
        S_LIQ,
        S_BANKRUPT,
        S_RISK,
        S_PEND_STOP,
        S_PEND_TP,
        S_PEND_SIZE,
    ):
        state[slot] = math.nan
    return state


def prepare_market(frame: MarketFrame, config: SimConfig) -> tuple[np.ndarray, ...]:
    """Bar arrays plus the per-bar funding schedule, in the kernel's argument order."""
    fund_bar, fund_rate, fund_missing = funding_schedule(frame, config.funding_interval_ms)
    f64 = lambda a: read_only(a, np.float64)  # noqa: E731
    return (
        read_only(frame.open_time, np.int64), read_only(frame.close_time, np.int64),
        f64(frame.open), f64(frame.high), f64(frame.low), f64(frame.close), f64(frame.mark),
        read_only(fund_bar, np.int64), f64(fund_rate), read_only(fund_missing, np.int64),
    )  # fmt: skip


def read_only(values: np.ndarray, dtype: type) -> np.ndarray:
    """A contiguous read-only view (copying only when the dtype or layout differs).

    The kernel's inputs are always typed read-only, so numba compiles one signature whether a
    frame's arrays came from numpy (writable) or pandas (read-only under copy-on-write).
    """
    view = np.ascontiguousarray(values, dtype=dtype).view()
    view.flags.writeable = False
    return view


def prepare_signals(
    signals: Signals, n: int, config: SimConfig
) -> tuple[np.ndarray, tuple[np.ndarray, ...], tuple[bool, ...]]:
    """Validated kernel inputs: per-bar signal codes (uint8 bit set, see ``SIG_*``), the four
    float arrays (1-element dummies when absent) and their presence flags."""
    codes, floats, flags, _entries = _prepare_signals(signals, n, config)
    return codes, floats, flags


def _prepare_signals(
    signals: Signals, n: int, config: SimConfig
) -> tuple[np.ndarray, tuple[np.ndarray, ...], tuple[bool, ...], int]:
    """:func:`prepare_signals` plus the number of bars with an entry signal."""
    booleans = [
        _bool_signal(getattr(signals, name), name, n).view(np.uint8)
        for name in ("entry_long", "exit_long", "entry_short", "exit_short")
    ]
    floats: list[np.ndarray] = []
    flags: list[bool] = []
    for name in ("stop_distance", "take_profit_distance", "size", "trail_distance"):
        values = getattr(signals, name)
        if values is None:
            floats.append(_NO_VALUES)
            flags.append(False)
            continue
        array = np.ascontiguousarray(values, dtype=np.float64)
        if array.shape != (n,):
            raise BacktestError(f"Signals.{name} has shape {array.shape}, expected ({n},)")
        floats.append(array)
        flags.append(True)
    check_signal_needs(config, has_stop=flags[0], has_trail=flags[3])
    codes, entries = pack_codes(*booleans)
    return (
        read_only(codes, np.uint8),
        tuple(read_only(values, np.float64) for values in floats),
        tuple(flags),
        int(entries),
    )


#: Stand-in for an absent float signal (never read: its presence flag is False).
_NO_VALUES = read_only(np.full(1, np.nan), np.float64)


#: Bits of a per-bar signal code.
SIG_ENTRY_LONG = 1
SIG_EXIT_LONG = 2
SIG_ENTRY_SHORT = 4
SIG_EXIT_SHORT = 8
#: Bits that make a bar's close eventful, by position: flat, long, short.
_MASK_FLAT = SIG_ENTRY_LONG | SIG_ENTRY_SHORT
_MASK_LONG = SIG_EXIT_LONG | SIG_ENTRY_SHORT
_MASK_SHORT = SIG_EXIT_SHORT | SIG_ENTRY_LONG


def pack_codes(
    entry_long: np.ndarray, exit_long: np.ndarray, entry_short: np.ndarray, exit_short: np.ndarray
) -> tuple[np.ndarray, int]:
    """One byte per bar with the four signal booleans as bits (the kernel reads one array),
    and the number of bars with an entry bit (an upper bound of the trades a run can open).

    Booleans are bytes holding 0 or 1, so eight bars are packed per 64-bit word operation."""
    n = entry_long.shape[0]
    codes = np.empty(n, dtype=np.uint8)
    sources = [
        np.ascontiguousarray(b).view(np.uint8)
        for b in (entry_long, exit_long, entry_short, exit_short)
    ]
    whole = n - n % 8
    entries = _pack_words(
        *(b[:whole].view(np.uint64) for b in sources), codes[:whole].view(np.uint64)
    )
    for i in range(whole, n):
        el, xl, es, xs = (int(b[i]) for b in sources)
        codes[i] = el | (xl << 1) | (es << 2) | (xs << 3)
        entries += el | es
    return codes, int(entries)


@njit(cache=True, nogil=True)
def _pack_words(entry_long, exit_long, entry_short, exit_short, out):
    """:func:`pack_codes` on 64-bit words of eight 0/1 bytes; returns the entry count."""
    one = np.uint64(1)
    two = np.uint64(2)
    three = np.uint64(3)
    bytes_sum = np.uint64(0x0101010101010101)
    top = np.uint64(56)
    entries = 0
    for k in range(out.shape[0]):
        a = entry_long[k]
        c = entry_short[k]
        out[k] = a | (exit_long[k] << one) | (c << two) | (exit_short[k] << three)
        entries += (a | c) * bytes_sum >> top  # sum of the eight 0/1 bytes
    return entries


def _bool_signal(values: np.ndarray | None, name: str, n: int) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=np.bool_)
    array = np.asarray(values)
    if array.shape != (n,):
        raise BacktestError(f"Signals.{name} has shape {array.shape}, expected ({n},)")
    if array.dtype != np.bool_:
        array = (array == array) & (array != 0)  # NaN (not yet computable) means False
    return np.ascontiguousarray(array, dtype=np.bool_)


def funding_schedule(
    frame: MarketFrame, interval_ms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Settlements on the epoch-aligned ``interval_ms`` grid, grouped by the bar charging them.

    Returns (bar index, summed rate, first missing settlement time or 0) per bar that contains
    at least one settlement. Settlement T is charged in the first bar whose close is >= T, i.e.
    the bar whose (open, close] contains T. Frame funding events off the grid are an error: they
    mean the configured interval does not match the venue.

    Computed once per frame and interval (read-only arrays, kept while the frame lives): a frame
    is frozen, and sweeps, walk-forward folds and regime partitions simulate the same frame many
    times (0.8 ms per call on 1M bars).
    """
    key = (id(frame), int(interval_ms))
    known = _SCHEDULES.get(key)
    if known is not None and known[0]() is frame:
        return known[1]
    schedule = _funding_schedule(frame, interval_ms)
    for array in schedule:
        array.flags.writeable = False
    _SCHEDULES[key] = (weakref.ref(frame, lambda _, key=key: _SCHEDULES.pop(key, None)), schedule)
    return schedule


#: (id(frame), interval) -> (weak reference to the frame, its funding schedule).
_SCHEDULES: dict[tuple[int, int], tuple[weakref.ref, tuple[np.ndarray, ...]]] = {}


def _funding_schedule(
    frame: MarketFrame, interval_ms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`funding_schedule`, computed."""
    empty = (np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))
    n = len(frame)
    if interval_ms <= 0 or n == 0:
        return empty
    first_open, last_close = int(frame.open_time[0]), int(frame.close_time[-1])
    # A settlement exactly at the last bar's close is at the end of the data window: the
    # backtest stops there (the open trade is reported, not closed), so it is not charged and
    # its rate is not required (it belongs to the next day's data).
    k0, k1 = first_open // interval_ms + 1, (last_close - 1) // interval_ms
    if k1 < k0:
        return empty
    grid = np.arange(k0, k1 + 1, dtype=np.int64) * np.int64(interval_ms)
    times = np.asarray(frame.funding_time, dtype=np.int64)
    rates = np.asarray(frame.funding_rates, dtype=np.float64)
    in_range = (times > first_open) & (times < last_close)
    off_grid = in_range & (times % interval_ms != 0)
    if off_grid.any():
        first = int(times[off_grid][0])
        raise BacktestError(
            f"{frame.symbol} {frame.timeframe}: funding settlement at {_iso(first)} is not on the "
            f"{interval_ms // 60_000}-minute grid; set SimConfig.funding_interval_ms to the "
            "venue's funding interval"
        )
    pos = np.searchsorted(times, grid, side="left")
    found = pos < times.shape[0]
    found[found] = times[pos[found]] == grid[found]
    rate = np.zeros(grid.shape[0])
    rate[found] = rates[pos[found]]
    present = found & np.isfinite(rate)
    rate[~present] = 0.0
    bar = _first_closing_at_or_after(np.ascontiguousarray(frame.close_time, np.int64), grid)
    starts = np.flatnonzero(np.r_[True, bar[1:] != bar[:-1]])
    never = np.iinfo(np.int64).max
    first_missing = np.minimum.reduceat(np.where(present, never, grid), starts)
    first_missing[first_missing == never] = 0
    return (
        bar[starts].astype(np.int64),
        np.add.reduceat(rate, starts),
        first_missing,
    )


@njit(cache=True, nogil=True)
def _first_closing_at_or_after(close_time, times):
    """``np.searchsorted(close_time, times, side="left")`` for increasing close times: each
    answer is guessed from the bar spacing (exact on evenly spaced bars, verified, else
    searched), so a 1M-bar frame costs a read or two per settlement, not a bisection."""
    n = close_time.shape[0]
    out = np.empty(times.shape[0], dtype=np.int64)
    first = close_time[0] if n > 0 else 0
    spacing = close_time[1] - first if n > 1 else 0
    for k in range(times.shape[0]):
        t = times[k]
        guess = -1
        if spacing > 0 and t > first:
            guess = (t - first + spacing - 1) // spacing  # first bar of the grid closing >= t
        if 0 < guess < n and close_time[guess] >= t and close_time[guess - 1] < t:
            out[k] = guess
        else:
            out[k] = np.searchsorted(close_time, t)
    return out


def raise_on_error(state: np.ndarray, frame: MarketFrame) -> None:
    """Turn a kernel error code into a BacktestError naming the bar and the cause."""
    code = int(state[S_ERROR])
    if code == 0:
        return
    bar = int(state[S_ERROR_BAR])
    if code == ERR_MISSING_FUNDING:
        missing = int(state[S_ERROR_AUX])
        raise BacktestError(
            f"{frame.symbol} {frame.timeframe}: no funding rate for the settlement at "
            f"{_iso(missing)} while a position is open (bar {bar}, closing "
            f"{_iso(int(frame.close_time[bar]))}); funding history has a gap or ends there. "
            "Load the funding history, or set SimConfig.funding_interval_ms=0 for spot"
        )
    raise BacktestError(f"{frame.symbol} {frame.timeframe}: simulator error {code} at bar {bar}")


def open_trade(state: np.ndarray, frame: MarketFrame) -> np.ndarray:
    """The position still open after the last bar, marked to the last close (0 or 1 records)."""
    side = int(state[S_SIDE])
    if side == 0:
        return np.zeros(0, dtype=TRADE_DTYPE)
    last = len(frame) - 1
    price = float(frame.close[last])
    qty, qty0, entry = state[S_QTY], state[S_QTY0], state[S_ENTRY_PX]
    gross = state[S_T_GROSS] + (side * qty) * (price - entry)
    net = gross - state[S_T_FEES] - state[S_T_FUNDING]
    risk = state[S_RISK]
    mae, mfe = _excursions(side, entry, state[S_HIGH], state[S_LOW])
    record = np.zeros(1, dtype=TRADE_DTYPE)
    values = {
        "entry_bar": state[S_ENTRY_BAR],
        "exit_bar": last,
        "entry_time": state[S_ENTRY_TIME],
        "exit_time": frame.close_time[last],
        "side": side,
        "qty": qty0,
        "entry_price": entry,
        "exit_price": (
            price if state[S_T_PARTIAL_QTY] == 0 else (state[S_T_EXIT_VALUE] + qty * price) / qty0
        ),
        "gross_pnl": gross,
        "fees": state[S_T_FEES],
        "funding": state[S_T_FUNDING],
        "net_pnl": net,
        "mae": mae,
        "mfe": mfe,
        "mae_pct": mae / entry * 100.0,
        "mfe_pct": mfe / entry * 100.0,
        "risk": risk,
        "r_multiple": net / (risk * qty0) if risk > 0 else math.nan,
        "exit_reason": R_END,
        "bars_held": last - state[S_ENTRY_BAR],
        "partial_qty": state[S_T_PARTIAL_QTY],
        "return_pct": net / (entry * qty0) * 100.0,
    }
    record[0] = tuple(values[name] for name in TRADE_DTYPE.names)  # one assignment, cast per field
    return record


def _excursions(side: int, entry: float, high: float, low: float) -> tuple[float, float]:
    if side > 0:
        return max(0.0, entry - low), max(0.0, high - entry)
    return max(0.0, high - entry), max(0.0, entry - low)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat()


# --- the kernel -----------------------------------------------------------------------------------
#
# One loop, hot state in locals. A bar is "quiet" when nothing can happen in it: nothing pending,
# no funding settlement, no relevant signal at its close, no stop/target/breakeven level inside
# its range, the mark away from the liquidation price, no time stop due, no trailing stop to
# move. A quiet bar only marks the position to market, tracks the extremes and folds the equity
# into the metrics (the fast path); every other bar runs the full rules below it. The fast path
# is exactly what the full rules do on a quiet bar (same expressions), so the shortcut never
# changes a result; it makes uneventful bars cost a few nanoseconds.
#
# The fast path first scans the signal codes for the next eventful bar and prefetches the open
# price and time its orders will fill at (the quiet bars never read them, so they would be cache
# misses at every trade), then runs the quiet bars up to it in a small loop of their own. Array
# indices are cast to unsigned in hot loops: numba then emits no negative-index wraparound code.


@njit(cache=True, nogil=True, error_model="numpy")
def run_bars(
    start, stop, open_time, close_time, op, hi, lo, cl, mk, fund_bar, fund_rate, fund_missing,
    sig_off, codes, stop_dist, tp_dist, size_arr, trail_arr, has_stop, has_tp, has_size,
    has_trail, cfg, st, stats, trades, equity, record,
):  # fmt: skip
    """Simulate bars ``[start, stop)``, resuming from and saving to ``st`` / ``stats``.

    Signal arrays are indexed ``i - sig_off`` (a sweep passes per-block buffers). With
    ``record`` the equity curve and trade columns are written; otherwise only the accumulators.
    """
    if st[S_ERROR] != 0.0:
        return
    # borrowed views: the helper calls below then skip NRT reference counting (atomic ops)
    st = borrow(st)
    stats = borrow(stats)
    trades = borrow(trades)
    cfg = borrow(cfg)

    fill_close = cfg[C_FILL_CLOSE] != 0.0
    fill_shift = 0 if fill_close else 1
    slip = cfg[C_SLIP]
    taker = cfg[C_TAKER]
    maker = cfg[C_MAKER]
    be_r = cfg[C_BREAKEVEN_R]
    trail_on = cfg[C_TRAIL_MULT] > 0.0 and has_trail
    trail_mult = cfg[C_TRAIL_MULT]
    max_bars = cfg[C_MAX_BARS]
    last_bar = int(cfg[C_LAST_BAR])
    n_fund = fund_bar.shape[0]
    never = np.int64(2**62)

    cash = st[S_CASH]
    side = int(st[S_SIDE])
    qty = st[S_QTY]
    entry_px = st[S_ENTRY_PX]
    stop_lv = st[S_STOP]
    stop_kind = int(st[S_STOP_KIND])
    tp_lv = st[S_TP]
    part_lv = st[S_PARTIAL]
    liq_px = st[S_LIQ]
    bankrupt_px = st[S_BANKRUPT]
    hh = st[S_HIGH]
    ll = st[S_LOW]
    risk = st[S_RISK]
    be_done = st[S_BE_DONE] != 0.0
    entry_bar = int(st[S_ENTRY_BAR])
    pend_exit = int(st[S_PEND_EXIT])
    pend_entry = int(st[S_PEND_ENTRY])
    pend_stop = st[S_PEND_STOP]
    pend_tp = st[S_PEND_TP]
    pend_size = st[S_PEND_SIZE]
    fptr = int(st[S_FUND_PTR])
    next_fbar = fund_bar[fptr] if fptr < n_fund else never
    exposure = stats[M_EXPOSURE_BARS]
    acc = load_equity(stats)
    trig_lo, trig_hi, mark_lo, mark_hi, time_bar = _triggers(
        side, stop_lv, tp_lv, part_lv, liq_px, entry_px, risk, be_r, be_done, entry_bar,
        max_bars, fill_shift,
    )  # fmt: skip

    # next bar that must run the full rules whatever its prices and signals: a pending order
    # fills there, a funding settlement falls in it, or a time stop or trailing update is due
    wake = _wake(start, next_fbar, time_bar, pend_exit != 0 or pend_entry != 0, trail_on, side)
    mask = _MASK_FLAT if side == 0 else (_MASK_LONG if side > 0 else _MASK_SHORT)
    price_levels = trig_lo > -math.inf or trig_hi < math.inf
    mark_levels = mark_lo > -math.inf or mark_hi < math.inf
    track_extremes = record or be_r > 0.0 or trail_on
    i = start
    while i < stop:
        # ---- fast path: a run of quiet bars ---------------------------------------------------
        if i < wake:
            # the next bar with a relevant signal: its orders fill at the following open, a
            # value (and time) the quiet bars never read; fetch them while those bars run
            event = _next_event(codes, sig_off, i, min(stop, wake), mask)
            if event < last_bar:
                prefetch(op, np.uint64(event + 1))
                prefetch(open_time, np.uint64(event + 1))
            # a signal bar whose orders only wait for the next open is booked by the quiet
            # run too (when its prices are quiet): the full rules would do nothing else there
            book_signal = (
                event < min(stop, wake)
                and event < last_bar
                and not fill_close
                and not (trail_on and side != 0)
            )
            limit = event + 1 if book_signal else event
            if side == 0:
                i, acc = _quiet_flat(i, limit, close_time, cash, equity, record, acc)
            else:
                i, hh, ll, exposure, acc = _quiet_position(
                    i, limit, op, hi, lo, cl, mk, close_time, equity, record, track_extremes,
                    price_levels, mark_levels, trig_lo, trig_hi, mark_lo, mark_hi, cash,
                    side * qty, entry_px, hh, ll, exposure, acc,
                )  # fmt: skip
            if book_signal and i == limit:
                # step 6 of the full rules for the booked signal bar (never a fill at the close)
                ue = np.uint64(event - sig_off)
                pend_exit, pend_entry = _decide(
                    codes[ue], side, event, entry_bar, fill_shift, max_bars
                )
                if pend_exit != 0 or pend_entry != 0:
                    pend_stop, pend_tp, pend_size = _order_inputs(
                        stop_dist, tp_dist, size_arr, has_stop, has_tp, has_size, ue
                    )
                    wake = i
                continue
            if i >= stop:
                break
        j = i - sig_off
        u = np.uint64(i)  # unsigned indices: no negative-index wraparound code
        uj = np.uint64(j)

        # ---- full rules ---------------------------------------------------------------------
        # 1. orders decided at the previous close fill at this bar's open
        if pend_exit != 0 or pend_entry != 0:
            o = op[u]
            if pend_exit != 0 and side != 0:
                cash = _close(
                    st, stats, trades, record, side, qty, entry_px, hh, ll, risk,
                    o * (1.0 - side * slip), taker, pend_exit, i, open_time[u], cash,
                )  # fmt: skip
                side = 0
                qty = 0.0
                entry_px = 0.0
            if pend_entry != 0 and side == 0:
                (qty, entry_px, stop_lv, tp_lv, part_lv, liq_px, bankrupt_px, risk, fee) = _open(
                    st, stats, cfg, pend_entry, o, i, open_time[u], cash, pend_stop, pend_tp,
                    pend_size,
                )  # fmt: skip
                if qty > 0.0:
                    cash -= fee
                    side = pend_entry
                    stop_kind = KIND_STOP
                    hh = o
                    ll = o
                    be_done = False
                    entry_bar = i
            pend_exit = 0
            pend_entry = 0

        # 2. intrabar: stops, take-profits, partial take-profit (stop first when ambiguous)
        if side != 0:
            h = hi[u]
            lw = lo[u]
            exit_px = math.nan
            exit_fee = taker
            exit_reason = 0
            # without a stop, target or partial level nothing can fill inside the bar (the
            # comparisons below would all be False): skip them and the load of the open
            if stop_lv == stop_lv or tp_lv == tp_lv or part_lv == part_lv:
                o = op[u]
                if side > 0:
                    if o <= stop_lv:
                        exit_px = o * (1.0 - slip)
                        exit_reason = _stop_reason(stop_kind)
                    elif o >= tp_lv:
                        exit_px = o
                        exit_fee = maker
                        exit_reason = R_TAKE_PROFIT
                    elif lw <= stop_lv:
                        if h >= tp_lv or h >= part_lv:
                            st[S_AMBIGUOUS] += 1.0
                        exit_px = stop_lv * (1.0 - slip)
                        exit_reason = _stop_reason(stop_kind)
                    else:
                        if h >= part_lv:
                            cash, qty = _partial(
                                st, stats, cfg, side, qty, entry_px, max(o, part_lv), cash
                            )
                            part_lv = math.nan
                        if h >= tp_lv:
                            exit_px = tp_lv
                            exit_fee = maker
                            exit_reason = R_TAKE_PROFIT
                else:
                    if o >= stop_lv:
                        exit_px = o * (1.0 + slip)
                        exit_reason = _stop_reason(stop_kind)
                    elif o <= tp_lv:
                        exit_px = o
                        exit_fee = maker
                        exit_reason = R_TAKE_PROFIT
                    elif h >= stop_lv:
                        if lw <= tp_lv or lw <= part_lv:
                            st[S_AMBIGUOUS] += 1.0
                        exit_px = stop_lv * (1.0 + slip)
                        exit_reason = _stop_reason(stop_kind)
                    else:
                        if lw <= part_lv:
                            cash, qty = _partial(
                                st, stats, cfg, side, qty, entry_px, min(o, part_lv), cash
                            )
                            part_lv = math.nan
                        if lw <= tp_lv:
                            exit_px = tp_lv
                            exit_fee = maker
                            exit_reason = R_TAKE_PROFIT
            if exit_reason != 0:
                cash = _close(
                    st, stats, trades, record, side, qty, entry_px, hh, ll, risk, exit_px,
                    exit_fee, exit_reason, i, open_time[u], cash,
                )  # fmt: skip
                side = 0
                qty = 0.0
                entry_px = 0.0
            else:
                # 3. the position survived the bar: excursions, then liquidation on the mark
                if h > hh:
                    hh = h
                if lw < ll:
                    ll = lw
                m = mk[u]
                if (side > 0 and m <= liq_px) or (side < 0 and m >= liq_px):
                    cash = _close(
                        st, stats, trades, record, side, qty, entry_px, hh, ll, risk,
                        bankrupt_px, 0.0, R_LIQUIDATION, i, close_time[u], cash,
                    )  # fmt: skip
                    side = 0
                    qty = 0.0
                    entry_px = 0.0

        # 4. funding settlements inside this bar, on the position held at its close
        if i == next_fbar:
            if side != 0:
                if fund_missing[np.uint64(fptr)] != 0:
                    st[S_ERROR] = ERR_MISSING_FUNDING
                    st[S_ERROR_BAR] = i
                    st[S_ERROR_AUX] = fund_missing[np.uint64(fptr)]
                    return
                payment = (side * qty) * mk[u] * fund_rate[np.uint64(fptr)]
                cash -= payment
                st[S_T_FUNDING] += payment
                stats[M_FUNDING] += payment
            fptr += 1
            next_fbar = fund_bar[fptr] if fptr < n_fund else never

        # 5. management at the close, effective from the next bar
        if side != 0:
            if be_r > 0.0 and not be_done and risk > 0.0:
                if side > 0 and hh >= entry_px + side * be_r * risk:
                    be_done = True
                    if not stop_lv >= entry_px:
                        stop_lv = entry_px
                        stop_kind = KIND_BREAKEVEN
                elif side < 0 and ll <= entry_px + side * be_r * risk:
                    be_done = True
                    if not stop_lv <= entry_px:
                        stop_lv = entry_px
                        stop_kind = KIND_BREAKEVEN
            if trail_on:
                distance = trail_mult * trail_arr[uj]
                if distance > 0.0:
                    if side > 0:
                        candidate = hh - distance
                        if not candidate <= stop_lv:
                            stop_lv = candidate
                            stop_kind = KIND_TRAILING
                    else:
                        candidate = ll + distance
                        if not candidate >= stop_lv:
                            stop_lv = candidate
                            stop_kind = KIND_TRAILING

        # 6. decisions at the close (none on the last bar: nothing could fill them)
        if i < last_bar:
            reason, enter = _decide(codes[uj], side, i, entry_bar, fill_shift, max_bars)
            if reason != 0 or enter != 0:
                d_stop, d_tp, d_size = _order_inputs(
                    stop_dist, tp_dist, size_arr, has_stop, has_tp, has_size, uj
                )
                if fill_close:
                    c = cl[u]
                    if reason != 0:
                        cash = _close(
                            st, stats, trades, record, side, qty, entry_px, hh, ll, risk,
                            c * (1.0 - side * slip), taker, reason, i, close_time[u], cash,
                        )  # fmt: skip
                        side = 0
                        qty = 0.0
                        entry_px = 0.0
                    if enter != 0:
                        (qty, entry_px, stop_lv, tp_lv, part_lv, liq_px, bankrupt_px, risk,
                         fee) = _open(st, stats, cfg, enter, c, i, close_time[u], cash, d_stop,
                                      d_tp, d_size)  # fmt: skip
                        if qty > 0.0:
                            cash -= fee
                            side = enter
                            stop_kind = KIND_STOP
                            hh = c
                            ll = c
                            be_done = False
                            entry_bar = i
                else:
                    pend_exit = reason
                    pend_entry = enter
                    pend_stop = d_stop
                    pend_tp = d_tp
                    pend_size = d_size

        # 7. equity at the close and the running metrics
        eq = cash
        if side != 0:
            eq = cash + (side * qty) * (cl[u] - entry_px)
            exposure += 1.0
        if record:
            equity[u] = eq
        acc = _fold(float(i), close_time[u], eq, acc)
        trig_lo, trig_hi, mark_lo, mark_hi, time_bar = _triggers(
            side, stop_lv, tp_lv, part_lv, liq_px, entry_px, risk, be_r, be_done, entry_bar,
            max_bars, fill_shift,
        )  # fmt: skip
        wake = _wake(i + 1, next_fbar, time_bar, pend_exit != 0 or pend_entry != 0, trail_on, side)
        mask = _MASK_FLAT if side == 0 else (_MASK_LONG if side > 0 else _MASK_SHORT)
        price_levels = trig_lo > -math.inf or trig_hi < math.inf
        mark_levels = mark_lo > -math.inf or mark_hi < math.inf
        i += 1

    st[S_CASH] = cash
    st[S_SIDE] = side
    st[S_QTY] = qty
    st[S_ENTRY_PX] = entry_px
    st[S_STOP] = stop_lv
    st[S_STOP_KIND] = stop_kind
    st[S_TP] = tp_lv
    st[S_PARTIAL] = part_lv
    st[S_LIQ] = liq_px
    st[S_BANKRUPT] = bankrupt_px
    st[S_HIGH] = hh
    st[S_LOW] = ll
    st[S_RISK] = risk
    st[S_BE_DONE] = 1.0 if be_done else 0.0
    st[S_ENTRY_BAR] = entry_bar
    st[S_PEND_EXIT] = pend_exit
    st[S_PEND_ENTRY] = pend_entry
    st[S_PEND_STOP] = pend_stop
    st[S_PEND_TP] = pend_tp
    st[S_PEND_SIZE] = pend_size
    st[S_FUND_PTR] = fptr
    stats[M_EXPOSURE_BARS] = exposure
    save_equity(
        stats, acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7], acc[8], acc[9],
        acc[10], acc[11], acc[12], acc[13],
    )  # fmt: skip
    if stop > start:
        stats[M_LAST_IDX] = stop - 1
        stats[M_LAST_T] = close_time[stop - 1]


@njit(cache=True, inline="always", error_model="numpy")
def _fold(i, t_close, eq, acc):
    """:func:`metrics.equity_step` on the accumulator tuple (``load_equity``'s order)."""
    return equity_step(
        i, t_close, eq, acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7], acc[8],
        acc[9], acc[10], acc[11], acc[12], acc[13],
    )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def _quiet_flat(i, limit, close_time, cash, equity, record, acc):
    """Advance flat bars from ``i`` until ``limit`` or the first bar whose signal code matches
    ``mask`` (an entry): each only books its equity. Returns (first bar not run, accumulators)."""
    close_time = borrow(close_time)
    equity = borrow(equity)
    (
        peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end, day_prev_eq,
        last_eq, n_days, mean, m2, down2,
    ) = acc  # fmt: skip
    while i < limit:
        u = np.uint64(i)
        if record:
            equity[u] = cash
        t_close = close_time[u]
        if t_close <= day_end and _inside_band(cash, peak, trough):
            last_eq = cash
        else:
            (
                peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end,
                day_prev_eq, last_eq, n_days, mean, m2, down2,
            ) = equity_step(
                float(i), t_close, cash, peak, peak_idx, peak_t, trough, max_dd, stag_bars,
                stag_ms, day_end, day_prev_eq, last_eq, n_days, mean, m2, down2,
            )  # fmt: skip
        i += 1
    return i, (
        peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end, day_prev_eq,
        last_eq, n_days, mean, m2, down2,
    )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def _quiet_position(
    i, limit, op, hi, lo, cl, mk, close_time, equity, record, track_extremes, price_levels,
    mark_levels, trig_lo, trig_hi, mark_lo, mark_hi, cash, signed_qty, entry_px, hh, ll,
    exposure, acc,
):  # fmt: skip
    """Advance bars of an open position from ``i`` while they are quiet: no signal in ``mask``,
    open/high/low inside the (trig_lo, trig_hi) levels, mark inside (mark_lo, mark_hi). Each
    tracks the extremes, marks the position to the close and books the equity; exactly what
    the full rules do on such a bar. Returns (first bar not run, high, low, exposure bars,
    accumulators)."""
    op = borrow(op)
    hi = borrow(hi)
    lo = borrow(lo)
    cl = borrow(cl)
    mk = borrow(mk)
    close_time = borrow(close_time)
    equity = borrow(equity)
    (
        peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end, day_prev_eq,
        last_eq, n_days, mean, m2, down2,
    ) = acc  # fmt: skip
    while i < limit:
        u = np.uint64(i)
        if price_levels:
            o = op[u]
            if (lo[u] <= trig_lo) | (o <= trig_lo) | (hi[u] >= trig_hi) | (o >= trig_hi):
                break
        if mark_levels:
            m = mk[u]
            if (m <= mark_lo) | (m >= mark_hi):
                break
        if track_extremes:  # excursions feed trade records and breakeven only
            h = hi[u]
            lw = lo[u]
            if h > hh:
                hh = h
            if lw < ll:
                ll = lw
        eq = cash + signed_qty * (cl[u] - entry_px)
        exposure += 1.0
        if record:
            equity[u] = eq
        if close_time[u] <= day_end and eq < peak:
            # below the high, within the day: all equity_step does (without a branch)
            trough, max_dd = below_peak(eq, peak, trough, max_dd)
            last_eq = eq
        else:
            (
                peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end,
                day_prev_eq, last_eq, n_days, mean, m2, down2,
            ) = equity_step(
                float(i), close_time[u], eq, peak, peak_idx, peak_t, trough, max_dd, stag_bars,
                stag_ms, day_end, day_prev_eq, last_eq, n_days, mean, m2, down2,
            )  # fmt: skip
        i += 1
    return i, hh, ll, exposure, (
        peak, peak_idx, peak_t, trough, max_dd, stag_bars, stag_ms, day_end, day_prev_eq,
        last_eq, n_days, mean, m2, down2,
    )  # fmt: skip


@njit(cache=True, inline="always")
def _inside_band(eq, peak, trough):
    """True when :func:`metrics.equity_step` would only record ``eq`` as the last equity: no
    new high (``eq < peak``) and no new low since it (``eq >= trough``), within the same day."""
    return eq < peak and eq >= trough


@njit(cache=True, inline="always", error_model="numpy")
def _triggers(
    side, stop_lv, tp_lv, part_lv, liq_px, entry_px, risk, be_r, be_done, entry_bar, max_bars,
    fill_shift,
):  # fmt: skip
    """Levels that make a bar eventful for the open position: (low trigger, high trigger, mark
    low, mark high, first decision bar of the time stop). A bar whose low, open, high and mark
    stay strictly inside them is quiet."""
    inf = math.inf
    never = np.int64(2**62)
    if side == 0:
        return -inf, inf, -inf, inf, never
    be_level = math.nan
    if be_r > 0.0 and not be_done and risk > 0.0:
        be_level = entry_px + side * be_r * risk
    time_bar = never
    if max_bars > 0.0:
        time_bar = np.int64(entry_bar + max_bars - fill_shift)
    if side > 0:
        trig_lo = stop_lv if stop_lv == stop_lv else -inf
        mark_lo = liq_px if liq_px == liq_px else -inf
        return trig_lo, _nanmin3(tp_lv, part_lv, be_level), mark_lo, inf, time_bar
    trig_hi = stop_lv if stop_lv == stop_lv else inf
    mark_hi = liq_px if liq_px == liq_px else inf
    return -_nanmin3(-tp_lv, -part_lv, -be_level), trig_hi, -inf, mark_hi, time_bar


@njit(cache=True, inline="always")
def _decide(code, side, i, entry_bar, fill_shift, max_bars):
    """The orders bar ``i``'s close decides for a position of ``side``: (exit reason or 0,
    direction to enter or 0). An exit signal (or an entry the other way, a reversal) closes;
    a due time stop closes; an entry opens unless already positioned that way."""
    go_long = (code & SIG_ENTRY_LONG) != 0
    go_short = (code & SIG_ENTRY_SHORT) != 0
    reason = 0
    if side > 0:
        if code & SIG_EXIT_LONG:
            reason = R_SIGNAL
        elif go_short:
            reason = R_REVERSE
    elif side < 0:
        if code & SIG_EXIT_SHORT:
            reason = R_SIGNAL
        elif go_long:
            reason = R_REVERSE
    if side != 0 and reason == 0 and max_bars > 0 and i + fill_shift - entry_bar >= max_bars:
        reason = R_TIME
    enter = 0
    if go_long and not go_short:
        enter = 1
    elif go_short and not go_long:
        enter = -1
    if enter == side and reason == 0:
        enter = 0  # already positioned that way: no pyramiding
    return reason, enter


@njit(cache=True, inline="always")
def _order_inputs(stop_dist, tp_dist, size_arr, has_stop, has_tp, has_size, j):
    """(stop distance, take-profit distance, size) of the orders decided at signal index
    ``j``; NaN for each array the signals do not have."""
    d_stop = stop_dist[j] if has_stop else math.nan
    d_tp = tp_dist[j] if has_tp else math.nan
    d_size = size_arr[j] if has_size else math.nan
    return d_stop, d_tp, d_size


@njit(cache=True, inline="always")
def _wake(next_bar, next_fbar, time_bar, pending, trail_on, side):
    """First bar from ``next_bar`` on that needs the full rules regardless of prices/signals."""
    if pending or (trail_on and side != 0):
        return next_bar
    return min(next_fbar, time_bar)


@njit(cache=True, inline="always")
def _nanmin3(a, b, c):
    """Smallest of the non-NaN values, +inf when all are NaN."""
    out = math.inf
    if a < out:
        out = a
    if b < out:
        out = b
    if c < out:
        out = c
    return out


@njit(cache=True, inline="always")
def _next_event(codes, sig_off, i, limit, mask):
    """First bar in ``[i, limit)`` whose signal code has a bit of ``mask`` (``limit`` if none)."""
    while i < limit and (codes[np.uint64(i - sig_off)] & mask) == 0:
        i += 1
    return i


@intrinsic
def prefetch(typingctx, array, index):
    """Hint the CPU to fetch ``array[index]`` into the cache (no effect on results; an index
    past the end is harmless: prefetches never fault)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        data = make_array(signature.args[0])(context, builder, value=args[0]).data
        address = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [address.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [address, i32(0), i32(3), i32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()

    return types.void(array, index), codegen


@intrinsic
def borrow(typingctx, array):
    """A view of ``array`` without a reference-counted owner (meminfo NULL).

    numba increments and decrements an array's reference count (an atomic operation) at every
    call that receives it; for helpers called per trade (or per block of a sweep) that costs
    more than their arithmetic. A borrowed view skips it. Only for arrays a caller keeps alive
    for the whole call (function arguments), never for arrays allocated in the same function
    (numba frees those after their last use); never return or store a borrowed view.
    """
    if not isinstance(array, types.Array):
        return None
    return array(array), _borrowed_view_codegen(array, array)


@intrinsic
def borrow_readonly(typingctx, array):
    """:func:`borrow`, typed read-only: lets a kernel pass a buffer it just wrote to
    :func:`run_bars` under the same (read-only) signature as every other caller."""
    if not isinstance(array, types.Array):
        return None
    readonly = array.copy(readonly=True)
    return readonly(array), _borrowed_view_codegen(array, readonly)


def _borrowed_view_codegen(source_type: types.Array, view_type: types.Array):
    def codegen(context, builder, signature, args):
        source = make_array(source_type)(context, builder, value=args[0])
        view = make_array(view_type)(context, builder)
        populate_array(
            view,
            data=source.data,
            shape=source.shape,
            strides=source.strides,
            itemsize=source.itemsize,
            meminfo=None,
        )
        return view._getvalue()

    return codegen


@njit(cache=True, inline="always")
def _stop_reason(stop_kind):
    if stop_kind == KIND_BREAKEVEN:
        return R_BREAKEVEN
    if stop_kind == KIND_TRAILING:
        return R_TRAILING
    return R_STOP


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _open(st, stats, cfg, direction, raw_px, bar, t, equity_now, stop_d, tp_d, size_v):
    """Size and open a position at ``raw_px`` (before slippage). Returns the new position's
    (qty, entry price, stop, take-profit, partial level, liquidation, bankruptcy, R, entry fee);
    qty 0 means the order was skipped (counted in S_SKIPPED)."""
    nan = math.nan
    skipped = (0.0, 0.0, nan, nan, nan, nan, nan, nan, 0.0)
    fee_rate = cfg[C_TAKER]
    lev = cfg[C_LEVERAGE]
    px = raw_px * (1.0 + direction * cfg[C_SLIP])
    f = size_v if size_v == size_v else cfg[C_SIZE]
    risk = stop_d if stop_d > 0.0 else nan
    if not (equity_now > 0.0 and f > 0.0 and px > 0.0):
        st[S_SKIPPED] += 1.0
        return skipped
    sizing = int(cfg[C_SIZING])
    bt_sizing = cfg[C_BT_SIZING] != 0.0
    if sizing == 0:
        if bt_sizing:
            q = _py_floordiv(equity_now * lev * f, px + (f * px * fee_rate) / f)
        else:
            q = f * equity_now * lev / (px * (1.0 + fee_rate))
    elif sizing == 1:
        if not risk > 0.0:
            st[S_SKIPPED] += 1.0
            return skipped
        q = f * equity_now / risk
    else:
        q = f
    if not bt_sizing:
        cap = equity_now * lev / (px * (1.0 + fee_rate))
        if q > cap:
            q = cap
    q = _round_down(q, cfg[C_QTY_STEP])
    if not q > 0.0 or q * px < cfg[C_MIN_NOTIONAL]:
        st[S_SKIPPED] += 1.0
        return skipped
    fee = q * px * fee_rate
    stop_lv = px - direction * risk
    tp_lv = px + direction * tp_d if tp_d > 0.0 else nan
    part_lv = nan
    if cfg[C_PARTIAL_R] > 0.0 and risk > 0.0:
        part_lv = px + direction * cfg[C_PARTIAL_R] * risk
    liq_px = nan
    bankrupt_px = nan
    if cfg[C_LIQUIDATION] != 0.0:
        liq_px = px * (1.0 - direction * (1.0 / lev - cfg[C_MMR]))
        bankrupt_px = px * (1.0 - direction / lev)
    stats[M_FEES] += fee
    st[S_ENTRY_BAR] = bar
    st[S_ENTRY_TIME] = t
    st[S_QTY0] = q
    st[S_T_FEES] = fee
    st[S_T_FUNDING] = 0.0
    st[S_T_GROSS] = 0.0
    st[S_T_EXIT_VALUE] = 0.0
    st[S_T_PARTIAL_QTY] = 0.0
    return (q, px, stop_lv, tp_lv, part_lv, liq_px, bankrupt_px, risk, fee)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _partial(st, stats, cfg, side, qty, entry_px, px, cash):
    """Take the partial profit at limit price ``px`` (maker fee). Returns (cash, qty left)."""
    part = _round_down(st[S_QTY0] * cfg[C_PARTIAL_FRAC], cfg[C_QTY_STEP])
    if part > qty:
        part = qty
    if not part > 0.0 or part >= qty:
        return cash, qty  # too small to split (or the whole position): the final target decides
    gross = (side * part) * (px - entry_px)
    fee = part * px * cfg[C_MAKER]
    stats[M_FEES] += fee
    st[S_T_GROSS] += gross
    st[S_T_FEES] += fee
    st[S_T_EXIT_VALUE] += part * px
    st[S_T_PARTIAL_QTY] += part
    return cash + (gross - fee), qty - part


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _close(
    st, stats, trades, record, side, qty, entry_px, hh, ll, risk, px, fee_rate, reason, bar, t, cash
):
    """Close the whole remaining position at ``px``; write the trade row and trade metrics.
    Returns the new cash."""
    gross = (side * qty) * (px - entry_px)
    fee = qty * px * fee_rate
    cash = cash + (gross - fee)
    stats[M_FEES] += fee
    t_gross = st[S_T_GROSS] + gross
    t_fees = st[S_T_FEES] + fee
    t_funding = st[S_T_FUNDING]
    net = t_gross - t_fees - t_funding
    qty0 = st[S_QTY0]
    entry_bar = st[S_ENTRY_BAR]
    bars_held = bar - entry_bar
    hold_ms = t - st[S_ENTRY_TIME]
    ret_pct = net / (entry_px * qty0) * 100.0
    r_multiple = net / (risk * qty0) if risk > 0.0 else math.nan
    record_trade_stats(stats, net, ret_pct, r_multiple, bars_held, hold_ms)
    k = int(st[S_N_TRADES])
    st[S_N_TRADES] = k + 1
    if record:
        if k >= trades.shape[0]:
            st[S_ERROR] = ERR_CAPACITY
            st[S_ERROR_BAR] = bar
            return cash
        if side > 0:
            mae = max(0.0, entry_px - ll)
            mfe = max(0.0, hh - entry_px)
        else:
            mae = max(0.0, hh - entry_px)
            mfe = max(0.0, entry_px - ll)
        rec = trades[k]
        rec.entry_bar = entry_bar
        rec.exit_bar = bar
        rec.entry_time = st[S_ENTRY_TIME]
        rec.exit_time = t
        rec.side = side
        rec.qty = qty0
        rec.entry_price = entry_px
        partial = st[S_T_PARTIAL_QTY]
        rec.exit_price = px if partial == 0.0 else (st[S_T_EXIT_VALUE] + qty * px) / qty0
        rec.gross_pnl = t_gross
        rec.fees = t_fees
        rec.funding = t_funding
        rec.net_pnl = net
        rec.mae = mae
        rec.mfe = mfe
        rec.mae_pct = mae / entry_px * 100.0
        rec.mfe_pct = mfe / entry_px * 100.0
        rec.risk = risk
        rec.r_multiple = r_multiple
        rec.exit_reason = reason
        rec.bars_held = bars_held
        rec.partial_qty = partial
        rec.return_pct = ret_pct
    return cash


@njit(cache=True, inline="always")
def _round_down(q, step):
    """``q`` rounded down to a multiple of ``step`` (unchanged when step is 0), robust to the
    float error of ``q / step`` (0.3 / 0.1 = 2.9999999999999996)."""
    if step <= 0.0:
        return q
    k = math.floor(q / step)
    if (k + 1.0) * step <= q:
        k += 1.0
    elif k * step > q:
        k -= 1.0
    return k * step


@njit(cache=True, inline="always")
def _py_floordiv(a, b):
    """Python's float ``a // b`` (CPython's fmod-based algorithm), for backtesting.py parity."""
    mod = np.fmod(a, b)
    div = (a - mod) / b
    if mod != 0.0 and ((b < 0.0) != (mod < 0.0)):
        div -= 1.0
    if div != 0.0:
        floordiv = math.floor(div)
        if div - floordiv > 0.5:
            floordiv += 1.0
        return floordiv
    return 0.0
