"""evaluate_demo_day on the gateway's tables and apply_demo_rules through the promotion state
machine: stored documents (stable ids, a re-run replaces), execution issues from intents and
reconciliation, promotion to live_test exactly at the policy boundary, demotion to disabled on
drawdown and to rework_required on deviation, audit rows written."""

from __future__ import annotations

import datetime as dt

import pytest

from factory_pipeline.demo.evaluation import (
    apply_demo_rules,
    demo_trading_days,
    evaluate_demo_day,
    evaluation_doc_id,
    load_expectation,
    systems_in_demo_on,
)
from factory_pipeline.promotion import transitions_for
from factory_pipeline.schemas import (
    BacktestDoc,
    BacktestTrade,
    DemoEvaluationDoc,
    SystemDoc,
    SystemStatus,
)
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.trading.ledger import TradingLedger
from factory_pipeline_tests.defs_trading.helpers import (
    backtest,
    day_ms,
    demo_system,
    intent,
    reconciliation_diff,
    round_trip,
    round_trips,
)
from factory_pipeline_tests.promotion.helpers import make_policy

START = dt.date(2025, 6, 1)


@pytest.fixture
def store():
    db = Store(":memory:")
    yield db
    db.close()


def status_of(store, system_id):
    return DocumentStore(store).get(SystemDoc, system_id).status


def test_a_day_is_stored_once_per_system_and_a_rerun_replaces_it(store):
    system = demo_system(store)
    backtest(store, system, expectancy_pct=1.0)
    round_trip(store, system.id, START, entry=100.0, exit=101.0)
    first = evaluate_demo_day(store, START, policy=make_policy())
    assert [e.system_id for e in first] == [system.id]
    doc = DocumentStore(store).get(DemoEvaluationDoc, evaluation_doc_id(system.id, START))
    assert doc is not None and doc.day == START
    assert doc.metrics["demo_trades"] == 1
    assert doc.metrics["realized_pnl"] == pytest.approx(1.0)
    assert doc.order_ids == [
        f"{system.id}-{day_ms(START, 1)}-in",
        f"{system.id}-{day_ms(START, 1)}-out",
    ]
    round_trip(store, system.id, START, entry=100.0, exit=99.0, hour=5)
    evaluate_demo_day(store, START, policy=make_policy())
    docs = DocumentStore(store).list(DemoEvaluationDoc, {"partition_key": START.isoformat()})
    assert len(docs) == 1
    assert docs[0].metrics["demo_trades"] == 2
    assert docs[0].metrics["realized_pnl"] == pytest.approx(0.0)
    assert docs[0].metrics["backtest_expectancy_pct"] == 1.0
    assert docs[0].metrics["model_slippage_bps"] == 2.0


def test_execution_issues_come_from_intents_and_reconciliation(store):
    system = demo_system(store)
    round_trip(store, system.id, START, entry=100.0, exit=101.0)
    ledger = TradingLedger(store)
    t = day_ms(START, 3)
    ledger.save_intent(
        intent(system.id, "rej-1", "Buy", 1, t, ref=100, status="rejected", reason="110007")
    )
    ledger.save_intent(intent(system.id, "unk-1", "Buy", 1, t, ref=100, status="unknown"))
    ledger.save_intent(intent(system.id, "blk-1", "Buy", 1, t, ref=100, status="blocked"))
    reconciliation_diff(store, system.id, day_ms(START, 4), "rec-1")
    reconciliation_diff(store, "sys-other", day_ms(START, 4), "rec-2")
    (evaluation,) = evaluate_demo_day(store, START)
    assert evaluation.metrics["execution_issues"] == 3  # blocked and other systems' diffs: no
    assert evaluation.metrics["rejected_orders"] == 1
    assert evaluation.metrics["unresolved_ambiguous_orders"] == 1
    assert evaluation.metrics["reconciliation_diffs"] == 1
    assert len(evaluation.issues) == 3


def test_which_systems_are_evaluated(store):
    demo = demo_system(store, "sys-demo")
    demo_system(store, "sys-candidate", status=SystemStatus.CANDIDATE)
    moved = demo_system(store, "sys-live", status=SystemStatus.LIVE_TEST)
    round_trip(store, moved.id, START, entry=100.0, exit=101.0)
    # a live_test system that traded that day is still evaluated (it was on demo then) ...
    assert [s.id for s in systems_in_demo_on(store, START)] == [demo.id, moved.id]
    # ... but the rules are applied only to systems still in demo
    evaluations = evaluate_demo_day(store, START, policy=make_policy())
    outcomes = apply_demo_rules(store, evaluations, make_policy())
    assert [o.decision.system_id for o in outcomes] == [demo.id]
    assert demo_trading_days(store, START, START + dt.timedelta(days=3)) == [START]


def _trade_days(store, system, days, *, entry=100.0, exit=101.0, qty=1.0):
    dates = [START + dt.timedelta(days=offset) for offset in range(days)]
    round_trips(store, system.id, dates, entry=entry, exit=exit, qty=qty)


def test_promotion_to_live_test_exactly_at_the_minimum_days_and_trades(store):
    policy = make_policy()  # min_days 30, min_trades 30, max_execution_issues 3
    system = demo_system(store)
    backtest(store, system, expectancy_pct=1.0)  # each demo trade returns exactly 1 %
    _trade_days(store, system, 30)
    for n in range(3):  # three rejected orders: at the max_execution_issues boundary
        TradingLedger(store).save_intent(
            intent(system.id, f"rej-{n}", "Buy", 1, day_ms(START, 20), ref=100, status="rejected")
        )
    day29 = START + dt.timedelta(days=28)
    (outcome,) = apply_demo_rules(store, evaluate_demo_day(store, day29, policy=policy), policy)
    assert outcome.decision.to_status == SystemStatus.DEMO  # 29 days, 29 trades: hold
    failed = {r.rule for r in outcome.rule_results if not r.passed}
    assert failed == {"min_days", "min_trades"}
    assert status_of(store, system.id) == SystemStatus.DEMO

    day30 = START + dt.timedelta(days=29)
    evaluations = evaluate_demo_day(store, day30, policy=policy)
    assert evaluations[0].metrics["demo_days"] == 30
    assert evaluations[0].metrics["demo_trades"] == 30
    assert evaluations[0].metrics["pnl_deviation"] == pytest.approx(0.0)
    assert evaluations[0].metrics["execution_issues"] == 3
    (outcome,) = apply_demo_rules(store, evaluations, policy)
    assert outcome.decision.to_status == SystemStatus.LIVE_TEST
    assert status_of(store, system.id) == SystemStatus.LIVE_TEST
    (record,) = transitions_for(DocumentStore(store), system.id)
    assert (record.from_status, record.to_status) == (SystemStatus.DEMO, SystemStatus.LIVE_TEST)
    assert evaluation_doc_id(system.id, day30) in record.evidence_ids
    assert "bt-sys-a" in record.evidence_ids
    assert all(r["passed"] for r in record.rule_results)


def test_demotion_to_disabled_on_demo_drawdown(store):
    policy = make_policy()  # demo_demotion.max_drawdown 0.25
    system = demo_system(store)
    backtest(store, system)
    # 10 000 default equity, 100 units bought at 100 and sold at 70: -3 000, drawdown 0.30
    round_trip(store, system.id, START, entry=100.0, exit=70.0, qty=100.0)
    evaluations = evaluate_demo_day(store, START, policy=policy)
    assert evaluations[0].metrics["demo_max_drawdown"] == pytest.approx(0.30)
    (outcome,) = apply_demo_rules(store, evaluations, policy)
    assert outcome.decision.to_status == SystemStatus.DISABLED
    assert status_of(store, system.id) == SystemStatus.DISABLED
    (record,) = transitions_for(DocumentStore(store), system.id)
    assert record.to_status == SystemStatus.DISABLED
    failed = [r["rule"] for r in record.rule_results if not r["passed"]]
    assert "demo_demotion.max_drawdown" in failed
    # the day re-run after the demotion evaluates it again but applies nothing
    again = evaluate_demo_day(store, START, policy=policy)
    assert apply_demo_rules(store, again, policy) == []
    assert len(transitions_for(DocumentStore(store), system.id)) == 1


@pytest.mark.parametrize(
    ("trades", "expected"), [(19, SystemStatus.DEMO), (20, SystemStatus.REWORK_REQUIRED)]
)
def test_rework_on_pnl_deviation_only_from_min_trades_on(store, trades, expected):
    policy = make_policy()  # max_pnl_deviation 1.0 from min_trades_before_rework = 20 trades
    system = demo_system(store)
    backtest(store, system, expectancy_pct=1.0)
    _trade_days(store, system, trades, entry=100.0, exit=99.0)  # -1 % each: deviation 2.0
    last = START + dt.timedelta(days=trades - 1)
    evaluations = evaluate_demo_day(store, last, policy=policy)
    assert evaluations[0].metrics["pnl_deviation"] == pytest.approx(2.0)
    (outcome,) = apply_demo_rules(store, evaluations, policy)
    assert outcome.decision.to_status == expected
    assert status_of(store, system.id) == expected


def test_the_expectation_comes_from_the_backtest_trades_of_the_spec_version(store):
    system = demo_system(store)
    # document metrics that disagree with the trades: the trades win (as in the forecasts)
    bt = backtest(store, system, win_rate=0.9, expectancy_r=3.0, expectancy_pct=9.0)
    other = BacktestDoc(**(bt.model_dump() | {"id": "bt-old", "spec_hash": "old-version"}))
    DocumentStore(store).upsert([other])

    def trade(n, backtest_id, entry, net, r):
        return BacktestTrade(
            id=f"{backtest_id}-t{n}",
            backtest_id=backtest_id,
            system_id=system.id,
            partition_key="all|BTCUSDT",
            side="long",
            entry_time=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            exit_time=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
            entry_price=entry,
            exit_price=entry,
            qty=1.0,
            gross_pnl=net,
            net_pnl=net,
            fees=0.0,
            funding=0.0,
            mae=0.0,
            mfe=0.0,
            r_multiple=r,
            exit_reason="signal",
            bars_held=4,
        )

    DocumentStore(store).upsert(
        [
            trade(1, bt.id, 100.0, 10.0, 1.0),  # +10 %
            trade(2, bt.id, 100.0, -5.0, -0.5),  # -5 %
            trade(3, bt.id, 200.0, 2.0, float("nan")),  # +1 %, no stop: no R
            trade(4, "bt-old", 100.0, -50.0, -5.0),  # another spec version: ignored
        ]
    )
    expectation = load_expectation(store, system)
    assert expectation.win_rate == pytest.approx(2 / 3)
    assert expectation.expectancy_r == pytest.approx((1.0 - 0.5) / 2)
    assert expectation.expectancy_pct == pytest.approx((10 - 5 + 1) / 3)
    assert expectation.slippage_bps == 2.0
    assert expectation.evidence_ids == (bt.id,)


def test_without_trades_the_backtest_metrics_are_trade_weighted(store):
    system = demo_system(store)
    first = backtest(store, system, win_rate=0.5, expectancy_pct=1.0, trades=100.0)
    second = BacktestDoc(
        **(
            first.model_dump()
            | {"id": "bt-2", "metrics": {"trades": 300.0, "win_rate": 0.25, "expectancy_pct": 3.0}}
        )
    )
    DocumentStore(store).upsert([second])
    expectation = load_expectation(store, system)
    assert expectation.win_rate == pytest.approx((0.5 * 100 + 0.25 * 300) / 400)
    assert expectation.expectancy_pct == pytest.approx((1.0 * 100 + 3.0 * 300) / 400)
    assert expectation.expectancy_r == pytest.approx(0.5)  # only the first carries it
