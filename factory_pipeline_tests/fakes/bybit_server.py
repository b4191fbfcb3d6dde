"""Compatibility shim: the fake Bybit server of the foundation grew into the product's local
exchange (``factory_pipeline.exchange.local``). One implementation; these names are aliases so
the market tests keep their imports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from factory_pipeline.exchange.local import (
    ROUTES,
    Fault,
    LocalExchangeServer,
    LocalExchangeState,
    Reply,
    default_instrument,
    error,
    ok,
    register_route,
    run_local_exchange,
)
from factory_pipeline.market.source import MarketBatch

FakeBybitServer = LocalExchangeServer
FakeBybitState = LocalExchangeState

__all__ = [
    "ROUTES",
    "Fault",
    "FakeBybitServer",
    "FakeBybitState",
    "Reply",
    "default_instrument",
    "error",
    "ok",
    "register_route",
    "run_fake_bybit",
]


@contextmanager
def run_fake_bybit(
    batches: list[MarketBatch] | tuple[MarketBatch, ...] = (),
    *,
    now_ms: int | None = None,
) -> Iterator[LocalExchangeServer]:
    """Start a local exchange serving ``batches``; yields the server (``.url``, ``.state``)."""
    state = LocalExchangeState(now_ms=now_ms)
    for batch in batches:
        state.load(batch)
    with run_local_exchange(state) as server:
        yield server
