"""The offline designer: deterministic combinatorial assembly of compatible modules for a goal.

Why combinatorial: with no model available (the embedded default) the factory must still design
many *sensible* systems. A system here is: one entry whose style matches the goal and whose logic
covers the goal's direction; optionally a signal exit of the same indicator family or style; an
optional protective stop exit and take-profit exit; 0..max_filters filters; one risk module; and
0..max_management management rules with distinct rules. Structures that ``validate_system``
would reject are never built (no way to close a position; risk_per_trade, breakeven or partial
take-profit without a stop distance), and fixed-quantity sizing is only used when a goal
requires it (a base-unit quantity does not transfer across symbols).

Structures are enumerated, shuffled with a seed derived from the goal id and interleaved across
entries (so the candidates spread over every matching entry), then each gets parameters sampled
inside its modules' schemas: on the step grid, within half to twice the default (clipped to
[min, max]), inside the goal's risk budget, with cross-parameter constraints (fast < slow,
min_* < max_*, oversold < overbought, recent < lookback, session start != end) and signal exits
sharing the entry's indicator family taking the entry's lengths (a Donchian exit channel no
longer than the entry channel). A sample that breaks a constraint or fails validation is drawn
again. Candidates with the same spec hash, or near-duplicates of an earlier one (sanity rule),
are skipped. Same inputs -> same list. See docs/ideas.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from factory_pipeline.errors import SpecError
from factory_pipeline.ideas.candidates import CandidateSystem, DroppedProposal, make_candidate
from factory_pipeline.ideas.context import DesignContext, lexical_rank
from factory_pipeline.ideas.goals import DesignGoal, RiskBudget
from factory_pipeline.ideas.past_results import entry_record
from factory_pipeline.ideas.sanity import DEFAULT_TOLERANCE, is_near_duplicate
from factory_pipeline.knowledge.index import embedding_text
from factory_pipeline.schemas import KbConcept, ModuleDoc, ModuleKind, ParameterSpec
from factory_pipeline.strategy.modules import check_parameter_value
from factory_pipeline.strategy.systems import (
    ModuleRef,
    Role,
    SystemProvenance,
    SystemSpec,
    spec_hash,
    validate_system,
)

BACKEND = "offline-assembler"
ASSEMBLER_VERSION = "v1"

#: Words (or phrases) in a module's name, description or logic that mark a style.
STYLE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "trend": ("trend", "crossover", "moving average", "moving-average", "sma", "ema"),
    "breakout": ("breakout", "donchian", "channel", "squeeze"),
    "mean_reversion": ("reversion", "revert", "reverted", "oversold", "fade", "bollinger",
                       "zscore", "z-score", "rsi", "mean"),
    "momentum": ("momentum", "rate of change", "roc", "macd"),
    "volatility": ("volatility", "squeeze", "atr"),
    "carry": ("funding", "open interest", "open_interest", "carry"),
}  # fmt: skip

#: Functions that say nothing about an indicator family.
_GENERIC_FUNCTIONS = frozenset({"lag", "crosses_above", "crosses_below", "abs", "min", "max", "tf"})
_FUNCTION = re.compile(r"([a-z_][a-z0-9_]*)\s*\(")
_WORD = re.compile(r"[a-z0-9]+")
#: Ordered pairs (smaller, larger) of parameter names that must stay ordered.
_ORDERED_PAIRS: tuple[tuple[str, str], ...] = (
    ("fast", "slow"),
    ("oversold", "overbought"),
    ("recent", "lookback"),
)
_MAX_DRAWS = 25


@dataclass(frozen=True)
class Structure:
    """Which modules fill which slots (parameters come later)."""

    entry: ModuleDoc
    exits: tuple[ModuleDoc, ...]
    filters: tuple[ModuleDoc, ...]
    risk: ModuleDoc
    management: tuple[ModuleDoc, ...]


def assemble_candidates(
    goal: DesignGoal,
    context: DesignContext,
    library: Mapping[str, ModuleDoc],
    *,
    as_of: dt.datetime,
    existing_specs: Sequence[SystemSpec] = (),
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[list[CandidateSystem], list[DroppedProposal]]:
    """Up to ``goal.n_candidates`` valid, distinct candidates for ``goal`` (module docstring).

    Only modules in ``context.modules`` (visible as of the design time, active, allowed by the
    goal) are used. ``existing_specs`` are earlier candidates (e.g. of other goals in the same
    run): a near-duplicate of one of them is skipped too. Returns the candidates and the reasons
    when fewer than asked could be built.
    """
    modules = [ranked.module for ranked in context.modules if ranked.module.id in library]
    rng = np.random.default_rng(goal_seed(goal.id))
    structures = list(_interleaved(enumerate_structures(goal, modules), rng))
    concept_for = _concept_matcher(context)
    candidates: list[CandidateSystem] = []
    specs: list[SystemSpec] = list(existing_specs)
    hashes: set[str] = set()
    dropped: list[DroppedProposal] = []
    if not structures:
        reason = "no compatible module combination (check styles, direction and module lists)"
        return [], [DroppedProposal(goal.id, goal.name, reason)]
    attempts = 0
    for structure in itertools.cycle(structures):
        if len(candidates) >= goal.n_candidates or attempts >= goal.n_candidates * 20:
            break
        attempts += 1
        name = f"{goal.name} #{len(candidates) + 1:02d} ({structure.entry.name})"
        spec = _sample_spec(goal, structure, library, rng, name, concept_for, context)
        if spec is None:
            continue
        digest = spec_hash(spec, library)
        if digest in hashes or any(
            is_near_duplicate(spec, other, library, tolerance) for other in specs
        ):
            continue
        try:
            candidate = make_candidate(spec, library, goal_id=goal.id, backend=BACKEND, as_of=as_of)
        except SpecError:  # pragma: no cover - _sample_spec only returns valid specs
            continue
        hashes.add(digest)
        specs.append(spec)
        candidates.append(candidate)
    if len(candidates) < goal.n_candidates:
        dropped.append(
            DroppedProposal(
                goal.id,
                goal.name,
                f"built {len(candidates)} of {goal.n_candidates} candidates: the compatible "
                f"combinations ({len(structures)}) gave no further distinct system",
            )
        )
    return candidates, dropped


def enumerate_structures(goal: DesignGoal, modules: Sequence[ModuleDoc]) -> list[Structure]:
    """Every valid slot assignment for ``goal`` from ``modules`` (in the given module order)."""
    by_kind: dict[ModuleKind, list[ModuleDoc]] = {kind: [] for kind in ModuleKind}
    for module in modules:
        if module.status == "active" and goal.module_allowed(module.id):
            by_kind[module.kind].append(module)
    required = set(goal.required_modules)
    wanted_sides = {"long_only": {"long"}, "short_only": {"short"}, "both": {"long", "short"}}[
        goal.direction
    ]
    entries = [
        m
        for m in by_kind[ModuleKind.ENTRY]
        if wanted_sides <= set(m.logic) and (module_styles(m) & set(goal.styles))
    ]
    required_entries = [m for m in entries if m.id in required]
    entries = required_entries or entries
    exits = by_kind[ModuleKind.EXIT]
    stops = [m for m in exits if "stop_distance" in m.logic]
    targets = [m for m in exits if "take_profit_distance" in m.logic and m not in stops]
    signal_exits = [m for m in exits if m not in stops and m not in targets]
    risks = [m for m in by_kind[ModuleKind.RISK] if m.rule != "fixed_qty" or m.id in required]
    filter_sets = _subsets(by_kind[ModuleKind.FILTER], goal.max_filters, key=lambda m: m.id)
    management_sets = _subsets(
        by_kind[ModuleKind.MANAGEMENT], goal.max_management, key=lambda m: m.rule or m.id
    )
    structures: list[Structure] = []
    for entry in entries:
        families = indicator_families(entry)
        styles = module_styles(entry)
        paired = [
            m
            for m in signal_exits
            if (indicator_families(m) & families or module_styles(m) & styles)
            and _closes_sides(m, wanted_sides)
        ]
        for signal, stop, target in itertools.product(
            [None, *paired], [None, *stops], [None, *targets]
        ):
            chosen_exits = tuple(m for m in (signal, stop, target) if m is not None)
            for risk, filters, management in itertools.product(risks, filter_sets, management_sets):
                structure = Structure(entry, chosen_exits, filters, risk, management)
                if _structure_ok(goal, structure):
                    structures.append(structure)
    return structures


def module_styles(module: ModuleDoc) -> set[str]:
    """The styles whose keywords occur in the module's name; when the name names none, in its
    description and logic (a name is the most specific statement of what a module is)."""
    return _styles_in(module.name) or _styles_in(
        " ".join([module.description, *module.logic.values()])
    )


def _styles_in(text: str) -> set[str]:
    lowered = text.lower()
    words = set(_WORD.findall(lowered))
    styles = set()
    for style, keywords in STYLE_KEYWORDS.items():
        for keyword in keywords:
            phrase = not keyword.isalnum()
            if (phrase and keyword in lowered) or (not phrase and keyword in words):
                styles.add(style)
                break
    return styles


def indicator_families(module: ModuleDoc) -> set[str]:
    """Indicator families the module's logic calls (``bb_upper`` -> ``bb``, ``macd_line`` ->
    ``macd``, ``donchian_lower`` -> ``donchian``; lag/cross/abs/min/max ignored)."""
    families = set()
    for text in module.logic.values():
        for name in _FUNCTION.findall(text):
            if name in _GENERIC_FUNCTIONS:
                continue
            families.add(
                name.split("_")[0] if name.startswith(("bb_", "macd_", "donchian_")) else name
            )
    return families


def goal_seed(goal_id: str) -> int:
    """The assembler's random seed for a goal: the first 8 bytes of sha256(goal id)."""
    return int.from_bytes(hashlib.sha256(goal_id.encode()).digest()[:8], "big")


def sample_params(
    module: ModuleDoc,
    rng: np.random.Generator,
    *,
    budget: RiskBudget | None = None,
    fixed: Mapping[str, object] | None = None,
    upper: Mapping[str, float] | None = None,
) -> dict[str, object] | None:
    """Parameter values for ``module`` inside its schema (module docstring): ``fixed`` values are
    kept when valid, ``upper`` caps a parameter, ``budget`` caps risk parameters. None when no
    draw satisfies the schema and the cross-parameter constraints."""
    fixed = dict(fixed or {})
    for _ in range(_MAX_DRAWS):
        values: dict[str, object] = {}
        for name, spec in module.parameters.items():
            if name in fixed and check_parameter_value(spec, fixed[name]) is None:
                values[name] = fixed[name]
                continue
            cap = _budget_cap(module, name, budget)
            if upper and name in upper:
                cap = upper[name] if cap is None else min(cap, upper[name])
            value = _draw(spec, rng, cap)
            if value is None:
                return None
            values[name] = value
        if _constraints_hold(values):
            return values
    return None


# -- helpers ---------------------------------------------------------------------------------


def _sample_spec(
    goal: DesignGoal,
    structure: Structure,
    library: Mapping[str, ModuleDoc],
    rng: np.random.Generator,
    name: str,
    concept_for,
    context: DesignContext,
) -> SystemSpec | None:
    for _ in range(5):
        entry_params = sample_params(structure.entry, rng, budget=goal.risk)
        if entry_params is None:
            return None
        refs: dict[str, list[ModuleRef]] = {"exits": [], "filters": [], "management": []}
        ok = True
        for module in structure.exits:
            fixed, upper = _paired_values(structure.entry, entry_params, module)
            params = sample_params(module, rng, budget=goal.risk, fixed=fixed, upper=upper)
            ok = ok and params is not None
            refs["exits"].append(ModuleRef(module=module.id, params=params or {}))
        for module in structure.filters:
            params = sample_params(module, rng, budget=goal.risk)
            ok = ok and params is not None
            role: Role = goal.trend_filter_role if "trend" in module_styles(module) else "L"
            refs["filters"].append(ModuleRef(module=module.id, params=params or {}, timeframe=role))
        for module in structure.management:
            params = sample_params(module, rng, budget=goal.risk)
            ok = ok and params is not None
            refs["management"].append(ModuleRef(module=module.id, params=params or {}))
        risk_params = sample_params(structure.risk, rng, budget=goal.risk)
        if not ok or risk_params is None:
            return None
        all_modules = [
            structure.entry,
            *structure.exits,
            *structure.filters,
            structure.risk,
            *structure.management,
        ]
        cited = _citations(all_modules, concept_for)
        spec = SystemSpec(
            name=name,
            description=_describe(goal, structure),
            reasoning=_reason(goal, structure, cited, context),
            symbols=list(goal.symbols),
            timeframes=goal.timeframes,
            direction=goal.direction,
            entry=ModuleRef(module=structure.entry.id, params=entry_params),
            exits=refs["exits"],
            filters=refs["filters"],
            risk=ModuleRef(module=structure.risk.id, params=risk_params),
            management=refs["management"],
            provenance=SystemProvenance(
                concept_ids=list(dict.fromkeys(c.id for c in cited.values())),
                **context.provenance_for(c.id for c in cited.values()),
                notes=f"offline assembler {ASSEMBLER_VERSION}",
            ),
        )
        if not validate_system(spec, library):
            return spec
    return None


def _structure_ok(goal: DesignGoal, s: Structure) -> bool:
    modules = [s.entry, *s.exits, *s.filters, s.risk, *s.management]
    ids = {m.id for m in modules}
    if not set(goal.required_modules) <= ids:
        return False
    kinds = {m.kind for m in modules}
    if not set(goal.required_kinds) <= kinds:
        return False
    has_stop = any("stop_distance" in m.logic for m in (*s.exits, s.risk))
    rules = {m.rule for m in s.management}
    has_signal_exit = any(set(m.logic) & {"long", "short"} for m in s.exits)
    can_close = has_signal_exit or has_stop or bool(rules & {"time_stop", "trailing_stop"})
    if not can_close:
        return False
    if s.risk.rule == "risk_per_trade" and not has_stop:
        return False
    return not (rules & {"breakeven", "partial_take_profit"} and not has_stop)


def _closes_sides(module: ModuleDoc, sides: set[str]) -> bool:
    return sides <= set(module.logic)


def _subsets(items: Sequence[ModuleDoc], most: int, *, key) -> list[tuple[ModuleDoc, ...]]:
    """Subsets of size 0..most whose members have distinct ``key``s, smallest first."""
    out: list[tuple[ModuleDoc, ...]] = []
    for size in range(0, most + 1):
        for combo in itertools.combinations(items, size):
            if len({key(m) for m in combo}) == size:
                out.append(combo)
    return out


def _interleaved(structures: list[Structure], rng: np.random.Generator) -> Iterator[Structure]:
    """Shuffle each entry's structures, then take one per entry in turn (entry order kept)."""
    groups: dict[str, list[Structure]] = {}
    for structure in structures:
        groups.setdefault(structure.entry.id, []).append(structure)
    shuffled = []
    for group in groups.values():
        order = rng.permutation(len(group))
        shuffled.append([group[i] for i in order])
    for row in itertools.zip_longest(*shuffled):
        yield from (s for s in row if s is not None)


def _paired_values(
    entry: ModuleDoc, entry_params: Mapping[str, object], exit_module: ModuleDoc
) -> tuple[dict[str, object], dict[str, float]]:
    """Values a signal exit takes from its entry: shared parameter names when both use the same
    indicator family; a channel exit is capped at the entry's channel length instead."""
    shared = indicator_families(entry) & indicator_families(exit_module)
    if not shared:
        return {}, {}
    common = set(entry.parameters) & set(exit_module.parameters)
    if "donchian" in shared:
        return {}, {
            name: float(entry_params[name])  # type: ignore[arg-type]
            for name in common
            if isinstance(entry_params[name], int | float)
        }
    return {name: entry_params[name] for name in common}, {}


def _budget_cap(module: ModuleDoc, name: str, budget: RiskBudget | None) -> float | None:
    if budget is None or module.kind != ModuleKind.RISK:
        return None
    caps = {
        "risk_fraction": budget.max_risk_per_trade,
        "max_leverage": budget.max_leverage,
        "fraction": budget.max_leverage,
        "target_vol": budget.target_vol,
    }
    return caps.get(name)


def _draw(spec: ParameterSpec, rng: np.random.Generator, cap: float | None) -> object | None:
    """One value on the schema's grid within [default/2, 2 x default] clipped to [min, max]
    (and to ``cap``); None when the interval holds no grid point."""
    if spec.type == "bool":
        return bool(rng.integers(2))
    if spec.type == "enum":
        choices = list(spec.choices or [])
        return choices[int(rng.integers(len(choices)))] if choices else None
    default = float(spec.default)
    low = spec.min if spec.min is not None else -math.inf
    high = spec.max if spec.max is not None else math.inf
    if default > 0:
        lo, hi = max(low, default / 2), min(high, default * 2)
    elif default < 0:
        lo, hi = max(low, default * 2), min(high, default / 2)
    elif math.isfinite(low) and math.isfinite(high):
        lo, hi = low, low + (high - low) / 4
    else:
        lo = hi = 0.0
    if cap is not None and cap < hi:
        hi = cap
        if lo > hi:
            lo = max(low, hi / 2)
    if hi < lo:
        return None
    step = spec.step if spec.step else (1.0 if spec.type == "int" else None)
    if step is None:  # continuous float: 2 significant digits inside [lo, hi]
        value = float(rng.uniform(lo, hi))
        value = float(f"{value:.2g}") if value else 0.0
        value = min(max(value, lo), hi)
        return value if check_parameter_value(spec, value) is None else None
    anchor = spec.min if spec.min is not None else 0.0
    k_lo = math.ceil((lo - anchor) / step - 1e-9)
    k_hi = math.floor((hi - anchor) / step + 1e-9)
    if k_hi < k_lo:
        return None
    k = int(rng.integers(k_lo, k_hi + 1))
    value = round(anchor + k * step, 10)
    result: object = int(round(value)) if spec.type == "int" else value
    return result if check_parameter_value(spec, result) is None else None


def _constraints_hold(values: Mapping[str, object]) -> bool:
    def num(name: str) -> float | None:
        value = values.get(name)
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    for small, large in _ORDERED_PAIRS:
        a, b = num(small), num(large)
        if a is not None and b is not None and not a < b:
            return False
    for name in values:
        if name.startswith("min_"):
            a, b = num(name), num("max_" + name[4:])
            if a is not None and b is not None and not a < b:
                return False
    start, end = num("start"), num("end")
    return not (start is not None and end is not None and start == end)


def _concept_matcher(context: DesignContext):
    """module -> the retrieved concept that best supports it (its own concept ids first, else
    the best lexical match of the module's text against the concept cards), or None."""
    concepts = [ranked.concept for ranked in context.concepts]
    cache: dict[str, KbConcept | None] = {}

    def best(module: ModuleDoc) -> KbConcept | None:
        if module.id not in cache:
            own = [c for c in concepts if c.id in module.concept_ids]
            if own:
                cache[module.id] = own[0]
            else:
                ranked = lexical_rank(
                    f"{module.name} {module.description}", concepts, embedding_text
                )
                cache[module.id] = ranked[0][0] if ranked and ranked[0][1] > 0 else None
        return cache[module.id]

    return best


def _citations(modules: Sequence[ModuleDoc], concept_for) -> dict[str, KbConcept]:
    cited = {}
    for module in modules:
        concept = concept_for(module)
        if concept is not None:
            cited[module.id] = concept
    return cited


def _describe(goal: DesignGoal, s: Structure) -> str:
    side = {"long_only": "Long-only", "short_only": "Short-only", "both": "Long and short"}
    parts = [f"{side[goal.direction]} {s.entry.name.lower()} on {goal.timeframes.L} bars"]
    if s.filters:
        parts.append("filtered by " + ", ".join(m.name.lower() for m in s.filters))
    if s.exits:
        parts.append("exiting on " + ", ".join(m.name.lower() for m in s.exits))
    parts.append(f"sized by {s.risk.name.lower()}")
    if s.management:
        parts.append("managed by " + ", ".join(m.name.lower() for m in s.management))
    tf = goal.timeframes
    return (
        "; ".join(parts)
        + f". Symbols {', '.join(goal.symbols)}; timeframes H={tf.H}, M={tf.M}, L={tf.L}."
    )


def _reason(
    goal: DesignGoal, s: Structure, cited: Mapping[str, KbConcept], context: DesignContext
) -> str:
    styles = sorted(module_styles(s.entry) & set(goal.styles))
    notes = [
        f"Goal '{goal.name}' asks for {', '.join(goal.styles)} systems ({goal.direction}); "
        f"the entry '{s.entry.name}' is a {', '.join(styles)} rule that defines the "
        f"{'long and short' if goal.direction == 'both' else goal.direction.split('_')[0]} side."
    ]
    for module in s.filters:
        role = goal.trend_filter_role if "trend" in module_styles(module) else "L"
        notes.append(f"Filter '{module.name}' runs on {role} and removes entries it disallows.")
    if s.exits:
        notes.append("Exits: " + "; ".join(m.name for m in s.exits) + ".")
    notes.append(
        f"Sizing '{s.risk.name}' ({s.risk.rule}) stays inside the goal's risk budget "
        f"(risk per trade <= {goal.risk.max_risk_per_trade:g}, leverage <= "
        f"{goal.risk.max_leverage:g}, target vol <= {goal.risk.target_vol:g})."
    )
    for module in s.management:
        notes.append(f"Management '{module.name}' ({module.rule}).")
    record = entry_record(context.past_results, s.entry.id)
    if record:
        notes.append(record)
    for module_id, concept in cited.items():
        pages = context.provenance_for([concept.id])["pages"]
        where = f", pages {', '.join(map(str, pages))}" if pages else ""
        notes.append(f"Concept '{concept.name}' ({concept.id}{where}) supports {module_id}.")
    return " ".join(notes)
