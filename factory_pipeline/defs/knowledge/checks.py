"""Asset checks of the knowledge track, re-verified from the store (never from step memory).

Why re-verify: the assets already enforce these rules while producing, but the store can be
changed by hand, by an older code version or by a partial failure, and downstream stages
(system design, backtests) trust it. All checks are blocking: a failure stops downstream assets
in the same run, and the declarative automation of strategy_modules waits for kb_concepts' check.

- ``concept_evidence_verified`` (kb_concepts): every evidence quote of every concept occurs in the
  segment it cites (whitespace-normalized, case-sensitive), on the page it claims.
- ``active_modules_compile`` (strategy_modules) / ``library_modules_compile`` (builtin_modules):
  every active module passes module validation, which compiles each expression of its logic.
- ``module_provenance_complete`` (strategy_modules): every active proposed module links concepts
  that exist, whose evidence segments exist, whose books are stored, readable and have that page.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence

import dagster as dg

from factory_pipeline.defs.knowledge.assets import (
    LIBRARY_MODULES_PARTITION,
    PROPOSED_MODULES_PARTITION,
    builtin_modules,
    kb_concepts,
    strategy_modules,
)
from factory_pipeline.defs.resources import FactoryStoreResource
from factory_pipeline.defs.ui import table
from factory_pipeline.knowledge.proposals import validate_module as validate_agent_module
from factory_pipeline.llm.offline import quote_occurs
from factory_pipeline.schemas import Book, KbConcept, KbSegment, ModuleDoc
from factory_pipeline.store import DocumentStore
from factory_pipeline.strategy.modules import validate_module as validate_library_module

#: Problems listed in a check's metadata table (the count is always complete).
MAX_LISTED_PROBLEMS = 50


@dg.asset_check(
    asset=kb_concepts,
    blocking=True,
    description=(
        "Every evidence quote of every stored concept occurs in the text of the segment it "
        "cites (whitespace-normalized, case-sensitive) and names that segment's page."
    ),
)
def concept_evidence_verified(factory_store: FactoryStoreResource) -> dg.AssetCheckResult:
    docs = DocumentStore(factory_store.store())
    concepts = docs.list(KbConcept)
    segments = _segments_by_id(docs, (e.segment_id for c in concepts for e in c.evidence))
    problems = concept_evidence_problems(concepts, segments)
    return _result(problems, checked=len(concepts), what="concepts")


@dg.asset_check(
    asset=strategy_modules,
    blocking=True,
    description=(
        "Every active proposed module is valid: its logic compiles in the signal language with "
        "the right types, parameters are well formed with sweep ranges, rules are known."
    ),
)
def active_modules_compile(factory_store: FactoryStoreResource) -> dg.AssetCheckResult:
    modules = _active_modules(factory_store, PROPOSED_MODULES_PARTITION)
    problems = module_problems(modules, validate_agent_module)
    return _result(problems, checked=len(modules), what="modules")


@dg.asset_check(
    asset=builtin_modules,
    blocking=True,
    description="Every library module stored is valid (logic compiles, schemas and rules hold).",
)
def library_modules_compile(factory_store: FactoryStoreResource) -> dg.AssetCheckResult:
    modules = _active_modules(factory_store, LIBRARY_MODULES_PARTITION)
    problems = module_problems(modules, validate_library_module)
    return _result(problems, checked=len(modules), what="modules")


@dg.asset_check(
    asset=strategy_modules,
    blocking=True,
    description=(
        "Provenance chain of every active proposed module is complete: module -> concept -> "
        "evidence segment -> readable book -> page, all present in the store."
    ),
)
def module_provenance_complete(factory_store: FactoryStoreResource) -> dg.AssetCheckResult:
    docs = DocumentStore(factory_store.store())
    modules = _active_modules(factory_store, PROPOSED_MODULES_PARTITION)
    concept_ids = sorted({cid for m in modules for cid in m.concept_ids})
    concepts = {c.id: c for c in docs.list(KbConcept, {"id": concept_ids})} if concept_ids else {}
    segments = _segments_by_id(docs, (e.segment_id for c in concepts.values() for e in c.evidence))
    book_ids = sorted({s.book_id for s in segments.values()})
    books = {b.id: b for b in docs.list(Book, {"id": book_ids})} if book_ids else {}
    problems = provenance_problems(modules, concepts, segments, books)
    return _result(problems, checked=len(modules), what="modules")


# Pure verification (one row per problem: the document and what is wrong) ------------------------


def concept_evidence_problems(
    concepts: Iterable[KbConcept], segments: Mapping[str, KbSegment]
) -> list[dict[str, str]]:
    problems = []
    for concept in concepts:
        if not concept.evidence:
            problems.append(_problem(concept.id, concept.name, "no evidence quote"))
        for index, evidence in enumerate(concept.evidence):
            segment = segments.get(evidence.segment_id)
            where = f"evidence[{index}]"
            if segment is None:
                reason = f"{where} cites segment {evidence.segment_id}, which is not stored"
            elif segment.page != evidence.page:
                reason = f"{where} says page {evidence.page}, segment is on page {segment.page}"
            elif not quote_occurs(evidence.quote, segment.text):
                reason = f"{where} quote not found in segment {segment.id}: {evidence.quote[:80]!r}"
            else:
                continue
            problems.append(_problem(concept.id, concept.name, reason))
    return problems


def module_problems(
    modules: Iterable[ModuleDoc], validate: Callable[[ModuleDoc], list[str]]
) -> list[dict[str, str]]:
    return [
        _problem(module.id, module.name, problem)
        for module in modules
        for problem in validate(module)
    ]


def provenance_problems(
    modules: Iterable[ModuleDoc],
    concepts: Mapping[str, KbConcept],
    segments: Mapping[str, KbSegment],
    books: Mapping[str, Book],
) -> list[dict[str, str]]:
    problems = []
    for module in modules:
        reasons: list[str] = []
        if not module.concept_ids:
            reasons.append("links no concept")
        for concept_id in module.concept_ids:
            concept = concepts.get(concept_id)
            if concept is None:
                reasons.append(f"concept {concept_id} is not stored")
                continue
            if not concept.evidence:
                reasons.append(f"concept {concept_id} has no evidence")
            for evidence in concept.evidence:
                segment = segments.get(evidence.segment_id)
                if segment is None:
                    reasons.append(f"concept {concept_id}: segment {evidence.segment_id} missing")
                    continue
                book = books.get(segment.book_id)
                if book is None:
                    reasons.append(f"segment {segment.id}: book {segment.book_id} is not stored")
                elif book.status != "ingested":
                    reasons.append(f"segment {segment.id}: book {book.id} failed: {book.error}")
                elif not 1 <= segment.page <= book.pages:
                    reasons.append(
                        f"segment {segment.id}: page {segment.page} outside book {book.id} "
                        f"(1..{book.pages})"
                    )
        problems.extend(_problem(module.id, module.name, r) for r in dict.fromkeys(reasons))
    return problems


# Helpers ----------------------------------------------------------------------------------------


def _segments_by_id(docs: DocumentStore, ids: Iterable[str]) -> dict[str, KbSegment]:
    wanted = sorted(set(ids))
    return {s.id: s for s in docs.list(KbSegment, {"id": wanted})} if wanted else {}


def _active_modules(factory_store: FactoryStoreResource, partition: str) -> list[ModuleDoc]:
    return DocumentStore(factory_store.store()).list(
        ModuleDoc, {"partition_key": partition, "status": "active"}
    )


def _problem(doc_id: str, name: str, reason: str) -> dict[str, str]:
    return {"id": doc_id, "name": name, "problem": reason}


def _result(problems: Sequence[dict[str, str]], *, checked: int, what: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(problems)} problem(s) in {checked} {what}",
        metadata={
            f"{what}_checked": checked,
            "problems": len(problems),
            "failures": table(problems[:MAX_LISTED_PROBLEMS], columns=["id", "name", "problem"]),
        },
    )
