"""Data-quality checks on stored or fetched market data.

Each check returns a :class:`QualityResult` with a stable ``name``; the Dagster shell turns each
name into an asset check (``blocking`` ones stop downstream assets when they fail). The checks
run on Arrow tables, exactly as :meth:`MarketStore.ohlcv` / :meth:`MarketStore.funding` return
them or as a :class:`MarketBatch` carries them, so duplicates and ordering problems that a
:class:`MarketFrame` could not even represent are still visible.

Checks (see docs/market_data.md):

- ``unique_timestamps``  no two bars share an open time (blocking);
- ``monotonic_timestamps``  open times never decrease in table order (blocking);
- ``gaps``  missing bars on the timeframe grid inside the expected range; spans longer than
  ``gap_tolerance_bars`` fail (not blocking: computations stay correct, signals are sparser);
- ``ohlc_consistency``  ``low <= open, close <= high`` (blocking);
- ``positive_prices_nonneg_volume``  prices > 0, volume >= 0, no NaN (blocking);
- ``funding_complete``  a funding rate at every settlement of the inferred grid (8 h at
  00/08/16 UTC, or 4 h, 2 h, 1 h) in the range, nothing off the grid (blocking: the backtest
  charges funding and treats a missing settlement as an error);
- ``no_future_timestamps``  no bar closes and no funding settles after ``now_ms`` (blocking).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.source import MarketBatch, iso_ms
from factory_pipeline.market.timeframes import HOUR_MS, timeframe_ms

#: Stable check names -> (description, blocking). The Dagster shell declares asset checks
#: from this before any data exists.
QUALITY_CHECKS: dict[str, tuple[str, bool]] = {
    "unique_timestamps": ("No two bars share an open time.", True),
    "monotonic_timestamps": ("Bar open times never decrease.", True),
    "gaps": ("No run of missing bars longer than the tolerance.", False),
    "ohlc_consistency": ("low <= open, close <= high on every bar.", True),
    "positive_prices_nonneg_volume": ("Prices > 0, volume >= 0, no NaN.", True),
    "funding_complete": ("A funding rate at every settlement in range, none off-grid.", True),
    "no_future_timestamps": ("No bar closes and no funding settles after now.", True),
}

#: Funding grids tried, longest first: a settlement grid is aligned to 00:00 UTC.
FUNDING_GRIDS_MS: tuple[int, ...] = (8 * HOUR_MS, 4 * HOUR_MS, 2 * HOUR_MS, HOUR_MS)

_MAX_LISTED_SPANS = 10


@dataclass(frozen=True)
class QualityResult:
    """Outcome of one check; ``metadata`` values are numbers or short strings for the UI."""

    name: str
    passed: bool
    detail: str
    metadata: dict[str, float | int | str] = field(default_factory=dict)
    blocking: bool = True


def check_market_data(
    ohlcv: pa.Table,
    funding: pa.Table | None = None,
    *,
    timeframe: str,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    gap_tolerance_bars: int = 0,
    funding_interval_ms: int | None = None,
    expect_funding: bool = True,
) -> list[QualityResult]:
    """Run every check on bars (``open_time, open, high, low, close, volume``) and funding
    (``funding_time, rate``) expected over ``[start_ms, end_ms)``, as known at ``now_ms``.

    The expected range is cut at ``now_ms``: a bar is expected when it has closed by then, a
    settlement when it has happened. ``funding_interval_ms`` fixes the settlement grid (else
    it is inferred from the data); ``expect_funding=False`` passes ``funding_complete`` (spot
    data, or a source without funding).
    """
    tf_ms = timeframe_ms(timeframe)
    times = _column(ohlcv, "open_time", np.int64)
    prices = {name: _column(ohlcv, name, np.float64) for name in ("open", "high", "low", "close")}
    volume = _column(ohlcv, "volume", np.float64)
    funding_time = _column(funding, "funding_time", np.int64) if funding is not None else None
    funding_rate = _column(funding, "rate", np.float64) if funding is not None else None
    return [
        _unique(times),
        _monotonic(times),
        _gaps(
            times,
            tf_ms,
            start_ms,
            min(end_ms, _last_closed_open(now_ms, tf_ms)),
            gap_tolerance_bars,
        ),
        _ohlc(times, prices),
        _positive(times, prices, volume),
        _funding_complete(
            funding_time,
            funding_rate,
            start_ms,
            min(end_ms, now_ms + 1),
            funding_interval_ms,
            expect_funding,
        ),
        _no_future(times, tf_ms, funding_time, now_ms),
    ]


def check_batch(
    batch: MarketBatch, *, now_ms: int, gap_tolerance_bars: int = 0, **kwargs: object
) -> list[QualityResult]:
    """:func:`check_market_data` on a batch over its own coverage."""
    return check_market_data(
        batch.ohlcv,
        batch.funding,
        timeframe=batch.timeframe,
        start_ms=batch.start_ms,
        end_ms=batch.end_ms,
        now_ms=now_ms,
        gap_tolerance_bars=gap_tolerance_bars,
        **kwargs,  # type: ignore[arg-type]
    )


def infer_funding_interval(funding_time: np.ndarray) -> int | None:
    """The longest grid in :data:`FUNDING_GRIDS_MS` every settlement lies on (None if none)."""
    if funding_time.shape[0] == 0:
        return None
    for grid in FUNDING_GRIDS_MS:
        if np.all(funding_time % grid == 0):
            return grid
    return None


# --- the checks --------------------------------------------------------------------------------


def _unique(times: np.ndarray) -> QualityResult:
    name = "unique_timestamps"
    values, counts = np.unique(times, return_counts=True)
    dup = values[counts > 1]
    extra = int((counts[counts > 1] - 1).sum())
    if dup.size == 0:
        return _result(name, True, f"{times.shape[0]} bars, all open times unique", duplicates=0)
    listed = ", ".join(iso_ms(int(t)) for t in dup[:_MAX_LISTED_SPANS])
    return _result(
        name,
        False,
        f"{extra} duplicate bar(s) at {dup.size} open time(s): {listed}",
        duplicates=extra,
        first_duplicate=iso_ms(int(dup[0])),
    )


def _monotonic(times: np.ndarray) -> QualityResult:
    name = "monotonic_timestamps"
    back = np.flatnonzero(np.diff(times) < 0) + 1
    if back.size == 0:
        return _result(name, True, "open times never decrease", decreases=0)
    row = int(back[0])
    return _result(
        name,
        False,
        f"{back.size} place(s) where open time decreases; first at row {row} "
        f"({iso_ms(int(times[row - 1]))} then {iso_ms(int(times[row]))})",
        decreases=int(back.size),
        first_row=row,
    )


def _gaps(
    times: np.ndarray, tf_ms: int, start_ms: int, end_ms: int, tolerance: int
) -> QualityResult:
    """Missing grid points in ``[start, end)``, grouped into spans; spans > tolerance fail."""
    name = "gaps"
    first = -(-start_ms // tf_ms) * tf_ms
    expected = max(0, -(-(end_ms - first) // tf_ms)) if end_ms > first else 0
    if expected == 0:
        return _result(
            name,
            True,
            "no bars expected in range",
            blocking=False,
            expected_bars=0,
            missing_bars=0,
            gap_count=0,
            largest_gap_bars=0,
        )
    present = np.zeros(expected, dtype=np.bool_)
    on_grid = times[(times >= first) & (times < end_ms) & ((times - first) % tf_ms == 0)]
    present[(on_grid - first) // tf_ms] = True
    missing = ~present
    edges = np.flatnonzero(np.diff(np.r_[0, missing.view(np.int8), 0]))
    span_starts, span_ends = edges[0::2], edges[1::2]  # [start, end) indices of missing runs
    lengths = span_ends - span_starts
    bad = lengths > tolerance
    spans = [
        f"{iso_ms(first + int(s) * tf_ms)}..{iso_ms(first + int(e) * tf_ms)} ({int(e - s)} bars)"
        for s, e in zip(span_starts[bad], span_ends[bad], strict=True)
    ]
    metadata: dict[str, float | int | str] = {
        "expected_bars": int(expected),
        "missing_bars": int(missing.sum()),
        "gap_count": int(bad.sum()),
        "largest_gap_bars": int(lengths.max()) if lengths.size else 0,
        "tolerance_bars": int(tolerance),
    }
    if spans:
        metadata["gap_spans"] = "; ".join(spans[:_MAX_LISTED_SPANS]) + (
            f"; ... {len(spans) - _MAX_LISTED_SPANS} more" if len(spans) > _MAX_LISTED_SPANS else ""
        )
        return _result(
            name,
            False,
            f"{len(spans)} gap(s) longer than {tolerance} bar(s), {int(missing.sum())} of "
            f"{expected} bars missing: {metadata['gap_spans']}",
            blocking=False,
            **metadata,
        )
    return _result(
        name,
        True,
        f"{int(missing.sum())} of {expected} bars missing, no gap longer than {tolerance} bar(s)",
        blocking=False,
        **metadata,
    )


def _ohlc(times: np.ndarray, p: dict[str, np.ndarray]) -> QualityResult:
    name = "ohlc_consistency"
    o, h, lo, c = p["open"], p["high"], p["low"], p["close"]
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero((lo > np.minimum(o, c)) | (h < np.maximum(o, c)) | (lo > h))
    if bad.size == 0:
        return _result(name, True, "low <= open, close <= high on every bar", bad_bars=0)
    row = int(bad[0])
    return _result(
        name,
        False,
        f"{bad.size} bar(s) with inconsistent OHLC; first at {iso_ms(int(times[row]))}: "
        f"open={o[row]!r} high={h[row]!r} low={lo[row]!r} close={c[row]!r}",
        bad_bars=int(bad.size),
        first_bad=iso_ms(int(times[row])),
    )


def _positive(times: np.ndarray, p: dict[str, np.ndarray], volume: np.ndarray) -> QualityResult:
    name = "positive_prices_nonneg_volume"
    stacked = np.vstack([p["open"], p["high"], p["low"], p["close"]])
    with np.errstate(invalid="ignore"):
        bad_price = ~np.all(np.isfinite(stacked) & (stacked > 0), axis=0)
        bad_volume = ~(np.isfinite(volume) & (volume >= 0))
    bad = np.flatnonzero(bad_price | bad_volume)
    if bad.size == 0:
        return _result(name, True, "all prices positive, volumes non-negative", bad_bars=0)
    row = int(bad[0])
    return _result(
        name,
        False,
        f"{int(bad_price.sum())} bar(s) with a non-positive or NaN price, "
        f"{int(bad_volume.sum())} with a negative or NaN volume; first at "
        f"{iso_ms(int(times[row]))}",
        bad_bars=int(bad.size),
        first_bad=iso_ms(int(times[row])),
    )


def _funding_complete(
    funding_time: np.ndarray | None,
    funding_rate: np.ndarray | None,
    start_ms: int,
    end_ms: int,
    interval_ms: int | None,
    expect_funding: bool,
) -> QualityResult:
    """Every settlement of the grid in ``[start, end)`` present with a finite rate."""
    name = "funding_complete"
    if not expect_funding:
        return _result(name, True, "funding not expected for this data", settlements=0)
    times = funding_time if funding_time is not None else np.empty(0, dtype=np.int64)
    rates = funding_rate if funding_rate is not None else np.empty(0)
    in_range = (times >= start_ms) & (times < end_ms)
    times, rates = times[in_range], rates[in_range]
    grid = interval_ms or infer_funding_interval(times)
    if grid is None:
        if times.size == 0:
            grid = FUNDING_GRIDS_MS[0]
        else:
            off = times[times % HOUR_MS != 0]
            return _result(
                name,
                False,
                f"funding times are not on a 1/2/4/8-hour grid aligned to 00:00 UTC; "
                f"first off-grid at {iso_ms(int(off[0]))}",
                settlements=int(times.size),
                off_grid=int(off.size),
            )
    first = -(-start_ms // grid) * grid
    expected = np.arange(first, end_ms, grid, dtype=np.int64)
    missing = np.setdiff1d(expected, times[np.isfinite(rates)])
    off_grid = times[times % grid != 0]
    metadata: dict[str, float | int | str] = {
        "interval_hours": grid / HOUR_MS,
        "expected_settlements": int(expected.size),
        "settlements": int(times.size),
        "missing_settlements": int(missing.size),
        "off_grid": int(off_grid.size),
    }
    if missing.size or off_grid.size:
        parts = []
        if missing.size:
            listed = ", ".join(iso_ms(int(t)) for t in missing[:_MAX_LISTED_SPANS])
            parts.append(f"{missing.size} of {expected.size} settlements missing: {listed}")
            metadata["first_missing"] = iso_ms(int(missing[0]))
        if off_grid.size:
            parts.append(f"{off_grid.size} settlement(s) off the {grid // HOUR_MS}h grid")
        return _result(name, False, "; ".join(parts), **metadata)
    return _result(
        name,
        True,
        f"{expected.size} settlements on the {grid // HOUR_MS}h grid, all present",
        **metadata,
    )


def _no_future(
    times: np.ndarray, tf_ms: int, funding_time: np.ndarray | None, now_ms: int
) -> QualityResult:
    name = "no_future_timestamps"
    future_bars = times[times + tf_ms > now_ms]
    future_funding = (
        funding_time[funding_time > now_ms] if funding_time is not None else np.empty(0, np.int64)
    )
    metadata: dict[str, float | int | str] = {
        "future_bars": int(future_bars.size),
        "future_funding": int(future_funding.size),
        "now": iso_ms(now_ms),
    }
    if future_bars.size or future_funding.size:
        first = int(min(np.r_[future_bars, future_funding]))
        return _result(
            name,
            False,
            f"{future_bars.size} bar(s) not closed by {iso_ms(now_ms)} and "
            f"{future_funding.size} funding settlement(s) after it; first at {iso_ms(first)}",
            **metadata,
        )
    return _result(name, True, f"nothing after {iso_ms(now_ms)}", **metadata)


# --- helpers -----------------------------------------------------------------------------------


def _result(
    name: str,
    passed: bool,
    detail: str,
    *,
    blocking: bool | None = None,
    **metadata: float | int | str,
) -> QualityResult:
    return QualityResult(
        name=name,
        passed=passed,
        detail=detail,
        metadata=dict(metadata),
        blocking=QUALITY_CHECKS[name][1] if blocking is None else blocking,
    )


def _column(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    if name not in table.column_names:
        raise MarketDataError(
            f"quality checks need column {name!r}; the table has {', '.join(table.column_names)}"
        )
    column = table.column(name)
    if dtype is np.float64:
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return column.cast(pa.int64()).to_numpy()


def _last_closed_open(now_ms: int, tf_ms: int) -> int:
    """Exclusive bound on the open times of bars closed at ``now_ms``."""
    return (now_ms - tf_ms) // tf_ms * tf_ms + tf_ms
