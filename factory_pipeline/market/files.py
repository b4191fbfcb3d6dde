"""Import market data from exchange dump files (CSV, gzip/zip CSV, Parquet).

Accepted layouts (see docs/market_data.md for the full list):

- **Bybit kline exports**: ``startTime, open, high, low, close, volume, turnover``, with or
  without a header (``openPrice``-style names also accepted), ascending or newest-first;
- **Binance kline dumps**: the 12 columns ``open_time .. ignore``, headerless or with header,
  timestamps in milliseconds or in microseconds (Binance spot since 2025);
- any file with a header naming a time column and open/high/low/close/volume, with
  timestamps as epoch numbers (s, ms, us or ns, detected per value by magnitude) or ISO-8601
  text (naive times are UTC);
- an explicit ``column_map`` (canonical name -> header name or 0-based column index) for
  anything else.

Optional companion files: funding (``funding_time, rate``; Bybit ``fundingRateTimestamp,
fundingRate``; Binance ``calc_time, funding_interval_hours, last_funding_rate``), open
interest (``ts, open_interest``) and mark-price klines. Every error names the file and the
line (CSV, 1-based, counting the header) or row (Parquet, 1-based) and what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.source import (
    FUNDING_SCHEMA,
    MARK_SCHEMA,
    OHLCV_SCHEMA,
    OPEN_INTEREST_SCHEMA,
    MarketBatch,
    find_row_problems,
    iso_ms,
    make_batch,
)
from factory_pipeline.market.timeframes import timeframe_ms

KINDS: tuple[str, ...] = ("ohlcv", "mark", "funding", "open_interest")
SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".zip", ".parquet")

#: Canonical columns per kind (the time column first).
_COLUMNS: dict[str, tuple[str, ...]] = {
    "ohlcv": ("open_time", "open", "high", "low", "close", "volume"),
    "mark": ("open_time", "close"),
    "funding": ("funding_time", "rate"),
    "open_interest": ("ts", "open_interest"),
}
_SCHEMAS = {
    "ohlcv": OHLCV_SCHEMA,
    "mark": MARK_SCHEMA,
    "funding": FUNDING_SCHEMA,
    "open_interest": OPEN_INTEREST_SCHEMA,
}
#: Header aliases, compared after lower-casing and dropping everything but letters and digits.
_ALIASES: dict[str, tuple[str, ...]] = {
    "open_time": (
        "opentime",
        "starttime",
        "start",
        "timestamp",
        "time",
        "date",
        "datetime",
        "ts",
        "t",
        "klineopentime",
        "openat",
    ),
    "open": ("open", "o", "openprice"),
    "high": ("high", "h", "highprice"),
    "low": ("low", "l", "lowprice"),
    "close": ("close", "c", "closeprice", "markprice"),
    "volume": ("volume", "vol", "v", "basevolume"),
    "funding_time": (
        "fundingtime",
        "fundingratetimestamp",
        "calctime",
        "timestamp",
        "time",
        "ts",
        "date",
        "datetime",
    ),
    "rate": ("rate", "fundingrate", "lastfundingrate"),
    "ts": ("ts", "timestamp", "time", "date", "datetime", "createtime"),
    "open_interest": ("openinterest", "sumopeninterest", "oi"),
}
#: Headerless layouts by column count: canonical name -> column index.
_HEADERLESS: dict[str, dict[int, dict[str, int]]] = {
    "ohlcv": {
        6: {"open_time": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5},
        7: {"open_time": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5},  # Bybit
        12: {
            "open_time": 0,
            "open": 1,
            "high": 2,
            "low": 3,
            "close": 4,
            "volume": 5,
            "close_time": 6,
        },  # Binance
    },
    "mark": {
        2: {"open_time": 0, "close": 1},
        5: {"open_time": 0, "close": 4},  # Bybit mark-price kline
        12: {"open_time": 0, "close": 4, "close_time": 6},  # Binance markPriceKlines
    },
    "funding": {2: {"funding_time": 0, "rate": 1}, 3: {"funding_time": 0, "rate": 2}},
    "open_interest": {2: {"ts": 0, "open_interest": 1}},
}
#: Plausible epoch magnitudes (years 2000..2100) per unit, and the factor to milliseconds.
_EPOCH_2000_S, _EPOCH_2100_S = 946_684_800, 4_102_444_800
#: (unit, units per second, multiply, divide): ms = value * multiply // divide.
_UNITS: tuple[tuple[str, int, int, int], ...] = (
    ("s", 1, 1_000, 1),
    ("ms", 1_000, 1, 1),
    ("us", 1_000_000, 1, 1_000),
    ("ns", 1_000_000_000, 1, 1_000_000),
)


class FileSource:
    """Market files in a folder (searched recursively), named by symbol and timeframe.

    File names: ``<SYMBOL>[-_]<timeframe>[-_.anything].<csv|csv.gz|zip|parquet>`` for bars
    (e.g. ``BTCUSDT_15m.csv``, ``BTCUSDT-15m-2024-01.zip``), ``<SYMBOL>[-_]mark[-_]<tf>...``
    for mark-price bars, ``<SYMBOL>[-_]funding...`` and ``<SYMBOL>[-_]open_interest...`` (or
    ``oi``). Several files of one kind are merged; rows repeated identically across files are
    kept once, conflicting repeats are an error naming both files.
    """

    name = "files"

    def __init__(
        self,
        folder: str | Path,
        *,
        column_map: Mapping[str, Mapping[str, str | int]] | None = None,
    ) -> None:
        """``column_map`` maps a kind (``ohlcv``, ``mark``, ``funding``, ``open_interest``) to
        that kind's explicit column mapping, applied to every file of the kind."""
        self.folder = Path(folder)
        self.column_map = dict(column_map or {})

    def fetch(self, symbol: str, timeframe: str, start_ms: int, end_ms: int) -> MarketBatch:
        """Rows with times in ``[start_ms, end_ms)`` from every matching file."""
        if not self.folder.is_dir():
            raise MarketDataError(f"market files folder {self.folder} does not exist")
        tables: dict[str, pa.Table] = {}
        for kind in KINDS:
            paths = self.files(symbol, timeframe, kind)
            if not paths:
                if kind == "ohlcv":
                    raise MarketDataError(
                        f"no {symbol} {timeframe} bar files in {self.folder}; expected names like "
                        f"{symbol}_{timeframe}.csv or {symbol}-{timeframe}-2024-01.zip"
                    )
                continue
            table = _merge(
                [
                    (
                        p,
                        read_market_file(
                            p, symbol, timeframe, kind=kind, column_map=self.column_map.get(kind)
                        ),
                    )
                    for p in paths
                ],
                _COLUMNS[kind][0],
            )
            times = table.column(0)
            keep = pc.and_(pc.greater_equal(times, start_ms), pc.less(times, end_ms))
            tables[kind] = table.filter(keep)
        return make_batch(
            symbol,
            timeframe,
            start_ms,
            end_ms,
            ohlcv=tables.get("ohlcv"),
            mark=tables.get("mark"),
            funding=tables.get("funding"),
            open_interest=tables.get("open_interest"),
        )

    def files(self, symbol: str, timeframe: str, kind: str = "ohlcv") -> list[Path]:
        """Matching files of one kind, sorted by path."""
        sym = re.escape(symbol)
        tf = re.escape(timeframe)
        suffix = r"(?:[-_.][^/]*)?\.(?:csv|csv\.gz|zip|parquet)$"
        patterns = {
            "ohlcv": rf"^{sym}[-_]{tf}{suffix}",
            "mark": rf"^{sym}[-_]mark(?:[-_]?price)?[-_]{tf}{suffix}",
            "funding": rf"^{sym}[-_]funding(?:[-_]?rates?)?{suffix}",
            "open_interest": rf"^{sym}[-_](?:open[-_]?interest|oi){suffix}",
        }
        pattern = re.compile(patterns[kind], re.IGNORECASE)
        return sorted(p for p in self.folder.rglob("*") if p.is_file() and pattern.match(p.name))


def read_market_file(
    path: str | Path,
    symbol: str,
    timeframe: str,
    *,
    kind: str = "ohlcv",
    column_map: Mapping[str, str | int] | None = None,
    has_header: bool | None = None,
) -> pa.Table:
    """Parse one file into the batch schema of ``kind``, sorted ascending and validated.

    ``has_header`` None detects a CSV header (a first cell that is neither a number nor a
    date); pass False for a headerless file whose first column is text.

    Raises :class:`MarketDataError` naming the file and line/row for: an unreadable file, a
    header without the needed columns, an unknown headerless layout, a non-numeric value, an
    implausible or unparseable timestamp, a Binance close time that does not match
    ``timeframe``, unsorted or duplicate times, bars off the timeframe grid, inconsistent OHLC,
    non-positive prices or negative volume/open interest.
    """
    path = Path(path)
    if kind not in KINDS:
        raise MarketDataError(f"{path}: unknown file kind {kind!r}; expected one of {KINDS}")
    tf_ms = timeframe_ms(timeframe)
    raw = _RawFile.read(path, has_header)
    mapping = _resolve_columns(raw, kind, column_map)
    time_name = _COLUMNS[kind][0]
    times = _to_epoch_ms(raw, mapping[time_name], time_name)
    values = {name: _to_float(raw, mapping[name], name) for name in _COLUMNS[kind][1:]}
    lines = raw.lines
    if "close_time" in mapping and kind in ("ohlcv", "mark"):
        close_time = _to_epoch_ms(raw, mapping["close_time"], "close_time")
        _check_close_time(raw, times, close_time, tf_ms, timeframe)
    if times.shape[0] > 1 and np.all(np.diff(times) < 0):  # newest first (API-style export)
        times = times[::-1]
        values = {k: v[::-1] for k, v in values.items()}
        lines = lines[::-1]
    _, problems = find_row_problems(
        {time_name: times, **values},
        time_column=time_name,
        grid_ms=tf_ms if kind in ("ohlcv", "mark") else None,
        limit=1,
    )
    if problems:
        row, message = problems[0]
        raise MarketDataError(f"{raw.where(lines[row])}: {message} ({iso_ms(int(times[row]))})")
    return pa.table({time_name: times, **values}, schema=_SCHEMAS[kind])


# --- reading ------------------------------------------------------------------------------------


class _RawFile:
    """A file's cells as strings (CSV) or typed columns (Parquet) plus original line numbers."""

    def __init__(
        self,
        path: Path,
        columns: dict[str | int, pa.Array | np.ndarray],
        header: list[str] | None,
        lines: np.ndarray,
        is_parquet: bool,
    ) -> None:
        self.path = path
        self.columns = columns
        self.header = header
        self.lines = lines
        self.is_parquet = is_parquet

    def where(self, line: int) -> str:
        return f"{self.path}: {'row' if self.is_parquet else 'line'} {int(line)}"

    @classmethod
    def read(cls, path: Path, has_header: bool | None = None) -> _RawFile:
        name = path.name.lower()
        if not path.is_file():
            raise MarketDataError(f"{path}: file not found")
        if name.endswith(".parquet"):
            try:
                table = pq.read_table(path)
            except (pa.ArrowException, OSError) as exc:
                raise MarketDataError(f"{path}: not a readable Parquet file: {exc}") from exc
            return cls(
                path,
                {n: table.column(n).combine_chunks() for n in table.column_names},
                list(table.column_names),
                np.arange(1, table.num_rows + 1),
                True,
            )
        if not name.endswith((".csv", ".csv.gz", ".zip")):
            raise MarketDataError(f"{path}: unsupported file type; expected {', '.join(SUFFIXES)}")
        try:
            frame = pd.read_csv(
                path,
                header=None,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,
                skipinitialspace=True,
            )
        except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise MarketDataError(f"{path}: not a readable CSV file: {exc}") from exc
        frame = frame.fillna("")
        nonblank = frame.ne("").any(axis=1).to_numpy()
        lines = np.flatnonzero(nonblank) + 1
        cells = frame.to_numpy(dtype=object)[nonblank]
        if cells.shape[0] == 0:
            raise MarketDataError(f"{path}: file is empty")
        header: list[str] | None = None
        if has_header if has_header is not None else _looks_like_header(cells[0]):
            header = [str(c).strip() for c in cells[0]]
            cells, lines = cells[1:], lines[1:]
            if cells.shape[0] == 0:
                raise MarketDataError(f"{path}: file has a header but no rows")
            if len(set(header)) != len(header):
                raise MarketDataError(f"{path}: line 1: header repeats a column name: {header}")
        columns = {(header[i] if header else i): cells[:, i] for i in range(cells.shape[1])}
        return cls(path, columns, header, lines, False)


def _looks_like_header(row: np.ndarray) -> bool:
    """A header's first cell names the time column; a data row's first cell is a time."""
    text = str(row[0]).strip()
    try:
        float(text)
        return False
    except ValueError:
        pass
    return bool(pd.isna(pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")))


def _resolve_columns(
    raw: _RawFile, kind: str, column_map: Mapping[str, str | int] | None
) -> dict[str, str | int]:
    """Canonical name -> key into ``raw.columns``."""
    needed = _COLUMNS[kind]
    if column_map:
        mapping: dict[str, str | int] = {}
        for name in needed:
            if name not in column_map:
                raise MarketDataError(f"{raw.path}: column_map has no entry for {name!r}")
            key = column_map[name]
            if raw.header is not None and isinstance(key, int):
                key = raw.header[key] if 0 <= key < len(raw.header) else key
            if key not in raw.columns:
                have = ", ".join(map(str, raw.columns))
                raise MarketDataError(
                    f"{raw.where(1)}: column_map names column {key!r} for {name!r}, which the "
                    f"file does not have (columns: {have})"
                )
            mapping[name] = key
        return mapping
    if raw.header is None:
        count = len(raw.columns)
        layout = _HEADERLESS[kind].get(count)
        if layout is None:
            known = ", ".join(str(n) for n in sorted(_HEADERLESS[kind]))
            raise MarketDataError(
                f"{raw.where(raw.lines[0])}: headerless {kind} file with {count} columns; known "
                f"layouts have {known} columns; add a header or pass column_map"
            )
        return dict(layout)
    normalized = {_normalize(h): h for h in raw.header}
    mapping = {}
    missing = []
    for name in needed:
        found = next((normalized[a] for a in _ALIASES[name] if a in normalized), None)
        if found is None:
            missing.append(name)
        else:
            mapping[name] = found
    if missing:
        raise MarketDataError(
            f"{raw.where(1)}: header has no column for {', '.join(missing)} "
            f"(header: {', '.join(raw.header)}); rename the columns or pass column_map"
        )
    if kind in ("ohlcv", "mark") and "closetime" in normalized:
        mapping["close_time"] = normalized["closetime"]
    return mapping


def _normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _to_float(raw: _RawFile, key: str | int, name: str) -> np.ndarray:
    column = raw.columns[key]
    if isinstance(column, pa.Array):
        if not (
            pa.types.is_integer(column.type)
            or pa.types.is_floating(column.type)
            or pa.types.is_decimal(column.type)
            or pa.types.is_string(column.type)
        ):
            raise MarketDataError(
                f"{raw.path}: column {key!r} ({name}) has type {column.type}, expected numbers"
            )
        if pa.types.is_string(column.type):
            column = np.asarray(column.to_pylist(), dtype=object)
        else:
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            _reject_missing(raw, np.isnan(values), key, name, column)
            return values
    values = pd.to_numeric(pd.Series(column), errors="coerce").to_numpy(dtype=np.float64)
    _reject_missing(raw, np.isnan(values), key, name, column)
    return values


def _to_epoch_ms(raw: _RawFile, key: str | int, name: str) -> np.ndarray:
    """Epoch milliseconds from numbers (unit by magnitude) or ISO-8601 text."""
    column = raw.columns[key]
    if isinstance(column, pa.Array):
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            if column.null_count:
                row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
                raise MarketDataError(f"{raw.where(raw.lines[row])}: {name} is empty")
            return pc.cast(pc.cast(column, pa.timestamp("ms")), pa.int64()).to_numpy()
        if pa.types.is_integer(column.type):
            return _scale_epoch(raw, column.cast(pa.int64()).to_numpy(zero_copy_only=False), name)
        column = np.asarray(
            [None if v is None else str(v) for v in column.to_pylist()], dtype=object
        )
    series = pd.Series(column)
    as_int = pd.to_numeric(series, errors="coerce")
    if not as_int.isna().any():
        if as_int.dtype.kind == "f":
            whole = np.floor(as_int.to_numpy())
            if np.any(whole != as_int.to_numpy()):
                row = int(np.flatnonzero(whole != as_int.to_numpy())[0])
                raise MarketDataError(
                    f"{raw.where(raw.lines[row])}: {name} {series.iloc[row]!r} is not a whole "
                    "number of time units"
                )
            return _scale_epoch(raw, whole.astype(np.int64), name)
        return _scale_epoch(raw, as_int.to_numpy(dtype=np.int64), name)
    numeric_rows = ~as_int.isna().to_numpy()
    if numeric_rows.any():  # a mix of numbers and text: report the first text cell
        row = (
            int(np.flatnonzero(~numeric_rows)[0])
            if numeric_rows[0]
            else int(np.flatnonzero(numeric_rows)[0])
        )
        raise MarketDataError(
            f"{raw.where(raw.lines[row])}: {name} {series.iloc[row]!r} mixes epoch numbers and "
            "date text in one column"
        )
    parsed = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise MarketDataError(
            f"{raw.where(raw.lines[row])}: {name} {series.iloc[row]!r} is not an epoch number "
            "or an ISO-8601 date-time"
        )
    return parsed.dt.as_unit("ms").astype("int64").to_numpy()


def _scale_epoch(raw: _RawFile, values: np.ndarray, name: str) -> np.ndarray:
    """Convert each value from the unit its magnitude implies (s, ms, us, ns) to ms."""
    out = np.empty_like(values)
    assigned = np.zeros(values.shape[0], dtype=bool)
    for _unit, per_second, multiply, divide in _UNITS:
        lo, hi = _EPOCH_2000_S * per_second, _EPOCH_2100_S * per_second
        mask = (values >= lo) & (values < hi)
        out[mask] = values[mask] * multiply // divide
        assigned |= mask
    if not assigned.all():
        row = int(np.flatnonzero(~assigned)[0])
        raise MarketDataError(
            f"{raw.where(raw.lines[row])}: {name} {int(values[row])} is not a plausible epoch "
            "time in seconds, milliseconds, microseconds or nanoseconds (years 2000-2100)"
        )
    return out


def _check_close_time(
    raw: _RawFile, open_ms: np.ndarray, close_ms: np.ndarray, tf_ms: int, timeframe: str
) -> None:
    """Binance rows carry close_time = open_time + timeframe - 1 unit: catch a wrong timeframe."""
    length = close_ms - open_ms
    bad = (length < tf_ms - 1) | (length > tf_ms)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise MarketDataError(
            f"{raw.where(raw.lines[row])}: close_time - open_time is {int(length[row]) + 1} ms, "
            f"but {timeframe} bars last {tf_ms} ms (is this a {timeframe} file?)"
        )


def _reject_missing(
    raw: _RawFile, bad: np.ndarray, key: str | int, name: str, column: object
) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        cell = column[row] if not isinstance(column, pa.Array) else column[row].as_py()
        raise MarketDataError(
            f"{raw.where(raw.lines[row])}: {name} (column {key!r}) value {cell!r} is not a number"
        )


def _merge(parts: list[tuple[Path, pa.Table]], time_name: str) -> pa.Table:
    """Concatenate files of one kind, sorted by time; identical repeats dropped."""
    if len(parts) == 1:
        return parts[0][1]
    table = pa.concat_tables([t for _, t in parts])
    origin = np.concatenate([np.full(t.num_rows, i) for i, (_, t) in enumerate(parts)])
    times = table.column(time_name).to_numpy()
    order = np.argsort(times, kind="stable")
    table, origin, times = table.take(order), origin[order], times[order]
    repeat = np.flatnonzero(np.diff(times) == 0) + 1
    if repeat.size == 0:
        return table
    columns = [table.column(i).to_numpy() for i in range(table.num_columns)]
    same = np.all([c[repeat] == c[repeat - 1] for c in columns], axis=0)
    if not same.all():
        row = int(repeat[~same][0])
        first, second = parts[int(origin[row - 1])][0], parts[int(origin[row])][0]
        raise MarketDataError(
            f"{second}: {time_name} {iso_ms(int(times[row]))} also appears in {first} with "
            "different values"
        )
    keep = np.ones(table.num_rows, dtype=bool)
    keep[repeat] = False
    return table.filter(pa.array(keep))
