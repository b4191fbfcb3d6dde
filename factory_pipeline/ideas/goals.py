"""Design goals: what kind of trading systems the idea track should design, as human-owned YAML.

A goal (``data/goals/*.yaml``, one goal per file) names the symbols and the H > M > L timeframe
ladder, the trading styles it wants (trend, breakout, mean_reversion, momentum, volatility,
carry), the allowed direction, which module kinds or ids a system must / may / must not use, a
risk budget (caps on risk per trade, leverage and target volatility that every candidate's risk
module has to respect), how many candidates to design and the retrieval query used to find
supporting concepts. Goals are inputs written by people, so a bad file is a user error: loading
raises :class:`GoalError` naming the file and the field. See docs/ideas.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from factory_pipeline.errors import ConfigError
from factory_pipeline.market.timeframes import timeframe_ms
from factory_pipeline.schemas import ModuleKind
from factory_pipeline.strategy.systems import Direction, Role, TimeframeMap

#: The trading styles a goal may ask for (see ideas.assembly.STYLE_KEYWORDS for their meaning).
Style = Literal["trend", "breakout", "mean_reversion", "momentum", "volatility", "carry"]
STYLES: tuple[str, ...] = ("trend", "breakout", "mean_reversion", "momentum", "volatility", "carry")

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")


class GoalError(ConfigError):
    """A design-goal file is unreadable or invalid (the message names the file and field)."""


class RiskBudget(BaseModel):
    """Caps every candidate's risk module must respect (the assembler samples inside them; the
    agent's proposals are checked against them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_risk_per_trade: float = Field(
        default=0.01, gt=0, le=0.25, description="Cap on risk_fraction (equity lost at the stop)."
    )
    max_leverage: float = Field(
        default=3.0, gt=0, le=125, description="Cap on max_leverage and on fixed fractions."
    )
    target_vol: float = Field(
        default=0.01, gt=0, le=1, description="Cap on target_vol of volatility targeting."
    )


class DesignGoal(BaseModel):
    """One design goal (see the module docstring and docs/ideas.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Slug: lower-case letters, digits, '-' and '_'.")
    name: str = Field(min_length=1)
    description: str = ""
    symbols: list[str] = Field(min_length=1)
    timeframes: TimeframeMap
    styles: list[Style] = Field(min_length=1)
    direction: Direction = "both"
    required_kinds: list[ModuleKind] = Field(
        default_factory=list,
        description="Optional kinds a system must use (filter, management).",
    )
    required_modules: list[str] = Field(
        default_factory=list, description="Module ids every system must use."
    )
    allowed_modules: list[str] | None = Field(
        default=None, description="When set, only these module ids (plus required ones)."
    )
    excluded_modules: list[str] = Field(default_factory=list)
    max_filters: int = Field(default=2, ge=0, le=4)
    max_management: int = Field(default=1, ge=0, le=3)
    trend_filter_role: Role = Field(
        default="H", description="Timeframe role of trend-style filters (others run on L)."
    )
    risk: RiskBudget = Field(default_factory=RiskBudget)
    n_candidates: int = Field(default=10, ge=1, le=500)
    query: str = Field(min_length=1, description="Retrieval query for concepts and modules.")
    concept_tags: list[str] = Field(
        default_factory=list, description="When set, only concepts with one of these tags."
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(f"'{value}' must be a slug: lower-case letters, digits, '-', '_'")
        return value

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: list[str]) -> list[str]:
        for symbol in value:
            if not _SYMBOL.match(symbol):
                raise ValueError(f"'{symbol}' must be 2-30 upper-case letters/digits")
        if len(set(value)) != len(value):
            raise ValueError("a symbol is listed twice")
        return value

    @field_validator("required_kinds")
    @classmethod
    def _check_kinds(cls, value: list[ModuleKind]) -> list[ModuleKind]:
        bad = [
            kind.value for kind in value if kind not in (ModuleKind.FILTER, ModuleKind.MANAGEMENT)
        ]
        if bad:
            raise ValueError(
                f"{bad}: only optional kinds (filter, management) can be required; every system "
                "already has an entry, a risk module and a way to exit"
            )
        return value

    @model_validator(mode="after")
    def _check_ladder(self) -> DesignGoal:
        lengths = {}
        for role in ("H", "M", "L"):
            value = getattr(self.timeframes, role)
            try:
                lengths[role] = timeframe_ms(value)
            except ConfigError as exc:
                raise ValueError(f"timeframes.{role}: {exc}") from None
        if not lengths["H"] > lengths["M"] > lengths["L"]:
            raise ValueError(
                f"timeframes: need H > M > L, got H={self.timeframes.H}, M={self.timeframes.M}, "
                f"L={self.timeframes.L}"
            )
        for role in ("H", "M"):
            if lengths[role] % lengths["L"]:
                raise ValueError(f"timeframes.{role}: must be a whole multiple of L")
        clash = sorted(set(self.required_modules) & set(self.excluded_modules))
        if clash:
            raise ValueError(f"required_modules and excluded_modules both list {clash}")
        if self.allowed_modules is not None:
            missing = sorted(set(self.required_modules) - set(self.allowed_modules))
            if missing:
                raise ValueError(f"required_modules {missing} are not in allowed_modules")
        if ModuleKind.FILTER in self.required_kinds and self.max_filters == 0:
            raise ValueError("required_kinds lists filter but max_filters is 0")
        if ModuleKind.MANAGEMENT in self.required_kinds and self.max_management == 0:
            raise ValueError("required_kinds lists management but max_management is 0")
        return self

    def module_allowed(self, module_id: str) -> bool:
        """Whether the goal lets a system use ``module_id`` (required ones always)."""
        if module_id in self.required_modules:
            return True
        if module_id in self.excluded_modules:
            return False
        return self.allowed_modules is None or module_id in self.allowed_modules


def load_goals(directory: Path | str) -> list[DesignGoal]:
    """Every ``*.yaml`` / ``*.yml`` goal in ``directory``, sorted by file name.

    Raises :class:`GoalError` (a ConfigError) naming the file and each bad field when the folder
    is missing or empty, a file is unreadable, is not a mapping, fails validation, or two files
    share a goal id. Nothing is returned half-loaded.
    """
    root = Path(directory)
    if not root.is_dir():
        raise GoalError(f"goal folder {root} does not exist")
    files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    if not files:
        raise GoalError(f"goal folder {root} holds no *.yaml files")
    goals: list[DesignGoal] = []
    origin: dict[str, str] = {}
    errors: list[str] = []
    for path in files:
        try:
            goal = load_goal_file(path)
        except GoalError as exc:
            errors.append(str(exc))
            continue
        if goal.id in origin:
            errors.append(f"{path}: id: '{goal.id}' is already used by {origin[goal.id]}")
            continue
        origin[goal.id] = path.name
        goals.append(goal)
    if errors:
        raise GoalError("invalid design goals:\n  " + "\n  ".join(errors))
    return goals


def load_goal_file(path: Path | str) -> DesignGoal:
    """One goal file; GoalError names the file and every bad field."""
    file = Path(path)
    try:
        content = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise GoalError(f"{file}: cannot read goal: {exc}") from exc
    except yaml.YAMLError as exc:
        raise GoalError(f"{file}: invalid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(content, dict):
        raise GoalError(f"{file}: a goal must be a mapping, got {type(content).__name__}")
    try:
        return DesignGoal.model_validate(content)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            field = ".".join(str(part) for part in err["loc"]) or "(root)"
            message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{field}: {message.removeprefix('Value error, ')}")
        raise GoalError(f"{file}: invalid goal:\n    " + "\n    ".join(lines)) from exc
