"""Concept extraction: groups of book segments -> verified, merged concept cards (KbConcept).

Why this shape: a model (or the offline extractor) only *proposes* cards through a narrow output
schema (:class:`ConceptExtraction`, extra fields forbidden). Code then decides what is kept:

1. **Grouping.** Segments are grouped by (book, chapter) in page order, at most
   ``max_segments`` segments and ``max_chars`` characters per group, so one call sees one coherent
   passage of bounded size.
2. **Evidence rule.** Every card needs at least one quote; each quote must cite a segment of its
   group and occur in that segment's text after whitespace normalization (NFKC, whitespace runs
   collapsed; case-sensitive), and be at least :data:`MIN_QUOTE_CHARS` long. One failing quote
   rejects the whole card (kept in ``rejected`` with the reason).
3. **Ids and provenance by code.** ``id = stable_id("concept", normalized name, sorted evidence
   segment ids)``; pages come from the cited segments, never from the model.
4. **Merge rule.** Two cards are near-duplicates when their normalized names are equal
   (:func:`~factory_pipeline.llm.offline.normalize_name`) and the Jaccard similarity of their
   description content tokens is >= :data:`MERGE_DESCRIPTION_THRESHOLD`. Near-duplicates are
   merged transitively (across groups and books), keeping all evidence and sources.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from factory_pipeline.errors import LLMError
from factory_pipeline.llm.backend import LLMBackend, LLMOutputError
from factory_pipeline.llm.offline import (
    TOPICS_BY_KEY,
    OfflineRequest,
    classify_timeframes,
    content_tokens,
    detect_topics,
    find_timeframes,
    jaccard,
    normalize_name,
    normalize_whitespace,
    quote_occurs,
    register_offline_task,
    sentence_roles,
    split_sentences,
)
from factory_pipeline.llm.prompts import (
    CONCEPT_PROMPT_VERSION,
    CONCEPT_SYSTEM_PROMPT,
    render_concept_prompt,
)
from factory_pipeline.schemas import EvidenceQuote, KbConcept, KbSegment, Provenance, stable_id

CONCEPT_TASK = "extract_concepts"
MIN_QUOTE_CHARS = 20
MERGE_DESCRIPTION_THRESHOLD = 0.25
DEFAULT_MAX_SEGMENTS = 8
DEFAULT_MAX_CHARS = 12_000
MAX_LIST_ITEMS = 12

# LLM output schema (what a model may say) ------------------------------------------------------

Timeframe = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}[mhdw]$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=600)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvidenceOut(_Strict):
    segment_id: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    quote: ShortText


class TimeframesOut(_Strict):
    htf: list[Timeframe] = Field(max_length=6)
    mtf: list[Timeframe] = Field(max_length=6)
    ltf: list[Timeframe] = Field(max_length=6)


class ConceptOut(_Strict):
    """One concept card as a model states it (no ids, no pages, no provenance)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    description: Annotated[str, StringConstraints(min_length=1, max_length=1500)]
    timeframes: TimeframesOut
    setup_conditions: list[ShortText] = Field(max_length=MAX_LIST_ITEMS)
    entry_ideas: list[ShortText] = Field(max_length=MAX_LIST_ITEMS)
    exit_ideas: list[ShortText] = Field(max_length=MAX_LIST_ITEMS)
    risk_constraints: list[ShortText] = Field(max_length=MAX_LIST_ITEMS)
    tags: list[Tag] = Field(max_length=MAX_LIST_ITEMS)
    evidence: list[EvidenceOut] = Field(max_length=MAX_LIST_ITEMS)


class ConceptExtraction(_Strict):
    """The whole answer for one segment group."""

    concepts: list[ConceptOut] = Field(max_length=20)


# Results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentGroup:
    """Consecutive segments of one book chapter sent to the model together."""

    group_id: str
    book_id: str
    chapter: str
    segments: tuple[KbSegment, ...]

    def segment(self, segment_id: str) -> KbSegment | None:
        return next((s for s in self.segments if s.id == segment_id), None)


@dataclass(frozen=True)
class RejectedConcept:
    """A card (or a whole group, when ``name`` is empty) that was not kept, and why."""

    group_id: str
    name: str
    reason: str


@dataclass
class ConceptExtractionResult:
    concepts: list[KbConcept] = field(default_factory=list)
    rejected: list[RejectedConcept] = field(default_factory=list)
    groups: int = 0
    cards_proposed: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


# Public entry points -----------------------------------------------------------------------------


def extract_concepts(
    segments: Iterable[KbSegment],
    llm: LLMBackend,
    *,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    max_chars: int = DEFAULT_MAX_CHARS,
    merge_threshold: float = MERGE_DESCRIPTION_THRESHOLD,
) -> ConceptExtractionResult:
    """Extract, verify and merge concept cards from ``segments``.

    A group whose answer is unusable (refusal, output that never validated) is recorded in
    ``rejected`` with an empty name and extraction continues; any other :class:`LLMError` (the
    backend is unreachable or misconfigured) propagates, so nothing is half-produced silently.
    """
    result = ConceptExtractionResult()
    kept: list[KbConcept] = []
    for group in group_segments(segments, max_segments=max_segments, max_chars=max_chars):
        result.groups += 1
        try:
            answer = llm.complete_structured(
                CONCEPT_TASK,
                CONCEPT_PROMPT_VERSION,
                CONCEPT_SYSTEM_PROMPT,
                render_concept_prompt(group.segments),
                ConceptExtraction,
                context=group,
            )
        except LLMOutputError as exc:
            result.rejected.append(RejectedConcept(group.group_id, "", str(exc)))
            continue
        result.cache_hits += int(answer.cached)
        result.prompt_tokens += answer.prompt_tokens
        result.completion_tokens += answer.completion_tokens
        source = f"{answer.model} {CONCEPT_PROMPT_VERSION}"
        for card in answer.value.concepts:
            result.cards_proposed += 1
            reason = verify_card(card, group)
            if reason is not None:
                result.rejected.append(RejectedConcept(group.group_id, card.name, reason))
                continue
            kept.append(card_to_concept(card, group, source=source))
    result.concepts = merge_concepts(kept, threshold=merge_threshold)
    return result


def group_segments(
    segments: Iterable[KbSegment],
    *,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> list[SegmentGroup]:
    """Group by (book, chapter) in (book, page, offset) order, bounded by count and characters.

    A single segment longer than ``max_chars`` forms its own group (it is never cut).
    """
    if max_segments < 1 or max_chars < 1:
        raise ValueError("max_segments and max_chars must be >= 1")
    ordered = sorted(segments, key=lambda s: (s.book_id, s.page, s.offset, s.id))
    groups: list[SegmentGroup] = []
    current: list[KbSegment] = []
    chars = 0

    def flush() -> None:
        if current:
            first = current[0]
            gid = stable_id("group", first.book_id, first.chapter, [s.id for s in current])
            groups.append(SegmentGroup(gid, first.book_id, first.chapter, tuple(current)))

    for segment in ordered:
        same_passage = bool(current) and (segment.book_id, segment.chapter) == (
            current[0].book_id,
            current[0].chapter,
        )
        fits = len(current) < max_segments and chars + len(segment.text) <= max_chars
        if not (same_passage and fits):
            flush()
            current, chars = [], 0
        current.append(segment)
        chars += len(segment.text)
    flush()
    return groups


def verify_card(card: ConceptOut, group: SegmentGroup) -> str | None:
    """Why ``card`` must be rejected under the evidence rule, or None if it is acceptable."""
    if not normalize_name(card.name):
        return f"card name {card.name!r} has no content words"
    if not card.evidence:
        return "card has no evidence quote"
    for index, evidence in enumerate(card.evidence):
        segment = group.segment(evidence.segment_id)
        if segment is None:
            return f"evidence[{index}] cites segment {evidence.segment_id!r}, which is not in the group"
        if len(normalize_whitespace(evidence.quote)) < MIN_QUOTE_CHARS:
            return f"evidence[{index}] is shorter than {MIN_QUOTE_CHARS} characters"
        if not quote_occurs(evidence.quote, segment.text):
            return (
                f"evidence[{index}] quote does not occur in segment {segment.id} "
                f"(page {segment.page}): {_shorten(evidence.quote)!r}"
            )
    return None


def card_to_concept(card: ConceptOut, group: SegmentGroup, *, source: str) -> KbConcept:
    """Map a verified card to a KbConcept; ids, pages and provenance are assigned here."""
    evidence: list[EvidenceQuote] = []
    for item in card.evidence:
        segment = group.segment(item.segment_id)
        assert segment is not None  # verify_card ran first
        quote = EvidenceQuote(
            segment_id=segment.id, page=segment.page, quote=normalize_whitespace(item.quote)
        )
        if quote not in evidence:
            evidence.append(quote)
    segment_ids = sorted({e.segment_id for e in evidence})
    pages = sorted({e.page for e in evidence})
    name = normalize_whitespace(card.name)
    return KbConcept(
        id=stable_id("concept", normalize_name(name), segment_ids),
        name=name,
        description=normalize_whitespace(card.description),
        timeframes={
            "HTF": _unique(card.timeframes.htf),
            "MTF": _unique(card.timeframes.mtf),
            "LTF": _unique(card.timeframes.ltf),
        },
        setup_conditions=_unique(normalize_whitespace(x) for x in card.setup_conditions),
        entry_ideas=_unique(normalize_whitespace(x) for x in card.entry_ideas),
        exit_ideas=_unique(normalize_whitespace(x) for x in card.exit_ideas),
        risk_constraints=_unique(normalize_whitespace(x) for x in card.risk_constraints),
        tags=_unique(_slug(t) for t in card.tags if _slug(t)),
        evidence=evidence,
        provenance=Provenance(
            source=source, book_ids=[group.book_id], pages=pages, segment_ids=segment_ids
        ),
    )


def concepts_are_near_duplicates(
    a: KbConcept, b: KbConcept, threshold: float = MERGE_DESCRIPTION_THRESHOLD
) -> bool:
    """The merge rule: equal normalized names and description token Jaccard >= threshold."""
    if normalize_name(a.name) != normalize_name(b.name):
        return False
    return jaccard(content_tokens(a.description), content_tokens(b.description)) >= threshold


def merge_concepts(
    concepts: Sequence[KbConcept], *, threshold: float = MERGE_DESCRIPTION_THRESHOLD
) -> list[KbConcept]:
    """Merge near-duplicates transitively; output ordered by (normalized name, id).

    The merged card takes name and description from the member with the most evidence (ties: the
    smaller id), unions every list, evidence and provenance, and gets a new id from the normalized
    name and all evidence segment ids.
    """
    ordered = sorted(concepts, key=lambda c: (normalize_name(c.name), c.id))
    parent = list(range(len(ordered)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(ordered)):
        for j in range(i + 1, len(ordered)):
            if normalize_name(ordered[i].name) != normalize_name(ordered[j].name):
                break  # sorted by normalized name: no later j can match
            if concepts_are_near_duplicates(ordered[i], ordered[j], threshold):
                parent[find(j)] = find(i)
    clusters: dict[int, list[KbConcept]] = {}
    for index, concept in enumerate(ordered):
        clusters.setdefault(find(index), []).append(concept)
    merged = [_merge_cluster(members) for members in clusters.values()]
    return sorted(merged, key=lambda c: (normalize_name(c.name), c.id))


# Helpers -----------------------------------------------------------------------------------------


def _merge_cluster(members: list[KbConcept]) -> KbConcept:
    if len(members) == 1:
        return members[0]
    primary = sorted(members, key=lambda c: (-len(c.evidence), c.id))[0]
    rest = [m for m in members if m is not primary]
    everyone = [primary, *rest]
    evidence: list[EvidenceQuote] = []
    for member in everyone:
        for quote in member.evidence:
            if quote not in evidence:
                evidence.append(quote)
    segment_ids = sorted({e.segment_id for e in evidence})
    timeframes = {
        role: _unique(tf for m in everyone for tf in m.timeframes.get(role, []))
        for role in ("HTF", "MTF", "LTF")
    }
    provenance = Provenance(
        source="; ".join(_unique(m.provenance.source for m in everyone if m.provenance.source)),
        book_ids=sorted({b for m in everyone for b in m.provenance.book_ids}),
        pages=sorted({e.page for e in evidence}),
        segment_ids=segment_ids,
        concept_ids=sorted(m.id for m in everyone),
    )
    return KbConcept(
        id=stable_id("concept", normalize_name(primary.name), segment_ids),
        name=primary.name,
        description=primary.description,
        timeframes=timeframes,
        setup_conditions=_unique(x for m in everyone for x in m.setup_conditions),
        entry_ideas=_unique(x for m in everyone for x in m.entry_ideas),
        exit_ideas=_unique(x for m in everyone for x in m.exit_ideas),
        risk_constraints=_unique(x for m in everyone for x in m.risk_constraints),
        tags=_unique(t for m in everyone for t in m.tags),
        evidence=evidence,
        provenance=provenance,
    )


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        if item and item not in seen:
            seen[item] = None
    return list(seen)


def _slug(tag: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")


def _shorten(text: str, limit: int = 80) -> str:
    text = normalize_whitespace(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Offline implementation (lexicon + sentence patterns) --------------------------------------------

_ROLE_FIELDS = {
    "setup": "setup_conditions",
    "entry": "entry_ideas",
    "exit": "exit_ideas",
    "risk": "risk_constraints",
}
_CHAPTER_PREFIX = re.compile(
    r"^\s*(?:chapter|part|section)?\s*[\dIVXLC]+\s*[:.\-–]\s*", re.IGNORECASE
)
_MAX_OFFLINE_ITEMS = 8


@dataclass
class _Draft:
    """A concept being accumulated by the offline extractor."""

    name: str
    summary: str
    tags: list[str]
    definition: str = ""
    ideas: dict[str, list[str]] = field(
        default_factory=lambda: {f: [] for f in _ROLE_FIELDS.values()}
    )
    evidence: list[tuple[str, str]] = field(default_factory=list)
    timeframes: list[str] = field(default_factory=list)

    def add(self, segment: KbSegment, sentence: str, roles: list[str]) -> None:
        for role in roles:
            bucket = self.ideas[_ROLE_FIELDS[role]]
            if sentence not in bucket and len(bucket) < _MAX_OFFLINE_ITEMS:
                bucket.append(sentence)
        if (
            roles
            and (segment.id, sentence) not in self.evidence
            and len(self.evidence) < MAX_LIST_ITEMS
        ):
            self.evidence.append((segment.id, sentence))
        for code in find_timeframes(sentence):
            if code not in self.timeframes:
                self.timeframes.append(code)
        for tag in segment.tags:
            slug = _slug(tag)
            if slug and slug not in self.tags and len(self.tags) < MAX_LIST_ITEMS:
                self.tags.append(slug)

    def to_card(self) -> ConceptOut:
        roles = classify_timeframes(self.timeframes)
        description = self.summary if not self.definition else f"{self.summary} {self.definition}"
        return ConceptOut(
            name=self.name,
            description=description[:1500],
            timeframes=TimeframesOut(htf=roles["HTF"], mtf=roles["MTF"], ltf=roles["LTF"]),
            setup_conditions=self.ideas["setup_conditions"],
            entry_ideas=self.ideas["entry_ideas"],
            exit_ideas=self.ideas["exit_ideas"],
            risk_constraints=self.ideas["risk_constraints"],
            tags=self.tags,
            evidence=[EvidenceOut(segment_id=s, quote=q) for s, q in self.evidence],
        )


@register_offline_task(CONCEPT_TASK)
def offline_extract_concepts(request: OfflineRequest) -> ConceptExtraction:
    """Deterministic extraction by lexicon topics and sentence patterns.

    Sentences (verbatim, whitespace-normalized) are given roles by pattern (entry: "enter long
    when" ...; exit: "exit when", "stop ... ATR" ...; risk: "risk ... percent" ...; setup: "only
    trade when", "is above" ...) and assigned to the lexicon topics they mention, else to the
    topic its chapter heading names, else to the segment's dominant topic, else to a concept
    named after the chapter heading. A topic becomes a
    card when at least one sentence with a role was assigned to it; its quotes are those sentences.
    """
    group = request.context
    if not isinstance(group, SegmentGroup):
        raise LLMError(f"offline task {CONCEPT_TASK!r} needs a SegmentGroup context")
    drafts: dict[str, _Draft] = {}
    for segment in group.segments:
        sentences = [s.normalized for s in split_sentences(segment.text)]
        sentences = [s for s in sentences if len(s) >= MIN_QUOTE_CHARS and not _is_heading(s)]
        counts = Counter(t.key for s in sentences for t in detect_topics(s))
        dominant = _dominant_topic(counts)
        chapter_topics = detect_topics(segment.chapter)
        chapter_topic = chapter_topics[0].key if chapter_topics else None
        for sentence in sentences:
            roles = sentence_roles(sentence)
            topics = [t.key for t in detect_topics(sentence)]
            if not roles:
                for key in topics:  # a topic's first plain sentence defines it
                    draft = _draft_for(drafts, key, segment)
                    if draft is not None and not draft.definition:
                        draft.definition = sentence
                continue
            fallback = chapter_topic or dominant or f"chapter:{segment.chapter}"
            targets = topics or [fallback]
            for key in targets:
                draft = _draft_for(drafts, key, segment)
                if draft is not None:
                    draft.add(segment, sentence, roles)
    cards = [d.to_card() for d in drafts.values() if d.evidence]
    return ConceptExtraction(concepts=cards[:20])


def _is_heading(sentence: str) -> bool:
    """A short line without closing punctuation ("Chapter 4: Daily Loss Limits") is a heading,
    not a statement: it names a topic but states no rule."""
    return len(sentence.split()) < 8 and sentence[-1] not in ".!?;:)\"'"


def _dominant_topic(counts: Counter[str]) -> str | None:
    if not counts:
        return None
    order = list(TOPICS_BY_KEY)
    return sorted(counts, key=lambda k: (-counts[k], order.index(k)))[0]


def _draft_for(drafts: dict[str, _Draft], key: str, segment: KbSegment) -> _Draft | None:
    if key in drafts:
        return drafts[key]
    if key.startswith("chapter:"):
        heading = _CHAPTER_PREFIX.sub("", key.removeprefix("chapter:")).strip()
        if not normalize_name(heading):
            return None
        draft = _Draft(
            name=heading[:120], summary=f"Rules from the chapter '{heading[:100]}'.", tags=[]
        )
    else:
        topic = TOPICS_BY_KEY[key]
        draft = _Draft(name=topic.name, summary=topic.summary, tags=list(topic.tags))
    drafts[key] = draft
    return draft
