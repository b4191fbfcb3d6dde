"""The local Bybit-v5-compatible exchange: the embedded default venue and the test double.

It speaks Bybit's v5 REST protocol on 127.0.0.1 (signatures, timestamps, retCodes, rate-limit
headers) so the real pybit client and the order gateway are exercised exactly as against Bybit.
Semantics: docs/local_exchange.md.

Modules: ``state`` (accounts, clock, faults, snapshot), ``prices`` (bars from batches or the
market store), ``matching`` (orders, fills, margin, stops, funding), ``auth``,
``market_routes`` / ``trading_routes`` (the wire), ``faults``, ``server`` (HTTP, ``serve``).
"""

from factory_pipeline.exchange.local.auth import sign
from factory_pipeline.exchange.local.faults import FAULT_KINDS, Fault
from factory_pipeline.exchange.local.models import Account, Execution, Order, Position
from factory_pipeline.exchange.local.protocol import (
    PRIVATE_ROUTES,
    ROUTES,
    Reply,
    VenueError,
    error,
    ok,
    register_private,
    register_route,
)
from factory_pipeline.exchange.local.server import (
    LocalExchangeServer,
    run_local_exchange,
    serve,
)
from factory_pipeline.exchange.local.state import (
    LOCAL_API_KEY,
    LOCAL_API_SECRET,
    LocalExchangeState,
    default_instrument,
)

__all__ = [
    "FAULT_KINDS",
    "LOCAL_API_KEY",
    "LOCAL_API_SECRET",
    "PRIVATE_ROUTES",
    "ROUTES",
    "Account",
    "Execution",
    "Fault",
    "LocalExchangeServer",
    "LocalExchangeState",
    "Order",
    "Position",
    "Reply",
    "VenueError",
    "default_instrument",
    "error",
    "ok",
    "register_private",
    "register_route",
    "run_local_exchange",
    "serve",
    "sign",
]
