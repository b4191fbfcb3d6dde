"""Past research results as design context, as they were known at the design time.

Why: a designer (human or agent) should know that "MACD entries on 15m BTC were tried four times
and never beat the deflated-Sharpe gate" before proposing a fifth. The rule is the same as for
knowledge: only results recorded at or before ``as_of`` are visible, so a design can be replayed
exactly and never learns from the future. A result is a robustness report (its evidence) joined
with the system's modules and the last status decision recorded by ``as_of``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from factory_pipeline.ideas.goals import DesignGoal
from factory_pipeline.schemas import RobustnessDoc, StatusTransition, SystemDoc

#: Past results given to a designer per goal (most relevant first).
DEFAULT_LIMIT = 8

#: Evidence figures carried into the design context (names as in promotion.rules).
FIGURES: tuple[str, ...] = ("trades", "expectancy_r", "max_drawdown", "dsr", "pbo")


@dataclass(frozen=True)
class PastResult:
    """What the factory had measured about one system version by the design time."""

    system_id: str
    name: str
    symbols: tuple[str, ...]
    entry: str
    modules: tuple[str, ...]
    status: str
    failed_rules: tuple[str, ...]
    figures: Mapping[str, float | None]
    recorded_at: dt.datetime

    def summary(self) -> str:
        """One line for prompts and reasoning notes."""
        shown = ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} n/a" for k, v in self.figures.items()
        )
        failed = f"; failed {', '.join(self.failed_rules)}" if self.failed_rules else ""
        return (
            f"{self.name} [{self.status}] entry {self.entry} on {'/'.join(self.symbols)}: "
            f"{shown}{failed}"
        )


def past_results_as_of(
    systems: Iterable[SystemDoc],
    reports: Iterable[RobustnessDoc],
    transitions: Iterable[StatusTransition],
    as_of: dt.datetime,
) -> list[PastResult]:
    """Every robustness report recorded at or before ``as_of`` whose system is known, with the
    system's status after the last transition recorded by then (``candidate`` if none)."""
    moment = _aware(as_of)
    by_id = {s.id: s for s in systems}
    latest: dict[str, StatusTransition] = {}
    for t in sorted(transitions, key=lambda t: (_aware(t.created_at), t.id)):
        if _aware(t.created_at) <= moment:
            latest[t.system_id] = t
    out = []
    for report in sorted(reports, key=lambda r: r.id):
        system = by_id.get(report.system_id)
        if system is None or _aware(report.created_at) > moment:
            continue
        decision = latest.get(system.id)
        failed = (
            tuple(r["rule"] for r in decision.rule_results if not r.get("passed"))
            if decision
            else ()
        )
        out.append(
            PastResult(
                system_id=system.id,
                name=system.name,
                symbols=tuple(system.spec.get("symbols") or ()),
                entry=str((system.spec.get("entry") or {}).get("module", "")),
                modules=tuple(_module_ids(system.spec)),
                status=decision.to_status.value if decision else "candidate",
                failed_rules=failed,
                figures={k: _number(report.evidence.get(k)) for k in FIGURES},
                recorded_at=_aware(report.created_at),
            )
        )
    return out


def relevant_results(
    goal: DesignGoal,
    past: Sequence[PastResult],
    *,
    module_ids: Iterable[str] = (),
    limit: int = DEFAULT_LIMIT,
) -> tuple[PastResult, ...]:
    """The past results that bear on ``goal``: sharing a symbol, ranked by how many of
    ``module_ids`` (the goal's visible modules) they used, then most recent, then id."""
    wanted = set(module_ids)
    symbols = set(goal.symbols)
    shared = [p for p in past if symbols & set(p.symbols)]
    ranked = sorted(
        shared,
        key=lambda p: (-len(wanted & set(p.modules)), -p.recorded_at.timestamp(), p.system_id),
    )
    return tuple(ranked[:limit])


def entry_record(past: Sequence[PastResult], entry: str) -> str:
    """A sentence on how systems with ``entry`` fared, for reasoning notes ('' if none)."""
    same = [p for p in past if p.entry == entry]
    if not same:
        return ""
    promoted = sum(1 for p in same if p.status not in {"candidate", "rework_required", "disabled"})
    dsrs = [p.figures["dsr"] for p in same if isinstance(p.figures.get("dsr"), float)]
    best = f", best DSR {max(dsrs):.2f}" if dsrs else ""
    return (
        f"Past results: {len(same)} earlier system(s) with entry {entry}, {promoted} promoted"
        f"{best}."
    )


def _module_ids(spec: Mapping[str, object]) -> list[str]:
    ids = []
    for slot in ("entry", "risk"):
        ref = spec.get(slot)
        if isinstance(ref, Mapping) and ref.get("module"):
            ids.append(str(ref["module"]))
    for slot in ("exits", "filters", "management"):
        for ref in spec.get(slot) or []:  # type: ignore[union-attr]
            if isinstance(ref, Mapping) and ref.get("module"):
                ids.append(str(ref["module"]))
    return ids


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
