"""Audit log readers: history per system and the flat UI table."""

from __future__ import annotations

from factory_pipeline.promotion import (
    PromotionPolicy,
    apply_human_command,
    audit_table,
    evaluate_and_apply,
    policy_hash,
    rule_rows,
    store_systems,
    transitions_for,
)
from factory_pipeline.schemas import SystemStatus
from factory_pipeline.store import DocumentStore
from factory_pipeline_tests.promotion.helpers import (
    PASSING_DEMO_METRICS,
    PASSING_METRICS,
    make_evidence,
    make_system,
)

S = SystemStatus


def _history(docs: DocumentStore, policy: PromotionPolicy) -> None:
    store_systems(docs, [make_system(system_id="sys-a"), make_system(system_id="sys-b")])
    evaluate_and_apply(
        docs, make_evidence(system_id="sys-a", evidence_ids=["bt-2", "bt-1"]), policy
    )
    demo = {**PASSING_DEMO_METRICS, "demo_max_drawdown": 0.5}
    evaluate_and_apply(docs, make_evidence(demo, system_id="sys-a", evidence_ids=["ev-9"]), policy)
    evaluate_and_apply(
        docs,
        make_evidence({**PASSING_METRICS, "pbo": 0.75}, system_id="sys-b", evidence_ids=["bt-7"]),
        policy,
    )


def test_transitions_for_in_order_with_content(
    docs: DocumentStore, policy: PromotionPolicy
) -> None:
    _history(docs, policy)
    records = transitions_for(docs, "sys-a")
    assert [(r.from_status, r.to_status) for r in records] == [
        (S.CANDIDATE, S.DEMO),
        (S.DEMO, S.DISABLED),
    ]
    first, second = records
    assert first.evidence_ids == ["bt-1", "bt-2"]
    assert first.policy_hash == second.policy_hash == policy_hash(policy)
    assert all(r["passed"] for r in first.rule_results)
    failed = [r for r in second.rule_results if not r["passed"]]
    assert [r["rule"] for r in failed] == ["demo_demotion.max_drawdown"]
    assert failed[0]["measured"] == 0.5 and failed[0]["threshold"] == 0.25
    assert "demo_max_drawdown = 0.5" in second.provenance.notes
    assert transitions_for(docs, "sys-unknown") == []


def test_audit_table_rows(docs: DocumentStore, policy: PromotionPolicy) -> None:
    _history(docs, policy)
    apply_human_command(
        docs, "sys-b", S.DISABLED, actor="bob", reason="retire", policy_hash=policy_hash(policy)
    )
    rows = audit_table(docs)
    assert len(rows) == 4
    assert [r["decided_at"] for r in rows] == sorted(r["decided_at"] for r in rows)
    by_move = {(r["system_id"], r["from_status"], r["to_status"]): r for r in rows}
    promoted = by_move[("sys-a", "candidate", "demo")]
    assert promoted["rules_passed"] == "13/13"
    assert promoted["failed_rules"] == ""
    assert promoted["evidence_ids"] == "bt-1, bt-2"
    assert promoted["decided_by"] == "promotion-engine"
    assert promoted["policy_hash"] == policy_hash(policy)
    reworked = by_move[("sys-b", "candidate", "rework_required")]
    assert reworked["rules_passed"] == "12/13"
    assert reworked["failed_rules"] == "max_pbo"
    assert reworked["reasons"].startswith("max_pbo: pbo = 0.75 > 0.5")
    human = by_move[("sys-b", "rework_required", "disabled")]
    assert human["decided_by"] == "human:bob" and human["rules_passed"] == "0/0"
    assert [r["system_id"] for r in audit_table(docs, "sys-b")] == ["sys-b", "sys-b"]


def test_rule_rows(docs: DocumentStore, policy: PromotionPolicy) -> None:
    _history(docs, policy)
    record = transitions_for(docs, "sys-b")[0]
    rows = rule_rows(record)
    assert len(rows) == len(record.rule_results)
    pbo = next(r for r in rows if r["rule"] == "max_pbo")
    assert pbo == {
        "rule": "max_pbo",
        "metric": "pbo",
        "measured": 0.75,
        "comparison": "<=",
        "threshold": 0.5,
        "passed": False,
        "on_fail": "rework_required",
        "message": "max_pbo: pbo = 0.75 > 0.5 (required <=)",
    }
