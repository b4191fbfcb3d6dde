"""System -> per-bar signal arrays: the one place that turns a spec into what the engine trades.

Backtest, demo and live all call this same code on the same compiled spec (design principle 6),
so the combination rules below *are* the system's semantics:

- enter long at bar t iff the entry module's ``long`` is true at t, every filter allows longs at t
  (``allow`` and ``allow_long``), the direction allows longs, t is past the warm-up, and every
  per-trade value the system uses (stop, take-profit, trail distance, volatility) is defined at t;
  the same for shorts;
- exit signals of all exit modules are OR-combined per side;
- the stop distance is the tightest (smallest) of the exit modules' ``stop_distance`` values, or
  the risk module's when no exit module defines one; take-profit likewise from the exit modules;
  non-positive or infinite distances count as undefined (NaN);
- NaN never triggers anything: comparisons on NaN are false, and entries and exits are masked
  during the warm-up (``warmup_bars``: the first bar at which every expression can be defined);
- every value at bar t uses only data known at bar t's close (the signal language is causal, and
  H/M roles are evaluated with ``tf()``, which aligns higher bars to their close).

Compilation is separated from evaluation (:func:`compile_system`) so sweeps and repeated
backtests parse and check the expressions once and only re-evaluate with new parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from factory_pipeline.errors import SignalLanguageError, SpecError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.schemas import ModuleDoc
from factory_pipeline.strategy.language import (
    CompiledExpression,
    EvalContext,
    IndicatorCache,
    compile_expression,
)
from factory_pipeline.strategy.modules import check_parameter_value
from factory_pipeline.strategy.systems import (
    ModuleRef,
    Role,
    SystemSpec,
    iter_ref_slots,
    resolve_params,
    role_expression,
    spec_hash,
    validate_system,
)


@dataclass(frozen=True)
class SystemSignals:
    """Per-bar decisions of one system on one frame (arrays have the frame's length).

    Distances are in price units and NaN means "none". ``volatility`` is the risk module's
    per-bar return volatility (volatility_target sizing only, NaN otherwise).
    ``sizing_params`` are the risk module's numeric parameters; ``management`` holds the
    management rules' numbers: ``breakeven_after_r``, ``time_stop_bars``, ``partial_tp_r``,
    ``partial_tp_fraction`` and ``trailing_stop`` (1.0 when a trailing rule is present).
    """

    entry_long: np.ndarray
    entry_short: np.ndarray
    exit_long: np.ndarray
    exit_short: np.ndarray
    stop_distance: np.ndarray
    take_profit_distance: np.ndarray
    trail_distance: np.ndarray
    volatility: np.ndarray
    sizing_rule: str
    sizing_params: dict[str, float]
    management: dict[str, float]
    warmup_bars: int


@dataclass(frozen=True)
class CompiledPart:
    """One module ref, compiled: its resolved parameters and its logic compiled for its role."""

    path: str
    module: ModuleDoc
    role: Role
    params: Mapping[str, Any]
    expressions: Mapping[str, CompiledExpression]

    def has(self, key: str) -> bool:
        return key in self.expressions

    def evaluate(self, key: str, ctx: EvalContext) -> np.ndarray:
        return self.expressions[key].evaluate(ctx, self.params)


@dataclass(frozen=True)
class CompiledSystem:
    """A validated spec with every expression compiled once; reusable across frames and
    parameter overrides (:meth:`with_params`)."""

    spec: SystemSpec
    spec_hash: str
    entry: CompiledPart
    exits: tuple[CompiledPart, ...]
    filters: tuple[CompiledPart, ...]
    risk: CompiledPart
    management: tuple[CompiledPart, ...]
    library: Mapping[str, ModuleDoc] = field(repr=False, compare=False)

    @property
    def parts(self) -> tuple[CompiledPart, ...]:
        return (self.entry, *self.exits, *self.filters, self.risk, *self.management)

    @property
    def warmup_bars(self) -> int:
        """First bar at which every expression of the system can be defined."""
        base = self.spec.timeframes.L
        return max(
            (
                compiled.warmup_bars(part.params, base_timeframe=base)
                for part in self.parts
                for compiled in part.expressions.values()
            ),
            default=0,
        )

    def signals(self, frame: MarketFrame, cache: IndicatorCache | None = None) -> SystemSignals:
        """Evaluate the system on ``frame`` (which must be at the spec's L timeframe).

        Without ``cache`` a fresh IndicatorCache is used for this call, so indicators shared by
        several modules are still computed once.
        """
        if frame.timeframe != self.spec.timeframes.L:
            raise SpecError(
                f"system '{self.spec.name}' decides on L = {self.spec.timeframes.L} bars, but the "
                f"frame of {frame.symbol} is {frame.timeframe}"
            )
        ctx = EvalContext(frame, cache if cache is not None else IndicatorCache())
        try:
            return self._signals(ctx, len(frame))
        except SignalLanguageError as exc:
            raise SpecError(f"system '{self.spec.name}' on {frame.symbol}: {exc}") from exc

    def with_params(self, overrides: Mapping[str, Any]) -> CompiledSystem:
        """The same system with some parameter values replaced, reusing the compiled
        expressions. Keys are field paths such as ``"entry.params.fast"`` or
        ``"exits[1].params.k"``; SpecError names any unknown path or invalid value."""
        by_path = {part.path: part for part in self.parts}
        updates: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            path, sep, name = key.rpartition(".params.")
            part = by_path.get(path) if sep else None
            if part is None:
                raise SpecError(f"{key}: not a parameter path like 'entry.params.fast'")
            spec = part.module.parameters.get(name)
            if spec is None:
                known = ", ".join(part.module.parameters) or "none"
                raise SpecError(f"{key}: unknown parameter of '{part.module.id}' (known: {known})")
            reason = check_parameter_value(spec, value)
            if reason is not None:
                raise SpecError(f"{key}: {reason}")
            updates.setdefault(path, {})[name] = value
        new_spec = _spec_with_params(self.spec, updates)
        refs = {slot.path: slot.ref for slot in iter_ref_slots(new_spec)}

        def updated(part: CompiledPart) -> CompiledPart:
            if part.path not in updates:
                return part
            return replace(part, params=resolve_params(refs[part.path], part.module))

        return replace(
            self,
            spec=new_spec,
            spec_hash=spec_hash(new_spec, self.library),
            entry=updated(self.entry),
            exits=tuple(updated(p) for p in self.exits),
            filters=tuple(updated(p) for p in self.filters),
            risk=updated(self.risk),
            management=tuple(updated(p) for p in self.management),
        )

    # -- evaluation ------------------------------------------------------------------------

    def _signals(self, ctx: EvalContext, n: int) -> SystemSignals:
        direction = self.spec.direction
        entry_long = self._side(self.entry, "long", ctx, n) & (direction != "short_only")
        entry_short = self._side(self.entry, "short", ctx, n) & (direction != "long_only")
        for part in self.filters:
            if part.has("allow"):
                allow = part.evaluate("allow", ctx)
                entry_long &= allow
                entry_short &= allow
            if part.has("allow_long"):
                entry_long &= part.evaluate("allow_long", ctx)
            if part.has("allow_short"):
                entry_short &= part.evaluate("allow_short", ctx)

        exit_long = np.zeros(n, dtype=np.bool_)
        exit_short = np.zeros(n, dtype=np.bool_)
        for part in self.exits:
            exit_long |= self._side(part, "long", ctx, n)
            exit_short |= self._side(part, "short", ctx, n)

        stop_parts = [p for p in self.exits if p.has("stop_distance")]
        if not stop_parts and self.risk.has("stop_distance"):
            stop_parts = [self.risk]
        stop = _tightest([_distance(p.evaluate("stop_distance", ctx)) for p in stop_parts], n)
        tp_parts = [p for p in self.exits if p.has("take_profit_distance")]
        take_profit = _tightest(
            [_distance(p.evaluate("take_profit_distance", ctx)) for p in tp_parts], n
        )
        trail_parts = [p for p in self.management if p.has("trail_distance")]
        trail = _tightest([_distance(p.evaluate("trail_distance", ctx)) for p in trail_parts], n)
        volatility = (
            _distance(self.risk.evaluate("volatility", ctx))
            if self.risk.has("volatility")
            else np.full(n, np.nan)
        )

        # A trade never opens with a per-trade value it needs still undefined (warm-up).
        ready = np.ones(n, dtype=np.bool_)
        for used, values in (
            (stop_parts, stop),
            (tp_parts, take_profit),
            (trail_parts, trail),
            ([self.risk] if self.risk.has("volatility") else [], volatility),
        ):
            if used:
                ready &= np.isfinite(values)
        warmup = min(self.warmup_bars, n)
        ready[:warmup] = False
        entry_long &= ready
        entry_short &= ready
        exit_long[:warmup] = False
        exit_short[:warmup] = False

        return SystemSignals(
            entry_long=entry_long,
            entry_short=entry_short,
            exit_long=exit_long,
            exit_short=exit_short,
            stop_distance=stop,
            take_profit_distance=take_profit,
            trail_distance=trail,
            volatility=volatility,
            sizing_rule=self.risk.module.rule or "",
            sizing_params=_numeric(self.risk.params),
            management=self._management_numbers(),
            warmup_bars=warmup,
        )

    @staticmethod
    def _side(part: CompiledPart, key: str, ctx: EvalContext, n: int) -> np.ndarray:
        if part.has(key):
            return part.evaluate(key, ctx).copy()
        return np.zeros(n, dtype=np.bool_)

    def _management_numbers(self) -> dict[str, float]:
        numbers: dict[str, float] = {}
        for part in self.management:
            rule, params = part.module.rule, part.params
            if rule == "breakeven":
                numbers["breakeven_after_r"] = float(params["after_r"])
            elif rule == "time_stop":
                numbers["time_stop_bars"] = float(params["max_bars"])
            elif rule == "partial_take_profit":
                numbers["partial_tp_r"] = float(params["at_r"])
                numbers["partial_tp_fraction"] = float(params["fraction"])
            elif rule == "trailing_stop":
                numbers["trailing_stop"] = 1.0
        return numbers


def compile_system(spec: SystemSpec, library: Mapping[str, ModuleDoc]) -> CompiledSystem:
    """Validate ``spec`` and compile every module expression for its timeframe role.

    Raises SpecError listing every validation problem when the spec is invalid.
    """
    problems = validate_system(spec, library)
    if problems:
        raise SpecError(f"system '{spec.name}' is invalid:\n  " + "\n  ".join(map(str, problems)))
    parts = {
        slot.path: _compile_part(slot.path, slot.ref, spec, library)
        for slot in iter_ref_slots(spec)
    }
    return CompiledSystem(
        spec=spec,
        spec_hash=spec_hash(spec, library),
        entry=parts["entry"],
        exits=tuple(parts[f"exits[{i}]"] for i in range(len(spec.exits))),
        filters=tuple(parts[f"filters[{i}]"] for i in range(len(spec.filters))),
        risk=parts["risk"],
        management=tuple(parts[f"management[{i}]"] for i in range(len(spec.management))),
        library=library,
    )


def compute_signals(
    spec: SystemSpec,
    library: Mapping[str, ModuleDoc],
    frame: MarketFrame,
    *,
    cache: IndicatorCache | None = None,
) -> SystemSignals:
    """Compile and evaluate in one call (use :func:`compile_system` to reuse compilation)."""
    return compile_system(spec, library).signals(frame, cache)


# -- helpers ---------------------------------------------------------------------------------


def _compile_part(
    path: str, ref: ModuleRef, spec: SystemSpec, library: Mapping[str, ModuleDoc]
) -> CompiledPart:
    module = library[ref.module]
    expressions = {}
    for key, text in module.logic.items():
        try:
            expressions[key] = compile_expression(
                role_expression(text, ref.timeframe, spec.timeframes),
                parameters=module.parameters,
                base_timeframe=spec.timeframes.L,
            )
        except SignalLanguageError as exc:  # validate_system compiles too; kept for safety
            raise SpecError(f"{path}: logic.{key} of '{module.id}': {exc}") from exc
    return CompiledPart(
        path=path,
        module=module,
        role=ref.timeframe,
        params=resolve_params(ref, module),
        expressions=expressions,
    )


def _spec_with_params(spec: SystemSpec, updates: Mapping[str, Mapping[str, Any]]) -> SystemSpec:
    """A copy of ``spec`` whose refs at the given paths carry the updated parameter values."""

    def patch(ref: ModuleRef, path: str) -> ModuleRef:
        if path not in updates:
            return ref
        return ref.model_copy(update={"params": {**ref.params, **updates[path]}})

    return spec.model_copy(
        update={
            "entry": patch(spec.entry, "entry"),
            "exits": [patch(r, f"exits[{i}]") for i, r in enumerate(spec.exits)],
            "filters": [patch(r, f"filters[{i}]") for i, r in enumerate(spec.filters)],
            "risk": patch(spec.risk, "risk"),
            "management": [patch(r, f"management[{i}]") for i, r in enumerate(spec.management)],
        }
    )


def _distance(values: np.ndarray) -> np.ndarray:
    """A distance array with non-positive and non-finite values replaced by NaN."""
    out = np.asarray(values, dtype=np.float64).copy()
    with np.errstate(invalid="ignore"):
        out[~(np.isfinite(out) & (out > 0.0))] = np.nan
    return out


def _tightest(arrays: list[np.ndarray], n: int) -> np.ndarray:
    """Element-wise minimum ignoring NaN; NaN where every input is NaN (or none is given)."""
    if not arrays:
        return np.full(n, np.nan)
    out = arrays[0].copy()
    for values in arrays[1:]:
        out = np.fmin(out, values)
    return out


def _numeric(params: Mapping[str, Any]) -> dict[str, float]:
    """The numeric (and boolean, as 0/1) parameter values as floats; enum strings dropped."""
    return {
        name: float(value)
        for name, value in params.items()
        if isinstance(value, bool | int | float)
    }
