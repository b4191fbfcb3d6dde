"""Market data sources and the batch they hand to the store.

A source turns ``(symbol, timeframe, [start_ms, end_ms))`` into a :class:`MarketBatch`: bars,
mark-price bars, funding settlements and open-interest points for that range, as Arrow tables.
The batch's coverage is the range it *replaces* in the store, so a re-fetch of the same range is
idempotent and a range where the source has no data clears stale rows.

:func:`validate_batch` is the single gate every batch passes before it is written: it rejects
anything downstream code would silently mis-handle (duplicates, unsorted or off-grid times,
inconsistent OHLC, non-positive prices, NaN) and names the source, the table, the row and the
problem.

Timestamps are int64 milliseconds since the Unix epoch (UTC). Bars are stamped at their open
time; funding at its settlement time; open interest at its publication time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from factory_pipeline.errors import ConfigError, MarketDataError
from factory_pipeline.market.timeframes import timeframe_ms

if TYPE_CHECKING:
    from factory_pipeline.settings import FactorySettings

#: Arrow schemas of the four batch tables (column order is part of the contract).
OHLCV_SCHEMA = pa.schema(
    [
        ("open_time", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
    ]
)
MARK_SCHEMA = pa.schema([("open_time", pa.int64()), ("close", pa.float64())])
FUNDING_SCHEMA = pa.schema([("funding_time", pa.int64()), ("rate", pa.float64())])
OPEN_INTEREST_SCHEMA = pa.schema([("ts", pa.int64()), ("open_interest", pa.float64())])


@dataclass(frozen=True)
class MarketBatch:
    """Everything one source returned for one symbol, timeframe and range.

    ``[start_ms, end_ms)`` is the coverage: the store deletes this symbol's rows in that range
    (bars of this timeframe, mark bars, funding, open interest) and inserts the batch.
    """

    symbol: str
    timeframe: str
    start_ms: int
    end_ms: int
    ohlcv: pa.Table
    mark: pa.Table
    funding: pa.Table
    open_interest: pa.Table

    @property
    def bars(self) -> int:
        return self.ohlcv.num_rows


@runtime_checkable
class MarketSource(Protocol):
    """Anything that can fetch a :class:`MarketBatch` (synthetic, files, Bybit)."""

    name: str

    def fetch(self, symbol: str, timeframe: str, start_ms: int, end_ms: int) -> MarketBatch: ...


def build_source(settings: FactorySettings) -> MarketSource:
    """The source selected by ``settings.market_source`` (synthetic by default)."""
    kind = settings.market_source
    if kind == "synthetic":
        from factory_pipeline.market.synthetic import SyntheticSource

        return SyntheticSource(
            seed=settings.synthetic_seed,
            start_date=settings.synthetic_start,
            end_date=settings.synthetic_end,
        )
    if kind == "files":
        from factory_pipeline.market.files import FileSource

        return FileSource(settings.market_files_path)
    if kind == "bybit":
        from factory_pipeline.market.bybit import BybitSource

        return BybitSource(settings.bybit_rest_url)
    raise ConfigError(f"unknown market_source {kind!r}; expected synthetic, files or bybit")


def make_batch(
    symbol: str,
    timeframe: str,
    start_ms: int,
    end_ms: int,
    *,
    ohlcv: pa.Table | dict | None = None,
    mark: pa.Table | dict | None = None,
    funding: pa.Table | dict | None = None,
    open_interest: pa.Table | dict | None = None,
) -> MarketBatch:
    """A batch with each table coerced to its schema (missing tables are empty).

    Accepts Arrow tables or ``{column: array}`` mappings; extra columns are dropped, missing
    columns raise :class:`MarketDataError` naming the table.
    """
    return MarketBatch(
        symbol=symbol,
        timeframe=timeframe,
        start_ms=int(start_ms),
        end_ms=int(end_ms),
        ohlcv=coerce_table(ohlcv, OHLCV_SCHEMA, f"{symbol} {timeframe} ohlcv"),
        mark=coerce_table(mark, MARK_SCHEMA, f"{symbol} {timeframe} mark"),
        funding=coerce_table(funding, FUNDING_SCHEMA, f"{symbol} funding"),
        open_interest=coerce_table(open_interest, OPEN_INTEREST_SCHEMA, f"{symbol} open_interest"),
    )


def validate_batch(batch: MarketBatch, *, source: str = "") -> None:
    """Raise :class:`MarketDataError` if the batch must not be stored.

    Checks, per table: required columns and types, no nulls or NaN, strictly increasing times
    (which rules out duplicates), times inside ``[start_ms, end_ms)``; bars and mark bars on the
    timeframe grid (``open_time % timeframe_ms == 0``); bars with positive prices,
    ``low <= open, close <= high`` and non-negative volume; positive mark prices; non-negative
    open interest. The message names the source, the table, the first bad row (0-based, with its
    time) and the problem, plus how many rows have problems.
    """
    where = f"{source or 'market source'}: {batch.symbol} {batch.timeframe} batch"
    try:
        tf_ms = timeframe_ms(batch.timeframe)
    except ConfigError as exc:
        raise MarketDataError(f"{where}: {exc}") from exc
    if batch.end_ms < batch.start_ms:
        raise MarketDataError(
            f"{where}: coverage end {iso_ms(batch.end_ms)} is before start {iso_ms(batch.start_ms)}"
        )
    tables = (
        ("ohlcv", batch.ohlcv, OHLCV_SCHEMA, "open_time", tf_ms),
        ("mark", batch.mark, MARK_SCHEMA, "open_time", tf_ms),
        ("funding", batch.funding, FUNDING_SCHEMA, "funding_time", None),
        ("open_interest", batch.open_interest, OPEN_INTEREST_SCHEMA, "ts", None),
    )
    for name, table, schema, time_column, grid_ms in tables:
        label = f"{where} {iso_ms(batch.start_ms)}..{iso_ms(batch.end_ms)}, table {name}"
        _check_schema(table, schema, label)
        columns = {f.name: table.column(f.name).to_numpy() for f in schema}
        count, problems = find_row_problems(
            columns,
            time_column=time_column,
            start_ms=batch.start_ms,
            end_ms=batch.end_ms,
            grid_ms=grid_ms,
            limit=1,
        )
        if problems:
            row, message = problems[0]
            more = f" ({count - 1} more rows with problems)" if count > 1 else ""
            when = iso_ms(int(columns[time_column][row]))
            raise MarketDataError(f"{label}: row {row} ({when}): {message}{more}")


def find_row_problems(
    columns: dict[str, np.ndarray],
    *,
    time_column: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    grid_ms: int | None = None,
    limit: int = 5,
) -> tuple[int, list[tuple[int, str]]]:
    """Row-level problems: ``(number of bad rows, [(row index, description), ...])``.

    The list holds the first ``limit`` bad rows in row order, each with its first problem.
    Shared by :func:`validate_batch` and the file importer (which maps rows to file lines).
    Which checks apply depends on the columns present: OHLC rules need open/high/low/close,
    the volume rule needs volume, ``close`` alone (mark bars) must be positive, every value
    column must be finite, ``open_interest`` must be non-negative.
    """
    times = np.asarray(columns[time_column], dtype=np.int64)
    n = times.shape[0]
    checks: list[tuple[np.ndarray, Callable[[int], str]]] = []

    def add(mask: np.ndarray, problem: str, **arrays: np.ndarray) -> None:
        def describe(row: int) -> str:
            if not arrays:
                return problem
            values = ", ".join(f"{k}={float(v[row])!r}" for k, v in arrays.items())
            return f"{problem}: {values}"

        checks.append((mask, describe))

    values = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items() if k != time_column}
    for name, arr in values.items():
        add(~np.isfinite(arr), f"{name} is NaN or infinite")
    if n > 1:
        diff = np.diff(times)
        add(np.r_[False, diff == 0], f"duplicate {time_column} (same as the previous row)")
        add(np.r_[False, diff < 0], f"{time_column} goes backwards (rows must be sorted ascending)")
    if start_ms is not None:
        add(times < start_ms, f"{time_column} before the batch start {iso_ms(start_ms)}")
    if end_ms is not None:
        add(times >= end_ms, f"{time_column} at or after the batch end {iso_ms(end_ms)}")
    if grid_ms is not None:
        add(times % grid_ms != 0, f"{time_column} is not on the {_grid_name(grid_ms)} grid")
    with np.errstate(invalid="ignore"):
        if {"open", "high", "low", "close"} <= values.keys():
            o, h, lo, c = values["open"], values["high"], values["low"], values["close"]
            prices = {"open": o, "high": h, "low": lo, "close": c}
            add((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), "non-positive price", **prices)
            add(
                (lo > np.minimum(o, c)) | (h < np.maximum(o, c)) | (lo > h),
                "OHLC inconsistent (need low <= open, close <= high)",
                **prices,
            )
        elif "close" in values:
            add(values["close"] <= 0, "non-positive price", close=values["close"])
        if "volume" in values:
            add(values["volume"] < 0, "negative volume", volume=values["volume"])
        if "open_interest" in values:
            oi = values["open_interest"]
            add(oi < 0, "negative open interest", open_interest=oi)
    if not checks or n == 0:
        return 0, []
    union = np.zeros(n, dtype=np.bool_)
    for mask, _ in checks:
        union |= mask
    rows = np.flatnonzero(union)
    first: list[tuple[int, str]] = []
    for row in rows[:limit]:
        describe = next(d for mask, d in checks if mask[row])
        first.append((int(row), describe(int(row))))
    return int(rows.shape[0]), first


def coerce_table(data: pa.Table | dict | None, schema: pa.Schema, label: str) -> pa.Table:
    """``data`` as a table with exactly ``schema``'s columns and types."""
    if data is None:
        return schema.empty_table()
    table = data if isinstance(data, pa.Table) else pa.table(dict(data))
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise MarketDataError(
            f"{label}: missing column(s) {', '.join(missing)}; have {', '.join(table.column_names)}"
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise MarketDataError(f"{label}: cannot convert to {schema}: {exc}") from exc


def iso_ms(ms: int | None) -> str:
    """``2024-01-01T00:00:00Z`` for a millisecond timestamp (for messages and metadata)."""
    if ms is None:
        return "-"
    try:
        moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ms}ms"
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


def _check_schema(table: pa.Table, schema: pa.Schema, label: str) -> None:
    for field in schema:
        if field.name not in table.column_names:
            raise MarketDataError(f"{label}: missing column {field.name!r}")
        column = table.column(field.name)
        if column.type != field.type:
            raise MarketDataError(
                f"{label}: column {field.name!r} has type {column.type}, expected {field.type}"
            )
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise MarketDataError(f"{label}: row {row}: {field.name} is missing (null)")


def _grid_name(grid_ms: int) -> str:
    if grid_ms % 3_600_000 == 0:
        return f"{grid_ms // 3_600_000}-hour"
    return f"{grid_ms // 60_000}-minute"
