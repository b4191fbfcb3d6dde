"""Market tables in DuckDB: range-replacing writes, SQL resampling and point-in-time frames.

Writes are idempotent by construction: :meth:`MarketStore.write_batch` validates the batch, then
in one transaction deletes the symbol's rows inside the batch's coverage ``[start_ms, end_ms)``
and inserts the batch. Re-writing a range therefore never duplicates rows, and a failure leaves
the previous data untouched. The market tables have no primary keys (bulk Arrow inserts stay
fast); uniqueness is guaranteed by the range replacement and verified by the quality checks.

Higher timeframes are aggregated in SQL into ``ohlcv_resampled`` with a ``bar_count`` and a
``complete`` flag (every base bar of the bucket present). Writing base bars deletes the
resampled rows whose buckets overlap the written range, so a stale aggregate is never served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import duckdb
import numpy as np
import pyarrow as pa

from factory_pipeline.errors import MarketDataError, StoreError
from factory_pipeline.market.frame import MarketFrame, align_point_in_time, make_frame
from factory_pipeline.market.regimes import REGIME_SCHEMA, REGIMES
from factory_pipeline.market.source import MarketBatch, iso_ms, validate_batch
from factory_pipeline.market.timeframes import SUPPORTED_TIMEFRAMES, timeframe_ms
from factory_pipeline.store.db import Store

_MAX_MS = 2**62


class MarketStore:
    """Typed access to the market tables of a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- writes ---------------------------------------------------------------------------------

    def write_batch(self, batch: MarketBatch, *, source: str = "") -> dict[str, int]:
        """Validate, then replace this symbol's rows in the batch's coverage.

        Returns the rows written per batch table: ``ohlcv``, ``mark``, ``funding``,
        ``open_interest``.

        One transaction covers ohlcv (the batch's timeframe), mark_price (same timeframe),
        funding, open_interest and the invalidation of overlapping ``ohlcv_resampled`` rows.
        """
        validate_batch(batch, source=source)
        tf_ms = timeframe_ms(batch.timeframe)
        symbol, tf, start, end = batch.symbol, batch.timeframe, batch.start_ms, batch.end_ms
        counts = {
            "ohlcv": batch.ohlcv.num_rows,
            "mark": batch.mark.num_rows,
            "funding": batch.funding.num_rows,
            "open_interest": batch.open_interest.num_rows,
        }
        if end <= start:
            return dict.fromkeys(counts, 0)
        with self.store.transaction() as con:
            con.execute(
                "DELETE FROM ohlcv WHERE symbol = ? AND timeframe = ? "
                "AND open_time >= ? AND open_time < ?",
                [symbol, tf, start, end],
            )
            con.execute(
                "DELETE FROM mark_price WHERE symbol = ? AND timeframe = ? "
                "AND open_time >= ? AND open_time < ?",
                [symbol, tf, start, end],
            )
            con.execute(
                "DELETE FROM funding WHERE symbol = ? AND funding_time >= ? AND funding_time < ?",
                [symbol, start, end],
            )
            con.execute(
                "DELETE FROM open_interest WHERE symbol = ? AND ts >= ? AND ts < ?",
                [symbol, start, end],
            )
            # Aggregates built from base bars in the written range are stale now.
            con.execute(
                "DELETE FROM ohlcv_resampled WHERE symbol = ? AND close_time > ? AND open_time < ?",
                [symbol, start, end],
            )
            _insert(
                con,
                "ohlcv",
                batch.ohlcv,
                "symbol, timeframe, open_time, close_time, open, high, low, close, volume",
                f"?, ?, open_time, open_time + {tf_ms}, open, high, low, close, volume",
                [symbol, tf],
            )
            _insert(
                con,
                "mark_price",
                batch.mark,
                "symbol, timeframe, open_time, close",
                "?, ?, open_time, close",
                [symbol, tf],
            )
            _insert(
                con,
                "funding",
                batch.funding,
                "symbol, funding_time, rate",
                "?, funding_time, rate",
                [symbol],
            )
            _insert(
                con,
                "open_interest",
                batch.open_interest,
                "symbol, ts, open_interest",
                "?, ts, open_interest",
                [symbol],
            )
        return counts

    def resample(
        self,
        symbol: str,
        base_timeframe: str,
        timeframes: Sequence[str],
        start_ms: int,
        end_ms: int,
    ) -> dict[str, int]:
        """Aggregate base bars into ``ohlcv_resampled`` for each timeframe; returns bar counts.

        The range is widened to whole higher-timeframe buckets (``floor(start)``,
        ``ceil(end)``), that range's rows are replaced. Open = first base open, high = max,
        low = min, close = last base close, volume = sum; ``bar_count`` base bars,
        ``complete`` when all ``htf / base`` of them are present.
        """
        base_ms = timeframe_ms(base_timeframe)
        out: dict[str, int] = {}
        with self.store.transaction() as con:
            for tf in timeframes:
                htf_ms = timeframe_ms(tf)
                if htf_ms <= base_ms or htf_ms % base_ms:
                    raise MarketDataError(
                        f"cannot resample {symbol} {base_timeframe} to {tf}: the target must be a "
                        "whole multiple of the base timeframe"
                    )
                lo = (start_ms // htf_ms) * htf_ms
                hi = -(-end_ms // htf_ms) * htf_ms
                con.execute(
                    "DELETE FROM ohlcv_resampled WHERE symbol = ? AND timeframe = ? "
                    "AND open_time >= ? AND open_time < ?",
                    [symbol, tf, lo, hi],
                )
                con.execute(
                    f"""
                    INSERT INTO ohlcv_resampled
                    SELECT ?, ?, bucket, bucket + {htf_ms},
                           arg_min(open, open_time), max(high), min(low),
                           arg_max(close, open_time), sum(volume), count(*)::INTEGER,
                           count(*) = {htf_ms // base_ms}
                    FROM (
                        SELECT open_time - (open_time % {htf_ms}) AS bucket, open_time,
                               open, high, low, close, volume
                        FROM ohlcv
                        WHERE symbol = ? AND timeframe = ? AND open_time >= ? AND open_time < ?
                    )
                    GROUP BY bucket
                    """,
                    [symbol, tf, symbol, base_timeframe, lo, hi],
                )
                row = con.execute(
                    "SELECT count(*) FROM ohlcv_resampled WHERE symbol = ? AND timeframe = ? "
                    "AND open_time >= ? AND open_time < ?",
                    [symbol, tf, lo, hi],
                ).fetchall()[0]
                out[tf] = int(row[0])
        return out

    def write_regimes(self, symbol: str, labels: pa.Table) -> int:
        """Replace ``symbol``'s regime labels with ``labels`` (window_start, window_end, regime,
        score); returns the number of rows written."""
        missing = [n for n in REGIME_SCHEMA.names if n not in labels.column_names]
        if missing:
            raise MarketDataError(f"{symbol} regime labels: missing column(s) {', '.join(missing)}")
        table = labels.select(REGIME_SCHEMA.names).cast(REGIME_SCHEMA)
        unknown = sorted(set(table.column("regime").to_pylist()) - set(REGIMES))
        if unknown:
            raise MarketDataError(f"{symbol} regime labels: unknown regime(s) {unknown}")
        with self.store.transaction() as con:
            con.execute("DELETE FROM regimes WHERE symbol = ?", [symbol])
            _insert(
                con,
                "regimes",
                table,
                "symbol, window_start, window_end, regime, score",
                "?, window_start, window_end, regime, score",
                [symbol],
            )
        return table.num_rows

    # --- reads ----------------------------------------------------------------------------------
    # Each public read opens one connection (opening a DuckDB file costs tens of milliseconds)
    # and hands it to the ``_q_*`` helpers below.

    def load_frame(
        self,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> MarketFrame:
        """Bars with ``open_time`` in ``[start_ms, end_ms)`` as a point-in-time :class:`MarketFrame`.

        A stored base timeframe comes from ``ohlcv`` plus mark (missing mark bars fall back to
        the close), funding and open interest aligned point-in-time by ``make_frame``. A higher
        timeframe comes from ``ohlcv_resampled`` when its buckets match the base bars (with the
        ``complete`` flag kept), otherwise it is resampled from the base frame in memory; its
        open interest is the last point published at or before each higher bar's close.
        Raises :class:`MarketDataError` when there is no data.
        """
        htf_ms = timeframe_ms(timeframe)
        with self.store.connect() as con:
            if _q_has_bars(con, symbol, timeframe):
                return _q_base_frame(con, symbol, timeframe, start_ms, end_ms)
            base = _q_base_for(con, symbol, timeframe)
            lo = None if start_ms is None else (start_ms // htf_ms) * htf_ms
            hi = None if end_ms is None else -(-end_ms // htf_ms) * htf_ms
            resampled = _q_base_frame(con, symbol, base, lo, hi).resample(timeframe)
            stored = _q_resampled(con, symbol, timeframe, lo, hi)
            if stored.num_rows and np.array_equal(
                stored.column("open_time").to_numpy(), resampled.open_time
            ):
                resampled = replace(
                    resampled,
                    open=stored.column("open").to_numpy(),
                    high=stored.column("high").to_numpy(),
                    low=stored.column("low").to_numpy(),
                    close=stored.column("close").to_numpy(),
                    volume=stored.column("volume").to_numpy(),
                    complete=stored.column("complete").to_numpy(zero_copy_only=False),
                )
            oi = _q_open_interest(con, symbol, None, int(resampled.close_time[-1]) + 1)
        resampled = replace(
            resampled,
            open_interest=align_point_in_time(
                oi.column("ts").to_numpy(),
                oi.column("open_interest").to_numpy(),
                resampled.close_time,
            ),
        )
        idx = np.flatnonzero(_range_mask(resampled.open_time, start_ms, end_ms))
        if idx.size == 0:
            raise MarketDataError(
                f"no {symbol} {timeframe} bars in {iso_ms(start_ms)}..{iso_ms(end_ms)}"
            )
        return resampled.slice(int(idx[0]), int(idx[-1]) + 1)

    def ohlcv(
        self,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> pa.Table:
        """Stored bars sorted by open_time: open_time, close_time, open, high, low, close, volume.

        For a timeframe only present in ``ohlcv_resampled`` those rows are returned, with the
        extra columns ``bar_count`` and ``complete``.
        """
        with self.store.connect() as con:
            if _q_has_bars(con, symbol, timeframe):
                return _q_ohlcv(con, symbol, timeframe, start_ms, end_ms)
            return _q_resampled(con, symbol, timeframe, start_ms, end_ms)

    def mark(
        self, symbol: str, timeframe: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> pa.Table:
        """Mark-price bars: open_time, close (sorted)."""
        with self.store.connect() as con:
            return _q_mark(con, symbol, timeframe, start_ms, end_ms)

    def funding(
        self, symbol: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> pa.Table:
        """Funding settlements: funding_time, rate (sorted)."""
        with self.store.connect() as con:
            return _q_funding(con, symbol, start_ms, end_ms)

    def open_interest(
        self, symbol: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> pa.Table:
        """Open-interest points: ts, open_interest (sorted)."""
        with self.store.connect() as con:
            return _q_open_interest(con, symbol, start_ms, end_ms)

    def symbols(self) -> list[str]:
        """Symbols with stored bars, sorted."""
        with self.store.connect() as con:
            rows = con.execute("SELECT DISTINCT symbol FROM ohlcv ORDER BY symbol").fetchall()
        return [r[0] for r in rows]

    def coverage(self) -> list[dict]:
        """Per symbol and timeframe: first/last open_time, bar count, and whether the bars are
        base bars (``resampled`` False) or aggregates (True; ``complete_bars`` counted)."""
        with self.store.connect() as con:
            base = con.execute(
                "SELECT symbol, timeframe, min(open_time), max(open_time), count(*) "
                "FROM ohlcv GROUP BY 1, 2"
            ).fetchall()
            resampled = con.execute(
                "SELECT symbol, timeframe, min(open_time), max(open_time), count(*), "
                "count(*) FILTER (WHERE complete) FROM ohlcv_resampled GROUP BY 1, 2"
            ).fetchall()
        rows = [
            {
                "symbol": s,
                "timeframe": tf,
                "first_open_time": int(a),
                "last_open_time": int(b),
                "bars": int(n),
                "resampled": False,
                "complete_bars": int(n),
            }
            for s, tf, a, b, n in base
        ] + [
            {
                "symbol": s,
                "timeframe": tf,
                "first_open_time": int(a),
                "last_open_time": int(b),
                "bars": int(n),
                "resampled": True,
                "complete_bars": int(c),
            }
            for s, tf, a, b, n, c in resampled
        ]
        order = {tf: i for i, tf in enumerate(SUPPORTED_TIMEFRAMES)}
        return sorted(rows, key=lambda r: (r["symbol"], order.get(r["timeframe"], 99)))

    def last_open_time(self, symbol: str, timeframe: str) -> int | None:
        """Open time of the newest stored base bar (None when there is none)."""
        with self.store.connect() as con:
            row = con.execute(
                "SELECT max(open_time) FROM ohlcv WHERE symbol = ? AND timeframe = ?",
                [symbol, timeframe],
            ).fetchall()[0]
        return None if row[0] is None else int(row[0])

    def resume_from_ms(self, symbol: str, timeframe: str) -> int | None:
        """Where an incremental fetch should start: the bar after the newest stored one."""
        last = self.last_open_time(symbol, timeframe)
        return None if last is None else last + timeframe_ms(timeframe)

    def regimes(self, symbol: str) -> pa.Table:
        """Stored regime labels of ``symbol``: window_start, window_end, regime, score."""
        with self.store.connect() as con:
            table = _query(
                con,
                "SELECT window_start, window_end, regime, score FROM regimes WHERE symbol = ? "
                "ORDER BY window_start",
                [symbol],
            )
        return table.cast(REGIME_SCHEMA)


# --- queries on an open connection ---------------------------------------------------------------


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> pa.Table:
    """A read as an Arrow table, on a cursor of ``con``.

    DuckDB 2.0 refuses ``sql()`` on a connection with an unfinished ``execute()`` result (e.g.
    another repository's ``fetchone()`` on the shared ``:memory:`` connection); a cursor is an
    independent handle on the same database, so reads never trip over that.
    """
    cursor = con.cursor()
    try:
        return cursor.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise StoreError(f"market store query failed: {exc}") from exc
    finally:
        cursor.close()


def _q_has_bars(con: duckdb.DuckDBPyConnection, symbol: str, timeframe: str) -> bool:
    # fetchall, not fetchone: DuckDB 2.0 refuses new work while a result is unfinished
    rows = con.execute(
        "SELECT 1 FROM ohlcv WHERE symbol = ? AND timeframe = ? LIMIT 1", [symbol, timeframe]
    ).fetchall()
    return bool(rows)


def _q_ohlcv(
    con: duckdb.DuckDBPyConnection, symbol: str, timeframe: str, start: int | None, end: int | None
) -> pa.Table:
    return _query(
        con,
        "SELECT open_time, close_time, open, high, low, close, volume FROM ohlcv "
        "WHERE symbol = ? AND timeframe = ? AND open_time >= ? AND open_time < ? "
        "ORDER BY open_time",
        [symbol, timeframe, *_bounds(start, end)],
    )


def _q_resampled(
    con: duckdb.DuckDBPyConnection, symbol: str, timeframe: str, start: int | None, end: int | None
) -> pa.Table:
    return _query(
        con,
        "SELECT open_time, close_time, open, high, low, close, volume, bar_count, complete "
        "FROM ohlcv_resampled WHERE symbol = ? AND timeframe = ? AND open_time >= ? "
        "AND open_time < ? ORDER BY open_time",
        [symbol, timeframe, *_bounds(start, end)],
    )


def _q_mark(
    con: duckdb.DuckDBPyConnection, symbol: str, timeframe: str, start: int | None, end: int | None
) -> pa.Table:
    return _query(
        con,
        "SELECT open_time, close FROM mark_price WHERE symbol = ? AND timeframe = ? "
        "AND open_time >= ? AND open_time < ? ORDER BY open_time",
        [symbol, timeframe, *_bounds(start, end)],
    )


def _q_funding(
    con: duckdb.DuckDBPyConnection, symbol: str, start: int | None, end: int | None
) -> pa.Table:
    return _query(
        con,
        "SELECT funding_time, rate FROM funding WHERE symbol = ? "
        "AND funding_time >= ? AND funding_time < ? ORDER BY funding_time",
        [symbol, *_bounds(start, end)],
    )


def _q_open_interest(
    con: duckdb.DuckDBPyConnection, symbol: str, start: int | None, end: int | None
) -> pa.Table:
    return _query(
        con,
        "SELECT ts, open_interest FROM open_interest WHERE symbol = ? "
        "AND ts >= ? AND ts < ? ORDER BY ts",
        [symbol, *_bounds(start, end)],
    )


def _q_base_for(con: duckdb.DuckDBPyConnection, symbol: str, timeframe: str) -> str:
    """The longest stored base timeframe that divides ``timeframe``."""
    target = timeframe_ms(timeframe)
    rows = con.execute("SELECT DISTINCT timeframe FROM ohlcv WHERE symbol = ?", [symbol]).fetchall()
    candidates = [
        r[0]
        for r in rows
        if r[0] in SUPPORTED_TIMEFRAMES
        and target % timeframe_ms(r[0]) == 0
        and timeframe_ms(r[0]) < target
    ]
    if not candidates:
        have = ", ".join(sorted(r[0] for r in rows)) or "none"
        raise MarketDataError(
            f"no {symbol} market data to build {timeframe} bars from (stored timeframes: {have})"
        )
    return max(candidates, key=timeframe_ms)


def _q_base_frame(
    con: duckdb.DuckDBPyConnection,
    symbol: str,
    timeframe: str,
    start_ms: int | None,
    end_ms: int | None,
) -> MarketFrame:
    """A stored base timeframe with mark, funding and open interest, point-in-time."""
    bars = _q_ohlcv(con, symbol, timeframe, start_ms, end_ms)
    if bars.num_rows == 0:
        raise MarketDataError(
            f"no {symbol} {timeframe} bars in {iso_ms(start_ms)}..{iso_ms(end_ms)}"
        )
    open_time = bars.column("open_time").to_numpy()
    close = bars.column("close").to_numpy()
    mark_table = _q_mark(con, symbol, timeframe, start_ms, end_ms)
    mark = close.copy()
    if mark_table.num_rows:
        mark_time = mark_table.column("open_time").to_numpy()
        pos = np.searchsorted(mark_time, open_time)
        found = pos < mark_time.shape[0]
        found[found] = mark_time[pos[found]] == open_time[found]
        mark[found] = mark_table.column("close").to_numpy()[pos[found]]
    last_close = int(open_time[-1]) + timeframe_ms(timeframe)
    # Everything published up to the last close: the first bars need earlier values too.
    funding = _q_funding(con, symbol, None, last_close + 1)
    oi = _q_open_interest(con, symbol, None, last_close + 1)
    return make_frame(
        symbol,
        timeframe,
        open_time,
        bars.column("open").to_numpy(),
        bars.column("high").to_numpy(),
        bars.column("low").to_numpy(),
        close,
        volume=bars.column("volume").to_numpy(),
        mark=mark,
        funding_time=funding.column("funding_time").to_numpy(),
        funding_rates=funding.column("rate").to_numpy(),
        oi_time=oi.column("ts").to_numpy(),
        oi_values=oi.column("open_interest").to_numpy(),
    )


def _insert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: pa.Table,
    columns: str,
    select: str,
    params: list,
) -> None:
    """Bulk insert from a registered Arrow table (no row loops)."""
    if rows.num_rows == 0:
        return
    name = f"_incoming_{table}"
    con.register(name, rows)
    try:
        con.execute(f"INSERT INTO {table} ({columns}) SELECT {select} FROM {name}", params)
    finally:
        con.unregister(name)


def _bounds(start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
    return (
        -_MAX_MS if start_ms is None else int(start_ms),
        _MAX_MS if end_ms is None else int(end_ms),
    )


def _range_mask(times: np.ndarray, start_ms: int | None, end_ms: int | None) -> np.ndarray:
    lo, hi = _bounds(start_ms, end_ms)
    return (times >= lo) & (times < hi)
