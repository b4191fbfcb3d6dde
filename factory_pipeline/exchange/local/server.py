"""The HTTP side of the local exchange: a threaded ``http.server`` on 127.0.0.1.

Per request: log it, apply an injected fault (which may answer instead, delay, drop the reply
or skew the clock), look the route up (public routes answer as they are; private routes are
authenticated, rate limited per key with ``X-Bapi-Limit*`` headers, then handled under the
state lock after bars up to the clock are processed), then write the snapshot if something
changed. Nothing here knows about orders or prices.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from factory_pipeline.exchange.local import market_routes, trading_routes  # noqa: F401 (routes)
from factory_pipeline.exchange.local.auth import authenticate
from factory_pipeline.exchange.local.faults import Fault, immediate_reply, rate_limit_reply
from factory_pipeline.exchange.local.protocol import (
    MUTATING,
    PRIVATE_ROUTES,
    ROUTES,
    Reply,
    VenueError,
    envelope,
    error,
)
from factory_pipeline.exchange.local.state import (
    LOCAL_API_KEY,
    LOCAL_API_SECRET,
    LocalExchangeState,
)
from factory_pipeline.market.source import MarketBatch
from factory_pipeline.store.db import Store

log = logging.getLogger(__name__)


class LocalExchangeServer(ThreadingHTTPServer):
    """Threaded HTTP server on 127.0.0.1 serving the routes from a :class:`LocalExchangeState`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: LocalExchangeState | None = None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _RequestHandler)
        self.state = state if state is not None else LocalExchangeState()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("local exchange: request from %s failed", client_address, exc_info=True)

    def start(self) -> LocalExchangeServer:
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="local-exchange", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.state.path is not None:
            self.state.compact()


@contextmanager
def run_local_exchange(
    state: LocalExchangeState | None = None, *, port: int = 0
) -> Iterator[LocalExchangeServer]:
    """Start the exchange in a background thread; yields the server (``.url``, ``.state``)."""
    server = LocalExchangeServer(state, port=port).start()
    try:
        yield server
    finally:
        server.stop()


def serve(
    *,
    store: Store | None = None,
    snapshot: str | Path | None = None,
    timeframe: str = "15m",
    port: int = 8765,
    api_key: str = LOCAL_API_KEY,
    api_secret: str = LOCAL_API_SECRET,
    usdt: float = 10_000.0,
    batches: list[MarketBatch] | tuple[MarketBatch, ...] = (),
    stop_event: threading.Event | None = None,
    on_ready: Callable[[LocalExchangeServer], None] | None = None,
) -> None:
    """Run the exchange in the foreground until SIGINT/SIGTERM (or ``stop_event`` is set).

    For ``factory exchange serve``: trades on ``store``'s ``timeframe`` bars (and/or
    ``batches``), persists to ``snapshot`` (e.g. ``<data_dir>/exchange/state.json``), with one
    account ``api_key``/``api_secret`` funded with ``usdt`` when it does not exist yet.
    ``on_ready`` is called with the running server (tests use it to learn the port).
    """
    state = LocalExchangeState.open(snapshot) if snapshot else LocalExchangeState()
    if store is not None:
        state.use_store(store, timeframe)
    for batch in batches:
        state.load(batch)
    state.add_account(api_key, api_secret, usdt)
    stop = stop_event or threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    server = LocalExchangeServer(state, port=port).start()
    log.info("local exchange listening on %s", server.url)
    print(f"local exchange listening on {server.url} (api key {api_key})", flush=True)
    if on_ready is not None:
        on_ready(server)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalExchangeServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # answers go out in one piece: without this, Nagle + delayed ACK add ~40 ms per reply
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

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
        state.log_request(parts.path, query)
        fault = state.take_fault(parts.path)
        reply = immediate_reply(state, fault, parts.path) if fault is not None else None
        if reply is None:
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.delay_s)
            reply = self._dispatch(state, method, parts.path, parts.query, query, body, fault)
            if fault is not None and fault.kind == "drop_reply":
                reply.drop = True
        self._send(reply)

    def _dispatch(
        self,
        state: LocalExchangeState,
        method: str,
        path: str,
        raw_query: str,
        query: dict[str, str],
        body: bytes,
        fault: Fault | None,
    ) -> Reply:
        key = (method, path)
        private = PRIVATE_ROUTES.get(key)
        if private is None:
            handler = ROUTES.get(key)
            if handler is None:
                return Reply(status=404, body=b"404 page not found")
            try:
                with state.lock:
                    state.sync()
                    return handler(state, query, body)
            except Exception:  # a bug must not look like a dropped reply to the client
                log.exception("local exchange: %s %s failed", method, path)
                return error(state, 10016, "Internal server error")
        payload = raw_query if method == "GET" else body.decode("utf-8", errors="replace")
        skew = fault.offset_ms if fault is not None and fault.kind == "clock_skew" else 0
        headers = {k.upper(): v for k, v in self.headers.items()}
        try:
            with state.lock:
                account = authenticate(state, headers, payload, skew_ms=skew)
        except VenueError as exc:
            return error(state, exc.ret_code, exc.message)
        allowed, limit, remaining, reset = state.take_rate_slot(account.api_key)
        if not allowed:
            return rate_limit_reply(state, limit, remaining, reset)
        limit_headers = (
            {
                "X-Bapi-Limit": str(limit),
                "X-Bapi-Limit-Status": str(remaining),
                "X-Bapi-Limit-Reset-Timestamp": str(reset),
            }
            if limit
            else {}
        )
        if method == "GET":
            params: dict[str, Any] = dict(query)
        else:
            try:
                params = json.loads(body or b"{}")
            except ValueError:
                return error(state, 10001, "params error: request body is not JSON")
            if not isinstance(params, dict):
                return error(state, 10001, "params error: request body must be a JSON object")
        with state.lock:
            try:
                state.sync()
                result = private(state, account, params)
                reply = Reply(body=envelope(0, "OK", result, state.clock()))
            except VenueError as exc:
                reply = Reply(body=envelope(exc.ret_code, exc.message, {}, state.clock()))
            except Exception:
                log.exception("local exchange: %s %s failed", method, path)
                reply = Reply(body=envelope(10016, "Internal server error", {}, state.clock()))
            if key in MUTATING or state.dirty:
                state.save_if_dirty()
        reply.headers.update(limit_headers)
        return reply

    def _send(self, reply: Reply) -> None:
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        content_type = "application/json" if isinstance(reply.body, dict) else "text/html"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self._headers_buffer.append(b"\r\n" + payload)  # headers and body in one write
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.flush_headers()  # fails when the client gave up (a timeout test)
