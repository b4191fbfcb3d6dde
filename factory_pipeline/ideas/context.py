"""Design context for a goal: the concept cards and modules retrieved for it, as of a design time.

Why an explicit as-of: a design made at time T must be reproducible from what the factory knew
at T. So :func:`retrieve_context` only returns concepts (and store-made modules) whose
``created_at`` is at or before ``as_of``; anything recorded later is invisible even when the
index already holds it. Human-written library modules (``provenance.source ==
"module-library"``, loaded from data/modules) are part of the code base, not recorded knowledge,
and are always visible.

Retrieval is the knowledge track's hybrid search (dense + BM25 fused with RRF in Qdrant) over the
``kb_concepts`` collection (optionally filtered by the goal's ``concept_tags``) and the
``modules`` collection (one filtered search per module kind). The index only ranks: every hit is
mapped back to the documents given to the function, so a point whose document is unknown, newer
than ``as_of``, inactive or not allowed by the goal is dropped. Without an index (no Qdrant), a
deterministic lexical fallback ranks the same documents by a BM25 score of the goal's query
against the indexed text (:func:`~factory_pipeline.knowledge.index.embedding_text`), ties by id.
See docs/ideas.md.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from factory_pipeline.ideas.goals import DesignGoal
from factory_pipeline.ideas.past_results import PastResult, relevant_results
from factory_pipeline.knowledge.index import CONCEPTS, MODULES, VectorIndex, embedding_text
from factory_pipeline.knowledge.sparse import tokenize
from factory_pipeline.schemas import KbConcept, KbSegment, ModuleDoc, ModuleKind

#: Provenance source of the human-written module library (strategy.modules).
LIBRARY_SOURCE = "module-library"
#: Hits fetched per requested result, to survive the as-of and goal filters applied afterwards.
OVERFETCH = 4

RetrievalMethod = Literal["hybrid", "lexical"]


@dataclass(frozen=True)
class RankedConcept:
    concept: KbConcept
    score: float


@dataclass(frozen=True)
class RankedModule:
    module: ModuleDoc
    score: float


@dataclass(frozen=True)
class Citation:
    """One evidence quote of a retrieved concept: where in which book it was read."""

    concept_id: str
    segment_id: str
    page: int
    book_id: str
    quote: str


@dataclass(frozen=True)
class DesignContext:
    """What the designers may use for one goal: ranked concepts (best first), every visible
    module (retrieved ones first, then the rest lexically) and the concepts' citations."""

    goal_id: str
    as_of: dt.datetime
    method: RetrievalMethod
    concepts: tuple[RankedConcept, ...]
    modules: tuple[RankedModule, ...]
    citations: tuple[Citation, ...]
    #: Results of earlier systems on the goal's symbols recorded by ``as_of`` (past_results.py).
    past_results: tuple[PastResult, ...] = ()

    def concept(self, concept_id: str) -> KbConcept | None:
        return next((r.concept for r in self.concepts if r.concept.id == concept_id), None)

    def module_rank(self) -> dict[str, int]:
        """Module id -> rank (0 = best)."""
        return {ranked.module.id: i for i, ranked in enumerate(self.modules)}

    def provenance_for(self, concept_ids: Iterable[str]) -> dict[str, list]:
        """Book ids, pages and segment ids cited by ``concept_ids`` (only retrieved concepts)."""
        wanted = set(concept_ids)
        cites = [c for c in self.citations if c.concept_id in wanted]
        books = [c.book_id for c in cites if c.book_id]
        for ranked in self.concepts:
            if ranked.concept.id in wanted:
                books.extend(ranked.concept.provenance.book_ids)
        return {
            "book_ids": list(dict.fromkeys(books)),
            "pages": sorted({c.page for c in cites}),
            "segment_ids": list(dict.fromkeys(c.segment_id for c in cites)),
        }


def retrieve_context(
    goal: DesignGoal,
    *,
    index: VectorIndex | None,
    library: Mapping[str, ModuleDoc],
    concepts: Sequence[KbConcept],
    as_of: dt.datetime,
    limit: int = 8,
    segments: Sequence[KbSegment] = (),
    past: Sequence[PastResult] = (),
) -> DesignContext:
    """The design context of ``goal`` as of ``as_of`` (module docstring).

    ``limit`` caps the concepts returned; every visible, active, goal-allowed module is returned
    (ranked) because the assembler needs the whole compatible set. ``segments`` (optional) lets
    a citation name the book of a segment when a concept cites several books. ``past`` are
    results known at ``as_of`` (:func:`past_results_as_of`); the relevant ones are kept.
    """
    moment = _aware(as_of)
    visible_concepts = {c.id: c for c in concepts if _aware(c.created_at) <= moment}
    if goal.concept_tags:
        wanted = set(goal.concept_tags)
        visible_concepts = {k: c for k, c in visible_concepts.items() if wanted & set(c.tags)}
    visible_modules = {
        m.id: m
        for m in library.values()
        if m.status == "active" and module_visible(m, moment) and goal.module_allowed(m.id)
    }
    if index is not None:
        method: RetrievalMethod = "hybrid"
        filters = {"tags": list(goal.concept_tags)} if goal.concept_tags else None
        hits = index.search(CONCEPTS, goal.query, limit=limit * OVERFETCH, filters=filters)
        ranked_concepts = _keep(hits, visible_concepts)[:limit]
        module_hits = []
        for kind in ModuleKind:
            found = index.search(
                MODULES,
                goal.query,
                limit=max(len(visible_modules), 1) * 2,
                filters={"kind": kind.value},
            )
            module_hits.extend(_keep(found, visible_modules))
        retrieved = sorted(module_hits, key=lambda r: (-r.score, r.module.id))
    else:
        method = "lexical"
        ranked_concepts = lexical_rank(
            goal.query, visible_concepts.values(), lambda c: embedding_text(c)
        )[:limit]
        ranked_concepts = [RankedConcept(doc, score) for doc, score in ranked_concepts]
        retrieved = []
    seen = {r.module.id for r in retrieved}
    rest = [m for m in visible_modules.values() if m.id not in seen]
    tail = [RankedModule(m, s) for m, s in lexical_rank(goal.query, rest, embedding_text)]
    # scores of the lexical tail are not comparable with fused scores: keep them after
    ranked_modules = [*retrieved, *tail]
    book_of = {s.id: s.book_id for s in segments}
    citations = tuple(
        Citation(
            concept_id=r.concept.id,
            segment_id=quote.segment_id,
            page=quote.page,
            book_id=book_of.get(quote.segment_id)
            or (
                r.concept.provenance.book_ids[0] if len(r.concept.provenance.book_ids) == 1 else ""
            ),
            quote=quote.quote,
        )
        for r in ranked_concepts
        for quote in r.concept.evidence
    )
    return DesignContext(
        goal_id=goal.id,
        as_of=moment,
        method=method,
        concepts=tuple(ranked_concepts),
        modules=tuple(ranked_modules),
        citations=citations,
        past_results=relevant_results(
            goal,
            [p for p in past if p.recorded_at <= moment],
            module_ids=visible_modules,
        ),
    )


def module_visible(module: ModuleDoc, as_of: dt.datetime) -> bool:
    """Library modules always; store-made modules only when created at or before ``as_of``."""
    if module.provenance.source == LIBRARY_SOURCE:
        return True
    return _aware(module.created_at) <= _aware(as_of)


def lexical_rank(query: str, docs: Iterable, text_of) -> list[tuple]:
    """``(doc, score)`` best first: BM25 (k1 = 1.2, b = 0.75, IDF over ``docs``) of the query's
    stemmed tokens against ``text_of(doc)``; ties (and all-zero scores) ordered by ``doc.id``."""
    items = list(docs)
    if not items:
        return []
    tokens = [Counter(tokenize(text_of(doc))) for doc in items]
    avg = sum(sum(t.values()) for t in tokens) / len(items) or 1.0
    terms = set(tokenize(query))
    n = len(items)
    df = {term: sum(1 for t in tokens if term in t) for term in terms}
    scored = []
    for doc, counts in zip(items, tokens, strict=True):
        length = sum(counts.values())
        score = 0.0
        for term in terms:
            tf = counts.get(term, 0)
            if not tf:
                continue
            idf = math.log((n - df[term] + 0.5) / (df[term] + 0.5) + 1.0)
            score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avg))
        scored.append((doc, score))
    return sorted(scored, key=lambda pair: (-pair[1], pair[0].id))


# -- helpers ---------------------------------------------------------------------------------


def _keep(hits, visible: Mapping[str, object]) -> list:
    """Hits mapped back to visible documents, in hit order, each document once."""
    kept = []
    seen: set[str] = set()
    for hit in hits:
        doc = visible.get(hit.id)
        if doc is None or hit.id in seen:
            continue
        seen.add(hit.id)
        if isinstance(doc, KbConcept):
            kept.append(RankedConcept(doc, float(hit.score)))
        else:
            kept.append(RankedModule(doc, float(hit.score)))  # type: ignore[arg-type]
    return kept


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
