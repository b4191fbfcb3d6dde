"""The promotion state machine: the only code that changes a system's status.

Why one module: a status decides what trades (demo, then tiny real capital, then allocated
capital), so it must change only by deterministic rules applied to measured evidence under the
human-owned policy, and every change must leave an audit record. :func:`decide` turns rule
results into a :class:`Decision`; :func:`apply_decision` writes the new status and an
append-only :class:`StatusTransition` in one transaction, idempotently. Code that stores system
documents produced elsewhere (YAML, agents) goes through :func:`store_systems`, which keeps the
stored status, or checks with :func:`ensure_status_unchanged`. A human can move a system where
the engine may not (re-enable a disabled one) only through :func:`apply_human_command`, which is
recorded the same way. Ladder, decision logic and audit record: docs/promotion.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb
from pydantic import BaseModel, ConfigDict, Field

from factory_pipeline.errors import FactoryError, StoreError
from factory_pipeline.promotion.policy import PromotionPolicy, policy_hash
from factory_pipeline.promotion.rules import (
    Evidence,
    RuleResult,
    evaluate_for_status,
    expected_rules,
)
from factory_pipeline.schemas import (
    Provenance,
    StatusTransition,
    SystemDoc,
    SystemStatus,
    stable_id,
)
from factory_pipeline.store import DocumentStore, upsert_documents

S = SystemStatus

#: Transitions the promotion engine may make. ``rework_required`` and ``disabled`` have none:
#: a reworked system comes back as a *new* spec version (a new SystemDoc id, starting as
#: candidate), and a disabled one only by a human command.
ALLOWED_TRANSITIONS: Mapping[SystemStatus, frozenset[SystemStatus]] = {
    S.CANDIDATE: frozenset({S.DEMO, S.REWORK_REQUIRED, S.DISABLED}),
    S.DEMO: frozenset({S.LIVE_TEST, S.REWORK_REQUIRED, S.DISABLED}),
    S.LIVE_TEST: frozenset({S.PRODUCTION, S.DEMO, S.DISABLED}),
    S.PRODUCTION: frozenset({S.LIVE_TEST, S.DISABLED}),
    S.REWORK_REQUIRED: frozenset(),
    S.DISABLED: frozenset(),
}

#: Transitions a human command may make: the engine's, plus re-enabling a disabled system as a
#: candidate (it must then pass every gate again) and disabling a system awaiting rework.
HUMAN_TRANSITIONS: Mapping[SystemStatus, frozenset[SystemStatus]] = {
    **ALLOWED_TRANSITIONS,
    S.REWORK_REQUIRED: frozenset({S.DISABLED}),
    S.DISABLED: frozenset({S.CANDIDATE}),
}

#: The next rung of the ladder for the statuses the policy has automatic rules for.
NEXT_STAGE: Mapping[SystemStatus, SystemStatus] = {S.CANDIDATE: S.DEMO, S.DEMO: S.LIVE_TEST}

ENGINE = "promotion-engine"


class PromotionError(FactoryError):
    """A promotion request is inconsistent: a stale system, foreign rule results, evidence of
    another spec version, or a status change attempted outside this module."""


class IllegalTransitionError(PromotionError):
    """The requested status change is not in the allowed transition table."""


class StatusGuardError(PromotionError):
    """A document from outside the promotion engine tried to set or change a status."""


class Decision(BaseModel):
    """What the rules say about one system: ``to_status == from_status`` means no change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_id: str
    from_status: SystemStatus
    to_status: SystemStatus
    reasons: tuple[str, ...] = Field(default=())

    @property
    def changed(self) -> bool:
        return self.to_status != self.from_status


@dataclass(frozen=True)
class PromotionOutcome:
    """Everything one :func:`evaluate_and_apply` call produced."""

    decision: Decision
    rule_results: list[RuleResult]
    transition: StatusTransition | None


def evaluate_and_apply(
    docs: DocumentStore, evidence: Evidence, policy: PromotionPolicy
) -> PromotionOutcome:
    """Evaluate the rules for the stored system ``evidence.system_id``, decide, and apply.

    The evidence must be about the stored version (same ``spec_hash``), else PromotionError.
    """
    system = docs.get(SystemDoc, evidence.system_id)
    if system is None:
        raise PromotionError(f"evidence names system {evidence.system_id!r}, which is not stored")
    if system.spec_hash != evidence.spec_hash:
        raise PromotionError(
            f"evidence for system {system.id!r} is about spec_hash {evidence.spec_hash!r}, but the "
            f"stored system has spec_hash {system.spec_hash!r}"
        )
    results = evaluate_for_status(system.status, evidence, policy)
    decision = decide(system, results, policy)
    transition = apply_decision(
        docs, system, decision, results, evidence.evidence_ids, policy_hash(policy)
    )
    return PromotionOutcome(decision=decision, rule_results=results, transition=transition)


def decide(
    system: SystemDoc, rule_results: Sequence[RuleResult], policy: PromotionPolicy
) -> Decision:
    """The decision for ``system`` from rule results produced under ``policy``.

    In order: a *measured* failure of a rule whose ``on_fail`` is ``disabled`` -> disabled; else a
    measured failure of a ``rework_required`` rule -> rework_required; else any failed rule (a
    missing metric, a ``hold`` gate) or any policy rule not evaluated -> no change; else (every
    rule passed) -> the next stage. Rule results that the policy does not define, or that were
    evaluated with another threshold, comparison, metric or consequence, raise PromotionError.
    """
    status = system.status
    if status not in NEXT_STAGE:
        raise PromotionError(
            f"system {system.id!r} is {status.value}: the policy has no automatic rules for it"
        )
    by_name = _checked_results(system, rule_results, policy)
    expected = expected_rules(status, policy)
    failed = [result for result in by_name.values() if not result.passed]
    for consequence in (S.DISABLED, S.REWORK_REQUIRED):
        decisive = [r for r in failed if not r.missing and r.on_fail == consequence.value]
        if decisive:
            return Decision(
                system_id=system.id,
                from_status=status,
                to_status=consequence,
                reasons=tuple(r.message for r in decisive),
            )
    not_evaluated = [f"{name}: not evaluated" for name in expected if name not in by_name]
    if failed or not_evaluated:
        return Decision(
            system_id=system.id,
            from_status=status,
            to_status=status,
            reasons=tuple(not_evaluated + [r.message for r in failed]),
        )
    return Decision(
        system_id=system.id,
        from_status=status,
        to_status=NEXT_STAGE[status],
        reasons=(f"all {len(by_name)} {status.value} rules passed",),
    )


def apply_decision(
    docs: DocumentStore,
    system: SystemDoc,
    decision: Decision,
    rule_results: Sequence[RuleResult],
    evidence_ids: Iterable[str],
    policy_hash: str,
) -> StatusTransition | None:
    """Write ``decision``: the new status and its audit record, in one transaction.

    Returns the record written, or None when nothing was written: the decision changes nothing,
    or the same transition (same system, from/to, evidence and policy hash) was already applied.
    Raises IllegalTransitionError for a transition outside :data:`ALLOWED_TRANSITIONS`, and
    PromotionError when the decision is not about ``system`` as it is stored now.
    """
    if decision.system_id != system.id or decision.from_status != system.status:
        raise PromotionError(
            f"decision about {decision.system_id!r} from {decision.from_status.value} does not "
            f"match system {system.id!r} in status {system.status.value}"
        )
    if not decision.changed:
        return None
    _check_transition(system.id, decision.from_status, decision.to_status, ALLOWED_TRANSITIONS)
    if not policy_hash:
        raise PromotionError(f"system {system.id!r}: a transition needs the policy hash")
    ids = sorted(set(evidence_ids))
    results = [result.model_dump(mode="json") for result in rule_results]
    digest = _evidence_hash(ids, results)
    transition = StatusTransition(
        id=stable_id(
            "transition",
            system.id,
            decision.from_status.value,
            decision.to_status.value,
            digest,
            policy_hash,
        ),
        system_id=system.id,
        from_status=decision.from_status,
        to_status=decision.to_status,
        rule_results=results,
        evidence_ids=ids,
        policy_hash=policy_hash,
        decided_by=ENGINE,
        provenance=Provenance(
            source=ENGINE, system_ids=[system.id], notes="\n".join(decision.reasons)
        ),
    )
    return _write_transition(docs, transition, skip_if_recorded=True)


def apply_human_command(
    docs: DocumentStore,
    system_id: str,
    to_status: SystemStatus,
    *,
    actor: str,
    reason: str,
    policy_hash: str,
) -> StatusTransition:
    """A status change ordered by a named human, recorded like any other transition.

    Allowed moves are :data:`HUMAN_TRANSITIONS` (the engine's plus disabled -> candidate and
    rework_required -> disabled). ``actor`` and ``reason`` must not be blank; the record has
    ``decided_by = "human:<actor>"`` and the reason in its provenance notes.
    """
    if not actor.strip() or not reason.strip():
        raise PromotionError(f"system {system_id!r}: a human command needs an actor and a reason")
    system = docs.get(SystemDoc, system_id)
    if system is None:
        raise PromotionError(f"human command for system {system_id!r}, which is not stored")
    _check_transition(system_id, system.status, to_status, HUMAN_TRANSITIONS)
    with docs.store.connect() as con:
        sequence = con.execute(
            "SELECT count(*) FROM status_transitions WHERE system_id = ?", [system_id]
        ).fetchall()[0][0]
    transition = StatusTransition(
        id=stable_id(
            "transition", system_id, system.status.value, to_status.value, "human", actor, sequence
        ),
        system_id=system_id,
        from_status=system.status,
        to_status=to_status,
        policy_hash=policy_hash,
        decided_by=f"human:{actor.strip()}",
        provenance=Provenance(source="human-command", system_ids=[system_id], notes=reason),
    )
    written = _write_transition(docs, transition, skip_if_recorded=False)
    assert written is not None
    return written


def store_systems(
    docs: DocumentStore, systems: Iterable[SystemDoc], *, partition_key: str | None = None
) -> int:
    """Upsert system documents from outside the engine without letting them touch a status.

    In one transaction: a system already stored keeps its stored status whatever the incoming
    document says; a new one is stored as ``candidate``. Returns the number of documents written.
    """
    batch = list(systems)
    if not batch:
        return 0
    try:
        with docs.store.transaction() as con:
            stored = _stored_statuses(con, [system.id for system in batch])
            safe = [
                system.model_copy(update={"status": stored.get(system.id, S.CANDIDATE)})
                for system in batch
            ]
            return upsert_documents(con, safe, partition_key=partition_key)
    except duckdb.Error as exc:
        raise StoreError(f"storing {len(batch)} system document(s) failed: {exc}") from exc


def ensure_status_unchanged(before: SystemDoc | None, after: SystemDoc) -> None:
    """Raise StatusGuardError unless ``after`` keeps the status of ``before`` (or, for a new
    system, is a candidate). For callers that build system documents from agent output."""
    expected = before.status if before is not None else S.CANDIDATE
    if after.status != expected:
        where = "a new system" if before is None else f"system {before.id!r}"
        raise StatusGuardError(
            f"{where}: status {after.status.value!r} does not match {expected.value!r}; only the "
            "promotion engine changes a status"
        )


def ensure_allowed(from_status: SystemStatus, to_status: SystemStatus) -> None:
    """Raise IllegalTransitionError unless the engine may move ``from_status -> to_status``."""
    _check_transition("(any)", from_status, to_status, ALLOWED_TRANSITIONS)


# --- helpers -------------------------------------------------------------------------------------


def _checked_results(
    system: SystemDoc, rule_results: Sequence[RuleResult], policy: PromotionPolicy
) -> dict[str, RuleResult]:
    """Rule results by name, each verified against the rule the policy defines."""
    expected = expected_rules(system.status, policy)
    by_name: dict[str, RuleResult] = {}
    for result in rule_results:
        if result.rule in by_name:
            raise PromotionError(f"system {system.id!r}: rule {result.rule!r} appears twice")
        reference = expected.get(result.rule)
        if reference is None:
            raise PromotionError(
                f"system {system.id!r}: rule {result.rule!r} is not a "
                f"{system.status.value} rule of this policy"
            )
        got = (result.metric, result.comparison, result.threshold, result.on_fail)
        want = (reference.metric, reference.comparison, reference.threshold, reference.on_fail)
        if got != want:
            raise PromotionError(
                f"system {system.id!r}: rule {result.rule!r} was evaluated as "
                f"{got[0]} {got[1]} {got[2]!r} (on fail: {got[3]}), the policy defines "
                f"{want[0]} {want[1]} {want[2]!r} (on fail: {want[3]})"
            )
        by_name[result.rule] = result
    return by_name


def _check_transition(
    system_id: str,
    from_status: SystemStatus,
    to_status: SystemStatus,
    table: Mapping[SystemStatus, frozenset[SystemStatus]],
) -> None:
    allowed = table[from_status]
    if to_status not in allowed:
        options = ", ".join(sorted(s.value for s in allowed)) or "none"
        raise IllegalTransitionError(
            f"system {system_id}: {from_status.value} -> {to_status.value} is not allowed "
            f"(allowed from {from_status.value}: {options})"
        )


def _write_transition(
    docs: DocumentStore, transition: StatusTransition, *, skip_if_recorded: bool
) -> StatusTransition | None:
    """Set the system's status and append ``transition``, atomically (see apply_decision)."""
    system_id = transition.system_id
    try:
        with docs.store.transaction() as con:
            recorded = con.execute(
                "SELECT 1 FROM status_transitions WHERE id = ?", [transition.id]
            ).fetchall()
            if recorded:
                if skip_if_recorded:
                    return None
                raise PromotionError(f"transition {transition.id} is already recorded")
            rows = con.execute(
                "SELECT doc, partition_key FROM systems WHERE id = ?", [system_id]
            ).fetchall()
            if not rows:
                raise PromotionError(f"system {system_id!r} is not stored")
            stored = SystemDoc.model_validate_json(rows[0][0])
            if stored.status != transition.from_status:
                raise PromotionError(
                    f"system {system_id!r} is {stored.status.value} in the store, but the "
                    f"transition starts from {transition.from_status.value} (stale system)"
                )
            updated = stored.model_copy(update={"status": transition.to_status})
            upsert_documents(con, [updated], partition_key=rows[0][1])
            upsert_documents(con, [transition])
    except duckdb.Error as exc:
        raise StoreError(
            f"writing transition {transition.id} of system {system_id!r} failed (nothing was "
            f"written): {exc}"
        ) from exc
    return transition


def _stored_statuses(
    con: duckdb.DuckDBPyConnection, system_ids: Sequence[str]
) -> dict[str, SystemStatus]:
    marks = ", ".join("?" * len(system_ids))
    rows = con.execute(
        f"SELECT id, doc FROM systems WHERE id IN ({marks})", list(system_ids)
    ).fetchall()
    return {row[0]: SystemDoc.model_validate_json(row[1]).status for row in rows}


def _evidence_hash(evidence_ids: Sequence[str], rule_results: Sequence[dict]) -> str:
    payload = json.dumps(
        {"evidence_ids": list(evidence_ids), "rule_results": list(rule_results)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()
