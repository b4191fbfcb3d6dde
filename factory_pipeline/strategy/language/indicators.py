"""Causal rolling indicators as numba kernels, O(n) each.

Each public function takes float64 arrays (one value per bar) and integer windows and returns a
new float64 array of the same length whose value at bar ``t`` depends only on inputs at bars
``<= t``. These are the primitives of the signal language; composite functions (Bollinger
bands, MACD, Donchian channels, z-score) are built from them in functions.py, and the backtest
engine may call them directly.

Shared NaN rules (docs/signal_language.md, "Warm-up and NaN"):

- Windowed indicators (sma, stdev, wma, highest, lowest, rolling sums) are NaN unless all ``n``
  inputs in the window are numbers; a NaN input therefore blanks the next ``n`` outputs.
- Recursive indicators (ema, Wilder smoothing inside rsi and atr) are seeded with the simple
  mean of the first ``n`` numeric inputs; afterwards a NaN input yields NaN at that bar and leaves
  the state unchanged (the bar is skipped).

Numerical schemes:

- ``sma`` and ``rolling_sum`` mirror pandas ``rolling(n).mean()/.sum()``: Kahan-compensated
  add/remove sums with separate compensations, plus pandas' guards (a window of identical values
  returns that value exactly; sign fix-ups). sma is bit-identical to pandas on the same input.
- ``stdev`` uses compensated Welford add/remove updates and recomputes the window exactly (two
  passes) every ``n`` bars, so rounding error cannot accumulate over long series; a window of
  identical values gives exactly 0.
- ``wma`` updates its weighted and plain sums recursively and recomputes them exactly every ``n``
  bars (and after every NaN).
- ``highest``/``lowest`` use a monotonic deque (amortized O(1) per bar).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from factory_pipeline.errors import SignalLanguageError


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average: mean of ``x[t-n+1..t]``; first value at ``t = n-1``."""
    return _rolling_sum_kernel(_f64(x), _window(n), True)


def sma_many(x: np.ndarray, windows: Sequence[int]) -> list[np.ndarray]:
    """``[sma(x, n) for n in windows]``, bit-identical, computed two windows per pass over
    ``x``: the two running sums are independent chains of dependent additions, so one pass
    advancing both takes little longer than one of them alone."""
    values = _f64(x)
    lengths = [_window(n) for n in windows]
    out: list[np.ndarray] = []
    for k in range(0, len(lengths) - 1, 2):
        out.extend(_rolling_mean_pair_kernel(values, lengths[k], lengths[k + 1]))
    if len(lengths) % 2:
        out.append(_rolling_sum_kernel(values, lengths[-1], True))
    return out


def sma_pair_crosses(
    x: np.ndarray, n1: int, n2: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, crosses_above(a, b), crosses_below(a, b))`` for ``a = sma(x, n1)``,
    ``b = sma(x, n2)``, bit-identical to computing them one by one: the crossings of each
    block are marked while its averages are still in cache, instead of re-reading both whole
    arrays (a strategy tests its moving-average pair in both directions)."""
    values = _f64(x)
    return _sma_pair_crosses_kernel(values, _window(n1), _window(n2), _CROSS_BLOCK)


#: Bars per block of :func:`sma_pair_crosses` (both averages of a block stay in L1).
_CROSS_BLOCK = 1024


def rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sum of ``x[t-n+1..t]``; first value at ``t = n-1``."""
    return _rolling_sum_kernel(_f64(x), _window(n), False)


def ema(x: np.ndarray, n: int) -> np.ndarray:
    """Exponential moving average, ``alpha = 2/(n+1)``, seeded with the SMA of the first ``n``
    numeric inputs: ``e[t] = e[t-1] + alpha * (x[t] - e[t-1])``."""
    window = _window(n)
    return _smoothed_kernel(_f64(x), window, 2.0 / (window + 1.0))


def wilder(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder's smoothing (an EMA with ``alpha = 1/n``), seeded with the SMA of the first ``n``
    numeric inputs: ``s[t] = s[t-1] + (x[t] - s[t-1]) / n``."""
    window = _window(n)
    return _smoothed_kernel(_f64(x), window, 1.0 / window)


def wma(x: np.ndarray, n: int) -> np.ndarray:
    """Linearly weighted moving average, weights ``1..n`` (newest weighs ``n``), divided by
    ``n(n+1)/2``; first value at ``t = n-1``."""
    return _wma_kernel(_f64(x), _window(n))


def stdev(x: np.ndarray, n: int) -> np.ndarray:
    """Population standard deviation (ddof = 0) of ``x[t-n+1..t]``; first value at ``t = n-1``."""
    return np.sqrt(_rolling_var_kernel(_f64(x), _window(n)))


def highest(x: np.ndarray, n: int) -> np.ndarray:
    """Maximum of ``x[t-n+1..t]`` (the current bar included); first value at ``t = n-1``."""
    return _rolling_extreme_kernel(_f64(x), _window(n), True)


def lowest(x: np.ndarray, n: int) -> np.ndarray:
    """Minimum of ``x[t-n+1..t]`` (the current bar included); first value at ``t = n-1``."""
    return _rolling_extreme_kernel(_f64(x), _window(n), False)


def rsi(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder's RSI in [0, 100]: changes ``d[t] = x[t] - x[t-1]``, gains ``max(d, 0)`` and losses
    ``max(-d, 0)`` smoothed with :func:`wilder`; ``100 * G / (G + L)`` (50 when both are 0).
    First value at ``t = n``."""
    values = _f64(x)
    window = _window(n)
    change = np.full(values.shape[0], np.nan)
    change[1:] = values[1:] - values[:-1]
    gains = np.where(np.isnan(change), np.nan, np.maximum(change, 0.0))
    losses = np.where(np.isnan(change), np.nan, np.maximum(-change, 0.0))
    avg_gain = _smoothed_kernel(gains, window, 1.0 / window)
    avg_loss = _smoothed_kernel(losses, window, 1.0 / window)
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 100.0 * avg_gain / total
    out[total == 0.0] = 50.0
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``max(high - low, |high - close[t-1]|, |low - close[t-1]|)``; ``high - low`` at t = 0."""
    h, lo, c = _f64(high), _f64(low), _f64(close)
    out = h - lo
    if out.shape[0] > 1:
        prev = c[:-1]
        out[1:] = np.maximum(out[1:], np.maximum(np.abs(h[1:] - prev), np.abs(lo[1:] - prev)))
    return out


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """Average true range: :func:`wilder` smoothing of :func:`true_range`; first value at
    ``t = n-1`` (the first bar's range counts as a true range)."""
    return wilder(true_range(high, low, close), n)


def roc(x: np.ndarray, n: int) -> np.ndarray:
    """Rate of change in percent: ``100 * (x[t] / x[t-n] - 1)``; NaN when ``x[t-n]`` is 0."""
    values = _f64(x)
    past = lag(values, _window(n))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 100.0 * (values / past - 1.0)
    out[past == 0.0] = np.nan
    return out


def vwap(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, n: int
) -> np.ndarray:
    """Rolling VWAP over ``n`` bars with typical price ``(high + low + close) / 3``:
    ``sum(tp * volume) / sum(volume)``; NaN when the window's volume is 0."""
    window = _window(n)
    typical = (_f64(high) + _f64(low) + _f64(close)) / 3.0
    vol = _f64(volume)
    pv = _rolling_sum_kernel(np.ascontiguousarray(typical * vol), window, False)
    v = _rolling_sum_kernel(vol, window, False)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = pv / v
    out[v == 0.0] = np.nan
    return out


def lag(x: np.ndarray, n: int) -> np.ndarray:
    """``x[t-n]``; the first ``n`` bars are NaN (False for a boolean array)."""
    window = _window(n)
    fill = False if x.dtype == np.bool_ else np.nan
    out = np.full(x.shape[0], fill, dtype=x.dtype if x.dtype == np.bool_ else np.float64)
    if window < x.shape[0]:
        out[window:] = x[:-window]
    return out


def crosses_above(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True at ``t`` iff ``a[t] > b[t]`` and ``a[t-1] <= b[t-1]`` (False at t = 0 and where
    any of the four values is NaN)."""
    return _crosses(_f64(a), _f64(b))


def crosses_below(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True at ``t`` iff ``a[t] < b[t]`` and ``a[t-1] >= b[t-1]`` (False at t = 0 and where
    any of the four values is NaN)."""
    return _crosses(_f64(b), _f64(a))


def crosses_both(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(crosses_above(a, b), crosses_below(a, b))`` in one pass over ``a`` and ``b``."""
    return _crosses_both(_f64(a), _f64(b))


# -- helpers ---------------------------------------------------------------------------------


def _f64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


def _window(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise SignalLanguageError(f"window length must be an integer >= 1, got {n!r}")
    return int(n)


@njit(cache=True, nogil=True)
def _crosses(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a[t] > b[t] and a[t-1] <= b[t-1]`` in one pass (comparisons with NaN are False)."""
    n = a.shape[0]
    out = np.empty(n, dtype=np.bool_)
    if n == 0:
        return out
    out[0] = False
    for t in range(1, n):
        out[t] = (a[t] > b[t]) & (a[t - 1] <= b[t - 1])  # no branches: vectorizes
    return out


@njit(cache=True, nogil=True)
def _crosses_both(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_crosses` of (a, b) and of (b, a) in one pass (the same comparisons)."""
    n = a.shape[0]
    above = np.empty(n, dtype=np.bool_)
    below = np.empty(n, dtype=np.bool_)
    if n == 0:
        return above, below
    above[0] = False
    below[0] = False
    for t in range(1, n):
        u = np.uint64(t)  # unsigned: no negative-index wraparound code
        p = np.uint64(t - 1)
        above[u] = (a[u] > b[u]) & (a[p] <= b[p])
        below[u] = (b[u] > a[u]) & (b[p] <= a[p])
    return above, below


@njit(cache=True, nogil=True)
def _sma_pair_crosses_kernel(x, n1, n2, block):
    """:func:`sma_pair_crosses`: per block, the pair of means, then the block's crossings."""
    size = x.shape[0]
    out1 = np.empty(size)
    out2 = np.empty(size)
    above = np.empty(size, dtype=np.bool_)
    below = np.empty(size, dtype=np.bool_)
    if size == 0:
        return out1, out2, above, below
    above[0] = False
    below[0] = False
    state = rolling_mean_pair_init(x)
    for start in range(0, size, block):
        stop = min(size, start + block)
        state = rolling_mean_pair(x, start, stop, n1, n2, state, out1, out2, np.int64(0))
        for t in range(max(start, 1), stop):  # _crosses_both's comparisons
            u = np.uint64(t)  # unsigned: no negative-index wraparound code
            p = np.uint64(t - 1)
            above[u] = (out1[u] > out2[u]) & (out1[p] <= out2[p])
            below[u] = (out2[u] > out1[u]) & (out2[p] <= out1[p])
    return out1, out2, above, below


@njit(cache=True)
def _rolling_sum_kernel(x: np.ndarray, n: int, mean: bool) -> np.ndarray:
    """pandas' fixed-window Kahan sum (separate add/remove compensation), min_periods = n."""
    size = x.shape[0]
    out = np.empty(size)
    state = rolling_mean_init(x)
    for i in range(size):
        result, state = rolling_mean_step(x, i, n, state)
        if not mean and result == result:
            nobs, _neg, total, _ca, _cr, same, prev, _nan = state
            result = prev * nobs if same >= nobs else total
        out[i] = result
    return out


@njit(cache=True)
def _rolling_mean_pair_kernel(x: np.ndarray, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    """Two rolling means of ``x`` in one pass (:func:`rolling_mean_pair`), each exactly
    :func:`_rolling_sum_kernel`'s."""
    size = x.shape[0]
    out1 = np.empty(size)
    out2 = np.empty(size)
    start = np.int64(0)
    rolling_mean_pair(x, start, size, n1, n2, rolling_mean_pair_init(x), out1, out2, start)
    return out1, out2


@njit(cache=True)
def rolling_mean_pair_init(values):
    """Initial state of :func:`rolling_mean_pair`: per window (nobs, negatives, sum, add
    compensation, remove compensation), then what every window shares: (constant run, last
    value, index of the last NaN, of the last value with its sign bit set, of the last one
    without, whether the negative counts are stale)."""
    prev = values[0] if values.shape[0] > 0 else np.nan
    zero, none = np.int64(0), np.int64(-1)  # typed, not literals: one compiled signature
    stale = np.bool_(False)
    return (
        zero,
        zero,
        0.0,
        0.0,
        0.0,
        zero,
        zero,
        0.0,
        0.0,
        0.0,
        zero,
        prev,
        none,
        none,
        none,
        stale,
    )


@njit(cache=True, nogil=True)
def rolling_mean_pair(values, start, stop, n1, n2, state, out1, out2, out_offset):
    """Advance two of pandas' rolling means (windows ``n1`` and ``n2``) over bars
    ``[start, stop)``, writing bar ``i``'s means to ``out1`` / ``out2`` at ``i - out_offset``;
    returns the new state. Each mean is bit-identical to :func:`rolling_mean_step`'s.

    Two independent Kahan chains are latency bound (four dependent additions per bar), so one
    pass can advance both in about the time of one, provided the rest of a bar costs few
    instructions. Where both windows (and the values leaving them) hold only numbers, bars run
    in a tight loop with :func:`rolling_mean_step`'s arithmetic, in its order, sharing what
    does not depend on the window: the NaN check, pandas' constant-run counter and its sign
    guards. pandas counts the window's negatives (sign bit set) to zero a mean whose sign
    contradicts a window of one sign; on a window of numbers that is "no value with the sign
    bit in the last n bars" (``i - last_negative >= n``) or "no value without it", which two
    shared indices answer, so the counts are not kept in the loop: they are recounted from
    the window when a NaN sends the windows back to the general path (one
    :func:`rolling_mean_step` per window), at most once per ``max(n1, n2)`` bars.

    The state is a tuple so that a caller can run the bars block by block (the engine's fused
    crossover backtest) with results identical to one pass.
    """
    (
        nobs1, neg1, sum1, add1, rem1, nobs2, neg2, sum2, add2, rem2, same_run, prev_value,
        last_nan, last_negative, last_positive, stale,
    ) = state  # fmt: skip
    longest = max(n1, n2)
    i = start
    while i < stop:
        if i - last_nan > longest:
            # ---- tight loop: both windows full of numbers; stops at the first NaN ----------
            while i < stop:
                u = np.uint64(i)
                val = values[u]
                if val != val:
                    break
                old1 = values[np.uint64(i - n1)]
                old2 = values[np.uint64(i - n2)]
                y = -old1 - rem1
                t = sum1 + y
                rem1 = t - sum1 - y
                y = val - add1
                sum1 = t + y
                add1 = sum1 - t - y
                y = -old2 - rem2
                t = sum2 + y
                rem2 = t - sum2 - y
                y = val - add2
                sum2 = t + y
                add2 = sum2 - t - y
                if _negative(val):
                    last_negative = i
                else:
                    last_positive = i
                if val == prev_value:
                    same_run += 1
                else:
                    same_run = 1
                prev_value = val
                k = np.uint64(i - out_offset)
                out1[k] = _window_mean(
                    sum1, n1, i, same_run, prev_value, last_negative, last_positive
                )
                out2[k] = _window_mean(
                    sum2, n2, i, same_run, prev_value, last_negative, last_positive
                )
                stale = True
                i += 1
            if i >= stop:
                break
        # ---- general path: warm-up and windows holding a NaN ------------------------------
        if stale:
            neg1 = _count_negative(values, i - n1, i)
            neg2 = _count_negative(values, i - n2, i)
            stale = False
        m1, s1 = rolling_mean_step(
            values, i, n1, (nobs1, neg1, sum1, add1, rem1, same_run, prev_value, last_nan)
        )
        m2, s2 = rolling_mean_step(
            values, i, n2, (nobs2, neg2, sum2, add2, rem2, same_run, prev_value, last_nan)
        )
        nobs1, neg1, sum1, add1, rem1, same_run, prev_value, last_nan = s1
        nobs2, neg2, sum2, add2, rem2, _, _, _ = s2
        val = values[i]
        if val == val:
            if _negative(val):
                last_negative = i
            else:
                last_positive = i
        out1[i - out_offset] = m1
        out2[i - out_offset] = m2
        i += 1
    return (
        nobs1, neg1, sum1, add1, rem1, nobs2, neg2, sum2, add2, rem2, same_run, prev_value,
        last_nan, last_negative, last_positive, stale,
    )  # fmt: skip


@njit(cache=True, inline="always")
def _window_mean(sum_x, n, i, same_run, prev_value, last_negative, last_positive):
    """:func:`_mean_result` for a window of ``n`` numbers ending at bar ``i``, with pandas'
    negative count replaced by the indices of the last negative / non-negative value."""
    result = sum_x / n
    if same_run >= n:
        result = prev_value
    elif (result < 0.0 and i - last_negative >= n) or (result > 0.0 and i - last_positive >= n):
        result = 0.0
    return result


@njit(cache=True, inline="always")
def _count_negative(values, start, stop):
    """Values with the sign bit set among the numbers of ``values[start:stop]``."""
    count = 0
    for k in range(max(start, 0), stop):
        v = values[k]
        if v == v:
            count += _negative(v)
    return count


@njit(cache=True, inline="always")
def rolling_mean_init(values):
    """Initial state of :func:`rolling_mean_step`: (nobs, negatives, sum, add compensation,
    remove compensation, constant run, last value, index of the last NaN seen)."""
    prev = values[0] if values.shape[0] > 0 else np.nan
    return (0, 0, 0.0, 0.0, 0.0, 0, prev, -1)


@njit(cache=True, inline="always")
def rolling_mean_step(values, i, window, state):
    """Advance pandas' rolling-mean state to bar ``i`` (drop bar ``i - window``, add bar ``i``);
    returns (mean, or NaN until ``window`` numbers are in the window; new state).

    The one implementation of pandas' ``rolling(window).mean()`` arithmetic (bit-identical,
    pandas/_libs/window/aggregations.pyx ``roll_mean``: ``add_mean``/``remove_mean`` with
    separate Kahan compensations, ``signbit`` counts of negatives, the constant-run guard):
    used whole-array by ``sma``/``rolling_sum`` and bar by bar inside the engine's fused sweep
    kernel, so a crossover decided in a sweep equals the one the signal language decides.

    Bars whose window (and the value leaving it) holds no NaN take a straight-line path with
    the same operations in the same order; the general path handles NaNs and the warm-up.
    """
    nobs, neg_ct, sum_x, comp_add, comp_remove, same_run, prev_value, last_nan = state
    val = values[i]
    # the value leaving the window (read in one place only: numba keeps reference counting of
    # ``values`` alive in inlined code that indexes it on several paths)
    old = values[i - window] if i >= window else np.nan
    if val != val:
        last_nan = i
    if i - last_nan > window:
        # values[i - window .. i] are all numbers, so nobs == window before and after
        y = -old - comp_remove
        t = sum_x + y
        comp_remove = t - sum_x - y
        y = val - comp_add
        total = t + y
        comp_add = total - t - y
        sum_x = total
        neg_ct += _negative(val) - _negative(old)
        if val == prev_value:
            same_run += 1
        else:
            same_run = 1
        prev_value = val
        result = _mean_result(window, neg_ct, sum_x, same_run, prev_value)
    else:
        if old == old:  # (NaN before bar ``window``)
            nobs -= 1
            y = -old - comp_remove
            t = sum_x + y
            comp_remove = t - sum_x - y
            sum_x = t
            neg_ct -= _negative(old)
        if val == val:
            nobs += 1
            y = val - comp_add
            t = sum_x + y
            comp_add = t - sum_x - y
            sum_x = t
            neg_ct += _negative(val)
            if val == prev_value:
                same_run += 1
            else:
                same_run = 1
            prev_value = val
        result = np.nan
        if nobs >= window and nobs > 0:
            result = _mean_result(nobs, neg_ct, sum_x, same_run, prev_value)
    return result, (nobs, neg_ct, sum_x, comp_add, comp_remove, same_run, prev_value, last_nan)


@njit(cache=True, inline="always")
def _mean_result(nobs, neg_ct, sum_x, same_run, prev_value):
    """pandas' ``calc_mean`` for a window holding ``nobs`` (> 0) numbers."""
    result = sum_x / nobs
    if same_run >= nobs:
        result = prev_value
    elif neg_ct == 0 and result < 0 or neg_ct == nobs and result > 0:
        result = 0.0
    return result


@njit(cache=True, inline="always")
def _negative(value):
    """1 when the sign bit of ``value`` is set (-0.0 included, as pandas' ``signbit``)."""
    return 1 if math.copysign(1.0, value) < 0.0 else 0


@njit(cache=True)
def _rolling_var_kernel(x: np.ndarray, n: int) -> np.ndarray:
    """Population variance over full windows: compensated Welford add/remove, exact two-pass
    recomputation every n full windows, 0 for windows of identical values."""
    size = x.shape[0]
    out = np.empty(size)
    nobs = 0
    mean = 0.0
    ssq = 0.0
    comp_add = 0.0
    comp_remove = 0.0
    same = 0
    prev = np.nan
    since_sync = 0
    for i in range(size):
        if i >= n:
            old = x[i - n]
            if not np.isnan(old):
                nobs -= 1
                if nobs > 0:
                    prev_mean = mean - comp_remove
                    y = old - comp_remove
                    t = y - mean
                    comp_remove = t + mean - y
                    mean -= t / nobs
                    ssq -= (old - prev_mean) * (old - mean)
                else:
                    mean = 0.0
                    ssq = 0.0
        val = x[i]
        if not np.isnan(val):
            if val == prev:
                same += 1
            else:
                same = 1
            prev = val
            nobs += 1
            prev_mean = mean - comp_add
            y = val - comp_add
            t = y - mean
            comp_add = t + mean - y
            mean += t / nobs
            ssq += (val - prev_mean) * (val - mean)
        if nobs >= n:
            since_sync += 1
            if since_sync >= n:
                acc = 0.0
                for k in range(i - n + 1, i + 1):
                    acc += x[k]
                mean = acc / n
                acc = 0.0
                for k in range(i - n + 1, i + 1):
                    dev = x[k] - mean
                    acc += dev * dev
                ssq = acc
                comp_add = 0.0
                comp_remove = 0.0
                since_sync = 0
            if same >= n or n == 1:
                out[i] = 0.0
            else:
                out[i] = max(ssq / n, 0.0)
        else:
            since_sync = 0
            out[i] = np.nan
    return out


@njit(cache=True)
def _smoothed_kernel(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Exponential smoothing seeded with the mean of the first n numeric inputs; NaN skips."""
    size = x.shape[0]
    out = np.empty(size)
    count = 0
    acc = 0.0
    value = np.nan
    for i in range(size):
        val = x[i]
        if np.isnan(val):
            out[i] = np.nan
            continue
        if count < n:
            acc += val
            count += 1
            if count == n:
                value = acc / n
                out[i] = value
            else:
                out[i] = np.nan
        else:
            value = value + alpha * (val - value)
            out[i] = value
    return out


@njit(cache=True)
def _wma_kernel(x: np.ndarray, n: int) -> np.ndarray:
    """Weighted moving average with recursive sums, recomputed exactly every n bars."""
    size = x.shape[0]
    out = np.full(size, np.nan)
    denom = n * (n + 1) / 2.0
    run = 0
    weighted = 0.0
    plain = 0.0
    since_sync = 0
    for i in range(size):
        val = x[i]
        if np.isnan(val):
            run = 0
            continue
        run += 1
        if run < n:
            continue
        if run == n or since_sync >= n:
            weighted = 0.0
            plain = 0.0
            for k in range(n):
                v = x[i - n + 1 + k]
                weighted += (k + 1) * v
                plain += v
            since_sync = 0
        else:
            weighted = weighted - plain + n * val
            plain = plain - x[i - n] + val
            since_sync += 1
        out[i] = weighted / denom
    return out


@njit(cache=True)
def _rolling_extreme_kernel(x: np.ndarray, n: int, want_max: bool) -> np.ndarray:
    """Rolling max/min with a monotonic deque of indices; NaN when the window holds a NaN."""
    size = x.shape[0]
    out = np.empty(size)
    queue = np.empty(size, dtype=np.int64)
    head = 0
    tail = 0
    last_nan = -1
    for i in range(size):
        while head < tail and queue[head] <= i - n:
            head += 1
        val = x[i]
        if np.isnan(val):
            last_nan = i
        else:
            if want_max:
                while head < tail and x[queue[tail - 1]] <= val:
                    tail -= 1
            else:
                while head < tail and x[queue[tail - 1]] >= val:
                    tail -= 1
            queue[tail] = i
            tail += 1
        if i - last_nan >= n and head < tail:
            out[i] = x[queue[head]]
        else:
            out[i] = np.nan
    return out
