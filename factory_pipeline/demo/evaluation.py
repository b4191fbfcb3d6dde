"""The daily demo evaluation: one DemoEvaluationDoc per demo system and UTC day, and the demo
rules applied to them through the promotion state machine.

Why here and not in the Dagster shell: the evaluation decides promotions and demotions, so it must
be deterministic, testable without Dagster and use the same state machine and audit table as
every other status change (factory_pipeline.promotion.evaluate_and_apply). The shell
(defs/trading) only picks the day, calls these two functions and shows the results.

Inputs are read from the store: the gateway's trading tables (fills, order intents,
reconciliation records; migration 6), the systems, their backtests (expected win rate, R,
return per trade, slippage model) and the runner's forecasts. The math lives in
:mod:`factory_pipeline.demo.evaluation_metrics`. Semantics: docs/demo_evaluation.md.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from factory_pipeline.demo.evaluation_metrics import (
    DAY_MS,
    BacktestExpectation,
    DemoFill,
    ExecutionIssue,
    SystemDemoActivity,
    compute_demo_metrics,
    day_of_ms,
    day_start_ms,
)
from factory_pipeline.errors import StoreError
from factory_pipeline.promotion import (
    Decision,
    Evidence,
    PromotionOutcome,
    PromotionPolicy,
    RuleResult,
    evaluate_and_apply,
    policy_hash,
)
from factory_pipeline.promotion.rules import DEMO_METRICS
from factory_pipeline.schemas import (
    BacktestDoc,
    BacktestTrade,
    DemoEvaluationDoc,
    ForecastDoc,
    Provenance,
    StatusTransition,
    SystemDoc,
    SystemStatus,
    stable_id,
)
from factory_pipeline.store import DocumentStore, Store

#: Producer name in the evaluation documents' provenance.
EVALUATOR = "demo-evaluation v1"
#: Demo equity a system starts with (USDT): the order gateway's default ``system_capital``.
DEFAULT_INITIAL_EQUITY = 10_000.0
#: Intent statuses that count as an unresolved ambiguous order (sent, outcome unknown).
UNRESOLVED_STATUSES = ("unknown",)
#: Reconciliation record kinds that are not a difference (bookkeeping of resolved intents).
NOT_A_DIFF = ("intent_updated",)


@dataclass(frozen=True)
class DemoEvaluation:
    """One system's evaluation for one UTC day (see :func:`evaluate_demo_day`)."""

    system_id: str
    spec_hash: str
    day: dt.date
    status: SystemStatus
    metrics: dict[str, float | None]
    issues: list[str] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    backtest_ids: list[str] = field(default_factory=list)

    @property
    def doc_id(self) -> str:
        """Stable per (system, day): re-running a day replaces the document."""
        return evaluation_doc_id(self.system_id, self.day)

    def to_doc(self, policy_digest: str = "") -> DemoEvaluationDoc:
        notes = f"policy {policy_digest}" if policy_digest else ""
        return DemoEvaluationDoc(
            id=self.doc_id,
            system_id=self.system_id,
            spec_hash=self.spec_hash,
            day=self.day,
            metrics=dict(self.metrics),
            issues=list(self.issues),
            order_ids=list(self.order_ids),
            provenance=Provenance(source=EVALUATOR, system_ids=[self.system_id], notes=notes),
        )

    def evidence(self) -> Evidence:
        """The promotion evidence: the DEMO_METRICS of this evaluation, and its document id
        (the backtest ids the expectation came from are carried too)."""
        return Evidence(
            system_id=self.system_id,
            spec_hash=self.spec_hash,
            metrics={name: self.metrics.get(name) for name in DEMO_METRICS},
            evidence_ids=[self.doc_id, *self.backtest_ids],
        )


def evaluate_demo_day(
    store: Store,
    day: dt.date,
    *,
    policy: PromotionPolicy | None = None,
    initial_equity: float = DEFAULT_INITIAL_EQUITY,
) -> list[DemoEvaluation]:
    """Evaluate every system that is in demo, or was in demo during UTC ``day``, on its demo
    trading through the end of ``day``; store one DemoEvaluationDoc per system (id
    ``stable_id("demo-eval", system_id, day)``, partition key ``day.isoformat()``), replacing
    that day's previous evaluations in one transaction. ``policy`` only stamps its hash in the
    documents' provenance; the rules are applied by :func:`apply_demo_rules`.
    ``initial_equity`` is each system's demo capital (the gateway's ``system_capital``), the
    base of the demo drawdown.
    """
    docs = DocumentStore(store)
    systems = systems_in_demo_on(store, day)
    day_end = day_start_ms(day) + DAY_MS
    evaluations = []
    for system in systems:
        activity = load_activity(store, system, day_end, initial_equity=initial_equity)
        metrics, issues = compute_demo_metrics(activity, day, mark_price=_store_mark_price(store))
        metrics |= _forecast_counts(docs, system.id, day)
        evaluations.append(
            DemoEvaluation(
                system_id=system.id,
                spec_hash=system.spec_hash,
                day=day,
                status=system.status,
                metrics=metrics,
                issues=issues,
                order_ids=list(activity.order_ids),
                backtest_ids=list(activity.expectation.evidence_ids),
            )
        )
    digest = policy_hash(policy) if policy is not None else ""
    docs.replace_partition(
        DemoEvaluationDoc, day.isoformat(), [e.to_doc(digest) for e in evaluations]
    )
    return evaluations


def apply_demo_rules(
    store: Store, evaluations: Sequence[DemoEvaluation], policy: PromotionPolicy
) -> list[PromotionOutcome]:
    """Apply the demo rules to each evaluation of a system still in ``demo`` through
    promotion.evaluate_and_apply (same state machine, same append-only audit table): promotion
    to live_test, demotion to rework_required / disabled, or no change. Evaluations of systems
    no longer in demo (moved since, or of another spec version) are skipped. Outcomes are
    returned in the order of ``evaluations``."""
    docs = DocumentStore(store)
    outcomes = []
    for evaluation in evaluations:
        system = docs.get(SystemDoc, evaluation.system_id)
        if system is None or system.status != SystemStatus.DEMO:
            continue
        if system.spec_hash != evaluation.spec_hash:
            continue
        outcomes.append(evaluate_and_apply(docs, evaluation.evidence(), policy))
    return outcomes


def recorded_outcomes(
    store: Store, evaluations: Sequence[DemoEvaluation]
) -> list[PromotionOutcome]:
    """The transitions already recorded on the evidence of ``evaluations`` (their document ids),
    as outcomes: a re-run of a day after its promotion or demotion reports the same decision
    and rule results instead of nothing (the system is no longer in demo, so no rule applies)."""
    docs = DocumentStore(store)
    outcomes = []
    for evaluation in evaluations:
        records = [
            t
            for t in docs.list(StatusTransition, {"system_id": evaluation.system_id})
            if evaluation.doc_id in t.evidence_ids
        ]
        for record in sorted(records, key=lambda t: (t.created_at, t.id)):
            decision = Decision(
                system_id=record.system_id,
                from_status=record.from_status,
                to_status=record.to_status,
                reasons=tuple(record.provenance.notes.splitlines()),
            )
            results = [RuleResult.model_validate(r) for r in record.rule_results]
            outcomes.append(
                PromotionOutcome(decision=decision, rule_results=results, transition=record)
            )
    return outcomes


def evaluation_doc_id(system_id: str, day: dt.date) -> str:
    """The stable id of a system's evaluation for ``day``."""
    return stable_id("demo-eval", system_id, day.isoformat())


def systems_in_demo_on(store: Store, day: dt.date) -> list[SystemDoc]:
    """Systems in demo now, systems with demo fills that day, and systems that left demo after
    ``day`` started and had traded by its end (they were on demo that day); sorted by id."""
    docs = DocumentStore(store)
    start, end = day_start_ms(day), day_start_ms(day) + DAY_MS
    ids = {s.id for s in docs.list(SystemDoc, {"status": SystemStatus.DEMO.value})}
    ids |= set(_systems_with_fills(store, start, end))
    since = dt.datetime.fromtimestamp(start / 1000, tz=dt.UTC)
    traded_by_end = set(_systems_with_fills(store, 0, end))
    for transition in docs.list(StatusTransition, {"from_status": SystemStatus.DEMO.value}):
        if _aware(transition.created_at) >= since and transition.system_id in traded_by_end:
            ids.add(transition.system_id)
    systems = [docs.get(SystemDoc, system_id) for system_id in sorted(ids)]
    return [s for s in systems if s is not None]


def demo_trading_days(store: Store, start: dt.date, end: dt.date) -> list[dt.date]:
    """UTC days in ``[start, end]`` on which a system fill happened (the sensor's trigger)."""
    lo, hi = day_start_ms(start), day_start_ms(end) + DAY_MS
    rows = _query(
        store,
        "SELECT DISTINCT exec_time_ms FROM trading_fills "
        "WHERE system_id IS NOT NULL AND exec_time_ms >= ? AND exec_time_ms < ?",
        [lo, hi],
    )
    return sorted({day_of_ms(int(r[0])) for r in rows})


def first_demo_trading_day(store: Store) -> dt.date | None:
    """The UTC day of the first attributed fill, or None when there is none."""
    rows = _query(
        store, "SELECT min(exec_time_ms) FROM trading_fills WHERE system_id IS NOT NULL", []
    )
    return day_of_ms(int(rows[0][0])) if rows and rows[0][0] is not None else None


def load_activity(
    store: Store,
    system: SystemDoc,
    until_ms: int,
    *,
    initial_equity: float = DEFAULT_INITIAL_EQUITY,
) -> SystemDemoActivity:
    """A system's fills, execution issues and backtest expectation, up to (excluding)
    ``until_ms``."""
    return SystemDemoActivity(
        system_id=system.id,
        spec_hash=system.spec_hash,
        fills=load_fills(store, system.id, until_ms),
        issues=load_issues(store, system.id, until_ms),
        expectation=load_expectation(store, system),
        initial_equity=initial_equity,
        order_ids=_order_ids(store, system.id, until_ms),
    )


def load_fills(store: Store, system_id: str, until_ms: int) -> list[DemoFill]:
    """The system's executions before ``until_ms`` with the decision price and stop of their
    order intent (reconciliation adjustments included, without a decision price)."""
    rows = _query(
        store,
        "SELECT f.symbol, f.side, f.qty, f.price, f.fee, f.exec_time_ms, "
        "coalesce(f.order_link_id, ''), f.exec_type, i.reference_price, i.stop_loss "
        "FROM trading_fills f LEFT JOIN trading_order_intents i "
        "ON f.order_link_id = i.order_link_id "
        "WHERE f.system_id = ? AND f.exec_time_ms < ? AND f.qty > 0 "
        "ORDER BY f.exec_time_ms, f.exec_id",
        [system_id, until_ms],
    )
    return [
        DemoFill(
            system_id=system_id,
            symbol=str(symbol),
            side="Buy" if str(side) == "Buy" else "Sell",
            qty=float(qty),
            price=float(price),
            fee=float(fee),
            time_ms=int(time_ms),
            order_link_id=str(link),
            reference_price=None if exec_type == "adjustment" else _finite(ref),
            stop_loss=_finite(stop),
        )
        for symbol, side, qty, price, fee, time_ms, link, exec_type, ref, stop in rows
    ]


def load_issues(store: Store, system_id: str, until_ms: int) -> list[ExecutionIssue]:
    """Rejected orders and unresolved ambiguous orders (by decision time), and reconciliation
    differences that name the system (by reconciliation time), before ``until_ms``."""
    issues: list[ExecutionIssue] = []
    rows = _query(
        store,
        "SELECT order_link_id, status, decision_time_ms, reason FROM trading_order_intents "
        "WHERE system_id = ? AND decision_time_ms < ? AND (status = 'rejected' OR status IN "
        f"({', '.join('?' * len(UNRESOLVED_STATUSES))})) ORDER BY decision_time_ms, order_link_id",
        [system_id, until_ms, *UNRESOLVED_STATUSES],
    )
    for link, status, time_ms, reason in rows:
        kind = "rejected" if status == "rejected" else "ambiguous_unresolved"
        issues.append(ExecutionIssue(system_id, int(time_ms), kind, f"{link} {reason}".strip()))
    rows = _query(
        store,
        "SELECT record_id, run_ms, kind, symbol, system_ids, detail FROM trading_reconciliations "
        f"WHERE run_ms < ? AND kind NOT IN ({', '.join('?' * len(NOT_A_DIFF))}) "
        "ORDER BY run_ms, record_id",
        [until_ms, *NOT_A_DIFF],
    )
    for _record, run_ms, kind, symbol, system_ids, detail in rows:
        if system_id in _json_list(system_ids):
            text = f"{kind} {symbol or ''} {detail}".strip()
            issues.append(ExecutionIssue(system_id, int(run_ms), "reconciliation_diff", text))
    return issues


def load_expectation(store: Store, system: SystemDoc) -> BacktestExpectation:
    """What the backtests of this spec version expect, as the runner's forecasts state it
    (demo.forecasts.BacktestExpectations): win rate (share of trades with net PnL > 0), mean R
    over trades with a stop and mean return per trade in %, over all their backtest trades;
    when no trade is stored, the trade-weighted metrics of the backtest documents. The slippage
    model is the mean ``slippage_bps`` of their configuration."""
    docs = DocumentStore(store)
    backtests = [
        b
        for b in docs.list(BacktestDoc, {"system_id": system.id})
        if b.spec_hash == system.spec_hash
    ]
    ids = tuple(sorted(b.id for b in backtests))
    trades = docs.list(BacktestTrade, {"backtest_id": list(ids)}) if ids else []
    from_trades = _expectation_from_trades(trades)
    slippages = [
        float(b.config["slippage_bps"])
        for b in backtests
        if isinstance(b.config.get("slippage_bps"), int | float)
    ]
    return BacktestExpectation(
        win_rate=_first(from_trades.win_rate, _weighted(backtests, "win_rate")),
        expectancy_r=_first(from_trades.expectancy_r, _weighted(backtests, "expectancy_r")),
        expectancy_pct=_first(from_trades.expectancy_pct, _weighted(backtests, "expectancy_pct")),
        slippage_bps=sum(slippages) / len(slippages) if slippages else None,
        evidence_ids=ids,
    )


# --- helpers -------------------------------------------------------------------------------------


def _expectation_from_trades(trades: Sequence[BacktestTrade]) -> BacktestExpectation:
    if not trades:
        return BacktestExpectation()
    wins = sum(1 for t in trades if t.net_pnl > 0)
    rs = [t.r_multiple for t in trades if math.isfinite(t.r_multiple)]
    pcts = [
        t.net_pnl / (t.entry_price * t.qty) * 100.0 for t in trades if t.entry_price * t.qty > 0
    ]
    return BacktestExpectation(
        win_rate=wins / len(trades),
        expectancy_r=sum(rs) / len(rs) if rs else None,
        expectancy_pct=sum(pcts) / len(pcts) if pcts else None,
    )


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _weighted(backtests: Sequence[BacktestDoc], metric: str) -> float | None:
    """Mean of ``metric`` over the backtests weighted by their trade count (None if absent)."""
    pairs = [
        (b.metrics[metric], b.metrics.get("trades", 0.0))
        for b in backtests
        if metric in b.metrics and math.isfinite(b.metrics[metric])
    ]
    total = sum(w for _, w in pairs if math.isfinite(w) and w > 0)
    if not pairs or total <= 0:
        return None
    return sum(v * w for v, w in pairs if math.isfinite(w) and w > 0) / total


def _forecast_counts(docs: DocumentStore, system_id: str, day: dt.date) -> dict[str, float]:
    """The runner's decisions of the day by action (from its forecast documents)."""
    start = dt.datetime.fromtimestamp(day_start_ms(day) / 1000, tz=dt.UTC)
    end = start + dt.timedelta(days=1)
    actions = [
        f.action
        for f in docs.list(ForecastDoc, {"system_id": system_id})
        if start <= _aware(f.decision_time) < end
    ]
    counts = {"day_decisions": float(len(actions))}
    for action in ("enter", "exit", "hold", "skip"):
        counts[f"day_decisions_{action}"] = float(actions.count(action))
    return counts


def _systems_with_fills(store: Store, start_ms: int, end_ms: int) -> list[str]:
    rows = _query(
        store,
        "SELECT DISTINCT system_id FROM trading_fills "
        "WHERE system_id IS NOT NULL AND exec_time_ms >= ? AND exec_time_ms < ?",
        [start_ms, end_ms],
    )
    return [str(r[0]) for r in rows]


def _order_ids(store: Store, system_id: str, until_ms: int) -> list[str]:
    rows = _query(
        store,
        "SELECT order_link_id FROM trading_order_intents WHERE system_id = ? "
        "AND decision_time_ms < ? AND sent ORDER BY decision_time_ms, order_link_id",
        [system_id, until_ms],
    )
    return [str(r[0]) for r in rows]


def _store_mark_price(store: Store):  # noqa: ANN202 - returns a MarkPrice callable
    cache: dict[tuple[str, int], float | None] = {}

    def mark_price(symbol: str, time_ms: int) -> float | None:
        key = (symbol, time_ms)
        if key not in cache:
            rows = _query(
                store,
                "SELECT close FROM ohlcv WHERE symbol = ? AND close_time <= ? "
                "ORDER BY close_time DESC LIMIT 1",
                [symbol, time_ms],
            )
            cache[key] = _finite(rows[0][0]) if rows else None
        return cache[key]

    return mark_price


def _query(store: Store, sql: str, params: Iterable[object]) -> list[tuple]:
    try:
        with store.connect() as con:
            return con.execute(sql, list(params)).fetchall()
    except Exception as exc:  # duckdb.Error: a missing trading table means migration 6 is absent
        raise StoreError(f"demo evaluation: query on the trading tables failed: {exc}") from exc


def _json_list(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        parsed = json.loads(str(value)) if value is not None else []
    except json.JSONDecodeError:
        return []
    return [str(v) for v in parsed] if isinstance(parsed, list) else []


def _finite(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
