"""Risk limits: the human-owned file may only lower the compiled ceilings; boundary checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from factory_pipeline.errors import ConfigError, RiskLimitError
from factory_pipeline.settings import PROJECT_ROOT
from factory_pipeline.trading import (
    RISK_CEILINGS,
    Exposure,
    OrderRequest,
    RiskGuard,
    RiskLimits,
    apply_override,
    limits_hash,
    load_risk_limits,
)

REPO_FILE = PROJECT_ROOT / "data" / "policy" / "risk_limits.yaml"

LIMITS = RiskLimits(
    max_order_notional_usdt=1_000.0,
    max_system_notional_usdt=2_000.0,
    max_total_notional_usdt=3_000.0,
    max_leverage=2.0,
    max_open_positions=2,
    max_daily_loss_system_usdt=100.0,
    max_daily_loss_total_usdt=200.0,
    max_stale_bars=2,
    max_consecutive_venue_errors=3,
)


def _write(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(REPO_FILE.read_text())
    data.update(changes)
    path = tmp_path / "risk_limits.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _buy(qty: float, price: float = 100.0, **kw: object) -> OrderRequest:
    return OrderRequest("sys-a", "BTCUSDT", "Buy", qty, 1_000, "entry", price, **kw)  # type: ignore[arg-type]


def test_repository_file_loads_and_is_within_the_ceilings() -> None:
    limits = load_risk_limits(REPO_FILE)
    for field, ceiling in RISK_CEILINGS.model_dump().items():
        assert getattr(limits, field) <= ceiling


@pytest.mark.parametrize("field", sorted(RiskLimits.model_fields))
def test_a_file_raising_any_ceiling_is_refused_naming_the_field(tmp_path: Path, field: str) -> None:
    ceiling = getattr(RISK_CEILINGS, field)
    above = ceiling + 1 if isinstance(ceiling, int) else ceiling * 1.5
    with pytest.raises(ConfigError) as info:
        load_risk_limits(_write(tmp_path, **{field: above}))
    assert field in str(info.value) and "risk_limits.yaml" in str(info.value)


def test_a_file_exactly_at_the_ceilings_loads(tmp_path: Path) -> None:
    limits = load_risk_limits(_write(tmp_path, **RISK_CEILINGS.model_dump()))
    assert limits == RISK_CEILINGS


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("limits_version: 1\nmax_order_notional_usdt: 10\n", "required field is missing"),
        ("", "mapping"),
        ("- a\n", "mapping"),
    ],
)
def test_incomplete_or_wrong_files_are_refused(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "risk_limits.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        load_risk_limits(path)


def test_unknown_field_duplicate_key_and_quoted_number_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_orders: unknown field"):
        load_risk_limits(_write(tmp_path, max_orders=3))
    with pytest.raises(ConfigError, match="max_leverage"):
        load_risk_limits(_write(tmp_path, max_leverage="2"))
    text = REPO_FILE.read_text() + "\nmax_leverage: 1\n"
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="duplicate key 'max_leverage'"):
        load_risk_limits(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_risk_limits(tmp_path / "missing.yaml")


def test_hash_pin_refuses_a_changed_file(tmp_path: Path) -> None:
    pinned = limits_hash(load_risk_limits(REPO_FILE))
    assert load_risk_limits(REPO_FILE, expected_hash=pinned)
    # comments and number spelling do not change the hash; a value does
    same = tmp_path / "same.yaml"
    same.write_text(
        "# a comment\n" + REPO_FILE.read_text().replace("max_leverage: 3", "max_leverage: 3.0")
    )
    assert load_risk_limits(same, expected_hash=pinned)
    with pytest.raises(ConfigError, match="pinned"):
        load_risk_limits(_write(tmp_path, max_leverage=2), expected_hash=pinned)


def test_agent_override_can_only_lower() -> None:
    lowered = apply_override(LIMITS, {"max_order_notional_usdt": 500}, source="agent output")
    assert lowered.max_order_notional_usdt == 500.0
    assert lowered.max_leverage == LIMITS.max_leverage
    with pytest.raises(RiskLimitError, match="agent output: max_leverage = 3 would raise"):
        apply_override(LIMITS, {"max_leverage": 3}, source="agent output")
    with pytest.raises(RiskLimitError, match="not a risk limit"):
        apply_override(LIMITS, {"ceiling_multiplier": 0.5}, source="agent output")
    with pytest.raises(RiskLimitError, match="finite number"):
        apply_override(LIMITS, {"max_leverage": float("nan")}, source="agent output")


def test_guard_refuses_limits_above_the_ceilings() -> None:
    too_loose = RISK_CEILINGS.model_copy(update={"max_leverage": 50.0})
    with pytest.raises(RiskLimitError, match="max_leverage"):
        RiskGuard(too_loose)


def test_order_notional_exactly_at_the_cap_passes_one_step_over_fails() -> None:
    guard = RiskGuard(LIMITS)
    guard.check(_buy(10.0, 100.0), Exposure())  # 1000 == cap
    guard.check(_buy(0.3, 3333.3333333333335), Exposure())  # float product lands on the cap
    with pytest.raises(RiskLimitError, match="max_order_notional_usdt"):
        guard.check(_buy(10.001, 100.0), Exposure())  # one 0.001 step over


def test_system_and_total_notional_count_the_position_after_the_order() -> None:
    guard = RiskGuard(LIMITS)
    # system holds 5 @ 100 (500) + other symbol 1500 -> adding 500 makes 2500 > 2000 ... at cap:
    at_cap = Exposure(system_position_qty=5.0, system_notional=1_500.0, total_notional=1_500.0)
    guard.check(_buy(5.0), at_cap)  # 1500 + 500 = 2000
    with pytest.raises(RiskLimitError, match="max_system_notional_usdt"):
        guard.check(_buy(5.01), at_cap)
    crowded = Exposure(system_notional=0.0, total_notional=2_500.0)
    guard.check(_buy(5.0), crowded)  # 3000 == total cap
    with pytest.raises(RiskLimitError, match="max_total_notional_usdt"):
        guard.check(_buy(5.01), crowded)


def test_effective_leverage_and_venue_leverage() -> None:
    guard = RiskGuard(LIMITS)
    guard.check(_buy(10.0), Exposure(total_notional=1_000.0, account_equity=1_000.0))  # 2x
    with pytest.raises(RiskLimitError, match="effective leverage"):
        guard.check(_buy(10.0), Exposure(total_notional=1_001.0, account_equity=1_000.0))
    with pytest.raises(RiskLimitError, match="max_leverage"):
        guard.check(_buy(1.0), Exposure(venue_leverage=2.5))


def test_open_positions_cap_applies_to_new_positions_only() -> None:
    guard = RiskGuard(LIMITS)
    guard.check(_buy(1.0), Exposure(open_positions=1))
    with pytest.raises(RiskLimitError, match="max_open_positions"):
        guard.check(_buy(1.0), Exposure(open_positions=2))
    guard.check(
        _buy(1.0), Exposure(open_positions=2, system_position_qty=1.0, system_notional=100.0)
    )


def test_daily_loss_blocks_entries_but_not_reductions() -> None:
    guard = RiskGuard(LIMITS)
    guard.check(_buy(1.0), Exposure(system_daily_loss=99.99))
    with pytest.raises(RiskLimitError, match="max_daily_loss_system_usdt"):
        guard.check(_buy(1.0), Exposure(system_daily_loss=100.0))
    with pytest.raises(RiskLimitError, match="max_daily_loss_total_usdt"):
        guard.check(_buy(1.0), Exposure(total_daily_loss=200.0))
    sell = OrderRequest("sys-a", "BTCUSDT", "Sell", 50.0, 1_000, "exit", 100.0)
    # a reduction of a 50-lot long is allowed through every cap
    guard.check(sell, Exposure(system_position_qty=50.0, system_daily_loss=1e9, venue_leverage=9.0))


def test_reduce_only_that_does_not_reduce_the_system_is_refused() -> None:
    guard = RiskGuard(LIMITS)
    sell = OrderRequest("sys-a", "BTCUSDT", "Sell", 2.0, 1_000, "exit", 100.0, reduce_only=True)
    with pytest.raises(RiskLimitError, match="reduce_only"):
        guard.check(sell, Exposure(system_position_qty=1.0))  # would flip the position
    guard.check(sell, Exposure(system_position_qty=2.0))
