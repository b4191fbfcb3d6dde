"""Risk limits: compiled ceilings, the human-owned limits file, and the pre-trade check.

Why two layers: the ceilings in :data:`RISK_CEILINGS` are compiled into the code and change only
through code review; ``data/policy/risk_limits.yaml`` is owned by a human and may only LOWER
them (every limit here is "smaller is safer"). A file that tries to raise a ceiling, names an
unknown field, or repeats a key is refused with a :class:`ConfigError` naming the file and the
field. Agent output never reaches this module except through :func:`apply_override`, which
can only tighten and refuses any raise with a :class:`RiskLimitError`. The SHA-256 of the
canonical limits (:func:`limits_hash`) is recorded on every order intent, and a caller that
pins a hash (``expected_hash``) refuses any other file.

Semantics of every limit: docs/trading.md.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from factory_pipeline.errors import ConfigError, RiskLimitError
from factory_pipeline.settings import PROJECT_ROOT, FactorySettings
from factory_pipeline.yaml_files import UniqueKeyLoader

#: File name of the risk limits inside the settings' policy folder.
RISK_LIMITS_FILE_NAME = "risk_limits.yaml"

#: Relative tolerance of the boundary comparisons: exactly at a cap passes even after the float
#: rounding of qty x price.
_BOUNDARY_RTOL = 1e-9


class RiskLimits(BaseModel):
    """Every limit the gateway enforces. Smaller is always stricter."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    max_order_notional_usdt: float = Field(gt=0, description="|qty| x price of one order.")
    max_system_notional_usdt: float = Field(
        gt=0, description="Sum over symbols of |position| x price for one system, after the order."
    )
    max_total_notional_usdt: float = Field(
        gt=0, description="Sum of all systems' position notionals after the order."
    )
    max_leverage: float = Field(
        gt=0, description="Venue leverage setting and total notional / account equity."
    )
    max_open_positions: int = Field(ge=1, description="(system, symbol) pairs with a position.")
    max_daily_loss_system_usdt: float = Field(
        gt=0, description="Loss of one system from its UTC-day equity high-water mark."
    )
    max_daily_loss_total_usdt: float = Field(
        gt=0, description="Loss of the account from its UTC-day equity high-water mark."
    )
    max_stale_bars: int = Field(
        ge=1, description="Kill switch trips when the last closed bar is older than this."
    )
    max_consecutive_venue_errors: int = Field(
        ge=1, description="Kill switch trips after this many failed venue requests in a row."
    )


#: Compiled ceilings. A limits file may set any value at or below these, never above.
RISK_CEILINGS = RiskLimits(
    max_order_notional_usdt=25_000.0,
    max_system_notional_usdt=50_000.0,
    max_total_notional_usdt=100_000.0,
    max_leverage=5.0,
    max_open_positions=40,
    max_daily_loss_system_usdt=2_500.0,
    max_daily_loss_total_usdt=5_000.0,
    max_stale_bars=3,
    max_consecutive_venue_errors=10,
)


@dataclass(frozen=True)
class Exposure:
    """What the store and the venue say right before an order (input of :meth:`RiskGuard.check`).

    Notionals are absolute USDT values at the reference prices. ``system_position_qty`` is the
    system's signed position in the order's symbol; ``system_daily_loss`` / ``total_daily_loss``
    are losses (positive numbers) from the UTC-day equity high-water marks.
    """

    system_position_qty: float = 0.0
    system_notional: float = 0.0
    total_notional: float = 0.0
    open_positions: int = 0
    venue_leverage: float = 1.0
    account_equity: float | None = None
    system_daily_loss: float = 0.0
    total_daily_loss: float = 0.0


class RiskGuard:
    """Checks one order against the limits; raises :class:`RiskLimitError` naming the limit."""

    def __init__(self, limits: RiskLimits) -> None:
        problems = ceiling_violations(limits)
        if problems:
            raise RiskLimitError("risk limits above the compiled ceilings: " + "; ".join(problems))
        self.limits = limits

    def check(self, request: Any, exposure: Exposure) -> None:
        """Raise :class:`RiskLimitError` when ``request`` (an OrderRequest) breaches a limit.

        An order that only reduces the system's position in its symbol (``reducing``) is exempt
        from the notional, position-count and daily-loss caps: closing risk is always allowed.
        """
        limits = self.limits
        signed = request.qty if request.side == "Buy" else -request.qty
        reducing = is_reducing(exposure.system_position_qty, signed)
        if reducing:
            return
        if request.reduce_only:
            # reduce-only at the venue, but it does not reduce this system's own position: the
            # venue would use it against another system's share of the symbol.
            raise RiskLimitError(
                f"{request.system_id} {request.symbol}: reduce_only order does not reduce the "
                f"system's position ({exposure.system_position_qty:g})"
            )
        price = request.reference_price
        order_notional = abs(request.qty) * price
        _cap("max_order_notional_usdt", order_notional, limits.max_order_notional_usdt, request)
        new_qty = exposure.system_position_qty + signed
        delta_notional = (abs(new_qty) - abs(exposure.system_position_qty)) * price
        system_after = exposure.system_notional + delta_notional
        _cap("max_system_notional_usdt", system_after, limits.max_system_notional_usdt, request)
        total_after = exposure.total_notional + delta_notional
        _cap("max_total_notional_usdt", total_after, limits.max_total_notional_usdt, request)
        _cap("max_leverage", exposure.venue_leverage, limits.max_leverage, request)
        if exposure.account_equity is not None:
            if exposure.account_equity <= 0:
                raise RiskLimitError(
                    f"{request.system_id} {request.symbol}: account equity "
                    f"{exposure.account_equity:g} <= 0, no new exposure allowed"
                )
            _cap(
                "max_leverage",
                total_after / exposure.account_equity,
                limits.max_leverage,
                request,
                what="effective leverage (total notional / equity)",
            )
        if exposure.system_position_qty == 0:
            _cap(
                "max_open_positions",
                exposure.open_positions + 1,
                limits.max_open_positions,
                request,
            )
        if exposure.system_daily_loss >= limits.max_daily_loss_system_usdt * (1 - _BOUNDARY_RTOL):
            raise RiskLimitError(
                f"{request.system_id}: daily loss {exposure.system_daily_loss:g} USDT reached "
                f"max_daily_loss_system_usdt = {limits.max_daily_loss_system_usdt:g}; "
                "only reducing orders allowed"
            )
        if exposure.total_daily_loss >= limits.max_daily_loss_total_usdt * (1 - _BOUNDARY_RTOL):
            raise RiskLimitError(
                f"account daily loss {exposure.total_daily_loss:g} USDT reached "
                f"max_daily_loss_total_usdt = {limits.max_daily_loss_total_usdt:g}; "
                "only reducing orders allowed"
            )


def is_reducing(position_qty: float, signed_order_qty: float) -> bool:
    """True when the order moves the position towards zero without crossing it."""
    if position_qty == 0 or signed_order_qty == 0:
        return False
    if (position_qty > 0) == (signed_order_qty > 0):
        return False
    return abs(signed_order_qty) <= abs(position_qty) * (1 + _BOUNDARY_RTOL)


def load_risk_limits(path: str | Path, *, expected_hash: str | None = None) -> RiskLimits:
    """Read and validate a risk limits file (human-owned, may only lower the ceilings).

    Raises :class:`ConfigError` naming the file and the field for an unreadable file, invalid or
    duplicated YAML, an unknown/missing/mistyped field, a value above its compiled ceiling, or a
    content hash different from ``expected_hash``.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read risk limits: {exc}") from exc
    try:
        content = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"{file}: risk limits must be a mapping, got {type(content).__name__}")
    version = content.pop("limits_version", None)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{file}: limits_version must be an integer >= 1 (got {version!r})")
    content = {
        k: (float(v) if _is_float_field(k) and _is_int(v) else v) for k, v in content.items()
    }
    try:
        limits = RiskLimits.model_validate(content)
    except ValidationError as exc:
        lines = [_describe_error(e) for e in exc.errors()]
        raise ConfigError(f"{file}: invalid risk limits:\n  " + "\n  ".join(lines)) from None
    problems = ceiling_violations(limits)
    if problems:
        raise ConfigError(
            f"{file}: risk limits may only lower the compiled ceilings: " + "; ".join(problems)
        )
    if expected_hash is not None and limits_hash(limits) != expected_hash:
        raise ConfigError(
            f"{file}: risk limits hash {limits_hash(limits)[:12]} does not match the pinned "
            f"hash {expected_hash[:12]} (the file changed since it was pinned)"
        )
    return limits


def apply_override(limits: RiskLimits, override: Mapping[str, Any], *, source: str) -> RiskLimits:
    """Tighten ``limits`` with values from a non-human source (agent output, a system spec).

    Only lowering is possible: a value above the current limit, an unknown field, or a
    non-numeric value raises :class:`RiskLimitError` naming the source and the field.
    """
    updates: dict[str, Any] = {}
    current = limits.model_dump()
    for field, value in override.items():
        if field not in current:
            raise RiskLimitError(f"{source}: {field!r} is not a risk limit")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise RiskLimitError(f"{source}: {field} must be a finite number (got {value!r})")
        if value > current[field]:
            raise RiskLimitError(
                f"{source}: {field} = {value:g} would raise the limit {current[field]:g}; "
                "only a human edit of data/policy/risk_limits.yaml (below the compiled ceilings) "
                "can set limits, overrides may only lower them"
            )
        updates[field] = type(current[field])(value)
    return limits.model_copy(update=updates)


def ceiling_violations(limits: RiskLimits) -> list[str]:
    """Every field of ``limits`` above its compiled ceiling, as messages naming the field."""
    problems = []
    for field, ceiling in RISK_CEILINGS.model_dump().items():
        value = getattr(limits, field)
        if value > ceiling:
            problems.append(f"{field} = {value:g} is above the compiled ceiling {ceiling:g}")
    return problems


def limits_hash(limits: RiskLimits) -> str:
    """SHA-256 (hex) of the canonical limits (sorted JSON): comments and spelling do not count."""
    payload = json.dumps(limits.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def default_limits_path(settings: FactorySettings | None = None) -> Path:
    """``<data_dir>/policy/risk_limits.yaml``, or the repository's file when that is absent."""
    if settings is not None:
        candidate = settings.policy_dir / RISK_LIMITS_FILE_NAME
        if candidate.exists():
            return candidate
    return PROJECT_ROOT / "data" / "policy" / RISK_LIMITS_FILE_NAME


# --- helpers -------------------------------------------------------------------------------------


def _cap(field: str, value: float, cap: float, request: Any, *, what: str | None = None) -> None:
    if value > cap * (1 + _BOUNDARY_RTOL):
        raise RiskLimitError(
            f"{request.system_id} {request.symbol} {request.side} {request.qty:g}: "
            f"{what or field} {value:.6g} exceeds {field} = {cap:g}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float_field(name: str) -> bool:
    info = RiskLimits.model_fields.get(name)
    return info is not None and info.annotation is float


def _describe_error(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(file)"
    if error["type"] == "missing":
        return f"{location}: required field is missing"
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown field"
    return f"{location}: {error['msg']} (got {error.get('input')!r})"
