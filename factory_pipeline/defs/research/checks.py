"""Asset checks of the idea and backtest track: sanity gates on candidates, policy gates on
robustness.

A check verifies that its gate holds, and lists what the gate caught. Candidates failing a
sanity rule, or systems missing a promotion threshold, are a normal research outcome: the check
passes, its description says how many systems the gate stopped, and its metadata lists each of
them with the measured value, the threshold and the reason (``failing`` is numeric, so Dagster
charts it over time); those systems are excluded from backtests, or moved to rework_required /
disabled by the promotion decisions. A check fails, with severity ERROR, when the gate itself
did not hold: a candidate marked sane that fails the rule when re-verified from the store, or a
candidate without a verdict. Failed blocking checks stop downstream assets in the run and hold
back their declarative automation (Dagster's ``all_deps_blocking_checks_passed`` does not look
at severity, so a WARN failure would stall automation as surely as an ERROR; hence pass/ERROR).
"""

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from factory_pipeline.defs.research.assets import candidate_systems, system_robustness
from factory_pipeline.defs.research.resources import ResearchResource
from factory_pipeline.defs.resources import FactoryStoreResource
from factory_pipeline.defs.ui import table
from factory_pipeline.flows.research import CANDIDATES_PARTITION, active_library, gate_results
from factory_pipeline.ideas import SANITY_CHECKS
from factory_pipeline.promotion.rules import RuleResult
from factory_pipeline.schemas import SystemDoc, SystemStatus
from factory_pipeline.store import DocumentStore
from factory_pipeline.strategy.systems import SystemSpec, validate_system

#: Rows listed in a check's table (counts are always complete).
MAX_LISTED = 100

#: One check per gate of the candidate -> demo policy; policy rule name prefix -> check name.
GATE_CHECKS: dict[str, str] = {
    "evidence_present": "gate_evidence_present",
    "min_trades_per_fold": "gate_min_trades_per_fold",
    "min_trades": "gate_min_trades",
    "max_drawdown": "gate_max_drawdown",
    "max_stagnation_days": "gate_max_stagnation_days",
    "min_expectancy": "gate_min_expectancy",
    "min_profitable_regimes": "gate_min_profitable_regimes",
    "min_dsr": "gate_min_dsr",
    "max_pbo": "gate_max_pbo",
    "stress_must_survive": "gate_stress_must_survive",
    "lookahead_passed": "gate_lookahead_passed",
    "disable_when": "gate_disable_triggers",
}


def gate_check_name(rule: str) -> str:
    """The check a policy rule reports under (longest matching prefix)."""
    for prefix in sorted(GATE_CHECKS, key=len, reverse=True):
        if rule == prefix or rule.startswith(prefix + ".") or rule.startswith(prefix + "_"):
            return GATE_CHECKS[prefix]
    return GATE_CHECKS["evidence_present"]


def _sanity_names() -> list[str]:
    return [name if isinstance(name, str) else name[0] for name in SANITY_CHECKS]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            name=f"sanity_{name}",
            asset=candidate_systems,
            blocking=True,
            description=f"Candidate sanity check '{name}' (docs/ideas.md): lists the candidates "
            "that fail it (kept, never backtested); fails (ERROR, blocking) when a candidate "
            "marked sane fails it on re-verification or has no verdict.",
        )
        for name in _sanity_names()
    ],
)
def candidate_sanity_checks(
    factory_store: FactoryStoreResource,
) -> Iterable[dg.AssetCheckResult]:
    docs = DocumentStore(factory_store.store())
    systems = [
        s
        for s in docs.list(SystemDoc, {"partition_key": CANDIDATES_PARTITION})
        if s.status == SystemStatus.CANDIDATE
    ]
    library = active_library(docs)
    broken = reverified_problems(systems, library)
    for name in _sanity_names():
        yield sanity_result(name, systems, broken)


def reverified_problems(
    systems: Sequence[SystemDoc], library: Mapping[str, object]
) -> dict[str, str]:
    """Systems marked sane whose spec no longer validates against the stored library, or that
    carry no verdict: system id -> reason."""
    out: dict[str, str] = {}
    for system in systems:
        if "passed" not in system.sanity:
            out[system.id] = "no sanity verdict stored"
            continue
        if not system.sanity["passed"]:
            continue
        try:
            spec = SystemSpec.model_validate(system.spec)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a broken gate
            out[system.id] = f"stored spec does not parse: {exc}"
            continue
        problems = validate_system(spec, library)  # type: ignore[arg-type]
        if problems:
            out[system.id] = "; ".join(str(p) for p in problems[:3])
    return out


def sanity_result(
    name: str, systems: Sequence[SystemDoc], broken: Mapping[str, str]
) -> dg.AssetCheckResult:
    """The result of sanity check ``name`` over the stored candidates."""
    failing = []
    for system in systems:
        check = system.sanity.get("checks", {}).get(name)
        if check is not None and not check.get("passed"):
            reasons = "; ".join(check.get("reasons", []))[:300]
            failing.append({"system": system.name, "id": system.id, "reasons": reasons})
    structural = name in {"module_refs", "parameter_ranges", "timeframes"}
    gate_broken = [
        {"system": s.name, "id": s.id, "reasons": broken[s.id]}
        for s in systems
        if s.id in broken and (structural or broken[s.id] == "no sanity verdict stored")
    ]
    rows = (gate_broken + failing)[:MAX_LISTED]
    metadata = {
        "checked": len(systems),
        "failing": len(failing),
        "gate_broken": len(gate_broken),
        "systems": table(rows, columns=["system", "id", "reasons"]),
    }
    if gate_broken:
        return dg.AssetCheckResult(
            check_name=f"sanity_{name}",
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=f"{len(gate_broken)} candidate(s) marked sane fail '{name}'",
        )
    return dg.AssetCheckResult(
        check_name=f"sanity_{name}",
        passed=True,
        metadata=metadata,
        description=(
            f"{len(failing)} of {len(systems)} candidate(s) fail '{name}' (kept, not backtested)"
            if failing
            else f"all {len(systems)} candidate(s) pass '{name}'"
        ),
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            name=check,
            asset=system_robustness,
            blocking=True,
            description=f"Promotion policy gate '{rule}' (data/policy/promotion.yaml) for every "
            "assessed candidate: measured value, threshold and system id per row; the systems "
            "that miss the gate are not promoted (promotion_decisions moves them).",
        )
        for rule, check in GATE_CHECKS.items()
    ],
)
def promotion_gate_checks(
    factory_store: FactoryStoreResource, research: ResearchResource
) -> Iterable[dg.AssetCheckResult]:
    docs = DocumentStore(factory_store.store())
    policy = research.policy()
    results = gate_results(docs, policy)
    by_check: dict[str, list[tuple[SystemDoc, RuleResult]]] = {c: [] for c in GATE_CHECKS.values()}
    for system, rule_results in results.values():
        for result in rule_results:
            by_check[gate_check_name(result.rule)].append((system, result))
    for check, pairs in by_check.items():
        yield gate_result(check, pairs, systems=len(results))


def gate_result(
    check: str, pairs: Sequence[tuple[SystemDoc, RuleResult]], *, systems: int
) -> dg.AssetCheckResult:
    """One gate's result: a row per (system, rule) with measured value, threshold and outcome."""
    failing = [(s, r) for s, r in pairs if not r.passed]
    rows = [
        {
            "system": s.name,
            "id": s.id,
            "rule": r.rule,
            "measured": "" if r.measured is None else str(r.measured),
            "comparison": r.comparison,
            "threshold": str(r.threshold),
            "passed": r.passed,
            "on_fail": r.on_fail,
        }
        for s, r in sorted(pairs, key=lambda p: (p[1].passed, p[0].name))
    ][:MAX_LISTED]
    return dg.AssetCheckResult(
        check_name=check,
        passed=True,
        metadata={
            "systems": systems,
            "failing": len({s.id for s, _ in failing}),
            "results": table(
                rows,
                columns=[
                    "system",
                    "id",
                    "rule",
                    "measured",
                    "comparison",
                    "threshold",
                    "passed",
                    "on_fail",
                ],
            ),
        },
        description=(
            f"{len({s.id for s, _ in failing})} of {systems} system(s) miss this gate"
            if failing
            else f"all {systems} system(s) meet this gate"
        ),
    )
