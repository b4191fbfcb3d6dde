"""Market regime labels: which calendar windows were trending, ranging or turbulent.

Backtests are partitioned by symbol x regime and run on the spans of one regime, so a system's
results can be read per market condition. The rule is deterministic and uses, for each window,
only data up to that window's end (trailing statistics), except for the final smoothing step
which merges runs shorter than ``min_run_windows`` and therefore looks a few windows ahead:
labels describe history, they are not a trading signal.

Rule, per calendar window ``k`` (UTC-aligned, default one day) with at least
``min_coverage`` of its bars present:

1. bar log returns ``r_i = ln(close_i / close_{i-1})`` (the first bar uses its open), window
   return ``R_k = sum r_i`` and realized volatility ``V_k = sqrt(sum r_i^2)``;
2. ``high_vol`` if ``V_k > vol_multiple * P_q(V_{k-L}..V_{k-1})``, the ``q``-th percentile of
   the previous ``L = vol_lookback_windows`` windows (needs ``min_history_windows`` of them);
   score ``V_k`` divided by that threshold;
3. else the trend statistic over the trailing ``T = trend_windows`` windows
   ``z_k = sum R / sqrt(sum V^2)`` (a t-statistic of the multi-window return):
   ``trend_up`` if ``z_k >= trend_threshold``, ``trend_down`` if ``z_k <= -trend_threshold``,
   else ``range``; score ``z_k``;
4. smoothing: a run of equal labels shorter than ``min_run_windows`` takes the label of the
   run before it (the first run takes the label of the run after it). Scores are unchanged.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.market.timeframes import timeframe_ms

REGIMES: tuple[str, ...] = ("trend_up", "trend_down", "range", "high_vol")

REGIME_SCHEMA = pa.schema(
    [
        ("window_start", pa.int64()),
        ("window_end", pa.int64()),
        ("regime", pa.string()),
        ("score", pa.float64()),
    ]
)


def label_regimes(
    frame: MarketFrame,
    *,
    window: str = "1d",
    trend_windows: int = 5,
    trend_threshold: float = 1.0,
    vol_lookback_windows: int = 60,
    vol_percentile: float = 90.0,
    vol_multiple: float = 1.0,
    min_history_windows: int = 10,
    min_run_windows: int = 2,
    min_coverage: float = 0.5,
) -> pa.Table:
    """One row per labelled window: ``window_start``, ``window_end`` (ms), ``regime``, ``score``."""
    window_ms = timeframe_ms(window)
    bar_ms = timeframe_ms(frame.timeframe)
    if window_ms < bar_ms or window_ms % bar_ms:
        raise MarketDataError(
            f"{frame.symbol}: regime window {window} must be a whole multiple of the "
            f"{frame.timeframe} bars"
        )
    if trend_windows < 1 or min_run_windows < 1 or vol_lookback_windows < 1:
        raise MarketDataError("regime windows counts must be >= 1")
    window_start, window_return, window_vol = _window_stats(frame, window_ms, bar_ms, min_coverage)
    n = window_start.shape[0]
    if n == 0:
        return REGIME_SCHEMA.empty_table()

    labels = np.full(n, REGIMES.index("range"), dtype=np.int8)
    scores = np.zeros(n)
    z = _trailing_t_stat(window_return, window_vol, trend_windows)
    labels[z >= trend_threshold] = REGIMES.index("trend_up")
    labels[z <= -trend_threshold] = REGIMES.index("trend_down")
    scores[:] = z
    for k in range(min_history_windows, n):
        past = window_vol[max(0, k - vol_lookback_windows) : k]
        threshold = vol_multiple * float(np.percentile(past, vol_percentile))
        if threshold > 0 and window_vol[k] > threshold:
            labels[k] = REGIMES.index("high_vol")
            scores[k] = window_vol[k] / threshold
    labels = _merge_short_runs(labels, min_run_windows)
    return pa.table(
        {
            "window_start": window_start,
            "window_end": window_start + window_ms,
            "regime": [REGIMES[i] for i in labels],
            "score": scores,
        },
        schema=REGIME_SCHEMA,
    )


def regime_spans(labels: pa.Table, regime: str) -> list[tuple[int, int]]:
    """``[start_ms, end_ms)`` spans of ``regime``: adjacent windows merged, sorted by time.

    Windows are adjacent when one's ``window_end`` equals the next one's ``window_start``; a
    missing window (a data gap) splits a span.
    """
    if regime not in REGIMES:
        raise MarketDataError(f"unknown regime {regime!r}; known: {', '.join(REGIMES)}")
    if labels.num_rows == 0:
        return []
    order = np.argsort(labels.column("window_start").to_numpy(), kind="stable")
    starts = labels.column("window_start").to_numpy()[order]
    ends = labels.column("window_end").to_numpy()[order]
    names = np.asarray(labels.column("regime").to_pylist(), dtype=object)[order]
    spans: list[tuple[int, int]] = []
    for start, end, name in zip(starts.tolist(), ends.tolist(), names.tolist(), strict=True):
        if name != regime:
            continue
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def _window_stats(
    frame: MarketFrame, window_ms: int, bar_ms: int, min_coverage: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window with enough bars: start time, log return, realized volatility."""
    if len(frame) == 0:
        empty = np.empty(0)
        return empty.astype(np.int64), empty, empty
    close = frame.close
    previous = np.r_[frame.open[:1], close[:-1]]
    r = np.log(close / previous)
    bucket = frame.open_time // window_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    counts = np.diff(np.r_[starts, len(frame)])
    ret = np.add.reduceat(r, starts)
    vol = np.sqrt(np.add.reduceat(r * r, starts))
    keep = counts >= min_coverage * (window_ms // bar_ms)
    return bucket[starts][keep] * window_ms, ret[keep], vol[keep]


def _trailing_t_stat(ret: np.ndarray, vol: np.ndarray, windows: int) -> np.ndarray:
    """``sum R / sqrt(sum V^2)`` over the trailing ``windows`` entries (fewer at the start)."""
    cum_r = np.r_[0.0, np.cumsum(ret)]
    cum_v = np.r_[0.0, np.cumsum(vol * vol)]
    idx = np.arange(1, ret.shape[0] + 1)
    lo = np.maximum(idx - windows, 0)
    total_r = cum_r[idx] - cum_r[lo]
    total_v = np.maximum(cum_v[idx] - cum_v[lo], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(total_v > 0, total_r / np.sqrt(total_v), 0.0)
    return z


def _merge_short_runs(labels: np.ndarray, min_run: int) -> np.ndarray:
    """Runs shorter than ``min_run`` take the previous run's label (the first: the next's)."""
    out = labels.copy()
    if min_run <= 1 or out.shape[0] == 0:
        return out
    starts = np.flatnonzero(np.r_[True, out[1:] != out[:-1]])
    ends = np.r_[starts[1:], out.shape[0]]
    runs = [[int(out[s]), int(s), int(e)] for s, e in zip(starts, ends, strict=True)]
    if len(runs) > 1 and runs[0][2] - runs[0][1] < min_run:
        runs[0][0] = runs[1][0]
    for i in range(1, len(runs)):
        if runs[i][2] - runs[i][1] < min_run:
            runs[i][0] = runs[i - 1][0]
    for label, s, e in runs:
        out[s:e] = label
    return out
