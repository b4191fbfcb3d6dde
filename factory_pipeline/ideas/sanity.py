"""Sanity checks on candidate systems, run before anything is backtested.

Each check gives ``{passed, reasons}``; a candidate passes when every check passes. Failing
systems are kept with their reasons (stored in ``SystemDoc.sanity``) and never backtested;
nothing here changes a status. The checks, in order (:data:`SANITY_CHECKS`):

* ``module_refs``: every module reference names a library module of the slot's kind that is
  active.
* ``parameter_ranges``: every parameter value is a known parameter of its module and lies inside
  its schema (type, [min, max], step grid, choices; ``check_parameter_value``).
* ``timeframes``: each of H, M, L is a supported timeframe, H > M > L, H and M are whole
  multiples of L, and market data is available for every symbol at L: the coverage has the
  symbol at L itself or at a timeframe that divides L (the store resamples it), spanning at
  least ``min_bars`` L bars.
* ``lookahead``: the compiled system passes the truncation-invariance and future-perturbation
  audit (``engine.lookahead.audit_signals``, as ``engine.system_backtest.audit_system`` runs it)
  on the audit frame of its first symbol that has one, resampled to L, last ``audit_bars`` bars,
  ``n_cuts`` seeded cuts. One IndicatorCache is shared by every audit of a run (its keys include
  a content digest of the frame, so truncated and perturbed frames never share entries), so
  indicators that several candidates use are computed once per frame. A spec that does not
  compile (any other ``validate_system`` problem) fails here with the problems as reasons.
* ``near_duplicate``: not a near-duplicate of an existing system (another id) or of an earlier
  candidate of the same batch (the first one wins). Near-duplicate: same timeframes and
  direction, the same modules with the same timeframe roles in the same slots (exits, filters
  and management as multisets), and every resolved parameter (defaults filled in) within a
  relative tolerance (default 5 %: ``|a - b| <= tol * max(|a|, |b|)``; booleans and enums
  equal). Symbols are not compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from factory_pipeline.engine.lookahead import audit_signals
from factory_pipeline.errors import ConfigError, FactoryError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.market.timeframes import timeframe_ms
from factory_pipeline.schemas import ModuleDoc, SystemDoc
from factory_pipeline.strategy.language import IndicatorCache
from factory_pipeline.strategy.modules import canonical_json, check_parameter_value
from factory_pipeline.strategy.signals import compile_system
from factory_pipeline.strategy.systems import (
    SystemSpec,
    iter_ref_slots,
    parse_system_spec,
    resolve_params,
    spec_hash,
    validate_system,
)

#: The checks in the order they run, with what each one guarantees.
SANITY_CHECKS: tuple[tuple[str, str], ...] = (
    ("module_refs", "every module reference exists in the library, has its slot's kind and is active"),
    ("parameter_ranges", "every parameter is known and inside its module's schema"),
    ("timeframes", "H > M > L, all supported, and market data for every symbol at L"),
    ("lookahead", "the compiled system passes the truncation and perturbation lookahead audit"),
    ("near_duplicate", "not within tolerance of an existing system or an earlier candidate"),
)  # fmt: skip

#: Default relative tolerance of the near-duplicate check.
DEFAULT_TOLERANCE = 0.05
#: Signal arrays the lookahead audit compares (as engine.system_backtest.audit_system).
AUDITED_SIGNALS = (
    "entry_long",
    "entry_short",
    "exit_long",
    "exit_short",
    "stop_distance",
    "take_profit_distance",
    "trail_distance",
    "volatility",
)

#: Coverage: ``(symbol, timeframe) -> (first_open_ms, last_open_ms)`` as from
#: ``MarketStore.coverage()`` rows.
Coverage = Mapping[tuple[str, str], tuple[int, int]]


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passed: bool
    reasons: list[str]


class SanityReport(BaseModel):
    """``{passed, checks: {name: {passed, reasons}}}`` (checks in SANITY_CHECKS order)."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    checks: dict[str, CheckResult]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form stored in ``SystemDoc.sanity``."""
        return self.model_dump(mode="json")

    def failed_checks(self) -> list[str]:
        return [name for name, result in self.checks.items() if not result.passed]


def run_sanity(
    candidates: Sequence[Any],
    *,
    library: Mapping[str, ModuleDoc],
    frames: Mapping[str, MarketFrame] | MarketFrame,
    coverage: Coverage,
    existing: Sequence[SystemDoc] = (),
    tolerance: float = DEFAULT_TOLERANCE,
    n_cuts: int = 3,
    audit_bars: int = 3000,
    min_bars: int = 500,
    seed: int = 0,
) -> dict[str, SanityReport]:
    """The sanity report of every candidate, by system id (module docstring).

    ``candidates`` are CandidateSystem objects (``.spec`` and ``.doc``) or SystemDoc documents.
    ``frames`` maps a symbol to its audit frame (any timeframe that divides L), or is one frame
    used for every system. ``existing`` are stored systems to compare against.
    """
    auditor = _Auditor(library, frames, n_cuts=n_cuts, audit_bars=audit_bars, seed=seed)
    earlier: list[tuple[str, SystemSpec]] = []
    stored = [(doc.id, spec) for doc in existing if (spec := _spec_of_doc(doc)) is not None]
    reports: dict[str, SanityReport] = {}
    for candidate in candidates:
        system_id, spec, parse_problems = _unpack(candidate)
        checks: dict[str, CheckResult] = {}
        if spec is None:
            reasons = parse_problems or ["the stored spec is not a valid system spec"]
            for name, _ in SANITY_CHECKS:
                checks[name] = CheckResult(
                    passed=False, reasons=[f"spec unreadable: {r}" for r in reasons]
                )
        else:
            checks["module_refs"] = _result(module_ref_problems(spec, library))
            checks["parameter_ranges"] = _result(parameter_problems(spec, library))
            checks["timeframes"] = _result(timeframe_problems(spec, coverage, min_bars=min_bars))
            checks["lookahead"] = _result(auditor.problems(spec))
            twins = [
                other_id
                for other_id, other in [*stored, *earlier]
                if other_id != system_id and is_near_duplicate(spec, other, library, tolerance)
            ]
            checks["near_duplicate"] = _result(
                [
                    f"near-duplicate of {twins[0]}: same modules in the same slots and every "
                    f"parameter within {tolerance:.0%}"
                ]
                if twins
                else []
            )
            earlier.append((system_id, spec))
        report = SanityReport(passed=all(c.passed for c in checks.values()), checks=checks)
        reports.setdefault(system_id, report)
    return reports


def module_ref_problems(spec: SystemSpec, library: Mapping[str, ModuleDoc]) -> list[str]:
    """Refs to unknown modules, modules of the wrong kind, or modules that are not active."""
    problems = []
    for slot in iter_ref_slots(spec):
        module = library.get(slot.ref.module)
        if module is None:
            problems.append(f"{slot.path}: unknown module '{slot.ref.module}'")
        elif module.kind != slot.kind:
            problems.append(
                f"{slot.path}: '{module.id}' is a {module.kind.value} module, not {slot.kind.value}"
            )
        elif module.status != "active":
            why = f" ({module.invalid_reason})" if module.invalid_reason else ""
            problems.append(f"{slot.path}: module '{module.id}' is {module.status}{why}")
    return problems


def parameter_problems(spec: SystemSpec, library: Mapping[str, ModuleDoc]) -> list[str]:
    """Unknown parameters and values outside the schema (refs to unknown modules are skipped:
    module_refs reports them)."""
    problems = []
    for slot in iter_ref_slots(spec):
        module = library.get(slot.ref.module)
        if module is None:
            continue
        for name, value in slot.ref.params.items():
            schema = module.parameters.get(name)
            if schema is None:
                problems.append(f"{slot.path}.params.{name}: unknown parameter of '{module.id}'")
                continue
            reason = check_parameter_value(schema, value)
            if reason is not None:
                problems.append(f"{slot.path}.params.{name}: {reason}")
    return problems


def timeframe_problems(spec: SystemSpec, coverage: Coverage, *, min_bars: int = 500) -> list[str]:
    """Ladder problems and symbols without enough market data at L (module docstring)."""
    problems = []
    lengths: dict[str, int] = {}
    for role in ("H", "M", "L"):
        value = getattr(spec.timeframes, role)
        try:
            lengths[role] = timeframe_ms(value)
        except ConfigError as exc:
            problems.append(f"timeframes.{role}: {exc}")
    if len(lengths) < 3:
        return problems
    tf = spec.timeframes
    if not lengths["H"] > lengths["M"]:
        problems.append(f"timeframes: H ({tf.H}) must be longer than M ({tf.M})")
    if not lengths["M"] > lengths["L"]:
        problems.append(f"timeframes: M ({tf.M}) must be longer than L ({tf.L})")
    for role in ("H", "M"):
        if lengths[role] % lengths["L"]:
            problems.append(f"timeframes: {role} ({getattr(tf, role)}) is not a multiple of L")
    for symbol in spec.symbols:
        bars = _bars_available(coverage, symbol, tf.L, lengths["L"])
        if bars is None:
            problems.append(f"no market data for {symbol} at L={tf.L} (or a timeframe dividing it)")
        elif bars < min_bars:
            problems.append(
                f"only {bars} {tf.L} bars of {symbol} market data (need at least {min_bars})"
            )
    return problems


def is_near_duplicate(
    a: SystemSpec,
    b: SystemSpec,
    library: Mapping[str, ModuleDoc],
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """Whether ``a`` and ``b`` are near-duplicates (module docstring)."""
    if a.timeframes != b.timeframes or a.direction != b.direction:
        return False
    slots_a, slots_b = _slots(a, library), _slots(b, library)
    if [[ref[:2] for ref in group] for group in slots_a] != [
        [ref[:2] for ref in group] for group in slots_b
    ]:
        return False
    for group_a, group_b in zip(slots_a, slots_b, strict=True):
        for (_, _, params_a), (_, _, params_b) in zip(group_a, group_b, strict=True):
            if not _params_close(params_a, params_b, tolerance):
                return False
    return True


# -- helpers ---------------------------------------------------------------------------------


class _Auditor:
    """Runs lookahead audits with one shared indicator cache and per-(symbol, L) frames."""

    def __init__(
        self,
        library: Mapping[str, ModuleDoc],
        frames: Mapping[str, MarketFrame] | MarketFrame,
        *,
        n_cuts: int,
        audit_bars: int,
        seed: int,
    ) -> None:
        self.library = library
        self.frames = frames
        self.n_cuts = n_cuts
        self.audit_bars = audit_bars
        self.seed = seed
        self.cache = IndicatorCache()
        self._frames: dict[tuple[str, str], MarketFrame | str] = {}
        self._verdicts: dict[tuple[str, str], list[str]] = {}

    def problems(self, spec: SystemSpec) -> list[str]:
        invalid = validate_system(spec, self.library)
        if invalid:
            return [f"not run: the spec does not compile: {p}" for p in invalid]
        symbol, frame = self._frame_for(spec)
        if isinstance(frame, str):
            return [frame]
        key = (spec_hash(spec, self.library), symbol)
        if key not in self._verdicts:
            self._verdicts[key] = self._audit(spec, frame)
        return self._verdicts[key]

    def _audit(self, spec: SystemSpec, frame: MarketFrame) -> list[str]:
        try:
            compiled = compile_system(spec, self.library)

            def compute(f: MarketFrame) -> dict[str, np.ndarray]:
                signals = compiled.signals(f, self.cache)
                return {name: getattr(signals, name) for name in AUDITED_SIGNALS}

            report = audit_signals(
                compute,
                frame,
                n_cuts=self.n_cuts,
                seed=self.seed,
                min_prefix=min(400, len(frame) // 2),
            )
        except FactoryError as exc:
            return [f"audit could not run on {frame.symbol} {frame.timeframe}: {exc}"]
        return list(report.failures)

    def _frame_for(self, spec: SystemSpec) -> tuple[str, MarketFrame | str]:
        timeframe = spec.timeframes.L
        if isinstance(self.frames, MarketFrame):
            symbol, base = self.frames.symbol, self.frames
        else:
            symbol = next((s for s in spec.symbols if s in self.frames), "")
            if not symbol:
                return "", f"no audit frame for any of {', '.join(spec.symbols)}"
            base = self.frames[symbol]
        key = (symbol, timeframe)
        if key not in self._frames:
            self._frames[key] = self._resampled(base, timeframe)
        return symbol, self._frames[key]

    def _resampled(self, base: MarketFrame, timeframe: str) -> MarketFrame | str:
        step, base_step = timeframe_ms(timeframe), timeframe_ms(base.timeframe)
        if step % base_step:
            return (
                f"the audit frame of {base.symbol} is {base.timeframe}, which does not divide "
                f"L={timeframe}"
            )
        frame = base if step == base_step else base.resample(timeframe)
        start = max(0, len(frame) - self.audit_bars)
        return frame.slice(start, len(frame))


def _bars_available(coverage: Coverage, symbol: str, timeframe: str, step: int) -> int | None:
    best: int | None = None
    for (cov_symbol, cov_tf), (first, last) in coverage.items():
        if cov_symbol != symbol:
            continue
        try:
            cov_step = timeframe_ms(cov_tf)
        except ConfigError:
            continue
        if step % cov_step:
            continue
        bars = int((int(last) + cov_step - int(first)) // step)
        best = bars if best is None else max(best, bars)
    return best


def _slots(spec: SystemSpec, library: Mapping[str, ModuleDoc]) -> list[list[tuple]]:
    """Per slot group (entry, exits, filters, risk, management): sorted (module, role, params)."""
    groups: dict[str, list[tuple]] = {
        "entry": [],
        "exits": [],
        "filters": [],
        "risk": [],
        "management": [],
    }
    for slot in iter_ref_slots(spec):
        module = library.get(slot.ref.module)
        params = resolve_params(slot.ref, module) if module is not None else dict(slot.ref.params)
        group = slot.path.split("[")[0]
        groups[group].append((slot.ref.module, slot.ref.timeframe, params))
    return [
        sorted(refs, key=lambda r: (r[0], r[1], canonical_json(r[2]))) for refs in groups.values()
    ]


def _params_close(a: Mapping[str, Any], b: Mapping[str, Any], tolerance: float) -> bool:
    if set(a) != set(b):
        return False
    for name, x in a.items():
        y = b[name]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (x, y))
        if numeric:
            if abs(x - y) > tolerance * max(abs(x), abs(y)):
                return False
        elif x != y:
            return False
    return True


def _unpack(candidate: Any) -> tuple[str, SystemSpec | None, list[str]]:
    doc = candidate if isinstance(candidate, SystemDoc) else candidate.doc
    spec = None if isinstance(candidate, SystemDoc) else candidate.spec
    if spec is not None:
        return doc.id, spec, []
    parsed, problems = parse_system_spec(doc.spec)
    return doc.id, parsed, [str(p) for p in problems]


def _spec_of_doc(doc: SystemDoc) -> SystemSpec | None:
    parsed, _ = parse_system_spec(doc.spec)
    return parsed


def _result(problems: list[str]) -> CheckResult:
    return CheckResult(passed=not problems, reasons=problems)
