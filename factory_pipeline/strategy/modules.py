"""The module library: loading, validating and hashing strategy building blocks.

A module (``schemas.ModuleDoc``) is one reusable piece of a trading system of one kind: an entry,
an exit, a filter, a risk (position sizing) rule or a trade-management rule. Its behaviour is a
set of named signal-language expressions (``logic``) and, for risk and management modules, a rule
from a closed set; its knobs are a typed parameter schema. Everything here is pure data checking:
nothing is executed except the signal-language compiler, which only builds whitelisted nodes.

Why a strict contract: systems are assembled by humans and by agents from these blocks, and the
signal code must be able to combine any valid selection without knowing the modules. So each kind
has a fixed vocabulary of logic keys with a fixed result type (bool or number), each rule names the
parameters it needs, and every default must lie inside its declared range and on its step grid (a
parameter sweep walks that grid). The full contract is written in docs/modules_and_systems.md.

The human-written library lives in ``data/modules/*.yaml``: each file holds either one module
mapping (with an ``id``) or a ``modules:`` list of them (one file per family).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from factory_pipeline.errors import SignalLanguageError, SpecError
from factory_pipeline.schemas import ModuleDoc, ModuleKind, ParameterSpec
from factory_pipeline.settings import DEFAULT_DATA_DIR
from factory_pipeline.strategy.language import canonical, compile_expression, parse

#: Where the human-written module library lives by default.
DEFAULT_MODULES_DIR = DEFAULT_DATA_DIR / "modules"

ExpressionKind = Literal["bool", "number"]

#: The logic keys each kind may define and the type each expression must have.
LOGIC_KEYS: dict[ModuleKind, dict[str, ExpressionKind]] = {
    ModuleKind.ENTRY: {"long": "bool", "short": "bool"},
    ModuleKind.EXIT: {
        "long": "bool",
        "short": "bool",
        "stop_distance": "number",
        "take_profit_distance": "number",
    },
    ModuleKind.FILTER: {"allow_long": "bool", "allow_short": "bool", "allow": "bool"},
    ModuleKind.RISK: {"stop_distance": "number", "volatility": "number"},
    ModuleKind.MANAGEMENT: {"trail_distance": "number"},
}


@dataclass(frozen=True)
class Domain:
    """The values a rule parameter can take: ``low < value`` (or ``<=`` when ``low_inclusive``)
    and ``value <= high``; ``integer`` requires whole numbers."""

    low: float
    high: float = math.inf
    low_inclusive: bool = False
    integer: bool = False

    def contains(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        return above and value <= self.high and (not self.integer or float(value).is_integer())

    def describe(self) -> str:
        left = "[" if self.low_inclusive else "("
        right = "inf)" if math.isinf(self.high) else f"{self.high:g}]"
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {left}{self.low:g}, {right}"


@dataclass(frozen=True)
class RuleSpec:
    """A sizing or management rule: the module kind it belongs to, the parameters it requires
    (and may optionally read), the logic keys it requires, and the domain of each parameter."""

    kind: ModuleKind
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    required_logic: tuple[str, ...] = ()
    domains: Mapping[str, Domain] | None = None


_LEVERAGE = Domain(0.0, 125.0)

#: The closed set of rules. The engine (and the lead's glue) maps these onto SimConfig.
RULES: dict[str, RuleSpec] = {
    "fixed_fraction": RuleSpec(
        ModuleKind.RISK,
        required=("fraction",),
        optional=("max_leverage",),
        domains={"fraction": Domain(0.0, 125.0), "max_leverage": _LEVERAGE},
    ),
    "risk_per_trade": RuleSpec(
        ModuleKind.RISK,
        required=("risk_fraction",),
        optional=("max_leverage",),
        domains={"risk_fraction": Domain(0.0, 0.25), "max_leverage": _LEVERAGE},
    ),
    "volatility_target": RuleSpec(
        ModuleKind.RISK,
        required=("target_vol",),
        optional=("max_leverage",),
        required_logic=("volatility",),
        domains={"target_vol": Domain(0.0, 1.0), "max_leverage": _LEVERAGE},
    ),
    "fixed_qty": RuleSpec(
        ModuleKind.RISK,
        required=("qty",),
        optional=("max_leverage",),
        domains={"qty": Domain(0.0), "max_leverage": _LEVERAGE},
    ),
    "breakeven": RuleSpec(
        ModuleKind.MANAGEMENT, required=("after_r",), domains={"after_r": Domain(0.0)}
    ),
    "trailing_stop": RuleSpec(
        ModuleKind.MANAGEMENT, required=(), required_logic=("trail_distance",)
    ),
    "time_stop": RuleSpec(
        ModuleKind.MANAGEMENT,
        required=("max_bars",),
        domains={"max_bars": Domain(1.0, low_inclusive=True, integer=True)},
    ),
    "partial_take_profit": RuleSpec(
        ModuleKind.MANAGEMENT,
        required=("at_r", "fraction"),
        domains={"at_r": Domain(0.0), "fraction": Domain(0.0, 0.999999)},
    ),
}

_PARAMETER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MODULE_ID = re.compile(r"^[a-z][a-z0-9_]*$")
#: Relative tolerance when checking that a value sits on a parameter's step grid.
_GRID_TOLERANCE = 1e-9


def load_module_library(folder: Path | str | None = None) -> dict[str, ModuleDoc]:
    """Load and validate every ``*.yaml`` module file in ``folder`` (default data/modules).

    Returns modules by id, in file-name order then file order. The id is the YAML's ``id``, so it
    is stable across loads. Raises SpecError listing every problem with its file and field when
    any file is unreadable, any module is malformed or invalid, or two modules share an id;
    nothing is returned half-loaded.
    """
    root = Path(folder) if folder is not None else DEFAULT_MODULES_DIR
    if not root.is_dir():
        raise SpecError(f"module library folder {root} does not exist")
    files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    if not files:
        raise SpecError(f"module library folder {root} holds no *.yaml files")
    library: dict[str, ModuleDoc] = {}
    origin: dict[str, str] = {}
    errors: list[str] = []
    for path in files:
        for position, raw in _module_mappings(path, errors):
            label = f"{path.name}: {position}"
            doc = _parse_module(raw, path, label, errors)
            if doc is None:
                continue
            if doc.id in library:
                errors.append(f"{label}: id '{doc.id}' already defined in {origin[doc.id]}")
                continue
            errors.extend(f"{label}.{problem}" for problem in validate_module(doc))
            library[doc.id] = doc
            origin[doc.id] = path.name
    if errors:
        raise SpecError(f"module library {root} is invalid:\n  " + "\n  ".join(errors))
    return library


def validate_module(doc: ModuleDoc) -> list[str]:
    """Every problem of one module as ``"<field path>: <what is wrong>"`` (empty when valid).

    Checks: the id's form; logic keys allowed for the kind and the required ones present; each
    expression compiles against the declared parameters and has the right type (bool/number);
    each parameter is well formed, its default inside ``[min, max]``, on the step grid, and an
    enum default among the choices; the rule belongs to the closed set for the kind, with its
    required parameters and logic, and parameter ranges inside the rule's domain; and every
    declared parameter is used by an expression or the rule.
    """
    problems: list[str] = []
    if not _MODULE_ID.match(doc.id):
        problems.append(f"id: '{doc.id}' must be lower-case letters, digits and '_'")
    for name, spec in doc.parameters.items():
        if not _PARAMETER_NAME.match(name):
            problems.append(f"parameters.{name}: name must match [a-z][a-z0-9_]*")
        problems.extend(f"parameters.{name}{msg}" for msg in _parameter_spec_problems(spec))
    used = _logic_problems(doc, problems)
    rule = RULES.get(doc.rule) if doc.rule is not None else None
    problems.extend(_rule_problems(doc, rule))
    if rule is not None:
        used |= set(rule.required) | set(rule.optional)
    for name in doc.parameters:
        if name not in used:
            problems.append(f"parameters.{name}: declared but used by no logic expression or rule")
    return problems


def check_parameter_value(spec: ParameterSpec, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``spec`` (type, range, step grid, choices), or None."""
    if spec.type == "bool":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    if spec.type == "enum":
        choices = spec.choices or []
        return None if value in choices else f"{value!r} is not one of {choices}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{value!r} is not a number"
    if not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if spec.type == "int" and not float(value).is_integer():
        return f"{value!r} is not an integer"
    if spec.min is not None and value < spec.min:
        return f"{_fmt(value)} below min {_fmt(spec.min)}"
    if spec.max is not None and value > spec.max:
        return f"{_fmt(value)} above max {_fmt(spec.max)}"
    if spec.step is not None and spec.step > 0:
        anchor = spec.min if spec.min is not None else 0.0
        steps = (value - anchor) / spec.step
        if abs(steps - round(steps)) > _GRID_TOLERANCE * max(1.0, abs(steps)):
            return f"{_fmt(value)} is not on the step grid {_fmt(anchor)} + k * {_fmt(spec.step)}"
    return None


def normalize_parameter_value(spec: ParameterSpec, value: Any) -> Any:
    """The canonical Python value of an accepted parameter: ``int`` for int parameters (so 20
    and 20.0 hash alike), ``float`` for float parameters, unchanged otherwise."""
    if spec.type == "int":
        return int(value)
    if spec.type == "float":
        return float(value)
    return value


def module_content_hash(doc: ModuleDoc) -> str:
    """SHA-256 of what a module *does*: kind, rule, parameter schemas (without their
    descriptions) and logic in the language's canonical form. Names, descriptions, concept ids,
    status and timestamps are excluded, so documentation edits keep the hash."""
    logic = {key: _canonical_text(text) for key, text in sorted(doc.logic.items())}
    parameters = {
        name: spec.model_dump(mode="json", exclude={"description"})
        for name, spec in sorted(doc.parameters.items())
    }
    payload = {"kind": str(doc.kind), "rule": doc.rule, "parameters": parameters, "logic": logic}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) used for every content hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# -- helpers ---------------------------------------------------------------------------------


def _module_mappings(path: Path, errors: list[str]) -> list[tuple[str, Any]]:
    """The module mappings of one file, each with its position label (``modules[2]``)."""
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{path.name}: cannot read: {exc}")
        return []
    except yaml.YAMLError as exc:
        errors.append(f"{path.name}: invalid YAML: {' '.join(str(exc).split())}")
        return []
    if isinstance(content, dict) and "modules" in content:
        if set(content) != {"modules"}:
            extra = sorted(set(content) - {"modules"})
            errors.append(f"{path.name}: unexpected top-level keys {extra} next to 'modules'")
            return []
        modules = content["modules"]
        if not isinstance(modules, list) or not modules:
            errors.append(f"{path.name}: modules: must be a non-empty list of module mappings")
            return []
        return [(f"modules[{i}]", raw) for i, raw in enumerate(modules)]
    if isinstance(content, dict):
        return [("module", content)]
    errors.append(f"{path.name}: must hold a module mapping or a 'modules:' list")
    return []


def _parse_module(raw: Any, path: Path, label: str, errors: list[str]) -> ModuleDoc | None:
    if not isinstance(raw, dict):
        errors.append(f"{label}: must be a mapping, got {type(raw).__name__}")
        return None
    data = dict(raw)
    data.setdefault(
        "provenance", {"source": "module-library", "notes": f"data/modules/{path.name}"}
    )
    try:
        doc = ModuleDoc.model_validate(data)
    except ValidationError as exc:
        name = raw.get("id", "?")
        for err in exc.errors():
            field = _loc_path(err["loc"])
            errors.append(f"{label} (id '{name}').{field}: {err['msg']}")
        return None
    return doc


def _loc_path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _parameter_spec_problems(spec: ParameterSpec) -> list[str]:
    """Problems of one parameter schema, each starting with the sub-field (``.default: ...``)."""
    problems: list[str] = []
    numeric = spec.type in ("int", "float")
    if not numeric:
        for field in ("min", "max", "step"):
            if getattr(spec, field) is not None:
                problems.append(f".{field}: only int and float parameters have a {field}")
    if spec.type != "enum" and spec.choices is not None:
        problems.append(".choices: only enum parameters have choices")
    if spec.type == "enum" and not spec.choices:
        problems.append(".choices: an enum parameter needs a non-empty list of choices")
    if numeric:
        if spec.min is not None and spec.max is not None and spec.min > spec.max:
            problems.append(f".min: {_fmt(spec.min)} is above max {_fmt(spec.max)}")
        if spec.step is not None and not spec.step > 0:
            problems.append(f".step: {_fmt(spec.step)} must be > 0")
        if spec.type == "int":
            for field in ("min", "max", "step"):
                value = getattr(spec, field)
                if value is not None and not float(value).is_integer():
                    problems.append(f".{field}: {_fmt(value)} is not an integer")
    if spec.type != "enum" or spec.choices:
        reason = check_parameter_value(spec, spec.default)
        if reason is not None:
            problems.append(f".default: {reason}")
    return problems


def _logic_problems(doc: ModuleDoc, problems: list[str]) -> set[str]:
    """Append logic problems; return the parameter names the expressions use."""
    allowed = LOGIC_KEYS[doc.kind]
    used: set[str] = set()
    for key, text in doc.logic.items():
        expected = allowed.get(key)
        if expected is None:
            problems.append(
                f"logic.{key}: not a logic key of {_article(doc.kind)} module "
                f"(allowed: {', '.join(allowed)})"
            )
            continue
        try:
            compiled = compile_expression(text, parameters=doc.parameters)
        except SignalLanguageError as exc:
            problems.append(f"logic.{key}: {exc}")
            continue
        used |= set(compiled.parameters)
        if compiled.kind != expected:
            problems.append(
                f"logic.{key}: must be a {expected} expression, got a {compiled.kind} "
                f"expression ({compiled.canonical})"
            )
    keys = set(doc.logic)
    if doc.kind == ModuleKind.ENTRY and not keys & {"long", "short"}:
        problems.append("logic: an entry module needs 'long' and/or 'short'")
    if doc.kind == ModuleKind.EXIT and not keys & set(allowed):
        problems.append(f"logic: an exit module needs at least one of {', '.join(allowed)}")
    if doc.kind == ModuleKind.FILTER:
        if not keys & set(allowed):
            problems.append("logic: a filter module needs 'allow', 'allow_long' or 'allow_short'")
        elif "allow" in keys and keys & {"allow_long", "allow_short"}:
            problems.append("logic.allow: cannot be combined with allow_long/allow_short")
    return used


def _rule_problems(doc: ModuleDoc, rule: RuleSpec | None) -> list[str]:
    """Problems with the module's rule: presence per kind, membership, parameters, logic."""
    rule_kinds = (ModuleKind.RISK, ModuleKind.MANAGEMENT)
    if doc.kind not in rule_kinds:
        if doc.rule is not None:
            return [f"rule: {_article(doc.kind)} module has no rule (got '{doc.rule}')"]
        return []
    names = sorted(name for name, spec in RULES.items() if spec.kind == doc.kind)
    if doc.rule is None:
        return [f"rule: {_article(doc.kind)} module needs a rule, one of {', '.join(names)}"]
    if rule is None or rule.kind != doc.kind:
        return [f"rule: '{doc.rule}' is not {_article(doc.kind)} rule (known: {', '.join(names)})"]
    problems: list[str] = []
    for name in rule.required:
        if name not in doc.parameters:
            problems.append(f"parameters.{name}: required by rule '{doc.rule}' but missing")
    for key in rule.required_logic:
        if key not in doc.logic:
            problems.append(f"logic.{key}: required by rule '{doc.rule}' but missing")
    if doc.kind == ModuleKind.MANAGEMENT:
        for key in doc.logic:
            if key not in rule.required_logic:
                problems.append(f"logic.{key}: not used by rule '{doc.rule}'")
    if doc.rule != "volatility_target" and "volatility" in doc.logic:
        problems.append("logic.volatility: only the volatility_target rule uses it")
    for name, domain in (rule.domains or {}).items():
        spec = doc.parameters.get(name)
        if spec is None:
            continue
        if spec.type not in ("int", "float"):
            problems.append(f"parameters.{name}.type: rule '{doc.rule}' needs a number")
            continue
        if domain.integer and spec.type != "int":
            problems.append(f"parameters.{name}.type: rule '{doc.rule}' needs an int")
        for field in ("default", "min", "max"):
            value = getattr(spec, field)
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and not domain.contains(float(value)):
                problems.append(
                    f"parameters.{name}.{field}: {_fmt(value)} outside the domain of rule "
                    f"'{doc.rule}' ({domain.describe()})"
                )
    return problems


def _canonical_text(text: str) -> str:
    """The language's canonical form of an expression's syntax tree (layout-independent);
    whitespace-normalized text when it does not parse (an invalid module still gets a hash that
    changes with its text)."""
    try:
        return canonical(parse(text))
    except SignalLanguageError:
        return " ".join(text.split())


def _article(kind: ModuleKind) -> str:
    return f"an {kind}" if str(kind)[0] in "aeiou" else f"a {kind}"


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
