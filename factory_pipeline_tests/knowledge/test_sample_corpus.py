"""The committed sample corpus: reproducible from its script, fully ingestible, and the
retrieval evaluation set points at pages that exist and say what the query asks."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from factory_pipeline.knowledge.books import BookRead, discover_books, read_book
from factory_pipeline.knowledge.chunking import chunk_pages

ROOT = Path(__file__).resolve().parents[2]
BOOKS_DIR = ROOT / "data" / "books"
QUERIES = ROOT / "data" / "eval" / "retrieval_queries.yaml"
SCRIPT = ROOT / "scripts" / "make_sample_books.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample_books", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered(script: ModuleType) -> dict[str, object]:
    """What the script places on each page, by file name (rendered again in memory)."""
    return {spec.file_name: script.render_book(spec) for spec in script.BOOKS}


@pytest.fixture(scope="module")
def reads() -> dict[str, BookRead]:
    return {path.name: read_book(path) for path in discover_books([BOOKS_DIR])}


def _normalized(text: str) -> str:
    return " ".join(text.split()).lower()


def test_script_reproduces_the_committed_files_byte_for_byte(
    script: ModuleType, rendered: dict
) -> None:
    expected = {spec.file_name for spec in script.BOOKS} | {script.NOTE_FILE_NAME}
    assert {path.name for path in BOOKS_DIR.iterdir()} == expected
    for file_name, layout in rendered.items():
        assert layout.pdf == (BOOKS_DIR / file_name).read_bytes(), file_name
    note = (BOOKS_DIR / script.NOTE_FILE_NAME).read_text(encoding="utf-8")
    assert note == script.NOTE_MARKDOWN


def test_every_book_ingests_with_every_chapter_and_page(
    script: ModuleType, rendered: dict, reads: dict[str, BookRead]
) -> None:
    assert len(script.BOOKS) >= 3
    for spec in script.BOOKS:
        read, layout = reads[spec.file_name], rendered[spec.file_name]
        assert 12 <= len(read.pages) <= 25
        assert [page.page for page in read.pages] == list(range(1, len(layout.page_texts) + 1))
        assert read.book.title == spec.title
        assert read.book.flags == []
        assert all(page.has_text_layer for page in read.pages)
        assert len(layout.chapter_pages) == len(spec.chapters)
        for title, first_page in layout.chapter_pages.items():
            page = read.pages[first_page - 1]
            starts = {chapter: offset for offset, chapter in page.chapter_starts}
            assert page.chapter == title or title in starts, (spec.file_name, title)
            offset = starts.get(title, 0)
            assert _normalized(page.text[offset:]).startswith(_normalized(title))
        assert {page.chapter for page in read.pages[1:]} == {title for title, _ in spec.chapters}


def test_reader_recovers_exactly_the_words_written_on_each_page(
    script: ModuleType, rendered: dict, reads: dict[str, BookRead]
) -> None:
    """Running headers, footers and page numbers are gone and hyphenation is repaired."""
    broken_words = 0
    for spec in script.BOOKS:
        read, layout = reads[spec.file_name], rendered[spec.file_name]
        for page, expected in zip(read.pages, layout.page_texts, strict=True):
            assert page.text.split() == expected.split(), (spec.file_name, page.page)
            assert spec.title not in page.text or page.page == 1
        words = {word.strip(".,;:!?()") for page in read.pages for word in page.text.split()}
        for word in layout.hyphenated:
            assert word.strip(".,;:!?()") in words
        broken_words += len(layout.hyphenated)
    assert broken_words >= 10


def test_markdown_note_has_section_chapters(reads: dict[str, BookRead]) -> None:
    note = reads["volatility_squeeze_breakout.md"]
    assert note.book.title == "Volatility Squeeze Breakout"
    chapters = [title for page in note.pages for _, title in page.chapter_starts]
    assert chapters == [
        "The setup",
        "The entry",
        "Stops and exits",
        "Filters",
        "Notes from testing",
    ]


def test_corpus_chunks_have_unique_ids_and_expected_tags(reads: dict[str, BookRead]) -> None:
    segments = [segment for read in reads.values() for segment in chunk_pages(read)]
    assert len({segment.id for segment in segments}) == len(segments)
    for read in reads.values():
        assert {s.page for s in segments if s.book_id == read.book.id} == {
            page.page for page in read.pages
        }

    def tags_of(file_name: str, page: int) -> set[str]:
        book_id = reads[file_name].book.id
        return {t for s in segments if s.book_id == book_id and s.page == page for t in s.tags}

    assert "breakout" in tags_of("trend_following_across_timeframes.pdf", 5)  # Donchian
    assert "mean_reversion" in tags_of("mean_reversion_and_ranges.pdf", 7)  # z-score
    assert "funding_open_interest" in tags_of("risk_management_and_position_sizing.pdf", 9)
    assert "position_sizing" in tags_of("risk_management_and_position_sizing.pdf", 3)


def test_eval_queries_point_at_existing_pages_holding_their_evidence(
    reads: dict[str, BookRead],
) -> None:
    data = yaml.safe_load(QUERIES.read_text(encoding="utf-8"))
    queries = data["queries"]
    assert len(queries) >= 30
    assert len({query["id"] for query in queries}) == len(queries)
    kinds = [query["kind"] for query in queries]
    assert kinds.count("semantic") >= 10 and kinds.count("exact") >= 10
    assert set(kinds) <= {"semantic", "exact", "mixed"}
    for query in queries:
        assert query["query"].strip() and query["relevant"]
        for relevant in query["relevant"]:
            read = reads[relevant["book"]]
            assert 1 <= relevant["page"] <= len(read.pages), (query["id"], relevant)
            page = read.pages[relevant["page"] - 1]
            assert _normalized(relevant["evidence"]) in _normalized(page.text), (
                query["id"],
                relevant,
            )


def test_query_kinds_are_what_they_claim(reads: dict[str, BookRead]) -> None:
    """Each number of an exact query occurs on one of its relevant pages; a semantic query shares
    at most one content word with each of its evidence phrases."""
    stop = {"a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "is", "are", "be"}
    stop |= {"with", "at", "by", "what", "how", "when", "do", "i", "my", "it", "that", "its", "if"}
    data = yaml.safe_load(QUERIES.read_text(encoding="utf-8"))
    for query in data["queries"]:
        words = set(re.findall(r"[a-z0-9.,()/]+", query["query"].lower()))
        words = {word.strip(".,") for word in words} - stop
        evidences = [_normalized(relevant["evidence"]) for relevant in query["relevant"]]
        if query["kind"] == "exact":
            numbers = {word for word in words if re.search(r"\d", word)}
            assert numbers, query["id"]
            pages = [
                _normalized(reads[relevant["book"]].pages[relevant["page"] - 1].text)
                for relevant in query["relevant"]
            ]
            for number in numbers:
                assert any(number in page for page in pages), (query["id"], number)
        elif query["kind"] == "semantic":
            for evidence in evidences:
                shared = words & set(re.findall(r"[a-z0-9]+", evidence))
                assert len(shared) <= 1, (query["id"], shared)
