"""System specs: selecting modules, mapping timeframes, fixing parameters; validation and hashing.

A system is a frozen choice of one entry module, exit modules, filters, one risk module and
management modules, each with parameter values inside the module's schema and a timeframe role
(H, M or L), plus the symbols it trades and the concrete timeframes of the three roles. The spec is
pure data (human-written YAML under data/systems/ or agent output); :func:`validate_system` checks
it against a module library and reports every problem with a field path, so an agent can repair
its proposal. :func:`spec_hash` identifies a version: it covers what changes behaviour (modules and
their content, parameters, timeframes, direction, symbols) and ignores prose (name, description,
reasoning, provenance). Status is not part of the spec: the promotion engine owns it on SystemDoc.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from factory_pipeline.errors import ConfigError, SignalLanguageError, SpecError
from factory_pipeline.market.timeframes import timeframe_ms
from factory_pipeline.schemas import ModuleDoc, ModuleKind, Provenance, SystemDoc
from factory_pipeline.strategy.language import compile_expression
from factory_pipeline.strategy.modules import (
    canonical_json,
    check_parameter_value,
    module_content_hash,
    normalize_parameter_value,
    validate_module,
)

Role = Literal["H", "M", "L"]
Direction = Literal["long_only", "short_only", "both"]
ParamValue = bool | int | float | str

#: Version of the hash payload layout; bump when the payload changes shape.
HASH_VERSION = 1


class ModuleRef(BaseModel):
    """One module used by a system, with its parameter values and timeframe role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    module: str = Field(description="Module id in the library.")
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="Parameter values; parameters left out take the module's default.",
    )
    timeframe: Role = Field(
        default="L",
        description="Timeframe role the module's logic is evaluated on (aligned to L bars).",
    )


class TimeframeMap(BaseModel):
    """Concrete timeframes of the three roles: H > M > L, each a whole multiple of L."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    H: str = Field(description="Higher timeframe, e.g. '4h'.")
    M: str = Field(description="Middle timeframe, e.g. '1h'.")
    L: str = Field(description="Lower timeframe: the decision (base) timeframe, e.g. '15m'.")


class SystemProvenance(BaseModel):
    """Where the idea came from (module ids are also derived from the refs automatically)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    module_ids: list[str] = Field(default_factory=list)
    concept_ids: list[str] = Field(default_factory=list)
    book_ids: list[str] = Field(default_factory=list)
    segment_ids: list[str] = Field(default_factory=list)
    pages: list[int] = Field(default_factory=list)
    notes: str = ""


class SystemSpec(BaseModel):
    """A trading system as data (see docs/modules_and_systems.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Human name; the id is derived from it.")
    description: str = ""
    reasoning: str = Field(default="", description="Why these modules fit together.")
    symbols: list[str] = Field(min_length=1, description="Upper-case symbols, e.g. BTCUSDT.")
    timeframes: TimeframeMap
    direction: Direction = "both"
    entry: ModuleRef
    exits: list[ModuleRef] = Field(default_factory=list)
    filters: list[ModuleRef] = Field(default_factory=list)
    risk: ModuleRef
    management: list[ModuleRef] = Field(default_factory=list)
    provenance: SystemProvenance = Field(default_factory=SystemProvenance)


@dataclass(frozen=True)
class Problem:
    """One validation problem: a field path (``filters[1].module``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


@dataclass(frozen=True)
class RefSlot:
    """Where a module ref sits in a spec: its path, the kind it must be, and the ref."""

    path: str
    kind: ModuleKind
    ref: ModuleRef


def validate_system(spec: SystemSpec, library: Mapping[str, ModuleDoc]) -> list[Problem]:
    """Every problem of ``spec`` against ``library`` (empty when the system is valid).

    Checks symbols, the timeframe ladder, each module ref (known, right kind, active and valid,
    parameters known and inside their schema, logic compiles on its timeframe role), that the
    entry module covers the direction, that positions can be closed, that rules needing a stop
    distance have one, and that no management rule appears twice.
    """
    problems: list[Problem] = []
    if not spec.name.strip():
        problems.append(Problem("name", "must not be blank"))
    problems.extend(_symbol_problems(spec.symbols))
    ladder_ok = _timeframe_problems(spec.timeframes, problems)
    modules: dict[str, ModuleDoc] = {}
    for slot in iter_ref_slots(spec):
        module = _ref_problems(slot, library, problems, spec.timeframes if ladder_ok else None)
        if module is not None:
            modules[slot.path] = module
    problems.extend(_combination_problems(spec, modules))
    return problems


def load_system_yaml(
    path: Path | str, library: Mapping[str, ModuleDoc] | None = None
) -> SystemSpec:
    """Read a system spec from YAML; SpecError names the file and every bad field.

    With ``library`` the spec is also validated (:func:`validate_system`) and any problem raises.
    """
    file = Path(path)
    try:
        content = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{file}: cannot read system spec: {exc}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{file}: invalid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(content, dict):
        raise SpecError(f"{file}: a system spec must be a mapping, got {type(content).__name__}")
    spec, problems = parse_system_spec(content)
    if spec is not None and library is not None:
        problems = validate_system(spec, library)
    if problems:
        raise SpecError(f"{file}: invalid system spec:\n  " + "\n  ".join(map(str, problems)))
    assert spec is not None
    return spec


def parse_system_spec(data: Any) -> tuple[SystemSpec | None, list[Problem]]:
    """Build a SystemSpec from plain data, turning pydantic errors into path problems."""
    try:
        return SystemSpec.model_validate(data), []
    except ValidationError as exc:
        return None, pydantic_problems(exc)


def spec_hash(spec: SystemSpec, library: Mapping[str, ModuleDoc]) -> str:
    """SHA-256 (hex) of the spec's behaviour.

    The canonical JSON holds: symbols (sorted, unique), the H/M/L timeframes, the direction, and
    for every module ref its id, its module's content hash, its timeframe role and its *resolved*
    parameters (defaults filled in, ints as ints, floats as floats). Exits, filters and
    management are sets (order-free), so their refs are sorted. Name, description, reasoning and
    provenance are excluded. Raises SpecError when a ref names an unknown module.
    """
    payload = {
        "hash_version": HASH_VERSION,
        "symbols": sorted(set(spec.symbols)),
        "timeframes": spec.timeframes.model_dump(),
        "direction": spec.direction,
        "entry": _ref_payload(spec.entry, library, "entry"),
        "exits": _sorted_payloads(spec.exits, library, "exits"),
        "filters": _sorted_payloads(spec.filters, library, "filters"),
        "risk": _ref_payload(spec.risk, library, "risk"),
        "management": _sorted_payloads(spec.management, library, "management"),
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def to_system_doc(spec: SystemSpec, library: Mapping[str, ModuleDoc]) -> SystemDoc:
    """The stored document of a *valid* spec (SpecError listing the problems otherwise).

    ``id = "sys-<name slug>-<first 12 hex of the spec hash>"``: an edit that changes behaviour
    gives a new id and hash, so the old version stays in the store untouched. Provenance collects
    the spec's own provenance plus every referenced module id and its concept ids.
    """
    problems = validate_system(spec, library)
    if problems:
        raise SpecError(f"system '{spec.name}' is invalid:\n  " + "\n  ".join(map(str, problems)))
    digest = spec_hash(spec, library)
    slots = list(iter_ref_slots(spec))
    module_ids = [*spec.provenance.module_ids, *(slot.ref.module for slot in slots)]
    concept_ids = [*spec.provenance.concept_ids]
    for slot in slots:
        concept_ids.extend(library[slot.ref.module].concept_ids)
    provenance = Provenance(
        source="system-spec",
        book_ids=_unique(spec.provenance.book_ids),
        pages=sorted(set(spec.provenance.pages)),
        segment_ids=_unique(spec.provenance.segment_ids),
        concept_ids=_unique(concept_ids),
        module_ids=_unique(module_ids),
        notes=spec.provenance.notes,
    )
    return SystemDoc(
        id=system_id(spec.name, digest),
        name=spec.name,
        spec_hash=digest,
        spec=spec.model_dump(mode="json"),
        description=spec.description,
        reasoning=spec.reasoning,
        provenance=provenance,
    )


def system_id(name: str, digest: str) -> str:
    """``sys-<slug of name, at most 40 chars>-<12 hex of the hash>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "system"
    return f"sys-{slug}-{digest[:12]}"


def iter_ref_slots(spec: SystemSpec) -> Iterator[RefSlot]:
    """Every module ref of the spec with its field path and required kind, in spec order."""
    yield RefSlot("entry", ModuleKind.ENTRY, spec.entry)
    for i, ref in enumerate(spec.exits):
        yield RefSlot(f"exits[{i}]", ModuleKind.EXIT, ref)
    for i, ref in enumerate(spec.filters):
        yield RefSlot(f"filters[{i}]", ModuleKind.FILTER, ref)
    yield RefSlot("risk", ModuleKind.RISK, spec.risk)
    for i, ref in enumerate(spec.management):
        yield RefSlot(f"management[{i}]", ModuleKind.MANAGEMENT, ref)


def resolve_params(ref: ModuleRef, module: ModuleDoc) -> dict[str, Any]:
    """The module's defaults overlaid with the ref's values, normalized per parameter type.

    Unknown names are dropped and invalid values kept as given (validate_system reports both).
    """
    resolved: dict[str, Any] = {}
    for name, spec in module.parameters.items():
        value = ref.params.get(name, spec.default)
        valid = check_parameter_value(spec, value) is None
        resolved[name] = normalize_parameter_value(spec, value) if valid else value
    return resolved


def role_expression(text: str, role: Role, timeframes: TimeframeMap) -> str:
    """The expression as evaluated for a role: wrapped in ``tf("<tf>", ...)`` unless the role is
    L, so the language evaluates it on that timeframe and aligns it to closed bars."""
    if role == "L":
        return text
    return f'tf("{getattr(timeframes, role)}", {text})'


def pydantic_problems(exc: ValidationError) -> list[Problem]:
    """Turn a pydantic ValidationError into path problems (one per field path)."""
    problems: dict[str, Problem] = {}
    for err in exc.errors():
        loc = list(err["loc"])
        union_member = False
        # A failed union (ParamValue) reports one error per member type: collapse them.
        if len(loc) >= 2 and loc[-1] in ("bool", "int", "float", "str") and "params" in loc:
            loc = loc[:-1]
            union_member = True
        path = _loc_path(loc)
        if union_member:
            message = "must be a number, a boolean or a string"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        else:
            message = err["msg"]
        problems.setdefault(path, Problem(path, message))
    return list(problems.values())


# -- helpers ---------------------------------------------------------------------------------

_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")
_ARTICLE = {kind: ("an " if str(kind)[0] in "aeiou" else "a ") + str(kind) for kind in ModuleKind}


def _symbol_problems(symbols: list[str]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for i, symbol in enumerate(symbols):
        if not _SYMBOL.match(symbol):
            problems.append(
                Problem(f"symbols[{i}]", f"'{symbol}' must be 2-30 upper-case letters/digits")
            )
        if symbol in seen:
            problems.append(Problem(f"symbols[{i}]", f"'{symbol}' is listed twice"))
        seen.add(symbol)
    return problems


def _timeframe_problems(timeframes: TimeframeMap, problems: list[Problem]) -> bool:
    """Append ladder problems; True when H > M > L are valid whole multiples of L."""
    lengths: dict[str, int] = {}
    for role in ("H", "M", "L"):
        value = getattr(timeframes, role)
        try:
            lengths[role] = timeframe_ms(value)
        except ConfigError as exc:
            problems.append(Problem(f"timeframes.{role}", str(exc)))
    if len(lengths) < 3:
        return False
    before = len(problems)
    for longer, shorter in (("H", "M"), ("M", "L")):
        if lengths[longer] <= lengths[shorter]:
            problems.append(
                Problem(
                    "timeframes",
                    f"{longer} ({getattr(timeframes, longer)}) must be longer than "
                    f"{shorter} ({getattr(timeframes, shorter)})",
                )
            )
    for role in ("H", "M"):
        if lengths[role] > lengths["L"] and lengths[role] % lengths["L"]:
            problems.append(
                Problem(
                    "timeframes",
                    f"{role} ({getattr(timeframes, role)}) must be a whole multiple of "
                    f"L ({timeframes.L})",
                )
            )
    return len(problems) == before


def _ref_problems(
    slot: RefSlot,
    library: Mapping[str, ModuleDoc],
    problems: list[Problem],
    timeframes: TimeframeMap | None,
) -> ModuleDoc | None:
    """Append the problems of one ref; return its module when it exists with the right kind."""
    ref = slot.ref
    module = library.get(ref.module)
    if module is None:
        problems.append(Problem(f"{slot.path}.module", f"unknown module '{ref.module}'"))
        return None
    if module.kind != slot.kind:
        problems.append(
            Problem(
                f"{slot.path}.module",
                f"'{ref.module}' is {_ARTICLE[module.kind]}, not {_ARTICLE[slot.kind]}",
            )
        )
        return None
    if module.status != "active":
        reason = f": {module.invalid_reason}" if module.invalid_reason else ""
        problems.append(
            Problem(f"{slot.path}.module", f"'{ref.module}' is {module.status}{reason}")
        )
    module_problems = validate_module(module)
    if module_problems:
        problems.append(
            Problem(
                f"{slot.path}.module",
                f"'{ref.module}' is not a valid module: {'; '.join(module_problems)}",
            )
        )
        return module
    for name, value in ref.params.items():
        spec = module.parameters.get(name)
        if spec is None:
            known = ", ".join(module.parameters) or "none"
            problems.append(
                Problem(
                    f"{slot.path}.params.{name}",
                    f"unknown parameter of '{ref.module}' (known: {known})",
                )
            )
            continue
        reason = check_parameter_value(spec, value)
        if reason is not None:
            problems.append(Problem(f"{slot.path}.params.{name}", reason))
    if timeframes is not None:
        field = "timeframe" if ref.timeframe != "L" else "module"
        for key, text in module.logic.items():
            try:
                compile_expression(
                    role_expression(text, ref.timeframe, timeframes),
                    parameters=module.parameters,
                    base_timeframe=timeframes.L,
                )
            except SignalLanguageError as exc:
                problems.append(
                    Problem(
                        f"{slot.path}.{field}",
                        f"logic.{key} of '{ref.module}' cannot run on {ref.timeframe} "
                        f"({getattr(timeframes, ref.timeframe)}): {exc}",
                    )
                )
    return module


def _combination_problems(spec: SystemSpec, modules: Mapping[str, ModuleDoc]) -> list[Problem]:
    """Problems of the selection as a whole (direction, exits, stops, duplicate rules)."""
    problems: list[Problem] = []
    entry = modules.get("entry")
    if entry is not None:
        needed = {"long_only": ["long"], "short_only": ["short"], "both": ["long", "short"]}
        missing = [side for side in needed[spec.direction] if side not in entry.logic]
        if missing:
            problems.append(
                Problem(
                    "entry.module",
                    f"'{entry.id}' defines no {' or '.join(missing)} logic but direction is "
                    f"{spec.direction}",
                )
            )
    exits = [m for path, m in modules.items() if path.startswith("exits[")]
    risk = modules.get("risk")
    management = {path: m for path, m in modules.items() if path.startswith("management[")}
    has_stop = any("stop_distance" in m.logic for m in exits) or (
        risk is not None and "stop_distance" in risk.logic
    )
    closing_rules = {"time_stop", "trailing_stop"}
    can_close = (
        bool(spec.exits) or has_stop or any(m.rule in closing_rules for m in management.values())
    )
    if not can_close:
        problems.append(
            Problem(
                "exits",
                "no exit module, stop distance, time stop or trailing stop: positions could "
                "never be closed",
            )
        )
    if risk is not None and risk.rule == "risk_per_trade" and not has_stop:
        problems.append(
            Problem(
                "risk.module",
                f"rule risk_per_trade of '{risk.id}' sizes from the stop distance, but no exit "
                "module or the risk module defines stop_distance",
            )
        )
    first_by_rule: dict[str, str] = {}
    for path, module in management.items():
        rule = module.rule or ""
        if rule in first_by_rule:
            problems.append(
                Problem(f"{path}.module", f"second '{rule}' rule ({first_by_rule[rule]} has one)")
            )
            continue
        first_by_rule[rule] = path
        if rule in ("breakeven", "partial_take_profit") and not has_stop:
            problems.append(
                Problem(
                    f"{path}.module",
                    f"rule {rule} measures R from the initial stop, but the system defines no "
                    "stop_distance",
                )
            )
    return problems


def _ref_payload(ref: ModuleRef, library: Mapping[str, ModuleDoc], path: str) -> dict[str, Any]:
    module = library.get(ref.module)
    if module is None:
        raise SpecError(f"{path}.module: unknown module '{ref.module}'; cannot hash the spec")
    params = resolve_params(ref, module)
    extra = {k: v for k, v in ref.params.items() if k not in module.parameters}
    return {
        "module": ref.module,
        "module_hash": module_content_hash(module),
        "timeframe": ref.timeframe,
        "params": params,
        "unknown_params": extra,
    }


def _sorted_payloads(
    refs: list[ModuleRef], library: Mapping[str, ModuleDoc], path: str
) -> list[dict[str, Any]]:
    payloads = [_ref_payload(ref, library, f"{path}[{i}]") for i, ref in enumerate(refs)]
    return sorted(payloads, key=canonical_json)


def _loc_path(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))
