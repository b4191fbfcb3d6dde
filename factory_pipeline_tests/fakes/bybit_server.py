"""A fake Bybit v5 REST server on 127.0.0.1 for tests, driven by the real pybit client.

Structure: :class:`FakeBybitState` holds the data (market batches, instruments, clock) and the
fault queue; :data:`ROUTES` maps ``(method, path)`` to a handler ``(state, query, body) ->
Reply``; :class:`FakeBybitServer` is a threaded ``http.server`` that looks routes up. Trading
routes are added later by registering more handlers (``register_route``) and extending the
state; nothing in the server itself is market-data specific.

Market routes (public, unsigned), answering like Bybit (``{"retCode":0,"retMsg":"OK","result":
{...},"retExtInfo":{},"time":ms}``, lists newest first):

- ``GET /v5/market/time``
- ``GET /v5/market/kline`` (``start``/``end`` inclusive, ``limit`` 1..1000, default 200)
- ``GET /v5/market/mark-price-kline``
- ``GET /v5/market/funding/history`` (``limit`` 1..200; a lone ``startTime`` is rejected)
- ``GET /v5/market/open-interest`` (``intervalTime``, ``limit`` 1..200, ``cursor``)
- ``GET /v5/market/instruments-info``

Fault injection (``state.inject``): the next N matching requests answer retCode 10006 with an
``X-Bapi-Limit-Reset-Timestamp`` header, a malformed page, HTTP 5xx, or are delayed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from factory_pipeline.market.source import MarketBatch
from factory_pipeline.market.timeframes import BYBIT_INTERVALS, DAY_MS, MINUTE_MS, timeframe_ms

_INTERVAL_TO_TIMEFRAME = {v: k for k, v in BYBIT_INTERVALS.items()}
_OI_INTERVALS_MS = {
    "5min": 5 * MINUTE_MS,
    "15min": 15 * MINUTE_MS,
    "30min": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "1d": DAY_MS,
}


@dataclass
class Reply:
    """An HTTP answer: status, JSON body (dict) or raw bytes, extra headers."""

    status: int = 200
    body: dict[str, Any] | bytes = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """Answer the next ``count`` requests matching ``path`` (None: any) with ``kind``.

    Kinds: ``rate_limit`` (retCode 10006; reset header ``reset_after_ms`` from now, may be
    negative to imitate a reset time already past), ``malformed`` (a page whose list holds a
    broken row), ``bad_json`` (a body that is not JSON), ``http_error`` (HTTP ``status``),
    ``delay`` (sleep ``delay_s`` then answer normally). ``after`` lets that many matching
    requests through first (e.g. ``after=1``: the second page is the broken one).
    """

    kind: str
    count: int = 1
    path: str | None = None
    after: int = 0
    status: int = 503
    delay_s: float = 0.0
    reset_after_ms: int = 50


@dataclass
class FakeBybitState:
    """Everything the fake exchange knows; handlers read and mutate it under ``lock``."""

    batches: dict[tuple[str, str], MarketBatch] = field(default_factory=dict)
    instruments: dict[str, dict[str, Any]] = field(default_factory=dict)
    now_ms: int | None = None  # fixed server clock; None = wall clock
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def load(self, batch: MarketBatch, **instrument: Any) -> None:
        """Serve ``batch`` (klines of its timeframe, mark, funding, open interest)."""
        with self.lock:
            self.batches[(batch.symbol, batch.timeframe)] = batch
            if batch.symbol not in self.instruments:
                self.instruments[batch.symbol] = default_instrument(batch.symbol, **instrument)

    def inject(self, kind: str, count: int = 1, path: str | None = None, **options: Any) -> None:
        with self.lock:
            self.faults.append(Fault(kind=kind, count=count, path=path, **options))

    def clock(self) -> int:
        return self.now_ms if self.now_ms is not None else int(time.time() * 1000)

    def requests_to(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [q for p, q in self.requests if p == path]

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and (fault.path is None or fault.path == path):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def batch_for(self, symbol: str, timeframe: str | None = None) -> MarketBatch | None:
        with self.lock:
            if timeframe is not None:
                return self.batches.get((symbol, timeframe))
            for (sym, _), batch in self.batches.items():
                if sym == symbol:
                    return batch
        return None


Handler = Callable[[FakeBybitState, dict[str, str], bytes], Reply]
ROUTES: dict[tuple[str, str], Handler] = {}


def register_route(method: str, path: str) -> Callable[[Handler], Handler]:
    """Decorator adding a handler to :data:`ROUTES` (later issues add trading routes)."""

    def wrap(handler: Handler) -> Handler:
        ROUTES[(method, path)] = handler
        return handler

    return wrap


def ok(state: FakeBybitState, result: dict[str, Any]) -> Reply:
    return Reply(
        body={
            "retCode": 0,
            "retMsg": "OK",
            "result": result,
            "retExtInfo": {},
            "time": state.clock(),
        }
    )


def error(state: FakeBybitState, code: int, message: str, **headers: str) -> Reply:
    return Reply(
        body={
            "retCode": code,
            "retMsg": message,
            "result": {},
            "retExtInfo": {},
            "time": state.clock(),
        },
        headers=headers,
    )


def default_instrument(symbol: str, **overrides: Any) -> dict[str, Any]:
    """A linear-perpetual instrument record shaped like Bybit's."""
    record: dict[str, Any] = {
        "symbol": symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": symbol.removesuffix("USDT"),
        "quoteCoin": "USDT",
        "settleCoin": "USDT",
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "priceScale": "2",
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
        "lotSizeFilter": {
            "maxOrderQty": "1190.000",
            "minOrderQty": "0.001",
            "qtyStep": "0.001",
            "postOnlyMaxOrderQty": "1190.000",
            "maxMktOrderQty": "500.000",
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
    }
    record.update(overrides)
    return record


# --- market routes -----------------------------------------------------------------------------


@register_route("GET", "/v5/market/time")
def _time(state: FakeBybitState, query: dict[str, str], body: bytes) -> Reply:
    now = state.clock()
    return ok(state, {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})


@register_route("GET", "/v5/market/instruments-info")
def _instruments(state: FakeBybitState, query: dict[str, str], body: bytes) -> Reply:
    symbol = query.get("symbol")
    with state.lock:
        items = [v for k, v in sorted(state.instruments.items()) if symbol in (None, k)]
    return ok(
        state, {"category": query.get("category", "linear"), "list": items, "nextPageCursor": ""}
    )


@register_route("GET", "/v5/market/kline")
def _kline(state: FakeBybitState, query: dict[str, str], body: bytes) -> Reply:
    return _klines(state, query, mark=False)


@register_route("GET", "/v5/market/mark-price-kline")
def _mark_kline(state: FakeBybitState, query: dict[str, str], body: bytes) -> Reply:
    return _klines(state, query, mark=True)


@register_route("GET", "/v5/market/funding/history")
def _funding(state: FakeBybitState, query: dict[str, str], body: bytes) -> Reply:
    symbol = query.get("symbol", "")
    if "startTime" in query and "endTime" not in query:
        return error(state, 10001, "params error: endTime is required with startTime")
    limit = _limit(query, 200, 200)
    if limit is None:
        return error(state, 10001, "params error: limit must be in [1, 200]")
    batch = state.batch_for(symbol)
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
def _open_interest(state: FakeBybitState, query: dict[str, str], body: bytes) -> Reply:
    symbol = query.get("symbol", "")
    interval_ms = _OI_INTERVALS_MS.get(query.get("intervalTime", ""))
    if interval_ms is None:
        return error(state, 10001, "params error: intervalTime invalid")
    limit = _limit(query, 50, 200)
    if limit is None:
        return error(state, 10001, "params error: limit must be in [1, 200]")
    batch = state.batch_for(symbol)
    if batch is None:
        return error(state, 10001, "params error: symbol invalid")
    times = batch.open_interest.column("ts").to_numpy()
    values = batch.open_interest.column("open_interest").to_numpy()
    lo = int(query.get("startTime", 0))
    hi = int(query.get("endTime", state.clock()))
    idx = np.flatnonzero((times >= lo) & (times <= hi) & (times % interval_ms == 0))[::-1]
    offset = _decode_cursor(query.get("cursor", ""))
    page = idx[offset : offset + limit]
    more = offset + limit < idx.shape[0]
    items = [{"openInterest": _num(values[i]), "timestamp": str(int(times[i]))} for i in page]
    return ok(
        state,
        {
            "symbol": symbol,
            "category": query.get("category", "linear"),
            "list": items,
            "nextPageCursor": _encode_cursor(offset + limit) if more else "",
        },
    )


def _klines(state: FakeBybitState, query: dict[str, str], *, mark: bool) -> Reply:
    symbol = query.get("symbol", "")
    timeframe = _INTERVAL_TO_TIMEFRAME.get(query.get("interval", ""))
    if timeframe is None:
        return error(state, 10001, "params error: interval invalid")
    limit = _limit(query, 200, 1000)
    if limit is None:
        return error(state, 10001, "params error: limit must be in [1, 1000]")
    batch = state.batch_for(symbol, timeframe)
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


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset={offset}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode().split("=", 1)[1])
    except (ValueError, IndexError):
        return 0


# --- the HTTP server ---------------------------------------------------------------------------


class FakeBybitServer(ThreadingHTTPServer):
    """Threaded HTTP server on 127.0.0.1 serving :data:`ROUTES` from a :class:`FakeBybitState`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: FakeBybitState | None = None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _RequestHandler)
        self.state = state or FakeBybitState()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients that time out on purpose close their sockets; stay quiet

    def start(self) -> FakeBybitServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fake-bybit", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@contextmanager
def run_fake_bybit(
    batches: list[MarketBatch] | tuple[MarketBatch, ...] = (),
    *,
    now_ms: int | None = None,
) -> Iterator[FakeBybitServer]:
    """Start a fake Bybit serving ``batches``; yields the server (``.url``, ``.state``)."""
    state = FakeBybitState(now_ms=now_ms)
    for batch in batches:
        state.load(batch)
    server = FakeBybitServer(state).start()
    try:
        yield server
    finally:
        server.stop()


class _RequestHandler(BaseHTTPRequestHandler):
    server: FakeBybitServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return  # keep test output quiet

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        state = self.server.state
        with state.lock:
            state.requests.append((parts.path, query))
        reply = self._fault_reply(state, parts.path)
        if reply is None:
            handler = ROUTES.get((method, parts.path))
            if handler is None:
                reply = Reply(status=404, body=b"404 page not found")
            else:
                reply = handler(state, query, body)
        self._send(reply)

    def _fault_reply(self, state: FakeBybitState, path: str) -> Reply | None:
        fault = state.take_fault(path)
        if fault is None:
            return None
        if fault.kind == "delay":
            time.sleep(fault.delay_s)
            return None
        if fault.kind == "rate_limit":
            reset = int(time.time() * 1000) + fault.reset_after_ms  # wall clock, like Bybit
            return error(
                state,
                10006,
                "Too many visits!",
                **{
                    "X-Bapi-Limit": "10",
                    "X-Bapi-Limit-Status": "0",
                    "X-Bapi-Limit-Reset-Timestamp": str(reset),
                },
            )
        if fault.kind == "http_error":
            return Reply(status=fault.status, body=b"<html>upstream error</html>")
        if fault.kind == "bad_json":
            return Reply(status=200, body=b'{"retCode":0,"result":{"list":[')
        if fault.kind == "malformed":
            broken: dict[str, Any] = {
                "list": [["1704067200000", "not-a-number"]],
                "nextPageCursor": "",
            }
            if path in ("/v5/market/funding/history", "/v5/market/open-interest"):
                broken["list"] = [{"fundingRate": "0.0001"}]
            return ok(state, broken)
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _send(self, reply: Reply) -> None:
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        content_type = "application/json" if isinstance(reply.body, dict) else "text/html"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(payload)  # fails when the client gave up (a timeout test)
