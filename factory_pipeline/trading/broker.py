"""The broker protocol and its implementation over pybit's HTTP client (Bybit v5, linear).

Why a protocol: the gateway's rules (ids, ambiguity, retries, risk) are venue-independent and
tested against any :class:`Broker`; :class:`PybitBroker` is the only implementation that talks
to a venue (the local exchange, Bybit demo, Bybit live).

Error translation, so the gateway can decide without parsing pybit messages:

- :class:`VenueRejection` -- the venue answered with a retCode != 0 (pybit's
  ``InvalidRequestError``, ``status_code`` = retCode) or an HTTP 4xx: the request was NOT
  processed. ``reset_ms`` carries ``X-Bapi-Limit-Reset-Timestamp`` for 10006.
- :class:`AmbiguousVenueError` -- timeout, connection error (incl. a reply dropped after the
  venue accepted), HTTP 5xx, an undecodable body: the request MAY have been processed.

pybit's own retries are off: ``max_retries=1`` (one attempt), ``force_retry=False`` and an empty
``retry_codes`` set (pybit otherwise sleeps and re-sends on 10002/10006 by itself). The request
timestamp is ``local clock + time_offset_ms``, resynced from ``/v5/market/time`` by
:meth:`PybitBroker.sync_time` after a 10002.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

from factory_pipeline.errors import ExchangeError

logger = logging.getLogger(__name__)

CATEGORY = "linear"
SETTLE_COIN = "USDT"
#: A clock offset beyond this is a broken clock (or a venue serving a simulated time), not skew.
MAX_CLOCK_OFFSET_MS = 10 * 60 * 1000


class VenueRejection(ExchangeError):
    """The venue refused the request; it was not processed. ``ret_code`` is Bybit's retCode."""

    def __init__(self, message: str, ret_code: int | None, reset_ms: int | None = None) -> None:
        super().__init__(message, ret_code)
        self.reset_ms = reset_ms


class AmbiguousVenueError(ExchangeError):
    """No usable answer: the request may or may not have been processed."""


@dataclass(frozen=True)
class InstrumentRules:
    """Trading filters of one linear instrument (``get_instruments_info``)."""

    symbol: str
    qty_step: float
    min_qty: float
    max_qty: float | None
    min_notional: float
    tick_size: float

    def round_qty(self, qty: float) -> float:
        """Round down to the step (exact decimal arithmetic, so 0.3 stays 0.3)."""
        return _round_to(qty, self.qty_step, ROUND_DOWN)

    def round_price(self, price: float) -> float:
        return _round_to(price, self.tick_size, ROUND_HALF_UP)

    def format_qty(self, qty: float) -> str:
        return _format(qty, self.qty_step)

    def format_price(self, price: float) -> str:
        return _format(price, self.tick_size)


class Broker(Protocol):
    """What the gateway needs from a venue (category linear, one-way mode, USDT settled)."""

    def place_order(self, params: dict[str, Any]) -> dict[str, Any]: ...
    def get_order(self, symbol: str, order_link_id: str) -> dict[str, Any] | None: ...
    def order_history(
        self, *, symbol: str, start_ms: int | None = None
    ) -> list[dict[str, Any]]: ...
    def cancel_order(self, symbol: str, order_link_id: str) -> None: ...
    def amend_order(
        self, symbol: str, order_link_id: str, *, qty: str | None = None, price: str | None = None
    ) -> None: ...
    def cancel_all(self, symbol: str | None = None) -> None: ...
    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]: ...
    def positions(self, symbol: str | None = None) -> list[dict[str, Any]]: ...
    def wallet_equity(self) -> float: ...
    def executions(
        self, *, symbol: str | None = None, order_id: str | None = None, start_ms: int | None = None
    ) -> list[dict[str, Any]]: ...
    def instrument(self, symbol: str) -> InstrumentRules: ...
    def set_leverage(self, symbol: str, leverage: float) -> None: ...
    def mark_price(self, symbol: str) -> float: ...
    def sync_time(self) -> int: ...


class _OffsetHTTP(HTTP):
    """pybit's HTTP with a request timestamp of ``local clock + time_offset_ms``."""

    time_offset_ms: int = 0

    def _prepare_headers(self, payload, recv_window, content_type="application/json"):  # noqa: ANN001, ANN202
        # Same headers as pybit's, with the offset clock (thread-safe: no global patching).
        timestamp = int(time.time() * 1000) + self.time_offset_ms
        signature = self._auth(payload=payload, recv_window=recv_window, timestamp=timestamp)
        return {
            "Content-Type": content_type,
            "X-BAPI-API-KEY": self.api_key,
            "X-BAPI-SIGN": signature,
            "X-BAPI-SIGN-TYPE": "2",
            "X-BAPI-TIMESTAMP": str(timestamp),
            "X-BAPI-RECV-WINDOW": str(recv_window),
        }


class PybitBroker:
    """:class:`Broker` over pybit ``unified_trading.HTTP`` pointed at ``base_url``."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        api_secret: str,
        timeout_s: float = 5.0,
        recv_window_ms: int = 5000,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        session = _OffsetHTTP(
            api_key=api_key,
            api_secret=api_secret,
            timeout=timeout_s,
            recv_window=recv_window_ms,
            force_retry=False,
            max_retries=1,
            retry_delay=0,
            logging_level=logging.WARNING,
        )
        _drop_duplicate_pybit_handlers()
        session.endpoint = self.base_url
        session.retry_codes = set()  # after __post_init__, which fills in pybit's defaults
        session.time_offset_ms = 0
        if _is_loopback(self.base_url):
            # requests re-reads the proxy environment on every send (~0.5 ms a request);
            # proxies never apply to a venue on this machine (the local exchange)
            session.client.trust_env = False
        self.session = session
        self._instruments: dict[str, InstrumentRules] = {}

    # time -----------------------------------------------------------------------------------
    @property
    def time_offset_ms(self) -> int:
        return self.session.time_offset_ms

    def sync_time(self) -> int:
        """Set the request clock offset from ``/v5/market/time``; returns the offset (ms)."""
        before = time.time() * 1000
        reply = self._call(self.session.get_server_time)
        after = time.time() * 1000
        result = reply.get("result") or {}
        if result.get("timeNano"):
            server_ms = int(result["timeNano"]) // 1_000_000
        elif result.get("timeSecond"):
            server_ms = int(result["timeSecond"]) * 1000
        else:
            server_ms = int(reply["time"])
        offset = int(round(server_ms - (before + after) / 2))
        if abs(offset) > MAX_CLOCK_OFFSET_MS:
            raise VenueRejection(
                f"server time {server_ms} differs from the local clock by {offset} ms (more than "
                f"{MAX_CLOCK_OFFSET_MS} ms): not applied; check the system clock",
                None,
            )
        self.session.time_offset_ms = offset
        logger.warning("venue clock resynced: offset %d ms", offset)
        return offset

    # orders ---------------------------------------------------------------------------------
    def place_order(self, params: dict[str, Any]) -> dict[str, Any]:
        reply = self._call(self.session.place_order, category=CATEGORY, **params)
        return reply.get("result") or {}

    def get_order(self, symbol: str, order_link_id: str) -> dict[str, Any] | None:
        """The order with that orderLinkId in any state (open first, then history), or None."""
        for method in (self.session.get_open_orders, self.session.get_order_history):
            reply = self._call(
                method, category=CATEGORY, symbol=symbol, orderLinkId=order_link_id, openOnly=0
            )
            rows = (reply.get("result") or {}).get("list") or []
            for row in rows:
                if row.get("orderLinkId") == order_link_id:
                    return row
        return None

    def order_history(self, *, symbol: str, start_ms: int | None = None) -> list[dict[str, Any]]:
        """Orders of ``symbol`` created since ``start_ms`` (every state), newest first."""
        query: dict[str, Any] = {"category": CATEGORY, "symbol": symbol, "limit": 50}
        if start_ms is not None:
            query["startTime"] = int(start_ms)
        return self._paged(self.session.get_order_history, query)

    def cancel_order(self, symbol: str, order_link_id: str) -> None:
        self._call(
            self.session.cancel_order, category=CATEGORY, symbol=symbol, orderLinkId=order_link_id
        )

    def amend_order(
        self, symbol: str, order_link_id: str, *, qty: str | None = None, price: str | None = None
    ) -> None:
        self._call(
            self.session.amend_order,
            category=CATEGORY,
            symbol=symbol,
            orderLinkId=order_link_id,
            qty=qty,
            price=price,
        )

    def cancel_all(self, symbol: str | None = None) -> None:
        if symbol is None:
            self._call(self.session.cancel_all_orders, category=CATEGORY, settleCoin=SETTLE_COIN)
        else:
            self._call(self.session.cancel_all_orders, category=CATEGORY, symbol=symbol)

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"category": CATEGORY, "openOnly": 0, "limit": 50}
        if symbol is None:
            query["settleCoin"] = SETTLE_COIN
        else:
            query["symbol"] = symbol
        return self._paged(self.session.get_open_orders, query)

    # account --------------------------------------------------------------------------------
    def positions(self, symbol: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"category": CATEGORY, "limit": 200}
        if symbol is None:
            query["settleCoin"] = SETTLE_COIN
        else:
            query["symbol"] = symbol
        return self._paged(self.session.get_positions, query)

    def wallet_equity(self) -> float:
        reply = self._call(self.session.get_wallet_balance, accountType="UNIFIED")
        accounts = (reply.get("result") or {}).get("list") or []
        if not accounts:
            raise VenueRejection("wallet balance: empty account list", None)
        account = accounts[0]
        total = account.get("totalEquity")
        if total not in (None, ""):
            return float(total)
        for coin in account.get("coin") or []:
            if coin.get("coin") == SETTLE_COIN:
                return float(coin.get("equity") or coin.get("walletBalance") or 0.0)
        raise VenueRejection("wallet balance: no USDT equity in the reply", None)

    def executions(
        self, *, symbol: str | None = None, order_id: str | None = None, start_ms: int | None = None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"category": CATEGORY, "limit": 100}
        if symbol is not None:
            query["symbol"] = symbol
        if order_id is not None:
            query["orderId"] = order_id
        if start_ms is not None:
            query["startTime"] = int(start_ms)
        return self._paged(self.session.get_executions, query)

    def instrument(self, symbol: str) -> InstrumentRules:
        cached = self._instruments.get(symbol)
        if cached is not None:
            return cached
        reply = self._call(self.session.get_instruments_info, category=CATEGORY, symbol=symbol)
        rows = (reply.get("result") or {}).get("list") or []
        row = next((r for r in rows if r.get("symbol") == symbol), None)
        if row is None:
            raise VenueRejection(f"instrument {symbol}: not listed on the venue", None)
        lot = row.get("lotSizeFilter") or {}
        price_filter = row.get("priceFilter") or {}
        try:
            rules = InstrumentRules(
                symbol=symbol,
                qty_step=float(lot["qtyStep"]),
                min_qty=float(lot.get("minOrderQty") or lot["qtyStep"]),
                max_qty=float(lot["maxMktOrderQty"]) if lot.get("maxMktOrderQty") else None,
                min_notional=float(lot.get("minNotionalValue") or 0.0),
                tick_size=float(price_filter["tickSize"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VenueRejection(
                f"instrument {symbol}: malformed filters {lot}: {exc}", None
            ) from exc
        self._instruments[symbol] = rules
        return rules

    def set_leverage(self, symbol: str, leverage: float) -> None:
        value = f"{leverage:g}"
        try:
            self._call(
                self.session.set_leverage,
                category=CATEGORY,
                symbol=symbol,
                buyLeverage=value,
                sellLeverage=value,
            )
        except VenueRejection as exc:
            if exc.ret_code != 110043:  # "leverage not modified" is success
                raise

    def mark_price(self, symbol: str) -> float:
        reply = self._call(self.session.get_tickers, category=CATEGORY, symbol=symbol)
        rows = (reply.get("result") or {}).get("list") or []
        if not rows:
            raise VenueRejection(f"ticker {symbol}: empty reply", None)
        row = rows[0]
        return float(row.get("markPrice") or row.get("lastPrice"))

    # plumbing -------------------------------------------------------------------------------
    def _paged(self, method: Any, query: dict[str, Any], max_pages: int = 50) -> list[dict]:
        out: list[dict[str, Any]] = []
        cursor = None
        for _ in range(max_pages):
            reply = self._call(method, **query, cursor=cursor)
            result = reply.get("result") or {}
            out.extend(result.get("list") or [])
            cursor = result.get("nextPageCursor") or None
            if not cursor:
                break
        return out

    def _call(self, method: Any, **params: Any) -> dict[str, Any]:
        clean = {k: v for k, v in params.items() if v is not None}
        name = getattr(method, "__name__", "request")
        try:
            reply = method(**clean)
        except InvalidRequestError as exc:
            raise VenueRejection(
                f"{name}: venue refused: {exc.message} (retCode {exc.status_code})",
                int(exc.status_code),
                reset_ms=_reset_ms(exc.resp_headers),
            ) from exc
        except FailedRequestError as exc:
            status = int(exc.status_code) if exc.status_code is not None else 0
            if status >= 500 or status == 409:  # 409: pybit's "could not decode JSON"
                raise AmbiguousVenueError(f"{name}: HTTP {status}: {exc.message}") from exc
            raise VenueRejection(f"{name}: HTTP {status}: {exc.message}", status) from exc
        except (requests.exceptions.RequestException, json.JSONDecodeError) as exc:
            raise AmbiguousVenueError(f"{name}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(reply, dict):
            raise AmbiguousVenueError(f"{name}: unexpected reply {reply!r:.200}")
        return reply


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _drop_duplicate_pybit_handlers() -> None:
    """pybit adds a stream handler per session when the root logger has none: keep one."""
    pybit_logger = logging.getLogger("pybit._http_manager")
    for handler in pybit_logger.handlers[1:]:
        pybit_logger.removeHandler(handler)


def _reset_ms(headers: Any) -> int | None:
    if not headers:
        return None
    value = headers.get("X-Bapi-Limit-Reset-Timestamp")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _round_to(value: float, step: float, rounding: str) -> float:
    step_d = Decimal(str(step))
    units = (Decimal(str(value)) / step_d).quantize(Decimal(1), rounding=rounding)
    return float(units * step_d)


def _format(value: float, step: float) -> str:
    step_d = Decimal(str(step)).normalize()
    places = max(0, -step_d.as_tuple().exponent)
    return f"{value:.{places}f}"
