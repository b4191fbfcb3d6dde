"""The human-owned promotion policy: loading, validation, safety floors and the policy hash.

Why a file plus floors: the thresholds a system must meet to trade are a human decision, made in
review and versioned with the code (``data/policy/promotion.yaml``). Nothing an agent writes is
read here: the policy comes only from that file. And because a file can be edited carelessly,
the code carries compiled-in safety floors (:data:`SAFETY_FLOORS`): a policy may be stricter than
a floor, never looser, and a looser file is refused with a :class:`ConfigError` naming the file
and the field. Every decision records :func:`policy_hash`, the SHA-256 of the policy's canonical
content, so an audit record says exactly which thresholds were in force.

Semantics of every threshold: docs/promotion.md.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory_pipeline.errors import ConfigError
from factory_pipeline.settings import FactorySettings
from factory_pipeline.yaml_files import UniqueKeyLoader

#: File name of the promotion policy inside the settings' policy folder.
POLICY_FILE_NAME = "promotion.yaml"

FloorComparison = Literal[">=", "<=", ">", "=="]


@dataclass(frozen=True)
class Floor:
    """A compiled-in bound a policy value must satisfy: ``value <comparison> bound``."""

    comparison: FloorComparison
    bound: float | bool

    def allows(self, value: float | bool) -> bool:
        return _FLOOR_OPERATORS[self.comparison](value, self.bound)

    def __str__(self) -> str:
        bound = str(self.bound).lower() if isinstance(self.bound, bool) else f"{self.bound:g}"
        return f"{self.comparison} {bound}"


#: Hard limits per dotted field path. A policy value outside its floor is refused; a ``None``
#: (optional threshold switched off) is checked by the cross-field rules instead.
SAFETY_FLOORS: dict[str, Floor] = {
    "candidate_to_demo.min_trades": Floor(">=", 30),
    "candidate_to_demo.min_trades_per_fold": Floor(">=", 5),
    "candidate_to_demo.max_drawdown": Floor("<=", 0.5),
    "candidate_to_demo.max_stagnation_days": Floor("<=", 365),
    "candidate_to_demo.min_expectancy_r": Floor(">", 0.0),
    "candidate_to_demo.min_expectancy_pct": Floor(">", 0.0),
    "candidate_to_demo.min_profitable_regimes": Floor(">=", 1),
    "candidate_to_demo.min_dsr": Floor(">=", 0.0),
    "candidate_to_demo.max_pbo": Floor("<=", 0.8),
    "candidate_to_demo.stress_must_survive": Floor("==", True),
    "candidate_to_demo.disable_when.max_drawdown_multiple": Floor("<=", 3.0),
    "candidate_to_demo.disable_when.expectancy_r_below": Floor(">=", -1.0),
    "candidate_to_demo.disable_when.expectancy_pct_below": Floor(">=", -1.0),
    "demo_to_live_test.min_days": Floor(">=", 14),
    "demo_to_live_test.min_trades": Floor(">=", 10),
    "demo_to_live_test.max_pnl_deviation": Floor("<=", 1.0),
    "demo_to_live_test.max_slippage_bps": Floor("<=", 50.0),
    "demo_to_live_test.max_execution_issues": Floor("<=", 10),
    "demo_demotion.max_drawdown": Floor("<=", 0.5),
    "demo_demotion.max_pnl_deviation": Floor("<=", 3.0),
    "demo_demotion.min_trades_before_rework": Floor("<=", 100),
}


class _Section(BaseModel):
    """Strict, frozen, closed: a typo in a key or a quoted number is an error, not a default."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DisableTriggers(_Section):
    """When a failed candidate gate means ``disabled`` instead of ``rework_required``."""

    max_drawdown_multiple: float = Field(
        ge=1.0, description="Disabled when max_drawdown > this x candidate_to_demo.max_drawdown."
    )
    expectancy_r_below: float | None = Field(
        default=None, le=0.0, description="Disabled when expectancy_r < this (R per trade)."
    )
    expectancy_pct_below: float | None = Field(
        default=None, le=0.0, description="Disabled when expectancy_pct < this (% per trade)."
    )


class CandidateToDemo(_Section):
    """Backtest evidence a candidate needs before it may trade on the demo account."""

    min_trades: int = Field(ge=0, description="Closed trades over the whole backtest (count).")
    min_trades_per_fold: int = Field(ge=0, description="Fewest trades in any walk-forward fold.")
    max_drawdown: float = Field(gt=0.0, le=1.0, description="Peak-to-trough, fraction of peak.")
    max_stagnation_days: float = Field(ge=0.0, description="Longest time without a new high (d).")
    min_expectancy_r: float | None = Field(default=None, description="Mean R per closed trade.")
    min_expectancy_pct: float | None = Field(
        default=None, description="Mean return per closed trade, percent of entry notional."
    )
    min_profitable_regimes: int = Field(ge=0, description="Regimes with a positive return.")
    min_dsr: float = Field(ge=0.0, le=1.0, description="Deflated Sharpe ratio (probability).")
    max_pbo: float = Field(ge=0.0, le=1.0, description="Probability of backtest overfitting.")
    stress_must_survive: bool = Field(description="Doubled costs + 1 bar delay must be survived.")
    disable_when: DisableTriggers


class DemoToLiveTest(_Section):
    """Demo-trading evidence a system needs before it may trade tiny real capital."""

    min_days: int = Field(ge=0, description="Calendar days traded on demo.")
    min_trades: int = Field(ge=0, description="Closed demo trades (count).")
    max_pnl_deviation: float = Field(ge=0.0, description="|demo - backtest| / |backtest| (frac).")
    max_slippage_bps: float = Field(ge=0.0, description="Mean adverse slippage per fill (bps).")
    max_execution_issues: int = Field(
        ge=0, description="Rejections, unresolved orders, mismatches."
    )


class DemoDemotion(_Section):
    """When a system trading on demo is taken off it."""

    max_drawdown: float = Field(gt=0.0, le=1.0, description="Disabled above this demo drawdown.")
    max_pnl_deviation: float = Field(ge=0.0, description="rework_required above this deviation.")
    min_trades_before_rework: int = Field(
        ge=0, description="The deviation demotion applies from this many closed demo trades on."
    )


class PromotionPolicy(_Section):
    """The whole policy file. Constructing one checks ranges, cross-field rules and floors."""

    policy_version: int = Field(ge=1)
    candidate_to_demo: CandidateToDemo
    demo_to_live_test: DemoToLiveTest
    demo_demotion: DemoDemotion

    @model_validator(mode="after")
    def _check_consistency_and_floors(self) -> PromotionPolicy:
        problems = consistency_problems(self) + floor_violations(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def content_hash(self) -> str:
        """Shorthand for :func:`policy_hash`."""
        return policy_hash(self)


def load_policy(path: str | Path) -> PromotionPolicy:
    """Read and validate a promotion policy file.

    Raises :class:`ConfigError` naming the file and the field for: an unreadable file, invalid
    YAML, a duplicated key, an unknown or missing field, a wrongly typed or out-of-range value,
    an inconsistent combination, or a value looser than its safety floor.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read promotion policy: {exc}") from exc
    try:
        content = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(content, dict):
        kind = type(content).__name__
        raise ConfigError(f"{file}: a promotion policy must be a mapping, got {kind}")
    try:
        return PromotionPolicy.model_validate(content)
    except ValidationError as exc:
        lines = [_describe_error(error) for error in exc.errors()]
        raise ConfigError(f"{file}: invalid promotion policy:\n  " + "\n  ".join(lines)) from None


def policy_hash(policy: PromotionPolicy) -> str:
    """SHA-256 (hex) of the policy's canonical content.

    The canonical content is the validated policy as JSON with sorted keys and every optional
    threshold present (``null`` when off), so comments, key order, ``0.3`` vs ``0.30`` and an
    omitted vs explicit ``null`` do not change the hash; any threshold change does.
    """
    payload = json.dumps(
        policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def default_policy_path(settings: FactorySettings | None = None) -> Path:
    """``<data_dir>/policy/promotion.yaml`` of the given (or default) settings."""
    return (settings or FactorySettings()).policy_dir / POLICY_FILE_NAME


def floor_violations(policy: PromotionPolicy) -> list[str]:
    """Every set policy value looser than its :data:`SAFETY_FLOORS` entry, as messages."""
    problems: list[str] = []
    for dotted, value in _leaf_values(policy):
        floor = SAFETY_FLOORS.get(dotted)
        if floor is None or value is None:
            continue
        if not floor.allows(value):
            shown = str(value).lower() if isinstance(value, bool) else f"{value:g}"
            problems.append(
                f"{dotted} = {shown} is looser than the safety floor ({dotted} {floor})"
            )
    return problems


def consistency_problems(policy: PromotionPolicy) -> list[str]:
    """Cross-field rules no single-field range can express."""
    problems: list[str] = []
    gate = policy.candidate_to_demo
    if gate.min_expectancy_r is None and gate.min_expectancy_pct is None:
        problems.append(
            "candidate_to_demo: set min_expectancy_r or min_expectancy_pct (both are null)"
        )
    triggers = gate.disable_when
    if triggers.expectancy_r_below is None and triggers.expectancy_pct_below is None:
        problems.append(
            "candidate_to_demo.disable_when: set expectancy_r_below or expectancy_pct_below "
            "(both are null)"
        )
    if policy.demo_demotion.max_pnl_deviation < policy.demo_to_live_test.max_pnl_deviation:
        problems.append(
            f"demo_demotion.max_pnl_deviation = {policy.demo_demotion.max_pnl_deviation:g} must "
            f"be >= demo_to_live_test.max_pnl_deviation = "
            f"{policy.demo_to_live_test.max_pnl_deviation:g} (a system may not be demoted for a "
            "deviation that would still let it be promoted)"
        )
    return problems


# --- helpers -------------------------------------------------------------------------------------

_FLOOR_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "==": operator.eq,
}


def _leaf_values(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        dotted = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            yield from _leaf_values(value, f"{dotted}.")
        else:
            yield dotted, value


def _describe_error(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{location}: required field is missing"
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown field"
    value = error.get("input")
    shown = "" if isinstance(value, dict) or location == "" else f" (got {value!r})"
    return f"{location}: {message}{shown}" if location else message
