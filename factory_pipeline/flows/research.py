"""The research flow over the store: candidates -> partition backtests -> robustness -> decisions.

Why a flow module: the Dagster assets (defs/research), the ``factory`` CLI and the ``factory``
benchmark run exactly the same steps; keeping the step-by-step orchestration here (reading and
writing the store, grouping partitions, timing) leaves the assets a thin shell and lets the
benchmark measure what the UI runs. The numerical work lives in factory_pipeline.research (regime
backtests, assessment), factory_pipeline.ideas (design, sanity) and factory_pipeline.promotion
(rules, state machine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from factory_pipeline.engine.system_backtest import ENGINE_VERSION
from factory_pipeline.engine.trials import TrialLedger
from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.market.regimes import REGIMES, regime_spans
from factory_pipeline.promotion.policy import PromotionPolicy, policy_hash
from factory_pipeline.promotion.rules import Evidence, RuleResult, evaluate_for_status
from factory_pipeline.promotion.state_machine import PromotionOutcome, evaluate_and_apply
from factory_pipeline.research import TRIAL_FAMILY, assess_system, backtest_partition, redeflate
from factory_pipeline.schemas import (
    BacktestDoc,
    BacktestTrade,
    ModuleDoc,
    RobustnessDoc,
    SystemDoc,
    SystemStatus,
)
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline.strategy.language import IndicatorCache

log = logging.getLogger(__name__)

#: ``partition_key`` of the system documents the candidate design writes.
CANDIDATES_PARTITION = "designed"
#: ``partition_key`` of the robustness reports (one asset owns them all).
ROBUSTNESS_PARTITION = "robustness"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PartitionOutcome:
    """What one symbol x regime partition produced."""

    key: str
    symbol: str
    regime: str
    spans: int
    span_bars: int
    systems: int
    backtests: list[BacktestDoc]
    trades: int
    equity: dict[str, tuple]  # system id -> (times_ms, equity)
    wall_s: float


@dataclass
class AssessmentOutcome:
    """Robustness reports and evidence of every assessed system."""

    reports: list[RobustnessDoc] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass(frozen=True)
class DecisionRow:
    """One system's promotion decision, for tables and the printed summary."""

    system_id: str
    name: str
    from_status: str
    to_status: str
    reasons: tuple[str, ...]
    rule_results: tuple[RuleResult, ...]
    transition_id: str | None


def split_regime_key(key: str) -> tuple[str, str]:
    """``"trend_up|BTCUSDT"`` -> ``("trend_up", "BTCUSDT")``."""
    regime, _, symbol = key.partition("|")
    if regime not in REGIMES or not symbol:
        raise MarketDataError(f"partition key {key!r} is not '<regime>|<symbol>'")
    return regime, symbol


def active_library(docs: DocumentStore) -> dict[str, ModuleDoc]:
    """Every active module (library and agent-proposed) by id."""
    return {m.id: m for m in docs.list(ModuleDoc, {"status": "active"})}


def backtestable_systems(docs: DocumentStore) -> list[SystemDoc]:
    """Candidates that passed every sanity check: the only systems the backtests run."""
    systems = docs.list(SystemDoc, {"status": SystemStatus.CANDIDATE.value})
    return [s for s in systems if bool(s.sanity.get("passed"))]


def run_backtest_partitions(
    store: Store,
    keys: Sequence[str],
    *,
    timeframe: str,
    progress: Progress | None = None,
) -> list[PartitionOutcome]:
    """Backtest every sanity-passed candidate on each ``regime|symbol`` partition in ``keys``.

    Partitions of one symbol share the market frame and the indicator cache. Each partition's
    results and trade logs replace the previous ones in one transaction; every run is recorded
    in the trial ledger (idempotent by trial id).
    """
    docs = DocumentStore(store)
    market = MarketStore(store)
    ledger = TrialLedger(store)
    library = active_library(docs)
    systems = backtestable_systems(docs)
    by_symbol: dict[str, list[str]] = {}
    for key in keys:
        regime, symbol = split_regime_key(key)
        by_symbol.setdefault(symbol, []).append(regime)
    outcomes: list[PartitionOutcome] = []
    for symbol, regimes in sorted(by_symbol.items()):
        frame = market.load_frame(symbol, timeframe)
        labels = market.regimes(symbol)
        cache = IndicatorCache()
        for regime in regimes:
            started = time.perf_counter()
            key = f"{regime}|{symbol}"
            spans = regime_spans(labels, regime)
            run = backtest_partition(
                systems,
                frame,
                spans,
                symbol=symbol,
                regime=regime,
                library=library,
                cache=cache,
            )
            results = list(run.results)
            backtests = [r.backtest for r in results]
            trades = [t for r in results for t in r.trades]
            docs.replace_partitions(key, {BacktestDoc: backtests, BacktestTrade: trades})
            ledger.record(run.trials)
            outcome = PartitionOutcome(
                key=key,
                symbol=symbol,
                regime=regime,
                spans=len(spans),
                span_bars=_bars_in(frame, spans),
                systems=len(backtests),
                backtests=backtests,
                trades=len(trades),
                equity={r.backtest.system_id: r.equity for r in results},
                wall_s=time.perf_counter() - started,
            )
            outcomes.append(outcome)
            _say(
                progress,
                f"{key}: {outcome.systems} system(s) on {outcome.spans} span(s) "
                f"({outcome.span_bars} bars), {outcome.trades} trades, {outcome.wall_s:.1f} s",
            )
    return outcomes


def assess_systems(
    store: Store,
    *,
    timeframe: str,
    symbols: Sequence[str],
    progress: Progress | None = None,
) -> AssessmentOutcome:
    """Robustness report and promotion evidence for every backtested candidate.

    Only backtests of the system's current spec hash and engine version count. A system with no
    such backtest is skipped (listed in ``skipped`` with the reason). Reports replace the
    previous set in one transaction.
    """
    started = time.perf_counter()
    docs = DocumentStore(store)
    market = MarketStore(store)
    ledger = TrialLedger(store)
    library = active_library(docs)
    systems = backtestable_systems(docs)
    frames = load_frames(market, symbols, timeframe)
    out = AssessmentOutcome()
    assessments = []
    for system in systems:
        backtests = [
            b
            for b in docs.list(BacktestDoc, {"system_id": system.id})
            if b.spec_hash == system.spec_hash and b.engine_version == ENGINE_VERSION
        ]
        if not backtests:
            out.skipped[system.id] = "no backtest of this spec hash and engine version"
            continue
        trades = docs.list(BacktestTrade, {"backtest_id": [b.id for b in backtests]})
        assessment = assess_system(
            system,
            frames={s: f for s, f in frames.items() if s in _spec_symbols(system)},
            backtests=backtests,
            trades=trades,
            ledger=ledger,
            library=library,
        )
        assessments.append(assessment)
        _say(progress, f"assessed {system.name} ({system.id})")
    # Every system is judged against the same N: the ledger's count once the batch is recorded.
    n_trials = ledger.count(TRIAL_FAMILY)
    for assessment in assessments:
        final = redeflate(assessment, n_trials)
        out.reports.append(final.report)
        out.evidence.append(final.evidence)
    docs.replace_partition(RobustnessDoc, ROBUSTNESS_PARTITION, out.reports)
    out.wall_s = time.perf_counter() - started
    return out


def stored_evidence(docs: DocumentStore) -> list[Evidence]:
    """Evidence of every stored robustness report whose system still has that spec hash."""
    systems = {s.id: s for s in docs.list(SystemDoc)}
    out = []
    for report in docs.list(RobustnessDoc, {"partition_key": ROBUSTNESS_PARTITION}):
        system = systems.get(report.system_id)
        if system is None or system.spec_hash != report.spec_hash:
            continue
        out.append(
            Evidence(
                system_id=report.system_id,
                spec_hash=report.spec_hash,
                metrics=dict(report.evidence),
                evidence_ids=sorted({*report.backtest_ids, report.id}),
            )
        )
    return out


def gate_results(
    docs: DocumentStore, policy: PromotionPolicy
) -> dict[str, tuple[SystemDoc, list[RuleResult]]]:
    """Every candidate's rule results under ``policy`` (what the gate checks show)."""
    systems = {s.id: s for s in docs.list(SystemDoc)}
    out: dict[str, tuple[SystemDoc, list[RuleResult]]] = {}
    for evidence in stored_evidence(docs):
        system = systems[evidence.system_id]
        if system.status != SystemStatus.CANDIDATE:
            continue
        out[system.id] = (system, evaluate_for_status(system.status, evidence, policy))
    return out


def decide_promotions(
    store: Store, policy: PromotionPolicy, *, progress: Progress | None = None
) -> list[DecisionRow]:
    """Apply the candidate -> demo rules to every assessed candidate (the state machine writes
    the status and the audit record; this function never sets a status itself)."""
    docs = DocumentStore(store)
    systems = {s.id: s for s in docs.list(SystemDoc)}  # each system is decided at most once
    rows: list[DecisionRow] = []
    for evidence in stored_evidence(docs):
        system = systems.get(evidence.system_id)
        if system is None or system.status != SystemStatus.CANDIDATE:
            continue
        outcome: PromotionOutcome = evaluate_and_apply(docs, evidence, policy)
        decision = outcome.decision
        rows.append(
            DecisionRow(
                system_id=system.id,
                name=system.name,
                from_status=decision.from_status.value,
                to_status=decision.to_status.value,
                reasons=tuple(decision.reasons),
                rule_results=tuple(outcome.rule_results),
                transition_id=outcome.transition.id if outcome.transition else None,
            )
        )
    promoted = sum(1 for r in rows if r.to_status == SystemStatus.DEMO.value)
    _say(
        progress,
        f"{len(rows)} decision(s) under policy {policy_hash(policy)[:12]}: {promoted} to demo",
    )
    return rows


def failed_rules(row: DecisionRow) -> list[str]:
    """Names of the rules a decision failed, in policy order."""
    return [r.rule for r in row.rule_results if not r.passed]


def load_frames(
    market: MarketStore, symbols: Iterable[str], timeframe: str
) -> dict[str, MarketFrame]:
    """Each symbol's full base-timeframe history; a symbol without data is left out (the
    sanity checks then fail its systems on ``timeframes``; assessments skip the symbol)."""
    frames: dict[str, MarketFrame] = {}
    for symbol in symbols:
        try:
            frames[symbol] = market.load_frame(symbol, timeframe)
        except MarketDataError:
            continue
    return frames


def _spec_symbols(system: SystemDoc) -> set[str]:
    return set(system.spec.get("symbols") or [])


def _bars_in(frame: MarketFrame, spans: Sequence[tuple[int, int]]) -> int:
    total = 0
    for start, end in spans:
        lo, hi = np.searchsorted(frame.open_time, [start, end])
        total += int(hi - lo)
    return total


def _say(progress: Progress | None, message: str) -> None:
    log.info(message)
    if progress is not None:
        progress(message)


__all__ = [
    "CANDIDATES_PARTITION",
    "ROBUSTNESS_PARTITION",
    "AssessmentOutcome",
    "DecisionRow",
    "PartitionOutcome",
    "active_library",
    "assess_systems",
    "backtestable_systems",
    "decide_promotions",
    "failed_rules",
    "gate_results",
    "load_frames",
    "run_backtest_partitions",
    "split_regime_key",
    "stored_evidence",
]
