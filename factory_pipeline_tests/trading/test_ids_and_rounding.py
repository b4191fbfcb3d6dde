"""orderLinkId determinism and Bybit's id rules; quantity and price rounding to the filters."""

from __future__ import annotations

import re

import pytest

from factory_pipeline.trading import InstrumentRules, InvalidOrderError, OrderRequest, order_link_id

_BYBIT_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def test_order_link_id_is_deterministic_and_valid_for_bybit() -> None:
    a = order_link_id("sys-0123456789abcdef", "BTCUSDT", 1_704_067_200_000, "entry")
    b = order_link_id("sys-0123456789abcdef", "BTCUSDT", 1_704_067_200_000, "entry")
    assert a == b
    assert _BYBIT_LINK_ID.match(a)
    long_system = "x" * 500
    assert _BYBIT_LINK_ID.match(order_link_id(long_system, "BTCUSDT", 0, "reverse-leg-2"))


@pytest.mark.parametrize(
    "other",
    [
        ("sys-b", "BTCUSDT", 1_000, "entry"),
        ("sys-a", "ETHUSDT", 1_000, "entry"),
        ("sys-a", "BTCUSDT", 1_001, "entry"),
        ("sys-a", "BTCUSDT", 1_000, "exit"),
    ],
)
def test_every_part_of_the_decision_changes_the_id(other: tuple) -> None:
    assert order_link_id("sys-a", "BTCUSDT", 1_000, "entry") != order_link_id(*other)


def test_part_boundaries_do_not_collide() -> None:
    # naive concatenation would make these equal
    assert order_link_id("ab", "CUSDT", 1, "x") != order_link_id("a", "BCUSDT", 1, "x")


def test_request_exposes_its_id_and_validates_fields() -> None:
    request = OrderRequest("sys-a", "BTCUSDT", "Buy", 0.5, 1_000, "entry", 100.0)
    assert request.order_link_id == order_link_id("sys-a", "BTCUSDT", 1_000, "entry")
    with pytest.raises(InvalidOrderError, match="qty"):
        OrderRequest("sys-a", "BTCUSDT", "Buy", 0.0, 1_000, "entry", 100.0)
    with pytest.raises(InvalidOrderError, match="side"):
        OrderRequest("sys-a", "BTCUSDT", "buy", 1.0, 1_000, "entry", 100.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidOrderError, match="Limit order needs price"):
        OrderRequest("sys-a", "BTCUSDT", "Buy", 1.0, 1_000, "entry", 100.0, order_type="Limit")


RULES = InstrumentRules(
    symbol="BTCUSDT", qty_step=0.001, min_qty=0.001, max_qty=100.0, min_notional=5.0, tick_size=0.1
)


@pytest.mark.parametrize(
    ("qty", "step", "expected"),
    [
        (0.0129, 0.001, 0.012),  # down, never up
        (0.3, 0.1, 0.3),  # 0.3 / 0.1 = 2.9999999999999996 in binary floats
        (0.7, 0.1, 0.7),
        (1.0, 0.001, 1.0),
        (0.00099, 0.001, 0.0),
        (12.5, 1.0, 12.0),
        (2.675, 0.01, 2.67),
    ],
)
def test_qty_rounds_down_to_the_step(qty: float, step: float, expected: float) -> None:
    rules = InstrumentRules("X", step, step, None, 0.0, 0.01)
    assert rules.round_qty(qty) == expected


def test_price_rounds_to_the_tick_and_formats_without_noise() -> None:
    assert RULES.round_price(100.04) == 100.0
    assert RULES.round_price(100.06) == 100.1
    assert RULES.format_price(RULES.round_price(42_000.05)) == "42000.1"
    assert RULES.format_qty(RULES.round_qty(0.3)) == "0.300"
