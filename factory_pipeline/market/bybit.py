"""Bybit v5 public market data through the real pybit client.

Fetches, for one linear perpetual and a range ``[start_ms, end_ms)``:

- klines (``get_kline``, newest first, up to 1000 per page) and mark-price klines
  (``get_mark_price_kline``), paging backwards by ``end`` until the range start;
- funding settlements (``get_funding_rate_history``, up to 200 per page, backwards by
  ``endTime``; both ``startTime`` and ``endTime`` are always sent since Bybit rejects a lone
  ``startTime``);
- open interest (``get_open_interest``, ``intervalTime`` chosen from the timeframe, ``cursor``
  pagination);
- the instrument (``get_instruments_info``) to reject unknown symbols and clip the range to the
  listing time, and the server time (``get_server_time``) so the still-forming bar is never
  stored.

Rate limits: pybit's own 10006 handling sleeps until ``X-Bapi-Limit-Reset-Timestamp`` and
raises ``ValueError`` when that time is already past (a negative sleep), so the session is
built without 10006 in ``retry_codes`` and this module retries instead: it waits until the
reset time (clamped to ``[0, max_backoff_s]``), or backs off exponentially when the header is
missing. HTTP 5xx answers and network errors (raw ``requests`` exceptions in pybit) are
retried the same way. A page that does not have the documented shape raises
:class:`MarketDataError` naming the endpoint and the page number; since the batch is only
returned when every page parsed, nothing is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.source import MarketBatch, iso_ms, make_batch
from factory_pipeline.market.timeframes import BYBIT_INTERVALS, HOUR_MS, MINUTE_MS, timeframe_ms

KLINE_PAGE = 1000
FUNDING_PAGE = 200
OPEN_INTEREST_PAGE = 200
RATE_LIMIT_CODE = 10006

#: Open-interest sampling used for each bar timeframe (Bybit offers 5min..1d).
OPEN_INTEREST_INTERVALS: dict[str, str] = {
    "1m": "5min",
    "3m": "5min",
    "5m": "5min",
    "15m": "15min",
    "30m": "30min",
    "1h": "1h",
    "2h": "1h",
    "4h": "4h",
    "6h": "4h",
    "12h": "4h",
    "1d": "1d",
    "1w": "1d",
}
_MAX_PAGES = 100_000


class BybitSource:
    """Public Bybit v5 market data for linear perpetuals (no keys needed)."""

    name = "bybit"

    def __init__(
        self,
        base_url: str = "https://api.bybit.com",
        *,
        category: str = "linear",
        session: HTTP | None = None,
        resume_from_ms: int | None = None,
        max_retries: int = 5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``resume_from_ms``, when given, moves every fetch's start forward to it (the bar after
        the last stored one, see ``MarketStore.resume_from_ms``); ``fetch`` also takes it."""
        self.base_url = base_url.rstrip("/")
        self.category = category
        self.resume_from_ms = resume_from_ms
        self.max_retries = max_retries
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self.session = session or HTTP(
            testnet=False,
            timeout=timeout_s,
            max_retries=1,
            retry_codes={10002},  # not 10006: see the module docstring
        )
        self.session.endpoint = self.base_url
        _drop_duplicate_log_handlers()
        self.requests_made = 0

    def fetch(
        self,
        symbol: str,
        timeframe: str,
        start_ms: int,
        end_ms: int,
        *,
        resume_from_ms: int | None = None,
    ) -> MarketBatch:
        """Closed bars, mark bars, funding and open interest in ``[start, end)``.

        The coverage starts at ``max(start_ms, resume_from_ms)``: an incremental fetch replaces
        only what it re-read. The coverage end is cut to the open of the still-forming bar.
        """
        tf_ms = timeframe_ms(timeframe)
        if timeframe not in BYBIT_INTERVALS:
            raise MarketDataError(f"Bybit has no kline interval for timeframe {timeframe!r}")
        resume = resume_from_ms if resume_from_ms is not None else self.resume_from_ms
        start = max(start_ms, resume) if resume is not None else start_ms
        instrument = self.instrument(symbol)
        launch = _int(instrument.get("launchTime", 0) or 0)
        start = max(start, -(-launch // tf_ms) * tf_ms)
        now = self.server_time_ms()
        end = min(end_ms, (now // tf_ms) * tf_ms)
        if end <= start:
            return make_batch(symbol, timeframe, start, max(start, end))
        klines = self._klines("get_kline", symbol, timeframe, start, end)
        marks = self._klines("get_mark_price_kline", symbol, timeframe, start, end)
        funding = self._funding(symbol, start, end)
        oi = self._open_interest(symbol, OPEN_INTEREST_INTERVALS[timeframe], start, end)
        return make_batch(
            symbol,
            timeframe,
            start,
            end,
            ohlcv={
                "open_time": klines[:, 0].astype(np.int64),
                "open": klines[:, 1],
                "high": klines[:, 2],
                "low": klines[:, 3],
                "close": klines[:, 4],
                "volume": klines[:, 5],
            },
            mark={"open_time": marks[:, 0].astype(np.int64), "close": marks[:, 4]},
            funding={"funding_time": funding[:, 0].astype(np.int64), "rate": funding[:, 1]},
            open_interest={"ts": oi[:, 0].astype(np.int64), "open_interest": oi[:, 1]},
        )

    def instrument(self, symbol: str) -> dict[str, Any]:
        """The instrument record; :class:`MarketDataError` when the symbol is not listed."""
        result = self._call("get_instruments_info", 1, category=self.category, symbol=symbol)
        items = _list_of(result, "get_instruments_info", 1)
        match = [i for i in items if isinstance(i, dict) and i.get("symbol") == symbol]
        if not match:
            raise MarketDataError(
                f"Bybit {self.category} has no instrument {symbol!r} ({self.base_url})"
            )
        return match[0]

    def funding_interval_ms(self, symbol: str) -> int:
        """Funding settlement interval from the instrument (minutes on Bybit), default 8 h."""
        minutes = _int(self.instrument(symbol).get("fundingInterval") or 480)
        return minutes * MINUTE_MS if minutes > 0 else 8 * HOUR_MS

    def server_time_ms(self) -> int:
        result = self._call("get_server_time", 1)
        try:
            if "timeNano" in result:
                return int(result["timeNano"]) // 1_000_000
            return int(result["timeSecond"]) * 1000
        except (KeyError, TypeError, ValueError) as exc:
            raise MarketDataError(
                f"Bybit get_server_time page 1: malformed result {result!r}"
            ) from exc

    # --- pagination -----------------------------------------------------------------------------

    def _klines(self, method: str, symbol: str, timeframe: str, start: int, end: int) -> np.ndarray:
        """Rows ``[open_time, open, high, low, close, volume]`` ascending, in ``[start, end)``."""
        width = 6 if method == "get_kline" else 5

        def page_rows(page: int, cursor_end: int) -> np.ndarray:
            result = self._call(
                method,
                page,
                category=self.category,
                symbol=symbol,
                interval=BYBIT_INTERVALS[timeframe],
                start=start,
                end=cursor_end,
                limit=KLINE_PAGE,
            )
            return _parse_rows(_list_of(result, method, page), method, page, width)

        rows = self._walk_back(method, "bar", page_rows, start, end, width)
        if width == 5:  # mark klines have no volume: pad so columns line up with klines
            rows = np.c_[rows, np.zeros(rows.shape[0])]
        return _ascending_unique(rows, start, end)

    def _funding(self, symbol: str, start: int, end: int) -> np.ndarray:
        method = "get_funding_rate_history"

        def page_rows(page: int, cursor_end: int) -> np.ndarray:
            result = self._call(
                method,
                page,
                category=self.category,
                symbol=symbol,
                startTime=start,
                endTime=cursor_end,
                limit=FUNDING_PAGE,
            )
            items = _list_of(result, method, page)
            return _parse_records(items, method, page, ("fundingRateTimestamp", "fundingRate"))

        rows = self._walk_back(method, "settlement", page_rows, start, end, 2)
        return _ascending_unique(rows, start, end)

    @staticmethod
    def _walk_back(
        method: str,
        item: str,
        page_rows: Callable[[int, int], np.ndarray],
        start: int,
        end: int,
        width: int,
    ) -> np.ndarray:
        """Page backwards from ``end`` (Bybit answers newest first, end inclusive) until a page
        reaches ``start`` or comes back empty; a page that does not move back is an error."""
        pages: list[np.ndarray] = []
        cursor_end = end - 1
        oldest_seen: int | None = None
        for page in range(1, _MAX_PAGES):
            rows = page_rows(page, cursor_end)
            if rows.shape[0] == 0:
                break
            oldest = int(rows[:, 0].min())
            if oldest_seen is not None and oldest >= oldest_seen:
                raise MarketDataError(
                    f"Bybit {method} page {page}: pagination does not move back "
                    f"(oldest {item} {iso_ms(oldest)} again)"
                )
            oldest_seen = oldest
            pages.append(rows)
            if oldest <= start:
                break
            cursor_end = oldest - 1
        return _concat(pages, width)

    def _open_interest(self, symbol: str, interval: str, start: int, end: int) -> np.ndarray:
        method = "get_open_interest"
        pages: list[np.ndarray] = []
        cursor: str | None = None
        seen: set[str] = set()
        for page in range(1, _MAX_PAGES):
            params: dict[str, Any] = dict(
                category=self.category,
                symbol=symbol,
                intervalTime=interval,
                startTime=start,
                endTime=end - 1,
                limit=OPEN_INTEREST_PAGE,
            )
            if cursor:
                params["cursor"] = cursor
            result = self._call(method, page, **params)
            items = _list_of(result, method, page)
            pages.append(_parse_records(items, method, page, ("timestamp", "openInterest")))
            cursor = result.get("nextPageCursor") or None
            if not items or not cursor:
                break
            if not isinstance(cursor, str) or cursor in seen:
                raise MarketDataError(f"Bybit {method} page {page}: cursor {cursor!r} repeats")
            seen.add(cursor)
        return _ascending_unique(_concat(pages, 2), start, end)

    # --- one request with retries ---------------------------------------------------------------

    def _call(self, method: str, page: int, **params: Any) -> dict[str, Any]:
        """Call a pybit method; retry rate limits, 5xx and network errors; return ``result``."""
        where = f"Bybit {method} page {page} ({self.base_url})"
        attempt = 0
        while True:
            attempt += 1
            self.requests_made += 1
            try:
                response = getattr(self.session, method)(**params)
            except InvalidRequestError as exc:
                if exc.status_code != RATE_LIMIT_CODE or attempt > self.max_retries:
                    raise MarketDataError(
                        f"{where}: rejected with retCode {exc.status_code}: {exc.message}"
                    ) from exc
                self.sleep(self._rate_limit_wait(exc.resp_headers, attempt))
                continue
            except FailedRequestError as exc:
                retryable = isinstance(exc.status_code, int) and exc.status_code >= 500
                if not retryable or attempt > self.max_retries:
                    raise MarketDataError(
                        f"{where}: request failed (HTTP {exc.status_code}): {exc.message}"
                    ) from exc
                self.sleep(self._backoff(attempt))
                continue
            except requests.exceptions.RequestException as exc:
                if attempt > self.max_retries:
                    raise MarketDataError(f"{where}: network error: {exc}") from exc
                self.sleep(self._backoff(attempt))
                continue
            if not isinstance(response, dict) or not isinstance(response.get("result"), dict):
                raise MarketDataError(f"{where}: malformed response without a result object")
            return response["result"]

    def _rate_limit_wait(self, headers: Any, attempt: int) -> float:
        """Seconds until the limit resets (never negative, capped), else exponential backoff."""
        reset = None
        if headers is not None:
            reset = headers.get("X-Bapi-Limit-Reset-Timestamp")
        try:
            reset_ms = int(reset) if reset is not None else None
        except (TypeError, ValueError):
            reset_ms = None
        if reset_ms is None:
            return self._backoff(attempt)
        wait = (reset_ms - time.time() * 1000) / 1000
        return min(max(wait, 0.0), self.max_backoff_s)

    def _backoff(self, attempt: int) -> float:
        return min(0.25 * 2 ** (attempt - 1), self.max_backoff_s)


# --- parsing helpers ----------------------------------------------------------------------------


def _list_of(result: dict[str, Any], method: str, page: int) -> list[Any]:
    items = result.get("list")
    if not isinstance(items, list):
        raise MarketDataError(
            f"Bybit {method} page {page}: malformed page, result.list is {type(items).__name__}"
        )
    return items


def _parse_rows(items: list[Any], method: str, page: int, width: int) -> np.ndarray:
    """Kline rows are arrays of strings: time, open, high, low, close[, volume, turnover]."""
    out = np.empty((len(items), width))
    for i, row in enumerate(items):
        if not isinstance(row, list | tuple) or len(row) < width:
            raise MarketDataError(
                f"Bybit {method} page {page}: malformed page, row {i} is {row!r} "
                f"(expected at least {width} fields)"
            )
        try:
            out[i] = [float(v) for v in row[:width]]
        except (TypeError, ValueError) as exc:
            raise MarketDataError(
                f"Bybit {method} page {page}: malformed page, row {i} has a non-numeric field: "
                f"{row!r}"
            ) from exc
    if not np.all(np.isfinite(out)):
        row = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise MarketDataError(
            f"Bybit {method} page {page}: malformed page, row {row} is not finite: {items[row]!r}"
        )
    return out


def _parse_records(items: list[Any], method: str, page: int, keys: tuple[str, str]) -> np.ndarray:
    """Records are objects with string fields: ``(time key, value key)`` -> two columns."""
    out = np.empty((len(items), 2))
    for i, item in enumerate(items):
        try:
            out[i] = [float(item[keys[0]]), float(item[keys[1]])]
        except (KeyError, TypeError, ValueError) as exc:
            raise MarketDataError(
                f"Bybit {method} page {page}: malformed page, record {i} is {item!r} "
                f"(expected {keys[0]} and {keys[1]} as numbers)"
            ) from exc
    if not np.all(np.isfinite(out)):
        row = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise MarketDataError(
            f"Bybit {method} page {page}: malformed page, record {row} is not finite"
        )
    return out


def _concat(pages: list[np.ndarray], width: int) -> np.ndarray:
    return np.concatenate(pages) if pages else np.empty((0, width))


def _ascending_unique(rows: np.ndarray, start: int, end: int) -> np.ndarray:
    """Sorted by time, inside ``[start, end)``, exact repeats (page overlap) dropped once."""
    if rows.shape[0] == 0:
        return rows
    rows = rows[(rows[:, 0] >= start) & (rows[:, 0] < end)]
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    if rows.shape[0] > 1:
        repeat = np.r_[False, np.all(rows[1:] == rows[:-1], axis=1)]
        rows = rows[~repeat]
    return rows


def _drop_duplicate_log_handlers() -> None:
    """pybit adds a stream handler per session when the root logger has none: keep one."""
    logger = logging.getLogger("pybit._http_manager")
    if len(logger.handlers) > 1:
        del logger.handlers[1:]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
