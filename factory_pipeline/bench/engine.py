"""Benchmark suite ``engine``: the backtest simulator and the parameter sweep against a plain
numba reference loop, all in one process on the same series.

Series: a seeded geometric random walk of 1-minute bars (``quick``: 200k, else 1M) with funding
settlements every 8 hours. Strategy: SMA(fast, slow) crossover, decide at the close, fill at
the next open, always in the market (long on up-crosses, short on down-crosses).

Figures (JIT compile time excluded: every kernel runs once on the data before it is timed; each
timing is the best of a few repeats):

- ``single_bars_per_s``: the engine's single SMA-crossover backtest, full semantics (taker fees,
  1 bp slippage, funding, mark liquidation checks, trade records, equity curve, metrics
  accumulators), *including* computing the two SMAs and the crossover signals:
  ``CrossoverFamily.backtest`` (one fused pass, block by block; its result equals the
  two-pass one exactly, tested);
- ``generic_single_bars_per_s``: the same backtest the generic two-pass way, bars / seconds of
  ``simulate(frame, family.signals(frame, params), config)`` (what any other signal function
  costs); ``simulate_bars_per_s``: ``simulate`` alone on precomputed signals;
- ``sweep_bar_configs_per_s``: bars x 175 configurations (fast 5..50 step 5, slow 10..200
  step 10, fast < slow) / seconds of ``run_sweep`` with the fused crossover path, full semantics;
- ``ref_single_bars_per_s`` / ``ref_sweep_bar_configs_per_s``: the same strategy as a plain
  numba loop (rolling sums, crossover, next-open fills, fee, fraction sizing; no funding,
  slippage, stops, records or metrics), single and over the same 175 configurations in
  ``prange``;
- ``single_vs_ref_ratio``: ref_single_bars_per_s / single_bars_per_s (target <= 2);
  ``generic_single_vs_ref_ratio``: the same for the generic two-pass figure (no target);
- ``dsl_vs_ref_ratio``: ref_single_bars_per_s / dsl_single_bars_per_s (target <= 3);
- ``sweep_peak_rss_mb``: peak resident memory of the process after the sweep (ru_maxrss);
- ``load_avg_1m``: the machine's 1-minute load average when the suite started (the figures are
  wall-clock; engine and reference runs alternate so both see the same neighbours, the signal
  language run included);
- ``dsl_single_bars_per_s`` (only when ``factory_pipeline.strategy.language`` imports): the same
  single backtest with signals compiled from the signal language;
- ``backtesting_py_bars_per_s`` (only when backtesting.py is installed, on a 20k-bar slice).
  vectorbt is reported when installed; otherwise the suite says it skipped it.
"""

from __future__ import annotations

import importlib.util
import math
import os
import resource
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
from numba import njit, prange

from factory_pipeline.engine.config import SimConfig
from factory_pipeline.engine.simulator import Signals, simulate
from factory_pipeline.engine.sweep import CrossoverFamily, run_sweep
from factory_pipeline.market.frame import MarketFrame, make_frame
from factory_pipeline.market.timeframes import HOUR_MS, MINUTE_MS

TARGETS: dict[str, tuple[str, float]] = {
    "single_bars_per_s": (">=", 30e6),
    "sweep_bar_configs_per_s": (">=", 100e6),
    "single_vs_ref_ratio": ("<=", 2.0),
    "dsl_vs_ref_ratio": ("<=", 3.0),
    "sweep_peak_rss_mb": ("<=", 1500.0),
}

FAST_GRID = tuple(range(5, 51, 5))
SLOW_GRID = tuple(range(10, 201, 10))
SINGLE_FAST, SINGLE_SLOW = 10, 20
_SEED = 20_261_101
_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
_BACKTESTING_PY_BARS = 20_000


def run(quick: bool = False) -> dict[str, float]:
    """Measure single backtest, sweep and reference throughput; see the module docstring."""
    n = 200_000 if quick else 1_000_000
    repeats = 3 if quick else 9  # best of 9: the host is shared, quiet moments are short
    frame = synthetic_frame(n, seed=_SEED)
    config = SimConfig(slippage_bps=1.0)
    family = CrossoverFamily("sma", "both")
    grid = {"fast": list(FAST_GRID), "slow": list(SLOW_GRID)}
    n_configs = sum(1 for f in FAST_GRID for s in SLOW_GRID if f < s)

    params = {"fast": SINGLE_FAST, "slow": SINGLE_SLOW}
    signals = family.signals(frame, params)
    fast_windows = np.array([f for f in FAST_GRID for s in SLOW_GRID if f < s], dtype=np.int64)
    slow_windows = np.array([s for f in FAST_GRID for s in SLOW_GRID if f < s], dtype=np.int64)
    ref_args = (frame.open, frame.close, config.initial_cash, config.taker_fee)
    load_avg = os.getloadavg()[0]
    # engine and reference alternate, so a noisy neighbour slows both alike
    dsl = _dsl_signal_fn()
    singles = [
        lambda: family.backtest(frame, params, config),
        lambda: reference_loop(*ref_args, SINGLE_FAST, SINGLE_SLOW),
        lambda: simulate(frame, family.signals(frame, params), config),
        lambda: simulate(frame, signals, config),
    ]
    if dsl is not None:
        singles.append(lambda: simulate(frame, dsl(frame), config))
    single_s, ref_single_s, generic_single_s, simulate_s, *dsl_s = _best_interleaved(
        singles, repeats
    )
    sweep_s, ref_sweep_s = _best_interleaved(
        [
            lambda: run_sweep(frame, grid, family, config),
            lambda: reference_sweep(*ref_args, fast_windows, slow_windows),
        ],
        max(2, repeats // 2),
    )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    figures = {
        "bars": float(n),
        "configs": float(n_configs),
        "load_avg_1m": load_avg,
        "single_s": single_s,
        "sweep_s": sweep_s,
        "single_bars_per_s": n / single_s,
        "generic_single_bars_per_s": n / generic_single_s,
        "simulate_bars_per_s": n / simulate_s,
        "sweep_bar_configs_per_s": n * n_configs / sweep_s,
        "ref_single_bars_per_s": n / ref_single_s,
        "ref_sweep_bar_configs_per_s": n * n_configs / ref_sweep_s,
        "single_vs_ref_ratio": single_s / ref_single_s,
        "generic_single_vs_ref_ratio": generic_single_s / ref_single_s,
        "sweep_peak_rss_mb": rss_mb,
    }
    # --- hook: the same strategy written in the signal language (omitted when unavailable) ---
    if dsl_s:
        figures["dsl_single_bars_per_s"] = n / dsl_s[0]
        figures["dsl_vs_ref_ratio"] = dsl_s[0] / ref_single_s
    figures.update(_third_party(frame, config))
    return figures


def synthetic_frame(n: int, seed: int) -> MarketFrame:
    """``n`` 1-minute bars of a seeded geometric random walk around 30,000 with intrabar ranges
    and a funding rate at every 8-hour settlement."""
    rng = np.random.default_rng(seed)
    open_time = _START_MS + np.arange(n, dtype=np.int64) * MINUTE_MS
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0008, n)))
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    wick = np.abs(rng.normal(0.0, 0.0004, (2, n)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    interval = 8 * HOUR_MS
    funding_time = np.arange(
        _START_MS // interval + 1, (_START_MS + n * MINUTE_MS) // interval + 1, dtype=np.int64
    ) * np.int64(interval)
    funding_rates = rng.normal(0.0001, 0.0001, funding_time.shape[0])
    return make_frame(
        "BENCH",
        "1m",
        open_time,
        open_,
        high,
        low,
        close,
        funding_time=funding_time,
        funding_rates=funding_rates,
    )


@njit(cache=True, nogil=True)
def reference_loop(op, cl, cash, fee, fast, slow):
    """Plain SMA-crossover backtest: rolling sums, decide at close, fill at next open, all-in
    fraction sizing with a fee, reversal on opposite crosses. Returns the final equity."""
    n = cl.shape[0]
    sum_f = 0.0
    sum_s = 0.0
    prev_diff = np.nan
    side = 0
    qty = 0.0
    entry = 0.0
    pending = 0
    for i in range(n):
        if pending != 0:
            px = op[i]
            if side != 0:
                cash += side * qty * (px - entry) - qty * px * fee
            qty = cash / (px * (1.0 + fee))
            cash -= qty * px * fee
            entry = px
            side = pending
            pending = 0
        sum_f += cl[i]
        sum_s += cl[i]
        if i >= fast:
            sum_f -= cl[i - fast]
        if i >= slow:
            sum_s -= cl[i - slow]
        if i >= slow - 1:
            diff = sum_f / fast - sum_s / slow
            if prev_diff < 0.0 and diff > 0.0 and side != 1:
                pending = 1
            elif prev_diff > 0.0 and diff < 0.0 and side != -1:
                pending = -1
            prev_diff = diff
    return cash + side * qty * (cl[n - 1] - entry)


@njit(cache=True, parallel=True)
def reference_sweep(op, cl, cash, fee, fast_windows, slow_windows):
    """The reference loop over many (fast, slow) pairs in parallel; final equities."""
    out = np.empty(fast_windows.shape[0])
    for c in prange(fast_windows.shape[0]):
        out[c] = reference_loop(op, cl, cash, fee, fast_windows[c], slow_windows[c])
    return out


def _best_interleaved(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each function over ``repeats`` rounds that call them in turn, after
    one warm-up round (JIT compile excluded)."""
    for fn in fns:
        fn()
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _dsl_signal_fn() -> Callable[[MarketFrame], Signals] | None:
    """Signals of SMA(10/20) compiled from the signal language, or None when it is missing."""
    try:
        from factory_pipeline.strategy.language import EvalContext, compile_expression
    except ImportError:
        _note("signal language not importable: dsl_single_bars_per_s omitted")
        return None
    params = {"fast": SINGLE_FAST, "slow": SINGLE_SLOW}
    specs = {name: {"type": "int", "default": value, "min": 1} for name, value in params.items()}
    try:
        up = compile_expression(
            "crosses_above(sma(close, fast), sma(close, slow))", parameters=specs
        )
        down = compile_expression(
            "crosses_below(sma(close, fast), sma(close, slow))", parameters=specs
        )
    except Exception as exc:  # an API mismatch must not break the other figures
        _note(f"signal language could not compile the crossover ({exc}): figure omitted")
        return None

    def signals(frame: MarketFrame) -> Signals:
        context = EvalContext(frame)
        go_up = np.asarray(up.evaluate(context, params), dtype=bool)
        go_down = np.asarray(down.evaluate(context, params), dtype=bool)
        either = go_up | go_down
        return Signals(go_up, either, go_down, either)

    try:
        signals(synthetic_frame(1_000, seed=1))
    except Exception as exc:
        _note(f"signal language evaluation failed ({exc}): figure omitted")
        return None
    return signals


def _third_party(frame: MarketFrame, config: SimConfig) -> dict[str, float]:
    """backtesting.py on a slice (when installed); vectorbt is reported as skipped if absent."""
    figures: dict[str, float] = {}
    if importlib.util.find_spec("vectorbt") is None:
        _note("vectorbt not installed: skipped")
    else:
        _note("vectorbt installed but not wired into this suite: skipped")
    if importlib.util.find_spec("backtesting") is None:
        _note("backtesting.py not installed: skipped")
        return figures
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    m = min(_BACKTESTING_PY_BARS, len(frame))
    data = pd.DataFrame(
        {
            "Open": frame.open[:m],
            "High": frame.high[:m],
            "Low": frame.low[:m],
            "Close": frame.close[:m],
            "Volume": frame.volume[:m],
        },
        index=pd.to_datetime(frame.open_time[:m], unit="ms"),
    )

    class SmaCross(Strategy):
        def init(self) -> None:
            close = self.data.Close
            self.fast = self.I(lambda x: pd.Series(x).rolling(SINGLE_FAST).mean(), close)
            self.slow = self.I(lambda x: pd.Series(x).rolling(SINGLE_SLOW).mean(), close)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.position.close()
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()
                self.sell()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backtest = Backtest(data, SmaCross, cash=1e9, commission=config.taker_fee)
        t0 = time.perf_counter()
        backtest.run()
        figures["backtesting_py_bars_per_s"] = m / (time.perf_counter() - t0)
    _note(f"backtesting.py measured on the first {m:,} bars (it runs ~0.1M bars/s)")
    return figures


def _note(message: str) -> None:
    print(f"   note: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":  # pragma: no cover - manual use
    for key, value in run(quick="--quick" in sys.argv).items():
        print(f"{key:32s} {value:,.3f}")
