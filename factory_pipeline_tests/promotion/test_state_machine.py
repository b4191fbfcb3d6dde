"""State machine: transition table, decisions, atomic idempotent application, rollback."""

from __future__ import annotations

import itertools
from typing import Any

import duckdb
import pytest

from factory_pipeline.errors import StoreError
from factory_pipeline.promotion import (
    Decision,
    IllegalTransitionError,
    PromotionError,
    PromotionPolicy,
    apply_decision,
    apply_human_command,
    decide,
    ensure_allowed,
    evaluate_and_apply,
    evaluate_demo_rules,
    evaluate_rules,
    policy_hash,
    state_machine,
    store_systems,
)
from factory_pipeline.schemas import StatusTransition, SystemDoc, SystemStatus
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline_tests.promotion.helpers import (
    PASSING_DEMO_METRICS,
    PASSING_METRICS,
    make_evidence,
    make_system,
)

S = SystemStatus

#: The ladder as specified in the brief, written independently of the code's table.
LEGAL = {
    ("candidate", "demo"),
    ("candidate", "rework_required"),
    ("candidate", "disabled"),
    ("demo", "live_test"),
    ("demo", "rework_required"),
    ("demo", "disabled"),
    ("live_test", "production"),
    ("live_test", "demo"),
    ("live_test", "disabled"),
    ("production", "live_test"),
    ("production", "disabled"),
}


@pytest.mark.parametrize(("source", "target"), list(itertools.permutations(S, 2)))
def test_transition_table(source: SystemStatus, target: SystemStatus) -> None:
    if (source.value, target.value) in LEGAL:
        ensure_allowed(source, target)
    else:
        with pytest.raises(IllegalTransitionError, match=f"{source.value} -> {target.value}"):
            ensure_allowed(source, target)


def _candidate_decision(policy: PromotionPolicy, **metrics: Any) -> Decision:
    evidence = make_evidence({**PASSING_METRICS, **metrics})
    return decide(make_system(), evaluate_rules(evidence, policy.candidate_to_demo), policy)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({}, S.DEMO),
        ({"trades": 99.0}, S.REWORK_REQUIRED),
        ({"pbo": 0.75, "dsr": 0.25}, S.REWORK_REQUIRED),
        ({"stress_survived": False}, S.REWORK_REQUIRED),
        ({"max_drawdown": 0.375}, S.REWORK_REQUIRED),  # > 0.25, <= 2 x 0.25
        ({"max_drawdown": 0.625}, S.DISABLED),  # > 2 x 0.25
        ({"expectancy_r": -0.375}, S.DISABLED),  # < -0.25
        ({"lookahead_passed": False}, S.DISABLED),
        ({"lookahead_passed": False, "trades": 5.0}, S.DISABLED),  # disabled beats rework
        ({"dsr": None}, S.CANDIDATE),  # missing: hold
        ({"lookahead_passed": None}, S.CANDIDATE),  # audit not run: hold, not disabled
        ({"dsr": None, "trades": 50.0}, S.REWORK_REQUIRED),  # a measured failure decides
    ],
)
def test_candidate_decisions(
    policy: PromotionPolicy, metrics: dict[str, Any], expected: SystemStatus
) -> None:
    decision = _candidate_decision(policy, **metrics)
    assert decision.to_status == expected
    assert decision.from_status == S.CANDIDATE
    assert decision.changed == (expected != S.CANDIDATE)
    assert decision.reasons


def test_decision_reasons_name_the_failed_rules(policy: PromotionPolicy) -> None:
    decision = _candidate_decision(policy, trades=99.0, pbo=0.75)
    assert len(decision.reasons) == 2
    assert decision.reasons[0].startswith("min_trades: trades = 99")
    assert decision.reasons[1].startswith("max_pbo: pbo = 0.75")


def test_no_evidence_ids_holds(policy: PromotionPolicy) -> None:
    evidence = make_evidence(evidence_ids=[])
    decision = decide(make_system(), evaluate_rules(evidence, policy.candidate_to_demo), policy)
    assert decision.to_status == S.CANDIDATE


def test_rules_not_evaluated_hold(policy: PromotionPolicy) -> None:
    assert decide(make_system(), [], policy).to_status == S.CANDIDATE
    results = evaluate_rules(make_evidence(), policy.candidate_to_demo)
    partial = [r for r in results if r.rule != "max_pbo"]
    decision = decide(make_system(), partial, policy)
    assert decision.to_status == S.CANDIDATE
    assert decision.reasons == ("max_pbo: not evaluated",)


def test_rule_results_from_another_policy_are_refused(policy: PromotionPolicy) -> None:
    lenient = policy.model_validate(
        {
            **policy.model_dump(),
            "candidate_to_demo": {**policy.candidate_to_demo.model_dump(), "max_pbo": 0.75},
        }
    )
    results = evaluate_rules(
        make_evidence({**PASSING_METRICS, "pbo": 0.625}), lenient.candidate_to_demo
    )
    with pytest.raises(PromotionError, match="rule 'max_pbo' was evaluated as pbo <= 0.75"):
        decide(make_system(), results, policy)


def test_forged_and_duplicate_rule_results_are_refused(policy: PromotionPolicy) -> None:
    results = evaluate_rules(make_evidence(), policy.candidate_to_demo)
    forged = results[1].model_copy(update={"on_fail": "hold"})
    with pytest.raises(PromotionError, match="min_trades"):
        decide(make_system(), [results[0], forged, *results[2:]], policy)
    with pytest.raises(PromotionError, match="appears twice"):
        decide(make_system(), [*results, results[3]], policy)
    unknown = results[1].model_copy(update={"rule": "be_nice"})
    with pytest.raises(PromotionError, match="be_nice"):
        decide(make_system(), [unknown], policy)


@pytest.mark.parametrize("status", [S.LIVE_TEST, S.PRODUCTION, S.REWORK_REQUIRED, S.DISABLED])
def test_no_automatic_decision_without_policy_rules(
    policy: PromotionPolicy, status: SystemStatus
) -> None:
    with pytest.raises(PromotionError, match="no automatic rules"):
        decide(make_system(status), [], policy)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({}, S.LIVE_TEST),
        ({"demo_days": 10.0}, S.DEMO),  # not long enough yet: keep trading on demo
        ({"execution_issues": 7.0}, S.DEMO),
        ({"demo_max_drawdown": 0.375}, S.DISABLED),
        ({"pnl_deviation": 1.5}, S.REWORK_REQUIRED),
        ({"pnl_deviation": 1.5, "demo_trades": 12.0}, S.DEMO),  # too early to demote
        ({"demo_max_drawdown": None}, S.DEMO),
    ],
)
def test_demo_decisions(
    policy: PromotionPolicy, metrics: dict[str, Any], expected: SystemStatus
) -> None:
    evidence = make_evidence({**PASSING_DEMO_METRICS, **metrics})
    results = evaluate_demo_rules(evidence, policy.demo_to_live_test, policy.demo_demotion)
    assert decide(make_system(S.DEMO), results, policy).to_status == expected


# --- applying decisions ---------------------------------------------------------------------------


def _promote(docs: DocumentStore, policy: PromotionPolicy, system: SystemDoc, **metrics: Any):
    evidence = make_evidence({**PASSING_METRICS, **metrics})
    results = evaluate_rules(evidence, policy.candidate_to_demo)
    decision = decide(system, results, policy)
    return (
        decision,
        results,
        apply_decision(docs, system, decision, results, evidence.evidence_ids, policy_hash(policy)),
    )


def test_apply_updates_status_and_appends_record(
    docs: DocumentStore, policy: PromotionPolicy
) -> None:
    system = make_system()
    store_systems(docs, [system], partition_key="BTCUSDT")
    decision, results, transition = _promote(docs, policy, system)
    assert transition is not None
    stored = docs.get(SystemDoc, system.id)
    assert stored is not None and stored.status == S.DEMO
    assert stored.spec == system.spec  # only the status changed
    records = docs.list(StatusTransition, {"system_id": system.id})
    assert [r.id for r in records] == [transition.id]
    record = records[0]
    assert (record.from_status, record.to_status) == (S.CANDIDATE, S.DEMO)
    assert record.rule_results == [r.model_dump(mode="json") for r in results]
    assert record.evidence_ids == ["bt-1", "rob-1"]
    assert record.policy_hash == policy_hash(policy)
    assert record.decided_by == "promotion-engine"
    assert record.provenance.notes == "\n".join(decision.reasons)
    with docs.store.connect() as con:
        partition = con.execute(
            "SELECT partition_key FROM systems WHERE id = ?", [system.id]
        ).fetchall()
    assert partition == [("BTCUSDT",)]


def test_reapplying_the_same_decision_is_idempotent(
    docs: DocumentStore, policy: PromotionPolicy
) -> None:
    system = make_system()
    store_systems(docs, [system])
    _, _, first = _promote(docs, policy, system)
    _, _, again = _promote(docs, policy, system)  # same stale candidate object, same evidence
    assert first is not None and again is None
    assert docs.count(StatusTransition) == 1
    assert docs.get(SystemDoc, system.id).status == S.DEMO


def test_transition_id_is_stable_and_depends_on_evidence_and_policy(
    policy: PromotionPolicy,
) -> None:
    ids = []
    for metrics, hash_suffix in [({}, ""), ({}, ""), ({"pbo": 0.3125}, ""), ({}, "x")]:
        store = Store(":memory:")
        docs = DocumentStore(store)
        system = make_system()
        store_systems(docs, [system])
        evidence = make_evidence({**PASSING_METRICS, **metrics})
        results = evaluate_rules(evidence, policy.candidate_to_demo)
        decision = decide(system, results, policy)
        record = apply_decision(
            docs,
            system,
            decision,
            results,
            evidence.evidence_ids,
            policy_hash(policy) + hash_suffix,
        )
        ids.append(record.id)
        store.close()
    assert ids[0] == ids[1]
    assert len({ids[0], ids[2], ids[3]}) == 3


def test_hold_writes_nothing(docs: DocumentStore, policy: PromotionPolicy) -> None:
    system = make_system()
    store_systems(docs, [system])
    decision, _, transition = _promote(docs, policy, system, dsr=None)
    assert not decision.changed and transition is None
    assert docs.count(StatusTransition) == 0


def test_illegal_transition_raises_and_writes_nothing(
    docs: DocumentStore, policy: PromotionPolicy
) -> None:
    system = make_system(S.CANDIDATE)
    store_systems(docs, [system])
    decision = Decision(system_id=system.id, from_status=S.CANDIDATE, to_status=S.PRODUCTION)
    with pytest.raises(IllegalTransitionError, match="candidate -> production"):
        apply_decision(docs, system, decision, [], ["bt-1"], policy_hash(policy))
    assert docs.get(SystemDoc, system.id).status == S.CANDIDATE
    assert docs.count(StatusTransition) == 0


def test_decision_for_another_system_or_status_is_refused(
    docs: DocumentStore, policy: PromotionPolicy
) -> None:
    system = make_system()
    decision = Decision(system_id="sys-other", from_status=S.CANDIDATE, to_status=S.DEMO)
    with pytest.raises(PromotionError, match="does not match"):
        apply_decision(docs, system, decision, [], ["bt-1"], policy_hash(policy))
    decision = Decision(system_id=system.id, from_status=S.DEMO, to_status=S.LIVE_TEST)
    with pytest.raises(PromotionError, match="does not match"):
        apply_decision(docs, system, decision, [], ["bt-1"], policy_hash(policy))


def test_stale_system_is_refused(docs: DocumentStore, policy: PromotionPolicy) -> None:
    system = make_system()
    store_systems(docs, [system])
    _promote(docs, policy, system)  # now demo in the store
    # a different candidate decision from the stale object (other evidence -> other record id)
    with pytest.raises(PromotionError, match="stale system"):
        _promote(docs, policy, system, trades=50.0)
    assert docs.get(SystemDoc, system.id).status == S.DEMO
    assert docs.count(StatusTransition) == 1


def test_unstored_system_is_refused(docs: DocumentStore, policy: PromotionPolicy) -> None:
    with pytest.raises(PromotionError, match="not stored"):
        _promote(docs, policy, make_system())


def test_rollback_when_audit_write_fails(
    docs: DocumentStore, policy: PromotionPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = make_system()
    store_systems(docs, [system])
    real_upsert = state_machine.upsert_documents
    calls: list[str] = []

    def failing_upsert(con: Any, batch: Any, **kwargs: Any) -> int:
        calls.append(type(batch[0]).__name__)
        if isinstance(batch[0], StatusTransition):
            raise duckdb.IOException("disk full while writing the audit record")
        return real_upsert(con, batch, **kwargs)

    monkeypatch.setattr(state_machine, "upsert_documents", failing_upsert)
    with pytest.raises(StoreError, match="nothing was written"):
        _promote(docs, policy, system)
    assert calls == ["SystemDoc", "StatusTransition"]  # the status write happened first ...
    monkeypatch.undo()
    assert docs.get(SystemDoc, system.id).status == S.CANDIDATE  # ... and was rolled back
    assert docs.count(StatusTransition) == 0
    _, _, transition = _promote(docs, policy, system)  # the store is still usable
    assert transition is not None


def test_evaluate_and_apply(docs: DocumentStore, policy: PromotionPolicy) -> None:
    system = make_system()
    store_systems(docs, [system])
    outcome = evaluate_and_apply(docs, make_evidence(), policy)
    assert outcome.decision.to_status == S.DEMO
    assert outcome.transition is not None
    assert len(outcome.rule_results) == len(outcome.transition.rule_results)
    # the same evidence again now meets demo rules it does not have metrics for: hold
    second = evaluate_and_apply(docs, make_evidence(), policy)
    assert second.decision.to_status == S.DEMO and second.transition is None
    demo = make_evidence({**PASSING_DEMO_METRICS}, evidence_ids=["demo-eval-1"])
    third = evaluate_and_apply(docs, demo, policy)
    assert third.decision.to_status == S.LIVE_TEST
    assert docs.get(SystemDoc, system.id).status == S.LIVE_TEST


def test_evaluate_and_apply_checks_the_spec_version(
    docs: DocumentStore, policy: PromotionPolicy
) -> None:
    store_systems(docs, [make_system()])
    with pytest.raises(PromotionError, match="spec_hash 'other'"):
        evaluate_and_apply(docs, make_evidence(spec_hash="other"), policy)
    with pytest.raises(PromotionError, match="not stored"):
        evaluate_and_apply(docs, make_evidence(system_id="sys-nope"), policy)


# --- human commands -------------------------------------------------------------------------------


def test_disabled_is_terminal_for_the_engine(docs: DocumentStore, policy: PromotionPolicy) -> None:
    system = make_system()
    store_systems(docs, [system])
    _promote(docs, policy, system, lookahead_passed=False)
    disabled = docs.get(SystemDoc, system.id)
    assert disabled.status == S.DISABLED
    with pytest.raises(PromotionError):
        decide(disabled, [], policy)
    decision = Decision(system_id=system.id, from_status=S.DISABLED, to_status=S.CANDIDATE)
    with pytest.raises(IllegalTransitionError):
        apply_decision(docs, disabled, decision, [], ["x"], policy_hash(policy))


def test_human_command_reenables_and_is_recorded(
    docs: DocumentStore, policy: PromotionPolicy
) -> None:
    system = make_system()
    store_systems(docs, [system])
    _promote(docs, policy, system, lookahead_passed=False)
    record = apply_human_command(
        docs,
        system.id,
        S.CANDIDATE,
        actor="alice",
        reason="audit bug fixed in the engine",
        policy_hash=policy_hash(policy),
    )
    assert docs.get(SystemDoc, system.id).status == S.CANDIDATE
    assert record.decided_by == "human:alice"
    assert record.provenance.notes == "audit bug fixed in the engine"
    assert docs.count(StatusTransition) == 2
    with pytest.raises(IllegalTransitionError, match="candidate -> production"):
        apply_human_command(
            docs, system.id, S.PRODUCTION, actor="alice", reason="yolo", policy_hash="h"
        )
    with pytest.raises(PromotionError, match="actor and a reason"):
        apply_human_command(docs, system.id, S.DISABLED, actor=" ", reason="x", policy_hash="h")
