"""Candidate systems: a validated spec, its stored document, the goal it serves and its designer.

Both designers (the offline assembler and the LLM agent) end in :func:`make_candidate`, so every
candidate is built the same way: the spec must pass ``validate_system`` (``to_system_doc`` raises
otherwise), the id is ``sys-<name slug>-<12 hex of the spec hash>`` so any behavioural edit is a
new version, the document's status is ``candidate`` (never taken from a designer), its
``created_at`` is the design time ``as_of`` (so the same inputs give the same documents), and
its provenance carries the goal, the designer, the modules, concepts, books, pages and segments.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from factory_pipeline.schemas import ModuleDoc, SystemDoc, SystemStatus
from factory_pipeline.strategy.systems import SystemSpec, to_system_doc


@dataclass(frozen=True)
class CandidateSystem:
    """One designed system: ``spec`` (frozen), ``doc`` (to store), ``goal_id`` and ``backend``
    (``"offline-assembler"`` or ``"llm:<model>"``)."""

    spec: SystemSpec
    doc: SystemDoc
    goal_id: str
    backend: str


@dataclass(frozen=True)
class DroppedProposal:
    """A proposal (or a goal slot) that produced no candidate, and why."""

    goal_id: str
    name: str
    reason: str


class DesignBatch(list[CandidateSystem]):
    """The candidates of a design run (a plain list), plus what was dropped and what it cost."""

    def __init__(self, items: list[CandidateSystem] | None = None) -> None:
        super().__init__(items or [])
        self.dropped: list[DroppedProposal] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.repairs = 0


def make_candidate(
    spec: SystemSpec,
    library: Mapping[str, ModuleDoc],
    *,
    goal_id: str,
    backend: str,
    as_of: dt.datetime,
) -> CandidateSystem:
    """The candidate of a valid ``spec`` (SpecError from ``to_system_doc`` when invalid)."""
    doc = to_system_doc(spec, library)
    notes = f"goal {goal_id}; designed by {backend} as of {as_of.isoformat()}"
    if spec.provenance.notes:
        notes = f"{notes}; {spec.provenance.notes}"
    provenance = doc.provenance.model_copy(update={"source": f"ideas:{backend}", "notes": notes})
    doc = doc.model_copy(
        update={
            "provenance": provenance,
            "created_at": as_of,
            "status": SystemStatus.CANDIDATE,
            "sanity": {},
        }
    )
    return CandidateSystem(spec=spec, doc=doc, goal_id=goal_id, backend=backend)
