"""Idea and backtest track assets: candidate systems -> backtests per symbol x regime ->
robustness per system -> promotion decisions.

Thin shell over factory_pipeline.flows (which calls ideas, research and promotion): resolve
resources, call the flow, attach UI metadata (tables, equity and drawdown plots, numeric figures
Dagster charts over time). Semantics: docs/ideas.md, docs/research.md, docs/promotion.md.
"""

from collections import Counter
from collections.abc import Sequence

import dagster as dg
import numpy as np

from factory_pipeline.defs.knowledge.assets import builtin_modules, kb_concepts, strategy_modules
from factory_pipeline.defs.market.assets import regime_labels
from factory_pipeline.defs.partitions import regime_partitions
from factory_pipeline.defs.research.resources import ResearchResource
from factory_pipeline.defs.resources import (
    EmbeddingsResource,
    FactoryStoreResource,
    LLMResource,
    MarketDataResource,
    VectorIndexResource,
)
from factory_pipeline.defs.ui import equity_drawdown_plot, table
from factory_pipeline.errors import FactoryError
from factory_pipeline.flows.ideas import design_and_store
from factory_pipeline.flows.research import (
    PartitionOutcome,
    assess_systems,
    decide_promotions,
    failed_rules,
    run_backtest_partitions,
)
from factory_pipeline.promotion.audit import audit_table
from factory_pipeline.promotion.policy import policy_hash
from factory_pipeline.schemas import SystemDoc, SystemStatus
from factory_pipeline.store import DocumentStore

IDEAS_GROUP = "ideas"
BACKTEST_GROUP = "backtests"
#: Systems drawn in one equity/drawdown plot (the best by total return).
PLOTTED_SYSTEMS = 5

#: Re-run when an upstream changes, but only once its blocking checks passed.
EAGER_AFTER_CHECKS = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
)


@dg.asset(
    deps=[kb_concepts, strategy_modules, builtin_modules, regime_labels],
    pool="qdrant",
    group_name=IDEAS_GROUP,
    kinds={"duckdb", "qdrant"},
    automation_condition=EAGER_AFTER_CHECKS,
    description=(
        "Candidate trading systems for every design goal (data/goals/*.yaml): design context "
        "retrieved from the concepts and modules in Qdrant (only knowledge recorded before the "
        "design time), assembled by the configured backend (offline: combinatorial assembly of "
        "compatible modules with parameters sampled inside their schemas; LLM: an agent that "
        "validates its specs with the tools API). Every system is a frozen spec with a hash and "
        "its provenance (modules, concepts, book pages). Sanity verdicts are stored with each "
        "system; failing systems are kept with reasons and never backtested."
    ),
)
def candidate_systems(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    market_data: MarketDataResource,
    vector_index: VectorIndexResource,
    embeddings: EmbeddingsResource,
    llm: LLMResource,
    research: ResearchResource,
) -> dg.MaterializeResult:
    store = factory_store.store()
    try:
        with vector_index.open(embeddings.build()) as index:
            outcome = design_and_store(
                store,
                goals_dir=research.goals_folder(),
                timeframe=market_data.base_timeframe,
                index=index,
                llm=llm.build(store),
                progress=context.log.info,
            )
    except FactoryError as exc:  # a bad goal file, an LLM endpoint down: fail with the reason
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    failures = Counter(
        name
        for s in outcome.systems
        for name, check in s.sanity.get("checks", {}).items()
        if not check.get("passed")
    )
    return dg.MaterializeResult(
        metadata={
            "goals": outcome.goals,
            "systems": len(outcome.systems),
            "sanity_passed": outcome.passed,
            "sanity_failed": outcome.failed,
            "backend": outcome.backend,
            "wall_s": round(outcome.wall_s, 2),
            "systems_table": table(
                [_system_row(s) for s in outcome.systems],
                columns=["name", "id", "goal", "entry", "timeframes", "sanity", "failed_checks"],
            ),
        }
        | {f"failed_{name}": n for name, n in sorted(failures.items())}
    )


@dg.asset(
    partitions_def=regime_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[
        candidate_systems,
        dg.AssetDep(
            regime_labels,
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                partition_dimension_name="symbol"
            ),
        ),
    ],
    pool="duckdb",
    group_name=BACKTEST_GROUP,
    kinds={"duckdb", "numba"},
    automation_condition=EAGER_AFTER_CHECKS,
    description=(
        "Every sanity-passed candidate backtested on the windows of one regime for one symbol "
        "(signals computed on the full history, simulated per regime window, equity chained; "
        "docs/research.md). Results and per-trade logs are stored with the spec hash, data range "
        "and engine version; re-materializing a partition replaces its results. New market data "
        "re-runs the affected symbol's partitions (declarative automation); a full backfill is "
        "one run (UI: Materialize all; CLI: factory backfill)."
    ),
)
def backtests(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    market_data: MarketDataResource,
) -> dg.MaterializeResult:
    try:
        outcomes = run_backtest_partitions(
            factory_store.store(),
            context.partition_keys,
            timeframe=market_data.base_timeframe,
            progress=context.log.info,
        )
    except FactoryError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    return dg.MaterializeResult(metadata=_backtest_metadata(outcomes))


@dg.asset(
    deps=[backtests],
    pool="duckdb",
    group_name=BACKTEST_GROUP,
    kinds={"duckdb", "numba"},
    automation_condition=EAGER_AFTER_CHECKS,
    description=(
        "Robustness of every backtested candidate across its partitions: walk-forward with "
        "parameter selection in each train window, PSR and deflated Sharpe against every trial "
        "in the ledger, PBO by CSCV over the parameter neighbourhood, doubled-cost and delay "
        "stress, per-regime breakdown. Its asset checks are the promotion policy's thresholds."
    ),
)
def system_robustness(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    market_data: MarketDataResource,
    research: ResearchResource,
) -> dg.MaterializeResult:
    try:
        outcome = assess_systems(
            factory_store.store(),
            timeframe=market_data.base_timeframe,
            symbols=research.symbols,
            progress=context.log.debug,
        )
    except FactoryError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    rows = []
    for report in outcome.reports:
        ev = report.evidence
        rows.append(
            {
                "system": report.system_id,
                "trades": _num(ev.get("trades")),
                "expectancy_r": _num(ev.get("expectancy_r")),
                "max_drawdown": _num(ev.get("max_drawdown")),
                "stagnation_days": _num(ev.get("worst_stagnation_days")),
                "profitable_regimes": _num(ev.get("profitable_regimes")),
                "dsr": _num(ev.get("dsr")),
                "pbo": _num(ev.get("pbo")),
                "stress_survived": bool(ev.get("stress_survived")),
                "min_trades_per_fold": _num(ev.get("min_trades_per_fold")),
            }
        )
    context.log.info(f"{len(outcome.reports)} system(s) assessed in {outcome.wall_s:.1f} s")
    return dg.MaterializeResult(
        metadata={
            "systems_assessed": len(outcome.reports),
            "systems_skipped": len(outcome.skipped),
            "wall_s": round(outcome.wall_s, 2),
            "median_dsr": _median(r["dsr"] for r in rows),
            "median_pbo": _median(r["pbo"] for r in rows),
            "robustness": table(rows, columns=list(rows[0]) if rows else ["system"]),
        }
    )


@dg.asset(
    deps=[system_robustness],
    pool="duckdb",
    group_name=BACKTEST_GROUP,
    kinds={"duckdb"},
    automation_condition=EAGER_AFTER_CHECKS,
    description=(
        "Applies the human-owned promotion policy (data/policy/promotion.yaml) to every assessed "
        "candidate with the deterministic state machine: candidate -> demo when every gate "
        "passes, rework_required or disabled when a gate fails. Each transition is appended to "
        "the audit table with the rule results, evidence ids and the policy hash. Only this "
        "code changes a status."
    ),
)
def promotion_decisions(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    research: ResearchResource,
) -> dg.MaterializeResult:
    store = factory_store.store()
    try:
        policy = research.policy()
        rows = decide_promotions(store, policy, progress=context.log.info)
    except FactoryError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    docs = DocumentStore(store)
    outcomes = Counter(r.to_status for r in rows)
    statuses = docs.counts_by(SystemDoc, "status")
    failed_by_rule = Counter(rule for r in rows for rule in failed_rules(r))
    return dg.MaterializeResult(
        metadata={
            "decisions": len(rows),
            "promoted": outcomes.get(SystemStatus.DEMO.value, 0),
            "rework_required": outcomes.get(SystemStatus.REWORK_REQUIRED.value, 0),
            "disabled": outcomes.get(SystemStatus.DISABLED.value, 0),
            "unchanged": outcomes.get(SystemStatus.CANDIDATE.value, 0),
            "policy_hash": policy_hash(policy),
            "decisions_table": table(
                [
                    {
                        "system": r.name,
                        "id": r.system_id,
                        "from": r.from_status,
                        "to": r.to_status,
                        "failed_rules": ", ".join(failed_rules(r)),
                        "reasons": " | ".join(r.reasons)[:500],
                    }
                    for r in rows
                ],
                columns=["system", "id", "from", "to", "failed_rules", "reasons"],
            ),
            "failed_rules": table(
                [{"rule": k, "systems": v} for k, v in failed_by_rule.most_common()],
                columns=["rule", "systems"],
            ),
            "recent_audit": table(_recent_audit(docs), columns=_AUDIT_COLUMNS),
        }
        | {f"systems_{status}": n for status, n in statuses.items()}
    )


# Helpers ----------------------------------------------------------------------------------------

_AUDIT_COLUMNS = ["system_id", "from_status", "to_status", "decided_by", "policy_hash"]


def _recent_audit(docs: DocumentStore, limit: int = 50) -> list[dict]:
    rows = audit_table(docs)
    return [{c: str(row.get(c, "")) for c in _AUDIT_COLUMNS} for row in rows[-limit:]]


def _system_row(system: SystemDoc) -> dict:
    spec = system.spec
    checks = system.sanity.get("checks", {})
    return {
        "name": system.name,
        "id": system.id,
        "goal": str(spec.get("provenance", {}).get("goal_id", "") or ""),
        "entry": str((spec.get("entry") or {}).get("module", "")),
        "timeframes": "/".join(str(v) for v in (spec.get("timeframes") or {}).values()),
        "sanity": "passed" if system.sanity.get("passed") else "failed",
        "failed_checks": ", ".join(n for n, c in checks.items() if not c.get("passed")),
    }


def _backtest_metadata(outcomes: Sequence[PartitionOutcome]) -> dict:
    rows = []
    for outcome in outcomes:
        for doc in outcome.backtests:
            m = doc.metrics
            rows.append(
                {
                    "partition": outcome.key,
                    "system": doc.system_id,
                    "trades": int(m.get("trades", 0) or 0),
                    "total_return": _num(m.get("total_return")),
                    "sharpe": _num(m.get("sharpe")),
                    "max_drawdown": _num(m.get("max_drawdown")),
                    "worst_stagnation_days": _num(m.get("worst_stagnation_days")),
                    "expectancy_r": _num(m.get("expectancy_r")),
                }
            )
    best = sorted(rows, key=lambda r: -np.nan_to_num(r["total_return"], nan=-np.inf))
    series = {}
    for row in best[:PLOTTED_SYSTEMS]:
        outcome = next(o for o in outcomes if o.key == row["partition"])
        times, equity = outcome.equity[row["system"]]
        if len(times):
            series[f"{row['system']} ({row['partition']})"] = (times, equity)
    metadata: dict = {
        "partitions": len(outcomes),
        "systems": max((o.systems for o in outcomes), default=0),
        "backtests": len(rows),
        "trade_count": sum(o.trades for o in outcomes),
        "span_bars": sum(o.span_bars for o in outcomes),
        "wall_s": round(sum(o.wall_s for o in outcomes), 2),
        "worst_stagnation_days": _max(r["worst_stagnation_days"] for r in rows),
        "best_total_return": _max(r["total_return"] for r in rows),
        "median_sharpe": _median(r["sharpe"] for r in rows),
        "metrics": table(best, columns=list(best[0]) if best else ["partition"]),
    }
    if series:
        metadata["equity_and_drawdown"] = equity_drawdown_plot(
            series, f"best {len(series)} backtests: equity and drawdown"
        )
    return metadata


def _num(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return number


def _finite(values) -> list[float]:
    return [v for v in values if np.isfinite(v)]


def _median(values) -> float:
    finite = _finite(values)
    return float(np.median(finite)) if finite else float("nan")


def _max(values) -> float:
    finite = _finite(values)
    return float(max(finite)) if finite else float("nan")
