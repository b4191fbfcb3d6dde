"""Split book pages into page-anchored, sentence-aligned segments with stable ids.

Why a small splitter of our own instead of llama-index's SentenceSplitter: a segment must be an
exact slice ``page.text[offset:offset + len(text)]`` so that concept evidence quotes can be
verified against the page and cited by (book, page, offset). SentenceSplitter returns strings
without offsets, measures size in tokenizer tokens and loads NLTK and tiktoken data on first use
(about 3.5 s here). This splitter works in characters on spans, never crosses a page, never cuts
inside a sentence unless the sentence alone is longer than a chunk, and overlaps whole sentences.

Segment id = ``stable_id("seg", book_id, page, sha256(page text), start, end)``: re-ingesting an
unchanged book gives identical ids, and editing one page changes only that page's ids (the book
id comes from the file name, see books.book_id_for). The rules are in docs/knowledge_ingestion.md.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from factory_pipeline.errors import ConfigError
from factory_pipeline.knowledge.books import BookRead, Page
from factory_pipeline.knowledge.tagging import tag_text
from factory_pipeline.schemas import KbSegment, Provenance, stable_id

DEFAULT_CHUNK_SIZE = 800
DEFAULT_OVERLAP = 160
MIN_CHUNK_SIZE = 100
#: Producer tag written into segment provenance; bump when splitting rules change.
CHUNKER_VERSION = "chunking.chunk_pages v1"


@dataclass(frozen=True)
class Span:
    """A half-open character range ``[start, end)`` of a page's text."""

    start: int
    end: int


def chunk_pages(
    read: BookRead, *, chunk_size: int = DEFAULT_CHUNK_SIZE, overlap: int = DEFAULT_OVERLAP
) -> list[KbSegment]:
    """Segments of every page with text, in (page, offset) order, each within one page.

    ``chunk_size`` is the maximum segment length in characters (a single longer sentence is cut
    at whitespace); ``overlap`` is the maximum number of characters of whole sentences repeated
    from the end of the previous segment of the same page.
    """
    _check_parameters(chunk_size, overlap)
    segments: list[KbSegment] = []
    for page in read.pages:
        if not page.has_text_layer:
            continue
        page_hash = hashlib.sha256(page.text.encode()).hexdigest()
        for span in split_spans(page.text, chunk_size=chunk_size, overlap=overlap):
            segments.append(_segment(read, page, page_hash, span))
    return segments


def split_spans(
    text: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE, overlap: int = DEFAULT_OVERLAP
) -> list[Span]:
    """Sentence-aligned chunk spans of ``text`` (whitespace-trimmed, in order, covering it)."""
    _check_parameters(chunk_size, overlap)
    units = [
        piece for sentence in sentence_spans(text) for piece in _cut(text, sentence, chunk_size)
    ]
    chunks: list[Span] = []
    first = 0
    while first < len(units):
        last = first
        while last + 1 < len(units) and units[last + 1].end - units[first].start <= chunk_size:
            last += 1
        chunks.append(Span(units[first].start, units[last].end))
        if last == len(units) - 1:
            break
        first = next(
            (
                k
                for k in range(first + 1, last + 1)
                if units[last].end - units[k].start <= overlap
                and units[last + 1].end - units[k].start <= chunk_size
            ),
            last + 1,
        )
    return chunks


def sentence_spans(text: str) -> list[Span]:
    """Sentences of ``text`` as trimmed spans.

    A sentence ends at ".", "!" or "?" (plus closing quotes or brackets) followed by whitespace
    and an upper-case letter, a digit, a quote or a bracket, unless the word before the period is
    a known abbreviation ("e.g.", "i.e.", "vs.", "approx.", ...) or a single letter. A blank line
    (paragraph) and a line break (list item) always end a sentence.
    """
    spans: list[Span] = []
    for block in _blocks(text):
        start = block.start
        for match in _SENTENCE_END_RE.finditer(text, block.start, block.end):
            word = _last_word(text, start, match.start() + 1)
            if word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
            spans.append(Span(start, match.end(1)))
            start = match.end()
        if start < block.end:
            spans.append(Span(start, block.end))
    return [_trim(text, span) for span in spans if text[span.start : span.end].strip()]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

_SENTENCE_END_RE = re.compile(r"([.!?][\"')\]]*)\s+(?=[A-Z0-9\"'(\[])")
_ABBREVIATIONS = {
    "e.g",
    "i.e",
    "etc",
    "vs",
    "approx",
    "fig",
    "cf",
    "mr",
    "mrs",
    "dr",
    "st",
    "u.s",
    "ca",
    "incl",
}


def _check_parameters(chunk_size: int, overlap: int) -> None:
    if chunk_size < MIN_CHUNK_SIZE:
        raise ConfigError(f"chunk_size={chunk_size}: must be at least {MIN_CHUNK_SIZE} characters")
    if not 0 <= overlap <= chunk_size // 2:
        raise ConfigError(
            f"overlap={overlap}: must be between 0 and chunk_size/2 ({chunk_size // 2})"
        )


def _segment(read: BookRead, page: Page, page_hash: str, span: Span) -> KbSegment:
    book = read.book
    text = page.text[span.start : span.end]
    return KbSegment(
        id=stable_id("seg", book.id, page.page, page_hash, span.start, span.end),
        book_id=book.id,
        book_title=book.title,
        chapter=page.chapter_at(span.start),
        page=page.page,
        offset=span.start,
        text=text,
        tags=tag_text(text),
        provenance=Provenance(source=CHUNKER_VERSION, book_ids=[book.id], pages=[page.page]),
    )


def _blocks(text: str) -> list[Span]:
    """Paragraphs and lines: a sentence never continues across a line break."""
    blocks = []
    start = 0
    for match in re.finditer(r"\n+", text):
        blocks.append(Span(start, match.start()))
        start = match.end()
    blocks.append(Span(start, len(text)))
    return [block for block in blocks if block.end > block.start]


def _last_word(text: str, start: int, end: int) -> str:
    """The token before a sentence-ending mark, without the mark ("e.g." -> "e.g")."""
    token = text[start:end].rsplit(None, 1)[-1] if text[start:end].strip() else ""
    return token.rstrip(".!?\"')]").lstrip("(\"'[")


def _trim(text: str, span: Span) -> Span:
    start, end = span.start, span.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end)


def _cut(text: str, span: Span, limit: int) -> list[Span]:
    """Pieces of a sentence no longer than ``limit``, cut at whitespace when possible."""
    pieces = []
    start = span.start
    while span.end - start > limit:
        cut = text.rfind(" ", start + 1, start + limit + 1)
        cut = cut if cut > start else start + limit
        pieces.append(_trim(text, Span(start, cut)))
        start = cut
        while start < span.end and text[start].isspace():
            start += 1
    if start < span.end:
        pieces.append(Span(start, span.end))
    return pieces
