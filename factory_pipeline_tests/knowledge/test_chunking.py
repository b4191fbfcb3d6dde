"""Chunking: page-anchored exact slices, sentence alignment, overlap, stable ids, chapters."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from factory_pipeline.errors import ConfigError
from factory_pipeline.knowledge.books import BookRead, Page, read_book
from factory_pipeline.knowledge.chunking import Span, chunk_pages, sentence_spans, split_spans
from factory_pipeline.knowledge.tagging import tag_text
from factory_pipeline.schemas import Book
from factory_pipeline_tests.knowledge.conftest import CraftedPage, write_pdf


def _sentence(index: int) -> str:
    """A 30-character sentence: 'Rule 3 xxxx...x.'"""
    head = f"Rule {index} "
    return head + "x" * (29 - len(head)) + "."


def _read(pages: list[Page], title: str = "Test Book") -> BookRead:
    book = Book(id="book-test", path="test.txt", title=title, content_hash="h", pages=len(pages))
    return BookRead(book=book, pages=pages)


def _page(number: int, text: str, **kwargs) -> Page:
    return Page(
        book_id="book-test", page=number, chapter="One", text=text, has_text_layer=True, **kwargs
    )


def test_greedy_packing_with_sentence_overlap_matches_hand_derivation() -> None:
    text = " ".join(_sentence(i) for i in range(5))  # sentence i spans [31 i, 31 i + 30)
    # Chunk 1 takes sentences 0-2 (end 92 <= 100; adding 3 would end at 123). The next chunk
    # starts at the first sentence within 50 characters of 92: sentence 2 (starts at 62), and
    # then holds sentences 2-4 (154 - 62 = 92 <= 100).
    assert split_spans(text, chunk_size=100, overlap=50) == [Span(0, 92), Span(62, 154)]
    # Without overlap the second chunk starts right after the first.
    assert split_spans(text, chunk_size=100, overlap=0) == [Span(0, 92), Span(93, 154)]


def test_sentence_spans_respect_abbreviations_decimals_and_lines() -> None:
    text = (
        "Use e.g. the 2.5 ATR stop. Then wait! Mr. Smith agrees? Yes.\n\n"
        "Heading\n- first item\n- second item"
    )
    sentences = [text[span.start : span.end] for span in sentence_spans(text)]
    assert sentences == [
        "Use e.g. the 2.5 ATR stop.",
        "Then wait!",
        "Mr. Smith agrees?",
        "Yes.",
        "Heading",
        "- first item",
        "- second item",
    ]


def test_segments_are_exact_page_slices_within_size_and_cover_the_page() -> None:
    phrase = "the stop sits two ATR below the entry and moves only up"
    words = phrase.split(" ")
    sentences = [" ".join(words[: 3 + (i * 7) % len(words)]).capitalize() + "." for i in range(60)]
    pages = [_page(1, " ".join(sentences[:30])), _page(2, " ".join(sentences[30:]))]
    read = _read(pages)
    segments = chunk_pages(read, chunk_size=200, overlap=60)
    assert {segment.page for segment in segments} == {1, 2}
    for page in pages:
        own = [segment for segment in segments if segment.page == page.page]
        covered = set()
        for segment in own:
            assert page.text[segment.offset : segment.offset + len(segment.text)] == segment.text
            assert len(segment.text) <= 200
            covered.update(range(segment.offset, segment.offset + len(segment.text)))
            # sentence-aligned: starts at a sentence start, ends at a sentence end
            assert segment.text[0].isupper() and segment.text.endswith(".")
        assert all(i in covered for i, ch in enumerate(page.text) if not ch.isspace())
        offsets = [segment.offset for segment in own]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        for before, after in zip(own, own[1:], strict=False):
            shared = before.offset + len(before.text) - after.offset
            assert -1 <= shared <= 60  # at most 60 shared characters, or the one space between


def test_a_sentence_longer_than_a_chunk_is_cut_at_whitespace() -> None:
    sentence = " ".join(f"word{index:03d}" for index in range(60)) + "."  # 479 characters
    spans = split_spans(sentence, chunk_size=100, overlap=0)
    assert all(span.end - span.start <= 100 for span in spans)
    pieces = [sentence[span.start : span.end] for span in spans]
    assert " ".join(pieces).split() == sentence.split()
    assert all(not piece.startswith(" ") and not piece.endswith(" ") for piece in pieces)


def test_segment_fields_chapters_tags_and_provenance() -> None:
    first_part = "Place the stop loss 2 ATR below entry. " * 3
    text = first_part + "Mean reversion fades oversold closes back to the mean."
    page = _page(4, text, chapter_starts=((len(first_part), "Two"),))
    segments = chunk_pages(_read([page], title="Sizing Book"), chunk_size=120, overlap=0)
    assert [segment.chapter for segment in segments] == ["One", "Two"]
    last = segments[-1]
    assert last.offset == len(first_part)
    assert last.book_id == "book-test" and last.book_title == "Sizing Book" and last.page == 4
    assert last.tags == tag_text(last.text) and "mean_reversion" in last.tags
    assert last.provenance.book_ids == ["book-test"] and last.provenance.pages == [4]


def test_invalid_parameters_raise_config_error() -> None:
    read = _read([_page(1, "Some text.")])
    with pytest.raises(ConfigError, match="chunk_size"):
        chunk_pages(read, chunk_size=50)
    with pytest.raises(ConfigError, match="overlap"):
        chunk_pages(read, chunk_size=200, overlap=150)
    with pytest.raises(ConfigError, match="overlap"):
        chunk_pages(read, chunk_size=200, overlap=-1)


def _three_page_book(path: Path, middle: str) -> Path:
    bodies = [
        ["Trend rules come first. Enter on the cross of the averages.", "Exit on the trail."],
        [middle, "The middle page has its own rules."],
        ["Risk one percent per trade. Cap leverage at three.", "Stop after a bad day."],
    ]
    pages = [CraftedPage(header="Id Test Book", body=body) for body in bodies]
    return write_pdf(path, pages, toc=[[1, "Only Chapter", 1]])


def test_ids_are_stable_and_a_changed_page_changes_only_its_ids(tmp_path: Path) -> None:
    original = _three_page_book(tmp_path / "book.pdf", "Mean reversion fades the extremes.")
    first = chunk_pages(read_book(original), chunk_size=100, overlap=20)
    again = chunk_pages(read_book(original), chunk_size=100, overlap=20)
    assert [s.id for s in first] == [s.id for s in again]
    assert len({s.id for s in first}) == len(first)

    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(original, moved / "book.pdf")
    assert [
        s.id for s in chunk_pages(read_book(moved / "book.pdf"), chunk_size=100, overlap=20)
    ] == [s.id for s in first]

    edited_dir = tmp_path / "edited"
    edited_dir.mkdir()
    edited = _three_page_book(edited_dir / "book.pdf", "Mean reversion fades the extremes twice.")
    assert edited.read_bytes() != original.read_bytes()
    changed = chunk_pages(read_book(edited), chunk_size=100, overlap=20)

    def ids(segments, page):
        return {s.id for s in segments if s.page == page}

    assert ids(changed, 1) == ids(first, 1) and ids(first, 1)
    assert ids(changed, 3) == ids(first, 3) and ids(first, 3)
    assert ids(changed, 2).isdisjoint(ids(first, 2)) and ids(changed, 2)


def test_different_chunk_sizes_never_reuse_an_id_for_other_text(tmp_path: Path) -> None:
    path = _three_page_book(tmp_path / "book.pdf", "Mean reversion fades the extremes.")
    read = read_book(path)
    by_id = {s.id: s.text for s in chunk_pages(read, chunk_size=100, overlap=0)}
    for segment in chunk_pages(read, chunk_size=400, overlap=0):
        assert by_id.get(segment.id, segment.text) == segment.text
