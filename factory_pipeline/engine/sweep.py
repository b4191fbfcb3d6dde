"""Parameter sweeps: many configurations of one strategy, one metrics row each.

Two paths, same simulator kernel, same numbers:

* **generic**: any ``signal_fn(frame, params) -> Signals``; configurations run on a thread pool
  (the kernel releases the GIL). Grid keys that name a SimConfig field (``taker_fee``,
  ``max_bars``, ...) vary the config instead of the signals.
* **fused** (:class:`CrossoverFamily`, SMA/EMA fast/slow crossovers): every distinct window is
  computed once, then threads (numba ``prange``) take groups of configurations and advance each
  group block by block over the same cache-resident bars. Only per-configuration accumulators
  are kept — never a per-configuration equity curve or signal array.

Each row equals ``compute_metrics(simulate(frame, signals, config))`` for that configuration
exactly (tested), because both paths run the kernel that ``simulate`` runs. The same block-wise
fusion serves one configuration: :meth:`CrossoverFamily.backtest` equals ``simulate`` on the
family's signals, trade records and equity curve included.

Crossover tie rule (as backtesting.py's ``crossover``): fast crosses above slow at bar t iff
``fast[t-1] < slow[t-1] and fast[t] > slow[t]``; an exact tie on either bar is no crossover.
SMAs are computed with pandas' rolling-mean algorithm (Kahan-compensated running sum), so ties
and near-ties resolve bit-for-bit as in pandas and backtesting.py.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import numba
import numpy as np
import pyarrow as pa
from numba import njit, prange

from factory_pipeline.engine.config import SimConfig, pack_config
from factory_pipeline.engine.metrics import METRIC_NAMES, init_stats, metrics_from_stats
from factory_pipeline.engine.results import TRADE_DTYPE, BacktestResult
from factory_pipeline.engine.simulator import (
    S_AMBIGUOUS,
    S_ERROR,
    S_N_TRADES,
    S_SIDE,
    S_SKIPPED,
    SIG_ENTRY_LONG,
    SIG_ENTRY_SHORT,
    SIG_EXIT_LONG,
    SIG_EXIT_SHORT,
    Signals,
    backtest_result,
    borrow,
    borrow_readonly,
    check_frame,
    check_signal_needs,
    init_state,
    prepare_market,
    prepare_signals,
    raise_on_error,
    read_only,
    run_bars,
)
from factory_pipeline.errors import BacktestError, ConfigError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.strategy.language.indicators import (
    rolling_mean_pair,
    rolling_mean_pair_init,
    sma,
)

SignalFn = Callable[[MarketFrame, Mapping[str, Any]], Signals]

#: Bars per block in the fused path: small enough that a block of every input series (and of
#: every moving average) stays in L2 while all configurations pass over it.
DEFAULT_BLOCK_BARS = 2048


@dataclass(frozen=True)
class CrossoverFamily:
    """Moving-average crossover strategies with parameters ``fast`` and ``slow`` (fast < slow).

    Every crossover closes the open position (exit signal); a crossover in an allowed direction
    then opens a new one (``both``: long on up-crosses, short on down-crosses). This is
    backtesting.py's SmaCross: ``position.close(); buy()`` / ``sell()``.
    """

    kind: Literal["sma", "ema"] = "sma"
    direction: Literal["both", "long", "short"] = "both"
    fast_param: str = "fast"
    slow_param: str = "slow"

    def __post_init__(self) -> None:
        if self.kind not in ("sma", "ema"):
            raise ConfigError(f"CrossoverFamily.kind must be 'sma' or 'ema', got {self.kind!r}")
        if self.direction not in ("both", "long", "short"):
            raise ConfigError(
                f"CrossoverFamily.direction must be 'both', 'long' or 'short', "
                f"got {self.direction!r}"
            )

    def moving_average(self, values: np.ndarray, window: int) -> np.ndarray:
        """The family's moving average of ``values`` (NaN during warm-up)."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        if self.kind == "sma":
            return rolling_mean(values, window)
        return ewm_mean(values, window)

    def signals(self, frame: MarketFrame, params: Mapping[str, Any]) -> Signals:
        """Signals of one configuration (what the fused sweep kernel reproduces per block)."""
        fast, slow = self.windows(params)
        entry_long, exit_long, entry_short, exit_short = crossover_signals(
            np.ascontiguousarray(frame.close, dtype=np.float64), fast, slow, self.kind == "ema",
            self.direction != "short", self.direction != "long",
        )  # fmt: skip
        return Signals(entry_long, exit_long, entry_short, exit_short)

    def backtest(
        self, frame: MarketFrame, params: Mapping[str, Any], config: SimConfig
    ) -> BacktestResult:
        """``simulate(frame, self.signals(frame, params), config)``, exactly (equity curve,
        trades, open trade, metrics accumulators), in one fused pass: block by block, the two
        moving averages advance into a small buffer, the block's signal codes are written to
        another and the simulator kernel runs the block. No per-bar average or signal array
        is materialized (``simulate`` needs six: two averages' worth of booleans, their
        packed codes and the copies the generic API makes)."""
        fast, slow = self.windows(params)
        check_frame(frame)
        check_signal_needs(config, has_stop=False, has_trail=False)
        n = len(frame)
        market = prepare_market(frame, config)
        close = market[5]
        block = max(1, min(n, AVERAGE_BLOCK_BARS))
        # trades: at most two closes per bar (an exit at the open, then a stop of the position
        # opened there); the kernel stops before a block could overflow the buffer, and the
        # buffer grows and the kernel resumes
        trades = np.empty(_initial_trade_capacity(n, block), dtype=TRADE_DTYPE)
        equity = np.empty(n, dtype=np.float64)
        state = init_state(config)
        stats = init_stats(config.initial_cash, int(frame.open_time[0]), int(frame.close_time[0]))
        cfg = pack_config(config, n)
        up_code = np.uint8(_EXITS | (SIG_ENTRY_LONG if self.direction != "short" else 0))
        down_code = np.uint8(_EXITS | (SIG_ENTRY_SHORT if self.direction != "long" else 0))
        fast_buf = np.empty(block)
        slow_buf = np.empty(block)
        codes = np.empty(block, dtype=np.uint8)
        carry = _averages_init(close)
        start = 0
        while True:
            start, carry = _crossover_backtest_kernel(
                close, fast, slow, self.kind == "ema", up_code, down_code, start, carry,
                fast_buf, slow_buf, codes, *market, _NO_FLOAT, cfg, state, stats, trades, equity,
                False, True,
            )  # fmt: skip
            if start >= n or state[S_ERROR] != 0.0:
                break
            grown = np.empty(2 * trades.shape[0] + 4 * block, dtype=TRADE_DTYPE)
            kept = int(state[S_N_TRADES])
            grown[:kept] = trades[:kept]
            trades = grown
        kept = int(state[S_N_TRADES])
        if 4 * kept < trades.shape[0]:
            trades = trades[:kept].copy()  # do not keep a mostly unused buffer alive
        return backtest_result(frame, config, state, stats, trades, equity)

    def windows(self, params: Mapping[str, Any]) -> tuple[int, int]:
        """(fast, slow) from ``params``, validated as positive integers."""
        out = []
        for name in (self.fast_param, self.slow_param):
            value = params.get(name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(
                    f"crossover parameter {name!r} must be an int >= 1, got {value!r}"
                )
            out.append(int(value))
        return out[0], out[1]

    def accepts(self, params: Mapping[str, Any]) -> bool:
        """The family's constraint: fast < slow."""
        fast, slow = self.windows(params)
        return fast < slow


def run_sweep(
    frame: MarketFrame,
    grid: Mapping[str, Sequence[Any]],
    strategy: SignalFn | CrossoverFamily,
    config: SimConfig,
    *,
    sample: int | None = None,
    seed: int = 0,
    constraint: Callable[[Mapping[str, Any]], bool] | None = None,
    block_bars: int = DEFAULT_BLOCK_BARS,
    workers: int | None = None,
) -> pa.Table:
    """Backtest every configuration of ``grid`` (or a seeded sample of ``sample`` of them).

    Returns one row per configuration: the parameter columns, then METRIC_NAMES. Raises
    ConfigError for a bad grid and BacktestError (naming the configuration) when one cannot be
    simulated.
    """
    configs = expand_grid(
        grid, sample=sample, seed=seed, constraint=_constraint(strategy, constraint)
    )
    if isinstance(strategy, CrossoverFamily):
        unknown = set(grid) - {strategy.fast_param, strategy.slow_param}
        if unknown:
            raise ConfigError(
                f"fused crossover sweep varies only {strategy.fast_param!r} and "
                f"{strategy.slow_param!r}; unexpected grid keys {sorted(unknown)}"
            )
        rows = _fused_crossover(frame, configs, strategy, config, block_bars)
    else:
        rows = _generic(frame, configs, strategy, config, workers)
    columns: dict[str, list[Any]] = {name: [c[name] for c in configs] for name in grid}
    for name in METRIC_NAMES:
        columns[name] = [row[name] for row in rows]
    return pa.table(columns)


def expand_grid(
    grid: Mapping[str, Sequence[Any]],
    *,
    sample: int | None = None,
    seed: int = 0,
    constraint: Callable[[Mapping[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Cartesian product of ``grid`` in key order (last key fastest), filtered by
    ``constraint``; with ``sample``, a seeded random subset of that size in grid order."""
    if not grid:
        raise ConfigError("sweep grid is empty: give at least one parameter with values")
    for name, values in grid.items():
        if isinstance(values, str | bytes) or len(values) == 0:
            raise ConfigError(f"sweep grid parameter {name!r} needs a non-empty list of values")
    names = list(grid)
    configs = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]
    if constraint is not None:
        configs = [c for c in configs if constraint(c)]
    if not configs:
        raise ConfigError("sweep grid has no configuration satisfying the constraint")
    if sample is not None:
        if sample < 1:
            raise ConfigError(f"sweep sample must be >= 1, got {sample}")
        if sample < len(configs):
            rng = np.random.default_rng(seed)
            keep = np.sort(rng.choice(len(configs), size=sample, replace=False))
            configs = [configs[k] for k in keep]
    return configs


def crossovers(fast: np.ndarray, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(up, down) crossover booleans with the strict tie rule of the module doc."""
    up = np.zeros(fast.shape[0], dtype=np.bool_)
    down = np.zeros(fast.shape[0], dtype=np.bool_)
    up[1:] = (fast[:-1] < slow[:-1]) & (fast[1:] > slow[1:])
    down[1:] = (fast[:-1] > slow[:-1]) & (fast[1:] < slow[1:])
    return up, down


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """``pd.Series(values).rolling(window).mean()``, bit for bit: the signal language's ``sma``
    (one implementation of pandas' algorithm, :func:`indicators.rolling_mean_step`)."""
    return sma(values, window)


@njit(cache=True, nogil=True)
def ewm_mean(values, span):
    """``pd.Series(values).ewm(span=span, adjust=False, min_periods=span).mean()``: alpha =
    2 / (span + 1), seeded with the first value, NaN for the first ``span - 1`` bars."""
    n = values.shape[0]
    out = np.empty(n, dtype=np.float64)
    state = _ewm_init()
    for i in range(n):
        mean, state = _ewm_step(values[i], i, span, state)
        out[i] = mean
    return out


@njit(cache=True, nogil=True)
def crossover_signals(close, fast, slow, kind_ema, allow_long, allow_short):
    """The family's four signal arrays in one pass over ``close``: both moving averages advance
    side by side (block by block, through two small cache-resident buffers) and crossovers
    (strict tie rule) are marked as they appear: every crossover exits, an allowed direction
    also enters. Same arithmetic as :func:`rolling_mean` / :func:`ewm_mean` and
    :func:`crossovers`."""
    n = close.shape[0]
    up = np.empty(n, dtype=np.bool_)
    down = np.empty(n, dtype=np.bool_)
    block = max(1, min(n, AVERAGE_BLOCK_BARS))
    fast_buf = np.empty(block)
    slow_buf = np.empty(block)
    carry = _averages_init(close)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        carry = _averages_block(close, b0, b1, fast, slow, kind_ema, carry, fast_buf, slow_buf)
        fp = carry[3]
        sp = carry[4]
        for i in range(b0, b1):
            k = np.uint64(i - b0)  # unsigned: no negative-index wraparound code
            u = np.uint64(i)
            fc = fast_buf[k]
            sc = slow_buf[k]
            up[u] = (fp < sp) & (fc > sc)
            down[u] = (fp > sp) & (fc < sc)
            fp = fc
            sp = sc
        carry = (carry[0], carry[1], carry[2], fp, sp)
    either = up | down
    entry_long = up if allow_long else np.zeros(n, dtype=np.bool_)
    entry_short = down if allow_short else np.zeros(n, dtype=np.bool_)
    return entry_long, either, entry_short, either.copy()


#: Bars per block of :func:`crossover_signals` and the fused single backtest: the two moving
#: averages of a block (16 KB) stay in L1 between computing them and reading them.
AVERAGE_BLOCK_BARS = 1024


@njit(cache=True)
def _averages_init(close):
    """Initial carry of :func:`_averages_block`: (SMA pair state, fast EMA state, slow EMA
    state, fast average at the previous bar, slow average at the previous bar)."""
    return (rolling_mean_pair_init(close), _ewm_init(), _ewm_init(), math.nan, math.nan)


@njit(cache=True, nogil=True)
def _averages_block(close, b0, b1, fast, slow, kind_ema, carry, fast_buf, slow_buf):
    """Both moving averages of bars ``[b0, b1)`` into ``fast_buf`` / ``slow_buf`` (index
    ``i - b0``); returns the carry with the averages' states advanced (the previous-bar values
    are the caller's to update)."""
    pair, fast_ewm, slow_ewm, fp, sp = carry
    if kind_ema:
        for i in range(b0, b1):
            val = close[i]
            fast_buf[i - b0], fast_ewm = _ewm_step(val, i, fast, fast_ewm)
            slow_buf[i - b0], slow_ewm = _ewm_step(val, i, slow, slow_ewm)
    else:
        pair = rolling_mean_pair(close, b0, b1, fast, slow, pair, fast_buf, slow_buf, b0)
    return pair, fast_ewm, slow_ewm, fp, sp


@njit(cache=True, inline="always")
def _ewm_init():
    """(weighted mean, observations, accumulated old weight)."""
    return (math.nan, 0, 1.0)


@njit(cache=True, inline="always")
def _ewm_step(cur, i, span, state):
    """pandas' adjust=False EWM recursion for bar ``i`` (value ``cur``); returns (mean or NaN
    during warm-up, new state)."""
    weighted, nobs, old_wt = state
    alpha = 2.0 / (span + 1.0)
    observed = cur == cur
    if observed:
        nobs += 1
    if i == 0:
        weighted = cur
    elif weighted == weighted:
        old_wt *= 1.0 - alpha
        if observed:
            if weighted != cur:
                weighted = old_wt * weighted + alpha * cur
                weighted /= old_wt + alpha
            old_wt = 1.0
    elif observed:
        weighted = cur
    return (weighted if nobs >= span else math.nan), (weighted, nobs, old_wt)


# --- paths -------------------------------------------------------------------------------------


def _constraint(
    strategy: SignalFn | CrossoverFamily, constraint: Callable[[Mapping[str, Any]], bool] | None
) -> Callable[[Mapping[str, Any]], bool] | None:
    if not isinstance(strategy, CrossoverFamily):
        return constraint
    if constraint is None:
        return strategy.accepts
    return lambda params: strategy.accepts(params) and constraint(params)


def _generic(
    frame: MarketFrame,
    configs: list[dict[str, Any]],
    signal_fn: SignalFn,
    config: SimConfig,
    workers: int | None,
) -> list[dict[str, float]]:
    """One kernel run per configuration (accumulators only), on a thread pool."""
    n = len(frame)
    if n == 0:
        raise ConfigError(f"{frame.symbol} {frame.timeframe}: cannot sweep an empty frame")
    config_fields = {f.name for f in fields(SimConfig)}
    run_configs = [
        replace(config, **_overrides(c, config_fields)) if _overrides(c, config_fields) else config
        for c in configs
    ]
    markets = {
        cfg.funding_interval_ms: prepare_market(frame, cfg)
        for cfg in {c.funding_interval_ms: c for c in run_configs}.values()
    }

    def run_one(k: int) -> dict[str, float]:
        params, run_config = configs[k], run_configs[k]
        signal_params = {name: v for name, v in params.items() if name not in config_fields}
        codes, floats, flags = prepare_signals(signal_fn(frame, signal_params), n, run_config)
        state = init_state(run_config)
        stats = init_stats(
            run_config.initial_cash, int(frame.open_time[0]), int(frame.close_time[0])
        )
        run_bars(
            0,
            n,
            *markets[run_config.funding_interval_ms],
            0,
            codes,
            *floats,
            *flags,
            pack_config(run_config, n),
            state,
            stats,
            _NO_TRADES,
            _NO_EQUITY,
            False,
        )
        _raise_for(state, frame, params)
        return _row(state, stats, frame, run_config)

    max_workers = workers or min(4, os.cpu_count() or 1)
    if max_workers <= 1 or len(configs) == 1:
        return [run_one(k) for k in range(len(configs))]
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        return list(pool.map(run_one, range(len(configs))))


def _fused_crossover(
    frame: MarketFrame,
    configs: list[dict[str, Any]],
    family: CrossoverFamily,
    config: SimConfig,
    block_bars: int,
) -> list[dict[str, float]]:
    """All configurations in one parallel kernel over blocks of bars."""
    n = len(frame)
    if n == 0:
        raise ConfigError(f"{frame.symbol} {frame.timeframe}: cannot sweep an empty frame")
    if block_bars < 1:
        raise ConfigError(f"sweep block_bars must be >= 1, got {block_bars}")
    pairs = [family.windows(c) for c in configs]
    windows = sorted({w for pair in pairs for w in pair})
    row_of = {w: k for k, w in enumerate(windows)}
    close = np.ascontiguousarray(frame.close, dtype=np.float64)
    averages = np.empty((len(windows), n), dtype=np.float64)
    for k, window in enumerate(windows):
        averages[k] = family.moving_average(close, window)
    fast_rows = np.array([row_of[f] for f, _ in pairs], dtype=np.int64)
    slow_rows = np.array([row_of[s] for _, s in pairs], dtype=np.int64)
    market = prepare_market(frame, config)
    states = _rows(init_state(config), len(configs))
    stats = _rows(
        init_stats(config.initial_cash, int(frame.open_time[0]), int(frame.close_time[0])),
        len(configs),
    )
    allow_long = family.direction != "short"
    allow_short = family.direction != "long"
    codes = np.zeros((len(configs), min(block_bars, n)), dtype=np.uint8)
    group = max(1, -(-len(configs) // (4 * numba.get_num_threads())))
    # groups differ in cost (fast pairs trade far more): hand them out one at a time
    previous_chunk = numba.set_parallel_chunksize(1)
    try:
        _sweep_crossover_kernel(
            averages, fast_rows, slow_rows, allow_long, allow_short, group, codes, *market,
            pack_config(config, n), states, stats, _NO_FLOAT, _NO_TRADES, _NO_EQUITY, False,
        )  # fmt: skip
    finally:
        numba.set_parallel_chunksize(previous_chunk)
    rows = []
    for c, params in enumerate(configs):
        _raise_for(states[c], frame, params)
        rows.append(_row(states[c], stats[c], frame, config))
    return rows


@njit(cache=True, parallel=True)
def _sweep_crossover_kernel(
    averages, fast_rows, slow_rows, allow_long, allow_short, group, codes, open_time,
    close_time, op, hi, lo, cl, mk, fund_bar, fund_rate, fund_missing, cfg, states, stats,
    no_float, no_trades, no_equity, off,
):  # fmt: skip
    """Threads take groups of ``group`` configurations; a thread advances every configuration
    of its group over one block of bars before moving to the next block, so the block's bars
    and moving averages stay in its cache. One parallel region, no barrier per block: a busy
    neighbour on a shared machine slows one group, not every block.

    ``codes`` is a (configurations x block) scratch buffer for the signal codes of one block.
    All arrays come from the caller, so they can be borrowed (no reference counting): worker
    threads would otherwise contend on the same counters at every call. ``off`` is False as a
    value, not a constant, so this kernel shares ``simulate``'s compiled ``run_bars``.
    """
    n = op.shape[0]
    n_cfg = fast_rows.shape[0]
    block = codes.shape[1]
    n_groups = (n_cfg + group - 1) // group
    averages_b = borrow(averages)
    open_time_b = borrow(open_time)
    close_time_b = borrow(close_time)
    op_b = borrow(op)
    hi_b = borrow(hi)
    lo_b = borrow(lo)
    cl_b = borrow(cl)
    mk_b = borrow(mk)
    fund_bar_b = borrow(fund_bar)
    fund_rate_b = borrow(fund_rate)
    fund_missing_b = borrow(fund_missing)
    cfg_b = borrow(cfg)
    states_b = borrow(states)
    stats_b = borrow(stats)
    codes_b = borrow(codes)
    no_float_b = borrow(no_float)
    no_trades_b = borrow(no_trades)
    no_equity_b = borrow(no_equity)
    entry_long_bit = np.uint8(SIG_ENTRY_LONG) if allow_long else np.uint8(0)
    entry_short_bit = np.uint8(SIG_ENTRY_SHORT) if allow_short else np.uint8(0)
    exits = np.uint8(SIG_EXIT_LONG | SIG_EXIT_SHORT)
    for g in prange(n_groups):
        for b0 in range(0, n, block):
            b1 = min(n, b0 + block)
            for c in range(g * group, min(n_cfg, (g + 1) * group)):
                if states_b[c, S_ERROR] != 0.0:
                    continue
                fast = averages_b[fast_rows[c]]
                slow = averages_b[slow_rows[c]]
                out = codes_b[c]
                for i in range(b0, b1):
                    code = np.uint8(0)
                    if i > 0:
                        fp = fast[i - 1]
                        sp = slow[i - 1]
                        fc = fast[i]
                        sc = slow[i]
                        if fp < sp and fc > sc:  # up-cross: close any position (exits), go long
                            code = exits | entry_long_bit
                        elif fp > sp and fc < sc:  # down-cross: close any position, go short
                            code = exits | entry_short_bit
                    out[i - b0] = code
                run_bars(
                    b0,
                    b1,
                    open_time_b,
                    close_time_b,
                    op_b,
                    hi_b,
                    lo_b,
                    cl_b,
                    mk_b,
                    fund_bar_b,
                    fund_rate_b,
                    fund_missing_b,
                    b0,
                    borrow_readonly(out),
                    no_float_b,
                    no_float_b,
                    no_float_b,
                    no_float_b,
                    off,
                    off,
                    off,
                    off,
                    cfg_b,
                    states_b[c],
                    stats_b[c],
                    no_trades_b,
                    no_equity_b,
                    off,
                )


def _initial_trade_capacity(n: int, block: int) -> int:
    """Trade records allocated up front: one per 16 bars (a 10/20 SMA crossover on minute bars
    trades about every 18), at least enough for two blocks; untouched capacity costs no
    memory (the pages are never written)."""
    return min(2 * n + 1, max(n // 16, 4 * block + 1))


_EXITS = SIG_EXIT_LONG | SIG_EXIT_SHORT


@njit(cache=True, nogil=True)
def _crossover_backtest_kernel(
    close, fast, slow, kind_ema, up_code, down_code, start, carry, fast_buf, slow_buf, codes,
    open_time, close_time, op, hi, lo, cl, mk, fund_bar, fund_rate, fund_missing, no_float,
    cfg, st, stats, trades, equity, off, on,
):  # fmt: skip
    """The fused single crossover backtest from bar ``start``: per block of ``codes.shape[0]``
    bars, advance both moving averages into the buffers, write the block's signal codes (as
    :meth:`CrossoverFamily.signals` + ``pack_codes`` would) and run :func:`run_bars` on the
    block with records. Returns (first bar not run, carry): it stops early, at a block
    boundary, when the block could overflow ``trades``.

    ``off`` / ``on`` are False / True passed in as values: constants would make numba compile
    a ``run_bars`` of its own for this caller (about 15 s cold); as values every caller shares
    ``simulate``'s (no measurable difference in speed)."""
    n = close.shape[0]
    block = codes.shape[0]
    codes_ro = borrow_readonly(codes)
    fp = carry[3]
    sp = carry[4]
    b0 = start
    while b0 < n:
        if st[S_N_TRADES] + 2 * block + 1 > trades.shape[0]:
            break
        b1 = min(n, b0 + block)
        carry = _averages_block(close, b0, b1, fast, slow, kind_ema, carry, fast_buf, slow_buf)
        for i in range(b0, b1):
            k = np.uint64(i - b0)
            fc = fast_buf[k]
            sc = slow_buf[k]
            # the two crossings exclude each other: select both without branches
            up = np.uint8((fp < sp) & (fc > sc))
            down = np.uint8((fp > sp) & (fc < sc))
            codes[k] = (up_code * up) | (down_code * down)
            fp = fc
            sp = sc
        run_bars(
            b0, b1, open_time, close_time, op, hi, lo, cl, mk, fund_bar, fund_rate,
            fund_missing, b0, codes_ro, no_float, no_float, no_float, no_float, off, off,
            off, off, cfg, st, stats, trades, equity, on,
        )  # fmt: skip
        b0 = b1
        if st[S_ERROR] != 0.0:
            break
    return b0, (carry[0], carry[1], carry[2], fp, sp)


_NO_FLOAT = read_only(np.full(1, np.nan), np.float64)
_NO_TRADES = np.zeros(1, dtype=TRADE_DTYPE)
_NO_EQUITY = np.zeros(1)


def _rows(vector: np.ndarray, count: int) -> np.ndarray:
    """``count`` copies of ``vector`` as rows padded to whole 64-byte cache lines, so threads
    updating neighbouring configurations never write to the same line."""
    width = -(-vector.shape[0] // 8) * 8
    buffer = np.zeros(count * width + 8, dtype=np.float64)
    skip = (-buffer.ctypes.data % 64) // 8  # first 64-byte boundary
    rows = buffer[skip : skip + count * width].reshape(count, width)
    rows[:, : vector.shape[0]] = vector
    return rows


def _overrides(params: Mapping[str, Any], config_fields: set[str]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in config_fields}


def _raise_for(state: np.ndarray, frame: MarketFrame, params: Mapping[str, Any]) -> None:
    """Re-raise a kernel error with the configuration that caused it."""
    try:
        raise_on_error(state, frame)
    except BacktestError as exc:
        raise BacktestError(f"sweep configuration {dict(params)}: {exc}") from exc


def _row(
    state: np.ndarray, stats: np.ndarray, frame: MarketFrame, config: SimConfig
) -> dict[str, float]:
    return metrics_from_stats(
        stats,
        initial_equity=config.initial_cash,
        start_ms=int(frame.open_time[0]),
        end_ms=int(frame.close_time[-1]),
        n_bars=len(frame),
        open_trades=1 if state[S_SIDE] != 0 else 0,
        ambiguous_bars=int(state[S_AMBIGUOUS]),
        skipped_orders=int(state[S_SKIPPED]),
    )
