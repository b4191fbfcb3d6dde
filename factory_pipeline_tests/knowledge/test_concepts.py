"""Concept extraction: grouping, the offline extractor, the evidence rule, merging, LLM path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from factory_pipeline.errors import LLMError
from factory_pipeline.knowledge.concepts import (
    MERGE_DESCRIPTION_THRESHOLD,
    extract_concepts,
    group_segments,
    merge_concepts,
)
from factory_pipeline.llm import OfflineBackend
from factory_pipeline.llm.offline import normalize_name
from factory_pipeline.llm.openai_backend import OpenAIBackend
from factory_pipeline.llm.prompts import CONCEPT_PROMPT_VERSION
from factory_pipeline.schemas import EvidenceQuote, KbConcept, KbSegment, Provenance, stable_id
from factory_pipeline_tests.fakes.openai_server import (
    FakeOpenAIServer,
    refusal_reply,
    structured_reply,
)

TREND_TEXT = (
    "A moving average crossover compares a fast average with a slow average of the close.\n"
    "Enter long when the 20-period SMA crosses above the 50-period SMA on the 1-hour chart\n"
    "while the 4-hour close is above its 200 SMA. Place the stop 2 ATR below entry. Exit when "
    "the fast SMA crosses back below the slow SMA. Markets reward patience more than cleverness."
)
SIZING_TEXT = (
    "Position sizing decides how long you survive. Risk 1 percent of equity on every trade, and "
    "size the position from the stop distance."
)


def segment(seg_id: str, text: str, *, book: str = "book-a", chapter: str = "Ch 1", page: int = 1,
            offset: int = 0, tags: list[str] | None = None) -> KbSegment:  # fmt: skip
    return KbSegment(
        id=seg_id, book_id=book, book_title=book.title(), chapter=chapter, page=page,
        offset=offset, text=text, tags=tags or [],
    )  # fmt: skip


def squash(text: str) -> str:
    """Independent whitespace normalization for assertions."""
    return " ".join(text.split())


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def backend(server: FakeOpenAIServer) -> Iterator[OpenAIBackend]:
    llm = OpenAIBackend(
        base_url=server.base_url, api_key="k", model="fake-model", max_retries=0,
        max_validation_attempts=1, sleep=lambda s: None,
    )  # fmt: skip
    yield llm
    llm.close()


def card(name: str, quotes: list[tuple[str, str]], **fields) -> dict:
    payload = {
        "name": name,
        "description": fields.pop("description", f"{name} described."),
        "timeframes": {"htf": [], "mtf": [], "ltf": []},
        "setup_conditions": [],
        "entry_ideas": [],
        "exit_ideas": [],
        "risk_constraints": [],
        "tags": [],
        "evidence": [{"segment_id": s, "quote": q} for s, q in quotes],
    }
    payload.update(fields)
    return payload


# Grouping ---------------------------------------------------------------------------------------


def test_groups_follow_book_and_chapter_and_respect_bounds():
    segments = [
        segment("a3", "x" * 10, page=3),
        segment("a1", "x" * 10, page=1),
        segment("a2", "x" * 10, page=2),
        segment("a4", "x" * 10, page=4, chapter="Ch 2"),
        segment("b1", "x" * 10, book="book-b", page=1),
    ]
    groups = group_segments(segments, max_segments=2, max_chars=1000)
    assert [[s.id for s in g.segments] for g in groups] == [["a1", "a2"], ["a3"], ["a4"], ["b1"]]
    assert [g.chapter for g in groups] == ["Ch 1", "Ch 1", "Ch 2", "Ch 1"]
    by_chars = group_segments(segments[:3], max_segments=10, max_chars=25)
    assert [[s.id for s in g.segments] for g in by_chars] == [["a1", "a2"], ["a3"]]
    oversized = group_segments([segment("big", "y" * 50)], max_chars=10)
    assert [len(g.segments) for g in oversized] == [1]


# Offline extraction -----------------------------------------------------------------------------


def test_offline_extraction_fills_fields_with_verbatim_quotes():
    segments = [
        segment("seg-t", TREND_TEXT, page=7, tags=["trend-following"]),
        segment("seg-s", SIZING_TEXT, page=8),
    ]
    result = extract_concepts(segments, OfflineBackend())
    by_name = {c.name: c for c in result.concepts}
    cross = by_name["Moving Average Crossover"]
    assert any(
        i.startswith("Enter long when the 20-period SMA crosses above") for i in cross.entry_ideas
    )
    assert "Exit when the fast SMA crosses back below the slow SMA." in cross.exit_ideas
    assert "Place the stop 2 ATR below entry." in cross.exit_ideas
    assert "Place the stop 2 ATR below entry." in cross.risk_constraints
    assert cross.timeframes == {"HTF": ["4h"], "MTF": [], "LTF": ["1h"]}
    assert "trend-following" in cross.tags
    sizing = by_name["Fixed Fractional Position Sizing"]
    assert sizing.risk_constraints[0].startswith("Risk 1 percent of equity on every trade")
    texts = {s.id: s for s in segments}
    for concept in result.concepts:
        assert concept.evidence, concept.name
        for quote in concept.evidence:
            source = texts[quote.segment_id]
            assert squash(quote.quote) in squash(source.text)
            assert quote.page == source.page
        assert concept.provenance.segment_ids == sorted({q.segment_id for q in concept.evidence})
        assert concept.provenance.book_ids == ["book-a"]
    assert not any("patience" in q.quote for c in result.concepts for q in c.evidence)
    assert result.rejected == []


def test_offline_extraction_is_deterministic():
    segments = [segment("seg-t", TREND_TEXT), segment("seg-s", SIZING_TEXT, page=2)]
    first = extract_concepts(segments, OfflineBackend()).concepts
    second = extract_concepts(list(reversed(segments)), OfflineBackend()).concepts
    dump = lambda cs: [c.model_dump(exclude={"created_at"}) for c in cs]  # noqa: E731
    assert dump(first) == dump(second)


# Evidence rule (LLM path) -----------------------------------------------------------------------


def test_fabricated_quotes_reject_the_card(server, backend):
    text = TREND_TEXT
    server.script(
        structured_reply(
            {
                "concepts": [
                    card(
                        "SMA Crossover",
                        [
                            (
                                "seg-t",
                                "Enter long when the 20-period SMA crosses above the 50-period SMA on the 1-hour chart",
                            )
                        ],
                    ),  # noqa: E501
                    card(
                        "Invented RSI",
                        [("seg-t", "Enter long when the RSI is below 5 and never use a stop.")],
                    ),  # noqa: E501
                    card("Wrong Segment", [("seg-zzz", "Place the stop 2 ATR below entry.")]),
                    card("Too Short", [("seg-t", "Exit when")]),
                    card("No Evidence", []),
                    card(
                        "Half True",
                        [
                            ("seg-t", "Place the stop 2 ATR below entry."),
                            ("seg-t", "Place the stop 5 ATR below entry."),
                        ],
                    ),  # noqa: E501
                ]
            }
        )
    )
    result = extract_concepts([segment("seg-t", text, page=7)], backend)
    assert [c.name for c in result.concepts] == ["SMA Crossover"]
    kept = result.concepts[0]
    assert kept.evidence == [
        EvidenceQuote(
            segment_id="seg-t",
            page=7,
            quote="Enter long when the 20-period SMA crosses above the 50-period SMA on the 1-hour chart",
        )
    ]
    assert kept.id == stable_id("concept", normalize_name("SMA Crossover"), ["seg-t"])
    assert kept.provenance.source == f"fake-model {CONCEPT_PROMPT_VERSION}"
    reasons = {r.name: r.reason for r in result.rejected}
    assert set(reasons) == {
        "Invented RSI",
        "Wrong Segment",
        "Too Short",
        "No Evidence",
        "Half True",
    }
    assert "does not occur in segment seg-t" in reasons["Invented RSI"]
    assert "evidence[1]" in reasons["Half True"]
    assert "not in the group" in reasons["Wrong Segment"]
    assert "shorter than" in reasons["Too Short"]
    assert "no evidence" in reasons["No Evidence"]
    assert result.cards_proposed == 6


def test_prompt_delimits_book_text(server, backend):
    server.script(structured_reply({"concepts": []}))
    extract_concepts([segment("seg-t", TREND_TEXT, page=7)], backend)
    (request,) = server.chat_requests()
    system, user = request.messages
    assert "untrusted DATA" in system["content"]
    assert '<book_text id="seg-t" book="Book-A" chapter="Ch 1" page="7">' in user["content"]
    assert user["content"].rstrip().endswith("</book_text>")
    assert TREND_TEXT in user["content"]


def test_unusable_group_is_recorded_and_backend_failures_propagate(server, backend):
    segments = [segment("a1", TREND_TEXT), segment("b1", TREND_TEXT, book="book-b")]
    server.script(
        refusal_reply("no"),
        structured_reply(
            {"concepts": [card("Crossover", [("b1", "Place the stop 2 ATR below entry.")])]}
        ),
    )
    result = extract_concepts(segments, backend)
    assert [c.name for c in result.concepts] == ["Crossover"]
    assert len(result.rejected) == 1 and result.rejected[0].name == ""
    assert "refused" in result.rejected[0].reason
    server.stop()
    with pytest.raises(LLMError, match="cannot connect"):
        extract_concepts(segments, backend)


# Merging ----------------------------------------------------------------------------------------


def concept(cid: str, name: str, description: str, book: str, seg: str, page: int) -> KbConcept:
    return KbConcept(
        id=cid, name=name, description=description, entry_ideas=[f"idea from {book}"],
        tags=[book], timeframes={"HTF": [f"{page}h"], "MTF": [], "LTF": []},
        evidence=[EvidenceQuote(segment_id=seg, page=page, quote=f"quote in {seg}")],
        provenance=Provenance(source=f"src-{book}", book_ids=[book], pages=[page], segment_ids=[seg]),
    )  # fmt: skip


def test_near_duplicates_across_books_are_merged_keeping_all_evidence():
    # content tokens: {fast, average, cross, slow, buy} vs {fast, average, cross, slow, sell}:
    # Jaccard 4/6 >= threshold
    a = concept("c-a", "SMA Crossover", "fast average cross slow average buy", "book-a", "sa", 3)
    b = concept(
        "c-b", "sma crossover strategy", "fast average cross slow average sell", "book-b", "sb", 9
    )
    merged = merge_concepts([b, a])
    assert len(merged) == 1
    (m,) = merged
    assert {e.segment_id for e in m.evidence} == {"sa", "sb"}
    assert m.provenance.book_ids == ["book-a", "book-b"]
    assert m.provenance.pages == [3, 9]
    assert m.provenance.concept_ids == ["c-a", "c-b"]
    assert m.entry_ideas == ["idea from book-a", "idea from book-b"]
    assert m.timeframes["HTF"] == ["3h", "9h"]
    assert m.id == stable_id("concept", normalize_name("SMA Crossover"), ["sa", "sb"])


def test_merge_threshold_and_names():
    base = concept("c-1", "Breakout", "fast average cross slow average buy", "b1", "s1", 1)
    # {fast, momentum, trade}: Jaccard 1/7 < 0.25 -> kept apart
    far = concept("c-2", "Breakout", "fast momentum trade", "b2", "s2", 2)
    # {fast, average, momentum}: Jaccard 2/6 >= 0.25 -> merged
    near = concept("c-3", "Breakout", "fast average momentum", "b3", "s3", 3)
    other_name = concept("c-4", "Breakeven", "fast average cross slow average buy", "b4", "s4", 4)
    assert MERGE_DESCRIPTION_THRESHOLD == 0.25
    merged = merge_concepts([base, far, near, other_name])
    groups = sorted(sorted(e.segment_id for e in m.evidence) for m in merged)
    # far joins through near transitively? {fast, momentum, trade} vs {fast, average, momentum}:
    # 2/4 = 0.5 -> yes: base ~ near ~ far form one cluster
    assert groups == [["s1", "s2", "s3"], ["s4"]]
    assert len(merge_concepts([base, far])) == 2


def test_offline_track_runs_on_the_sample_corpus():
    """Books -> segments -> concepts -> modules with no key and no network."""
    from factory_pipeline.knowledge.books import discover_books, read_book
    from factory_pipeline.knowledge.chunking import chunk_pages
    from factory_pipeline.knowledge.proposals import propose_modules
    from factory_pipeline.settings import DEFAULT_DATA_DIR

    segments = [
        s
        for path in discover_books([DEFAULT_DATA_DIR / "books"])
        for s in chunk_pages(read_book(path))
    ]
    by_id = {s.id: s for s in segments}
    result = extract_concepts(segments, OfflineBackend())
    assert len(result.concepts) >= 10 and result.rejected == []
    for c in result.concepts:
        for quote in c.evidence:
            assert squash(quote.quote) in squash(by_id[quote.segment_id].text)
            assert quote.page == by_id[quote.segment_id].page
    assert any(len(c.provenance.book_ids) >= 2 for c in result.concepts)
    proposals = propose_modules(result.concepts, OfflineBackend())
    kinds = {m.kind.value for m in proposals.valid}
    assert kinds == {"entry", "exit", "filter", "risk", "management"}
    assert proposals.invalid == [] and proposals.failed == []
