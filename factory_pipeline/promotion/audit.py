"""Reading the promotion audit log: a system's status history and flat tables for the UI.

Why a separate module: the transitions are append-only records written by the state machine;
readers (the Dagster UI metadata, the CLI, reports) only need them in time order and flattened,
and must never need write access to get there.
"""

from __future__ import annotations

from typing import Any

from factory_pipeline.schemas import StatusTransition
from factory_pipeline.store import DocumentStore


def transitions_for(docs: DocumentStore, system_id: str) -> list[StatusTransition]:
    """Every recorded transition of ``system_id``, oldest first (ties by id)."""
    records = docs.list(StatusTransition, {"system_id": system_id})
    return sorted(records, key=lambda t: (t.created_at, t.id))


def audit_table(docs: DocumentStore, system_id: str | None = None) -> list[dict[str, Any]]:
    """One flat row per transition (all systems, or one), oldest first.

    Columns: ``transition_id``, ``decided_at`` (ISO 8601 UTC), ``system_id``, ``from_status``,
    ``to_status``, ``decided_by``, ``rules_passed`` ("passed/total"), ``failed_rules`` (names,
    comma-separated), ``evidence_ids`` (comma-separated), ``policy_hash``, ``reasons``.
    """
    where = {"system_id": system_id} if system_id is not None else None
    records = sorted(docs.list(StatusTransition, where), key=lambda t: (t.created_at, t.id))
    return [_row(record) for record in records]


def rule_rows(transition: StatusTransition) -> list[dict[str, Any]]:
    """The rule results of one transition as rows: rule, metric, measured, comparison,
    threshold, passed, on_fail, message (for a detail table)."""
    columns = ("rule", "metric", "measured", "comparison", "threshold", "passed", "on_fail")
    return [
        {**{c: result.get(c) for c in columns}, "message": result.get("message", "")}
        for result in transition.rule_results
    ]


def _row(record: StatusTransition) -> dict[str, Any]:
    results = record.rule_results
    failed = [str(r.get("rule")) for r in results if not r.get("passed")]
    return {
        "transition_id": record.id,
        "decided_at": record.created_at.isoformat(),
        "system_id": record.system_id,
        "from_status": record.from_status.value,
        "to_status": record.to_status.value,
        "decided_by": record.decided_by,
        "rules_passed": f"{len(results) - len(failed)}/{len(results)}",
        "failed_rules": ", ".join(failed),
        "evidence_ids": ", ".join(record.evidence_ids),
        "policy_hash": record.policy_hash,
        "reasons": record.provenance.notes,
    }
