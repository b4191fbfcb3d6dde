"""File import: every accepted layout reads back the same bars; malformed files name file+line."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.files import FileSource, read_market_file
from factory_pipeline.market.source import MarketBatch
from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline_tests.market.helpers import DAY, T0

TF_MS = 15 * 60_000
BINANCE_HEADER = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]


@pytest.fixture(scope="module")
def reference(week_source: SyntheticSource) -> MarketBatch:
    return week_source.fetch("BTCUSDT", "15m", T0, T0 + DAY)


def _rows(batch: MarketBatch) -> list[dict]:
    return batch.ohlcv.to_pylist()


def _write_csv(path: Path, rows: list[list], header: list[str] | None = None) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def _bybit_rows(batch: MarketBatch) -> list[list]:
    return [
        [
            r["open_time"],
            repr(r["open"]),
            repr(r["high"]),
            repr(r["low"]),
            repr(r["close"]),
            repr(r["volume"]),
            repr(r["volume"] * r["close"]),
        ]
        for r in _rows(batch)
    ]


def _binance_rows(batch: MarketBatch, unit: int = 1) -> list[list]:
    return [
        [
            r["open_time"] * unit,
            repr(r["open"]),
            repr(r["high"]),
            repr(r["low"]),
            repr(r["close"]),
            repr(r["volume"]),
            (r["open_time"] + TF_MS) * unit - 1,
            repr(r["volume"] * r["close"]),
            1234,
            repr(r["volume"] / 2),
            "1.0",
            "0",
        ]
        for r in _rows(batch)
    ]


def _iso(ms: int, suffix: str = "Z", sep: str = "T") -> str:
    return (
        dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime(f"%Y-%m-%d{sep}%H:%M:%S") + suffix
    )


def _read(path: Path, **kwargs: object) -> pa.Table:
    return read_market_file(path, "BTCUSDT", "15m", **kwargs)  # type: ignore[arg-type]


# --- accepted layouts ----------------------------------------------------------------------------


def test_bybit_export_without_header(tmp_path: Path, reference: MarketBatch) -> None:
    path = _write_csv(tmp_path / "a.csv", _bybit_rows(reference))
    assert _read(path).equals(reference.ohlcv)


def test_bybit_export_with_header_newest_first(tmp_path: Path, reference: MarketBatch) -> None:
    header = ["startTime", "openPrice", "highPrice", "lowPrice", "closePrice", "volume", "turnover"]
    path = _write_csv(tmp_path / "a.csv", _bybit_rows(reference)[::-1], header)
    assert _read(path).equals(reference.ohlcv)


def test_binance_dump_headerless_and_with_header(tmp_path: Path, reference: MarketBatch) -> None:
    plain = _write_csv(tmp_path / "plain.csv", _binance_rows(reference))
    headed = _write_csv(tmp_path / "headed.csv", _binance_rows(reference), BINANCE_HEADER)
    assert _read(plain).equals(reference.ohlcv)
    assert _read(headed).equals(reference.ohlcv)


def test_binance_spot_microseconds(tmp_path: Path, reference: MarketBatch) -> None:
    path = _write_csv(tmp_path / "us.csv", _binance_rows(reference, unit=1000))
    assert _read(path).equals(reference.ohlcv)


def test_seconds_and_iso_timestamps(tmp_path: Path, reference: MarketBatch) -> None:
    rows = _rows(reference)
    values = [[repr(r[k]) for k in ("open", "high", "low", "close", "volume")] for r in rows]
    header = ["timestamp", "open", "high", "low", "close", "volume"]
    seconds = _write_csv(
        tmp_path / "s.csv",
        [[r["open_time"] // 1000, *v] for r, v in zip(rows, values, strict=True)],
        header,
    )
    iso_z = _write_csv(
        tmp_path / "z.csv",
        [[_iso(r["open_time"]), *v] for r, v in zip(rows, values, strict=True)],
        header,
    )
    iso_naive = _write_csv(
        tmp_path / "n.csv",
        [[_iso(r["open_time"], "", " "), *v] for r, v in zip(rows, values, strict=True)],
        ["Date", "Open", "High", "Low", "Close", "Volume"],
    )
    iso_offset = _write_csv(  # +01:00 offsets are converted to UTC
        tmp_path / "o.csv",
        [
            [_iso(r["open_time"] + 3_600_000, "+01:00"), *v]
            for r, v in zip(rows, values, strict=True)
        ],
        header,
    )
    for path in (seconds, iso_z, iso_naive, iso_offset):
        assert _read(path).equals(reference.ohlcv), path.name


def test_parquet_with_int_and_timestamp_columns(tmp_path: Path, reference: MarketBatch) -> None:
    ints = tmp_path / "a.parquet"
    pq.write_table(reference.ohlcv, ints)
    stamped = tmp_path / "b.parquet"
    table = reference.ohlcv.set_column(
        0, "datetime", reference.ohlcv.column("open_time").cast(pa.timestamp("ms", tz="UTC"))
    )
    pq.write_table(table, stamped)
    assert _read(ints).equals(reference.ohlcv)
    assert _read(stamped).equals(reference.ohlcv)


def test_compressed_csv(tmp_path: Path, reference: MarketBatch) -> None:
    plain = _write_csv(tmp_path / "BTCUSDT-15m-2024-01-01.csv", _binance_rows(reference))
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    zipped = tmp_path / "BTCUSDT-15m-2024-01-01.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(plain, plain.name)
    assert _read(gz).equals(reference.ohlcv)
    assert _read(zipped).equals(reference.ohlcv)


def test_explicit_column_map(tmp_path: Path, reference: MarketBatch) -> None:
    rows = _bybit_rows(reference)
    odd = _write_csv(
        tmp_path / "odd.csv",
        [[r[0], r[4], r[2], r[3], r[1], r[5]] for r in rows],
        ["ts_ms", "last", "hi", "lo", "first", "qty"],
    )
    mapping = {
        "open_time": "ts_ms",
        "open": "first",
        "high": "hi",
        "low": "lo",
        "close": "last",
        "volume": "qty",
    }
    assert _read(odd, column_map=mapping).equals(reference.ohlcv)
    eight = _write_csv(tmp_path / "eight.csv", [["x", *r] for r in rows])  # 8 columns
    by_index = {"open_time": 1, "open": 2, "high": 3, "low": 4, "close": 5, "volume": 6}
    assert _read(eight, column_map=by_index, has_header=False).equals(reference.ohlcv)
    with pytest.raises(MarketDataError, match="column_map names column 'nope'"):
        _read(odd, column_map={**mapping, "close": "nope"})


def test_file_source_merges_files_and_reads_funding_oi_and_mark(
    tmp_path: Path, week_source: SyntheticSource
) -> None:
    expected = week_source.fetch("BTCUSDT", "15m", T0, T0 + 2 * DAY)
    day1 = week_source.fetch("BTCUSDT", "15m", T0, T0 + DAY + TF_MS)  # one bar overlaps day 2
    day2 = week_source.fetch("BTCUSDT", "15m", T0 + DAY, T0 + 2 * DAY)
    folder = tmp_path / "dumps"
    (folder / "binance").mkdir(parents=True)
    _write_csv(folder / "binance" / "BTCUSDT-15m-2024-01-01.csv", _binance_rows(day1))
    _write_csv(folder / "binance" / "BTCUSDT-15m-2024-01-02.csv", _binance_rows(day2))
    _write_csv(folder / "BTCUSDT-1h-2024-01-01.csv", [])  # another timeframe: ignored
    _write_csv(
        folder / "BTCUSDT_funding.csv",
        [["BTCUSDT", repr(r["rate"]), r["funding_time"]] for r in expected.funding.to_pylist()],
        ["symbol", "fundingRate", "fundingRateTimestamp"],
    )
    _write_csv(
        folder / "BTCUSDT_open_interest.csv",
        [[r["ts"], repr(r["open_interest"])] for r in expected.open_interest.to_pylist()],
        ["timestamp", "openInterest"],
    )
    _write_csv(
        folder / "BTCUSDT_mark_15m.csv",
        [[r["open_time"], "1", "2", "0.5", repr(r["close"])] for r in expected.mark.to_pylist()],
    )
    source = FileSource(folder)
    got = source.fetch("BTCUSDT", "15m", T0, T0 + 2 * DAY)
    for table in ("ohlcv", "mark", "funding", "open_interest"):
        assert getattr(got, table).equals(getattr(expected, table)), table
    inner = source.fetch("BTCUSDT", "15m", T0 + 6 * 3_600_000, T0 + 7 * 3_600_000)
    assert inner.bars == 4 and inner.funding.num_rows == 0 and inner.open_interest.num_rows == 1


def test_file_source_errors(tmp_path: Path, week_source: SyntheticSource) -> None:
    with pytest.raises(MarketDataError, match="does not exist"):
        FileSource(tmp_path / "missing").fetch("BTCUSDT", "15m", T0, T0 + DAY)
    with pytest.raises(MarketDataError, match=r"no BTCUSDT 15m bar files in .*BTCUSDT_15m.csv"):
        FileSource(tmp_path).fetch("BTCUSDT", "15m", T0, T0 + DAY)
    batch = week_source.fetch("BTCUSDT", "15m", T0, T0 + DAY)
    rows = _bybit_rows(batch)
    _write_csv(tmp_path / "BTCUSDT_15m_a.csv", rows)
    changed = [list(r) for r in rows[:3]]
    changed[2][4] = repr(float(changed[2][4]) * 1.0001)
    changed[2][2] = repr(float(changed[2][2]) * 1.01)
    _write_csv(tmp_path / "BTCUSDT_15m_b.csv", changed)
    with pytest.raises(MarketDataError, match=r"BTCUSDT_15m_b.csv: open_time .* also appears in"):
        FileSource(tmp_path).fetch("BTCUSDT", "15m", T0, T0 + DAY)


# --- malformed files -----------------------------------------------------------------------------


@pytest.fixture
def binance_rows(reference: MarketBatch) -> list[list]:
    return _binance_rows(reference)


def _expect_error(path: Path, *fragments: str, **kwargs: object) -> str:
    with pytest.raises(MarketDataError) as info:
        _read(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_bad_header(tmp_path: Path, binance_rows: list[list]) -> None:
    no_close = [r[:4] + [r[5]] for r in binance_rows]
    path = _write_csv(tmp_path / "h.csv", no_close, ["open_time", "open", "high", "low", "volume"])
    _expect_error(path, "line 1", "header has no column for close")


def test_ohlc_inconsistent_row(tmp_path: Path, binance_rows: list[list]) -> None:
    binance_rows[5][2] = repr(float(binance_rows[5][4]) * 0.5)  # high below close
    path = _write_csv(tmp_path / "x.csv", binance_rows, BINANCE_HEADER)
    _expect_error(path, "line 7:", "OHLC inconsistent")  # header + 0-based row 5


def test_non_numeric_value(tmp_path: Path, binance_rows: list[list]) -> None:
    binance_rows[3][4] = "12o.5"
    path = _write_csv(tmp_path / "x.csv", binance_rows)
    _expect_error(path, "line 4:", "close", "'12o.5' is not a number")


def test_unsorted_rows(tmp_path: Path, binance_rows: list[list]) -> None:
    binance_rows[10], binance_rows[11] = binance_rows[11], binance_rows[10]
    path = _write_csv(tmp_path / "x.csv", binance_rows, BINANCE_HEADER)
    _expect_error(path, "line 13:", "goes backwards")


def test_duplicate_row_and_blank_lines_keep_line_numbers(
    tmp_path: Path, binance_rows: list[list]
) -> None:
    rows = binance_rows[:5] + [[]] + binance_rows[5:8] + [binance_rows[7]] + binance_rows[8:]
    path = _write_csv(tmp_path / "x.csv", rows)
    # the repeated row is the 10th row written, a blank line sits above it
    _expect_error(path, "line 10:", "duplicate open_time")


def test_implausible_and_unparseable_timestamps(tmp_path: Path, binance_rows: list[list]) -> None:
    binance_rows[2][0] = 12345
    _expect_error(_write_csv(tmp_path / "a.csv", binance_rows), "line 3:", "not a plausible")
    binance_rows[2][0] = "2024-13-45T00:00:00Z"
    _expect_error(
        _write_csv(tmp_path / "b.csv", binance_rows), "line 3:", "mixes epoch numbers and date"
    )
    iso = [[_iso(T0 + i * TF_MS), *r[1:6]] for i, r in enumerate(binance_rows)]
    iso[4][0] = "yesterday"
    _expect_error(
        _write_csv(tmp_path / "c.csv", iso, ["time", "o", "h", "l", "c", "v"]),
        "line 6:",
        "'yesterday' is not an epoch number or an ISO-8601",
    )


def test_off_grid_and_wrong_timeframe(tmp_path: Path, binance_rows: list[list]) -> None:
    shifted = [list(r) for r in binance_rows]
    shifted[6][0] += 60_000
    shifted[6][6] += 60_000
    _expect_error(_write_csv(tmp_path / "a.csv", shifted), "line 7:", "15-minute grid")
    minute = [list(r) for r in binance_rows]
    for r in minute:
        r[6] = r[0] + 60_000 - 1
    _expect_error(_write_csv(tmp_path / "b.csv", minute), "line 1:", "15m bars last 900000 ms")


def test_unknown_layout_and_empty_files(tmp_path: Path, binance_rows: list[list]) -> None:
    eight = _write_csv(tmp_path / "a.csv", [r[:8] for r in binance_rows])
    _expect_error(eight, "line 1:", "headerless ohlcv file with 8 columns")
    empty = tmp_path / "e.csv"
    empty.write_text("")
    _expect_error(empty, "empty")
    header_only = _write_csv(tmp_path / "h.csv", [], BINANCE_HEADER)
    _expect_error(header_only, "header but no rows")
    other = tmp_path / "x.json"
    other.write_text("{}")
    _expect_error(other, "unsupported file type")


def test_parquet_errors_name_the_row(tmp_path: Path, reference: MarketBatch) -> None:
    volume = reference.ohlcv.column("volume").to_numpy().copy()
    volume[8] = -1.0
    path = tmp_path / "bad.parquet"
    pq.write_table(reference.ohlcv.set_column(5, "volume", pa.array(volume)), path)
    _expect_error(path, "row 9:", "negative volume")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 not really")
    _expect_error(garbage, "not a readable Parquet file")


def test_large_file_reads_quickly_enough_to_be_practical(
    tmp_path: Path, week_source: SyntheticSource
) -> None:
    batch = week_source.fetch_all("ETHUSDT", "1m")  # 8640 rows
    path = _write_csv(tmp_path / "big.csv", _binance_rows_1m(batch))
    table = read_market_file(path, "ETHUSDT", "1m")
    assert table.equals(batch.ohlcv)
    np.testing.assert_array_equal(np.diff(table.column("open_time").to_numpy()), 60_000)


def _binance_rows_1m(batch: MarketBatch) -> list[list]:
    return [
        [
            r["open_time"],
            repr(r["open"]),
            repr(r["high"]),
            repr(r["low"]),
            repr(r["close"]),
            repr(r["volume"]),
            r["open_time"] + 59_999,
            "0",
            1,
            "0",
            "0",
            "0",
        ]
        for r in _rows(batch)
    ]
