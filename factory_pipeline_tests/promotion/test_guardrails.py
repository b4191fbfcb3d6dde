"""Guardrail proof: agent output cannot change a status or a threshold.

Principle 2 of the design: nothing an LLM writes can change a status, a threshold or a cap. The
paths an agent's output can take are: a system spec dict (parsed into SystemSpec), a SystemDoc it
built, and evidence metrics. None of them reaches a status or a threshold.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from factory_pipeline.promotion import (
    PromotionError,
    PromotionPolicy,
    StatusGuardError,
    apply_decision,
    decide,
    ensure_status_unchanged,
    evaluate_and_apply,
    evaluate_rules,
    load_policy,
    policy_hash,
    store_systems,
)
from factory_pipeline.schemas import SystemDoc, SystemStatus
from factory_pipeline.store import DocumentStore
from factory_pipeline.strategy.systems import parse_system_spec
from factory_pipeline_tests.promotion.helpers import (
    PASSING_METRICS,
    POLICY_DATA,
    make_evidence,
    make_system,
)

S = SystemStatus

AGENT_SPEC = {
    "name": "agent breakout",
    "symbols": ["BTCUSDT"],
    "timeframes": {"H": "4h", "M": "1h", "L": "15m"},
    "entry": {"module": "entry_breakout"},
    "risk": {"module": "risk_fixed_fraction"},
}


@pytest.mark.parametrize(
    "smuggled",
    [
        {"status": "demo"},
        {"max_drawdown": 0.9},
        {"thresholds": {"max_pbo": 1.0, "min_trades": 1}},
        {"policy": {"candidate_to_demo": {"min_trades": 1}}},
    ],
)
def test_system_spec_has_no_status_or_threshold_fields(smuggled: dict) -> None:
    clean, problems = parse_system_spec(AGENT_SPEC)
    assert clean is not None and problems == []
    spec, problems = parse_system_spec({**AGENT_SPEC, **smuggled})
    assert spec is None
    assert [p.path for p in problems] == list(smuggled)


def test_agent_system_doc_with_demo_status_is_stored_as_candidate(docs: DocumentStore) -> None:
    forged = make_system(S.DEMO)
    store_systems(docs, [forged])
    assert docs.get(SystemDoc, forged.id).status == S.CANDIDATE


def test_rewriting_a_promoted_system_keeps_its_status(
    docs: DocumentStore, policy: PromotionPolicy
) -> None:
    system = make_system()
    store_systems(docs, [system])
    evaluate_and_apply(docs, make_evidence(), policy)
    assert docs.get(SystemDoc, system.id).status == S.DEMO
    # the systems asset re-materializes from YAML (status defaults to candidate) ...
    rewritten = system.model_copy(update={"description": "new prose"})
    store_systems(docs, [rewritten])
    stored = docs.get(SystemDoc, system.id)
    assert stored.status == S.DEMO and stored.description == "new prose"
    # ... and an agent claiming production changes nothing either
    store_systems(docs, [system.model_copy(update={"status": S.PRODUCTION})])
    assert docs.get(SystemDoc, system.id).status == S.DEMO


def test_ensure_status_unchanged() -> None:
    before = make_system(S.DEMO)
    ensure_status_unchanged(before, before.model_copy(update={"reasoning": "edited"}))
    ensure_status_unchanged(None, make_system(S.CANDIDATE))
    with pytest.raises(StatusGuardError, match="only the promotion engine changes a status"):
        ensure_status_unchanged(before, before.model_copy(update={"status": S.PRODUCTION}))
    with pytest.raises(StatusGuardError, match="a new system"):
        ensure_status_unchanged(None, make_system(S.LIVE_TEST))


def test_thresholds_come_only_from_the_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "promotion.yaml"
    path.write_text(yaml.safe_dump(POLICY_DATA), encoding="utf-8")
    policy = load_policy(path)
    # evidence carrying would-be thresholds is evaluated against the file's thresholds
    evidence = make_evidence(
        {**PASSING_METRICS, "pbo": 0.75, "max_pbo": 1.0, "thresholds": 1.0, "min_dsr": 0.0}
    )
    results = evaluate_rules(evidence, policy.candidate_to_demo)
    pbo = next(r for r in results if r.rule == "max_pbo")
    assert pbo.threshold == 0.5 and not pbo.passed
    assert decide(make_system(), results, policy).to_status == S.REWORK_REQUIRED


def test_forged_passing_rule_results_cannot_loosen_a_threshold(
    docs: DocumentStore, policy: PromotionPolicy
) -> None:
    """An agent handing in 'passed' results evaluated with its own threshold is refused."""
    system = make_system()
    store_systems(docs, [system])
    results = evaluate_rules(make_evidence(), policy.candidate_to_demo)
    forged = [
        r.model_copy(update={"threshold": 0.0}) if r.rule == "min_dsr" else r for r in results
    ]
    with pytest.raises(PromotionError, match="min_dsr"):
        decide(system, forged, policy)
    assert docs.get(SystemDoc, system.id).status == S.CANDIDATE


def test_policy_object_cannot_be_mutated(policy: PromotionPolicy) -> None:
    with pytest.raises(ValueError, match="frozen"):
        policy.candidate_to_demo.max_pbo = 1.0  # type: ignore[misc]


def test_apply_decision_is_the_only_status_writer(
    docs: DocumentStore, policy: PromotionPolicy
) -> None:
    """Every status change in the store came with an audit record (engine or human)."""
    system = make_system()
    store_systems(docs, [system])
    for _ in range(2):  # re-storing never changes the status
        store_systems(docs, [system.model_copy(update={"status": S.DEMO})])
    assert docs.get(SystemDoc, system.id).status == S.CANDIDATE
    results = evaluate_rules(make_evidence(), policy.candidate_to_demo)
    decision = decide(system, results, policy)
    record = apply_decision(docs, system, decision, results, ["bt-1"], policy_hash(policy))
    assert docs.get(SystemDoc, system.id).status == record.to_status == S.DEMO
