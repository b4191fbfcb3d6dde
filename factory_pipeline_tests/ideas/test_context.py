"""Retrieval of design context: the as-of rule on both paths, ranking, filters, citations."""

from __future__ import annotations

import datetime as dt

from factory_pipeline.ideas import DesignGoal, retrieve_context
from factory_pipeline.knowledge.embeddings import HashingEmbedder
from factory_pipeline.knowledge.index import VectorIndex
from factory_pipeline.schemas import Provenance
from factory_pipeline_tests.ideas.conftest import AS_OF, make_concept

GOAL = DesignGoal(
    id="g",
    name="Trend",
    symbols=["BTCUSDT"],
    timeframes={"H": "4h", "M": "1h", "L": "15m"},
    styles=["trend"],
    query="moving average crossover trend",
)


def _corpus():
    old = make_concept(
        "c-old",
        "Moving average crossover",
        "Fast moving average crosses the slow moving average in a trend.",
    )
    new = make_concept(
        "c-new",
        "Moving average crossover trend",
        "Moving average crossover trend rules written after the design time.",
        created_at=AS_OF + dt.timedelta(seconds=1),
    )
    other = make_concept(
        "c-rsi", "RSI oversold", "Buy when RSI is oversold.", book="book-mr", page=40
    )
    return [old, new, other]


def test_lexical_fallback_hides_knowledge_recorded_after_as_of(library):
    context = retrieve_context(GOAL, index=None, library=library, concepts=_corpus(), as_of=AS_OF)
    ids = [r.concept.id for r in context.concepts]
    assert context.method == "lexical"
    assert "c-new" not in ids
    assert ids[0] == "c-old"  # the only visible concept that shares the query's words ranks first
    # exactly at as_of is visible
    at = retrieve_context(
        GOAL, index=None, library=library, concepts=_corpus(), as_of=AS_OF + dt.timedelta(seconds=1)
    )
    assert "c-new" in [r.concept.id for r in at.concepts]


def test_store_modules_obey_as_of_but_library_modules_do_not(library):
    fresh = library["entry_sma_cross"].model_copy(
        update={
            "id": "entry_agent_made",
            "created_at": AS_OF + dt.timedelta(days=1),
            "provenance": Provenance(source="offline-v1 modules-v1"),
        }
    )
    lib = {**library, fresh.id: fresh}
    context = retrieve_context(GOAL, index=None, library=lib, concepts=[], as_of=AS_OF)
    module_ids = {r.module.id for r in context.modules}
    assert "entry_agent_made" not in module_ids
    assert "entry_sma_cross" in module_ids  # loaded "now" from data/modules, still visible


def test_hybrid_search_path_filters_as_of_and_goal_constraints(library):
    concepts = _corpus()
    with VectorIndex(embedder=HashingEmbedder()) as index:
        index.upsert_concepts(concepts)
        index.upsert_modules(list(library.values()))
        goal = GOAL.model_copy(update={"excluded_modules": ["entry_ema_cross"]})
        context = retrieve_context(
            goal, index=index, library=library, concepts=concepts, as_of=AS_OF
        )
    assert context.method == "hybrid"
    ids = [r.concept.id for r in context.concepts]
    assert "c-new" not in ids and ids[0] == "c-old"
    module_ids = [r.module.id for r in context.modules]
    assert "entry_ema_cross" not in module_ids
    # every visible library module is offered, each once
    assert sorted(module_ids) == sorted(m for m in library if m != "entry_ema_cross")
    # citations reach book pages through the concepts' evidence
    cite = next(c for c in context.citations if c.concept_id == "c-old")
    assert (cite.segment_id, cite.page, cite.book_id) == ("seg-c-old", 7, "book-trend")
    assert context.provenance_for(["c-old"]) == {
        "book_ids": ["book-trend"],
        "pages": [7],
        "segment_ids": ["seg-c-old"],
    }


def test_concept_tags_filter(library):
    concepts = _corpus()
    tagged = concepts[2].model_copy(update={"tags": ["mean-reversion"]})
    goal = GOAL.model_copy(update={"concept_tags": ["mean-reversion"]})
    context = retrieve_context(
        goal, index=None, library=library, concepts=[*concepts[:2], tagged], as_of=AS_OF
    )
    assert [r.concept.id for r in context.concepts] == ["c-rsi"]
