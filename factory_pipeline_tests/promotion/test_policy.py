"""Promotion policy: loading, range checks, safety floors, hash stability."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from factory_pipeline.errors import ConfigError
from factory_pipeline.promotion import SAFETY_FLOORS, load_policy, policy_hash
from factory_pipeline.promotion.policy import default_policy_path
from factory_pipeline.settings import PROJECT_ROOT, FactorySettings
from factory_pipeline_tests.promotion.helpers import POLICY_DATA, make_policy, policy_data

SHIPPED_POLICY = PROJECT_ROOT / "data" / "policy" / "promotion.yaml"


def _write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[leaf] = value
    return data


def test_shipped_policy_loads_and_is_within_floors() -> None:
    policy = load_policy(SHIPPED_POLICY)
    assert policy.candidate_to_demo.min_trades >= 30
    assert policy.candidate_to_demo.max_pbo <= 0.8
    assert policy.candidate_to_demo.stress_must_survive is True
    assert len(policy_hash(policy)) == 64


def test_default_policy_path_follows_settings(tmp_path: Path) -> None:
    settings = FactorySettings(data_dir=tmp_path)
    assert default_policy_path(settings) == tmp_path / "policy" / "promotion.yaml"


def test_load_round_trip(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path / "p.yaml", POLICY_DATA))
    assert policy == make_policy()
    assert policy.candidate_to_demo.max_drawdown == 0.25


def test_hash_is_sha256_of_sorted_canonical_json() -> None:
    policy = make_policy()
    # max_stagnation_days is a float field: 180 is canonicalized as 180.0
    data = policy_data(candidate_to_demo={"max_stagnation_days": 180.0})
    expected = hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert policy_hash(policy) == expected
    assert policy.content_hash == expected


def test_hash_stable_across_key_order_comments_and_number_spelling(tmp_path: Path) -> None:
    plain = _write(tmp_path / "a.yaml", POLICY_DATA)
    reordered_data = {key: POLICY_DATA[key] for key in reversed(list(POLICY_DATA))}
    reordered_data["candidate_to_demo"] = dict(
        reversed(list(POLICY_DATA["candidate_to_demo"].items()))
    )
    reordered = _write(tmp_path / "b.yaml", reordered_data)
    text = reordered.read_text()
    text = "# a comment\n" + text.replace("max_drawdown: 0.25", "max_drawdown: 0.250  # quarter")
    text = text.replace("  min_expectancy_pct: null\n", "")  # omitted == explicit null
    assert "min_expectancy_pct" not in text and "0.250  # quarter" in text
    reordered.write_text(text)
    assert policy_hash(load_policy(plain)) == policy_hash(load_policy(reordered))


@pytest.mark.parametrize(
    ("dotted", "stricter"),
    [
        ("candidate_to_demo.min_trades", 101),
        ("candidate_to_demo.max_pbo", 0.4),
        ("candidate_to_demo.disable_when.max_drawdown_multiple", 1.5),
        ("demo_to_live_test.max_slippage_bps", 9.5),
    ],
)
def test_hash_changes_with_any_threshold(dotted: str, stricter: Any) -> None:
    base = policy_hash(make_policy())
    changed = policy_hash(make_policy().model_validate(_set(policy_data(), dotted, stricter)))
    assert changed != base


@pytest.mark.parametrize(
    ("dotted", "value", "fragment"),
    [
        ("candidate_to_demo.min_trades", -1, "greater than or equal to 0"),
        ("candidate_to_demo.max_pbo", 1.5, "less than or equal to 1"),
        ("candidate_to_demo.min_dsr", -0.1, "greater than or equal to 0"),
        ("candidate_to_demo.max_drawdown", 0.0, "greater than 0"),
        ("candidate_to_demo.min_trades", "100", "valid integer"),
        ("candidate_to_demo.min_trades", 100.5, "valid integer"),
        ("candidate_to_demo.stress_must_survive", "yes please", "valid boolean"),
        ("candidate_to_demo.max_pbo", float("nan"), "finite number"),
        ("candidate_to_demo.disable_when.expectancy_r_below", 0.5, "less than or equal to 0"),
        ("demo_to_live_test.max_execution_issues", -2, "greater than or equal to 0"),
    ],
)
def test_out_of_range_or_mistyped_value_is_a_config_error(
    tmp_path: Path, dotted: str, value: Any, fragment: str
) -> None:
    path = _write(tmp_path / "bad.yaml", _set(policy_data(), dotted, value))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message
    assert dotted in message
    assert fragment in message


#: For every floor, a value one step looser than it (hand-derived from the documented floors).
LOOSER_THAN_FLOOR: dict[str, Any] = {
    "candidate_to_demo.min_trades": 29,
    "candidate_to_demo.min_trades_per_fold": 4,
    "candidate_to_demo.max_drawdown": 0.55,
    "candidate_to_demo.max_stagnation_days": 366,
    "candidate_to_demo.min_expectancy_r": 0.0,
    "candidate_to_demo.min_expectancy_pct": -0.01,
    "candidate_to_demo.min_profitable_regimes": 0,
    "candidate_to_demo.min_dsr": -0.0001,
    "candidate_to_demo.max_pbo": 0.85,
    "candidate_to_demo.stress_must_survive": False,
    "candidate_to_demo.disable_when.max_drawdown_multiple": 3.5,
    "candidate_to_demo.disable_when.expectancy_r_below": -1.5,
    "candidate_to_demo.disable_when.expectancy_pct_below": -2.0,
    "demo_to_live_test.min_days": 13,
    "demo_to_live_test.min_trades": 9,
    "demo_to_live_test.max_pnl_deviation": 1.01,
    "demo_to_live_test.max_slippage_bps": 50.5,
    "demo_to_live_test.max_execution_issues": 11,
    "demo_demotion.max_drawdown": 0.6,
    "demo_demotion.max_pnl_deviation": 3.5,
    "demo_demotion.min_trades_before_rework": 101,
}


def test_every_floor_has_a_looser_case() -> None:
    assert set(LOOSER_THAN_FLOOR) == set(SAFETY_FLOORS)


@pytest.mark.parametrize("dotted", sorted(LOOSER_THAN_FLOOR))
def test_file_looser_than_floor_is_refused(tmp_path: Path, dotted: str) -> None:
    value = LOOSER_THAN_FLOOR[dotted]
    path = _write(tmp_path / "loose.yaml", _set(policy_data(), dotted, value))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(path) in str(info.value)
    assert dotted.rsplit(".", 1)[-1] in str(info.value)


def test_floor_refusal_message_names_the_floor(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "loose.yaml", policy_data(candidate_to_demo={"min_trades": 10, "max_pbo": 0.9})
    )
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert "candidate_to_demo.min_trades = 10 is looser than the safety floor" in message
    assert "(candidate_to_demo.min_trades >= 30)" in message
    assert "candidate_to_demo.max_pbo = 0.9 is looser" in message


@pytest.mark.parametrize(
    ("dotted", "at_floor"),
    [
        ("candidate_to_demo.min_trades", 30),
        ("candidate_to_demo.max_drawdown", 0.5),
        ("candidate_to_demo.max_pbo", 0.8),
        ("candidate_to_demo.min_dsr", 0.0),
        ("demo_to_live_test.min_days", 14),
    ],
)
def test_value_exactly_at_floor_is_accepted(dotted: str, at_floor: Any) -> None:
    policy = make_policy().model_validate(_set(policy_data(), dotted, at_floor))
    section, *rest = dotted.split(".")
    assert getattr(getattr(policy, section), rest[-1]) == at_floor


def test_floors_also_apply_to_policies_built_in_code() -> None:
    with pytest.raises(ValueError, match="looser than the safety floor"):
        make_policy(candidate_to_demo={"min_trades": 5})


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"candidate_to_demo": {"min_expectancy_r": None}}, "set min_expectancy_r or"),
        (
            {"candidate_to_demo": {"disable_when": {"max_drawdown_multiple": 2.0}}},
            "set expectancy_r_below or expectancy_pct_below",
        ),
        ({"demo_demotion": {"max_pnl_deviation": 0.25}}, "must be >= demo_to_live_test"),
    ],
)
def test_inconsistent_combinations_are_refused(
    tmp_path: Path, overrides: dict[str, Any], fragment: str
) -> None:
    path = _write(tmp_path / "p.yaml", policy_data(**overrides))
    with pytest.raises(ConfigError, match=fragment):
        load_policy(path)


def test_unknown_and_missing_fields_are_named(tmp_path: Path) -> None:
    data = policy_data()
    data["candidate_to_demo"]["max_pbo_typo"] = 0.5
    del data["demo_to_live_test"]["min_days"]
    path = _write(tmp_path / "p.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert "candidate_to_demo.max_pbo_typo: unknown field" in str(info.value)
    assert "demo_to_live_test.min_days: required field is missing" in str(info.value)


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.yaml", POLICY_DATA)
    text = path.read_text().replace("  max_pbo: 0.5\n", "  max_pbo: 0.5\n  max_pbo: 0.8\n", 1)
    path.write_text(text)
    with pytest.raises(ConfigError, match="duplicate key 'max_pbo'"):
        load_policy(path)


@pytest.mark.parametrize(
    ("content", "fragment"), [("- a\n- b\n", "must be a mapping"), ("a: [1, 2\n", "invalid YAML")]
)
def test_not_a_policy_file(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        load_policy(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read promotion policy"):
        load_policy(tmp_path / "absent.yaml")
