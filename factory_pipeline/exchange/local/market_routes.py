"""Public market routes (unsigned), answering like Bybit v5 (lists newest first).

- ``GET /v5/market/time``
- ``GET /v5/market/kline`` (``start``/``end`` inclusive, ``limit`` 1..1000, default 200)
- ``GET /v5/market/mark-price-kline``
- ``GET /v5/market/funding/history`` (``limit`` 1..200; a lone ``startTime`` is rejected)
- ``GET /v5/market/open-interest`` (``intervalTime``, ``limit`` 1..200, ``cursor``)
- ``GET /v5/market/instruments-info``
- ``GET /v5/market/tickers`` (``lastPrice``/``markPrice`` at the venue clock)

Klines, funding and open interest come from loaded batches, or from the market store when the
venue trades on it (``state.use_store``). Numbers keep full float precision (``repr``).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

from factory_pipeline.exchange.local.protocol import Reply, error, ok, register_route
from factory_pipeline.market.source import MarketBatch, make_batch
from factory_pipeline.market.timeframes import BYBIT_INTERVALS, DAY_MS, MINUTE_MS, timeframe_ms

if TYPE_CHECKING:
    from factory_pipeline.exchange.local.state import LocalExchangeState

_INTERVAL_TO_TIMEFRAME = {v: k for k, v in BYBIT_INTERVALS.items()}
_OI_INTERVALS_MS = {
    "5min": 5 * MINUTE_MS,
    "15min": 15 * MINUTE_MS,
    "30min": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "1d": DAY_MS,
}


@register_route("GET", "/v5/market/time")
def market_time(state: LocalExchangeState, query: dict[str, str], body: bytes) -> Reply:
    now = state.clock()
    return ok(state, {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})


@register_route("GET", "/v5/market/instruments-info")
def instruments(state: LocalExchangeState, query: dict[str, str], body: bytes) -> Reply:
    symbol = query.get("symbol")
    with state.lock:
        items = [v for k, v in sorted(state.instruments.items()) if symbol in (None, k)]
    return ok(
        state, {"category": query.get("category", "linear"), "list": items, "nextPageCursor": ""}
    )


@register_route("GET", "/v5/market/tickers")
def tickers(state: LocalExchangeState, query: dict[str, str], body: bytes) -> Reply:
    symbol = query.get("symbol")
    if symbol is not None and symbol not in state.instruments:
        return error(state, 10001, f"params error: symbol invalid {symbol!r}")
    items = []
    with state.lock:
        for name in sorted(state.instruments):
            if symbol not in (None, name):
                continue
            prices = state.last_price(name)
            if prices is None:
                continue
            last, mark = prices
            items.append(_ticker(name, last, mark))
    return ok(state, {"category": query.get("category", "linear"), "list": items})


@register_route("GET", "/v5/market/kline")
def kline(state: LocalExchangeState, query: dict[str, str], body: bytes) -> Reply:
    return _klines(state, query, mark=False)


@register_route("GET", "/v5/market/mark-price-kline")
def mark_kline(state: LocalExchangeState, query: dict[str, str], body: bytes) -> Reply:
    return _klines(state, query, mark=True)


@register_route("GET", "/v5/market/funding/history")
def funding(state: LocalExchangeState, query: dict[str, str], body: bytes) -> Reply:
    symbol = query.get("symbol", "")
    if "startTime" in query and "endTime" not in query:
        return error(state, 10001, "params error: endTime is required with startTime")
    limit = _limit(query, 200, 200)
    if limit is None:
        return error(state, 10001, "params error: limit must be in [1, 200]")
    batch = _batch(state, symbol)
    if batch is None:
        return error(state, 10001, "params error: symbol invalid")
    times = batch.funding.column("funding_time").to_numpy()
    rates = batch.funding.column("rate").to_numpy()
    lo = int(query.get("startTime", 0))
    hi = int(query.get("endTime", state.clock()))
    idx = np.flatnonzero((times >= lo) & (times <= hi))[::-1][:limit]
    items = [
        {
            "symbol": symbol,
            "fundingRate": _num(rates[i]),
            "fundingRateTimestamp": str(int(times[i])),
        }
        for i in idx
    ]
    return ok(state, {"category": query.get("category", "linear"), "list": items})


@register_route("GET", "/v5/market/open-interest")
def open_interest(state: LocalExchangeState, query: dict[str, str], body: bytes) -> Reply:
    symbol = query.get("symbol", "")
    interval_ms = _OI_INTERVALS_MS.get(query.get("intervalTime", ""))
    if interval_ms is None:
        return error(state, 10001, "params error: intervalTime invalid")
    limit = _limit(query, 50, 200)
    if limit is None:
        return error(state, 10001, "params error: limit must be in [1, 200]")
    batch = _batch(state, symbol)
    if batch is None:
        return error(state, 10001, "params error: symbol invalid")
    times = batch.open_interest.column("ts").to_numpy()
    values = batch.open_interest.column("open_interest").to_numpy()
    lo = int(query.get("startTime", 0))
    hi = int(query.get("endTime", state.clock()))
    idx = np.flatnonzero((times >= lo) & (times <= hi) & (times % interval_ms == 0))[::-1]
    offset = decode_cursor(query.get("cursor", ""))
    page = idx[offset : offset + limit]
    more = offset + limit < idx.shape[0]
    items = [{"openInterest": _num(values[i]), "timestamp": str(int(times[i]))} for i in page]
    return ok(
        state,
        {
            "symbol": symbol,
            "category": query.get("category", "linear"),
            "list": items,
            "nextPageCursor": encode_cursor(offset + limit) if more else "",
        },
    )


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset={offset}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        return max(int(base64.urlsafe_b64decode(cursor.encode()).decode().split("=", 1)[1]), 0)
    except (ValueError, IndexError):
        return 0


# --- helpers ------------------------------------------------------------------------------


def _ticker(symbol: str, last: float, mark: float) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "lastPrice": _num(last),
        "indexPrice": _num(mark),
        "markPrice": _num(mark),
        "prevPrice24h": "",
        "price24hPcnt": "",
        "highPrice24h": "",
        "lowPrice24h": "",
        "prevPrice1h": "",
        "openInterest": "",
        "openInterestValue": "",
        "turnover24h": "",
        "volume24h": "",
        "fundingRate": "",
        "nextFundingTime": "",
        "predictedDeliveryPrice": "",
        "basisRate": "",
        "deliveryFeeRate": "",
        "deliveryTime": "0",
        "ask1Size": "",
        "bid1Price": _num(last),
        "ask1Price": _num(last),
        "bid1Size": "",
        "basis": "",
    }


def _batch(
    state: LocalExchangeState, symbol: str, timeframe: str | None = None
) -> MarketBatch | None:
    """A loaded batch, else the store's data for the symbol as a batch (store-backed venue)."""
    batch = state.batch_for(symbol, timeframe)
    if batch is not None or state.prices is None:
        return batch
    market = state.prices.market
    tf = timeframe or state.prices.timeframe
    ohlcv = market.ohlcv(symbol, tf)
    if ohlcv.num_rows == 0:
        return None
    times = ohlcv.column("open_time").to_numpy()
    return make_batch(
        symbol,
        tf,
        int(times[0]),
        int(times[-1]) + timeframe_ms(tf),
        ohlcv=ohlcv,
        mark=market.mark(symbol, tf),
        funding=market.funding(symbol),
        open_interest=market.open_interest(symbol),
    )


def _klines(state: LocalExchangeState, query: dict[str, str], *, mark: bool) -> Reply:
    symbol = query.get("symbol", "")
    timeframe = _INTERVAL_TO_TIMEFRAME.get(query.get("interval", ""))
    if timeframe is None:
        return error(state, 10001, "params error: interval invalid")
    limit = _limit(query, 200, 1000)
    if limit is None:
        return error(state, 10001, "params error: limit must be in [1, 1000]")
    batch = _batch(state, symbol, timeframe)
    if batch is None:
        return ok(
            state, {"symbol": symbol, "category": query.get("category", "linear"), "list": []}
        )
    table = batch.mark if mark else batch.ohlcv
    times = table.column("open_time").to_numpy()
    hi = int(query.get("end", state.clock()))
    lo = int(query.get("start", hi - limit * timeframe_ms(timeframe)))
    idx = np.flatnonzero((times >= lo) & (times <= hi))[::-1][:limit]
    close = table.column("close").to_numpy()
    if mark:
        rows = [[str(int(times[i]))] + [_num(close[i])] * 4 for i in idx]
    else:
        cols = [table.column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")]
        rows = [
            [str(int(times[i]))] + [_num(c[i]) for c in cols] + [_num(cols[3][i] * cols[4][i])]
            for i in idx
        ]
    return ok(state, {"symbol": symbol, "category": query.get("category", "linear"), "list": rows})


def _limit(query: dict[str, str], default: int, maximum: int) -> int | None:
    try:
        limit = int(query.get("limit", default))
    except ValueError:
        return None
    return limit if 1 <= limit <= maximum else None


def _num(value: float) -> str:
    return repr(float(value))
