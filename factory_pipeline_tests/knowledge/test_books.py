"""Reading books: chapters, running headers/footers, hyphenation, text-layer flags, bad files,
plain text and Markdown, discovery and ids. PDFs are crafted here with pymupdf."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pymupdf
import pytest

from factory_pipeline.errors import BookError, ConfigError
from factory_pipeline.knowledge.books import (
    VIRTUAL_PAGE_CHARS,
    book_id_for,
    discover_books,
    failed_book,
    read_book,
)
from factory_pipeline.knowledge.chunking import chunk_pages
from factory_pipeline_tests.knowledge.conftest import CraftedPage, write_pdf

HEADER = "Crafted Trading Manual"


def _manual(path: Path) -> Path:
    """Five pages: outline with two chapters (and a level-2 entry), running header, "Page N of
    5" footers, and line-end hyphenation of three kinds."""
    pages = [
        CraftedPage(
            header=HEADER,
            footer="Page 1 of 5",
            body=[
                "Alpha Chapter",
                "",
                "Volatility matters for every stop. Measure volatility with the ATR.",
                "Good risk management starts with the stop. Wide stops in high volatil-",
                "ity markets need small positions and a risk-",
                "management plan that never changes.",
                "",
                "The higher-timeframe trend decides the side. Check the higher-",
                "timeframe chart before each trade.",
            ],
        ),
        CraftedPage(
            header=HEADER,
            footer="Page 2 of 5",
            body=[
                "Consoli-",
                "dation often precedes expansion. A Bollinger-",
                "Band squeeze marks it.",
                "",
                "Risk and management are separate words here, as are stop and loss.",
            ],
        ),
        CraftedPage(
            header=HEADER,
            footer="Page 3 of 5",
            body=["Beta Chapter", "", "Position size follows from the stop distance."],
        ),
        CraftedPage(
            header=HEADER, footer="Page 4 of 5", body=["Risk one percent of equity per trade."]
        ),
        CraftedPage(header=HEADER, footer="Page 5 of 5", body=["Cap the leverage at three."]),
    ]
    toc = [[1, "Alpha Chapter", 1], [2, "A Section", 2], [1, "Beta Chapter", 3]]
    return write_pdf(path, pages, toc=toc, title="Crafted Trading Manual")


def test_outline_gives_chapters_per_page(tmp_path: Path) -> None:
    read = read_book(_manual(tmp_path / "manual.pdf"))
    assert [page.page for page in read.pages] == [1, 2, 3, 4, 5]
    assert [page.chapter for page in read.pages] == [
        "Alpha Chapter",
        "Alpha Chapter",
        "Beta Chapter",
        "Beta Chapter",
        "Beta Chapter",
    ]
    assert read.book.title == "Crafted Trading Manual"
    assert read.book.pages == 5
    assert read.book.flags == []


def test_running_headers_footers_and_page_numbers_are_removed(tmp_path: Path) -> None:
    read = read_book(_manual(tmp_path / "manual.pdf"))
    for page in read.pages:
        assert HEADER not in page.text
        assert "Page" not in page.text
        assert not page.text.rstrip().endswith(("of 5", str(page.page)))
    assert read.pages[3].text == "Risk one percent of equity per trade."
    assert read.pages[2].text == "Beta Chapter\n\nPosition size follows from the stop distance."


def test_hyphenation_is_repaired_by_the_documented_rule(tmp_path: Path) -> None:
    read = read_book(_manual(tmp_path / "manual.pdf"))
    first, second = read.pages[0].text, read.pages[1].text
    # "volatility" occurs elsewhere in the book -> joined.
    assert "Wide stops in high volatility markets" in first
    # both halves occur as words elsewhere, the joined form does not -> hyphen kept.
    assert "a risk-management plan that never changes." in first
    # the hyphenated compound occurs inline elsewhere -> hyphen kept.
    assert "Check the higher-timeframe chart before each trade." in first
    # neither half is a word of the book -> joined; an upper-case continuation keeps the hyphen.
    assert second.startswith("Consolidation often precedes expansion. A Bollinger-Band squeeze")
    # paragraphs are separated by one blank line, lines of a paragraph by a space.
    assert first.split("\n\n")[0] == "Alpha Chapter"
    assert "\n" not in first.split("\n\n")[1]


BODIES = [
    "Fade the first close outside the band.",
    "Wait for the close back inside.",
    "Target the middle band.",
    "Exit after ten bars at the latest.",
]


def test_header_with_page_number_on_the_same_line_is_removed(tmp_path: Path) -> None:
    pages = [
        CraftedPage(
            header="Mean Reversion Notes",
            header_right=str(number + 10),  # printed page numbers start at 11
            footer=f"{number} / 4",
            body=[body],
        )
        for number, body in enumerate(BODIES, start=1)
    ]
    read = read_book(write_pdf(tmp_path / "notes.pdf", pages))
    assert [page.text for page in read.pages] == BODIES


def test_numbered_lines_that_do_not_follow_page_numbers_are_kept(tmp_path: Path) -> None:
    # "Exercise N" opens every page, but N does not follow the page number: it is content.
    numbers = [3, 8, 1, 12]
    pages = [
        CraftedPage(header="Workbook", body=[f"Exercise {n}", "", body])
        for n, body in zip(numbers, BODIES, strict=True)
    ]
    read = read_book(write_pdf(tmp_path / "workbook.pdf", pages))
    assert [page.text for page in read.pages] == [
        f"Exercise {n}\n\n{body}" for n, body in zip(numbers, BODIES, strict=True)
    ]


def test_lines_repeated_on_few_pages_are_kept(tmp_path: Path) -> None:
    # "Entry rules" opens 2 of 8 pages: below max(3, 30% of 8) = 3 pages, so it is content.
    rules = [
        f"Wait for a {word} close."
        for word in ["red", "green", "blue", "gray", "pink", "gold", "teal", "tan"]
    ]
    romans = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii"]  # front-matter page numbers
    pages = [
        CraftedPage(
            header="Book Header",
            footer=roman,
            body=(["Entry rules", ""] if index < 2 else []) + [rule],
        )
        for index, (rule, roman) in enumerate(zip(rules, romans, strict=True))
    ]
    read = read_book(write_pdf(tmp_path / "rules.pdf", pages))
    assert [page.text for page in read.pages] == [
        f"Entry rules\n\n{rule}" if index < 2 else rule for index, rule in enumerate(rules)
    ]


def test_chapter_running_header_is_removed_but_the_chapter_heading_stays(tmp_path: Path) -> None:
    pages = [
        CraftedPage(body=["Alpha", "", "First page of alpha."]),
        CraftedPage(header="Alpha", body=["Second page of alpha."]),
        CraftedPage(body=["Beta", "", "First page of beta."]),
        CraftedPage(header="Beta", body=["Second page of beta."]),
    ]
    toc = [[1, "Alpha", 1], [1, "Beta", 3]]
    read = read_book(write_pdf(tmp_path / "chapters.pdf", pages, toc=toc))
    assert [page.text for page in read.pages] == [
        "Alpha\n\nFirst page of alpha.",
        "Second page of alpha.",
        "Beta\n\nFirst page of beta.",
        "Second page of beta.",
    ]


def test_chapters_from_heading_sizes_without_outline(tmp_path: Path) -> None:
    pages = [
        CraftedPage(heading="Trend Basics", body=["Trends persist for a while."]),
        CraftedPage(body=["More on trends."], extra=[("A Section Heading", 12.0)]),
        CraftedPage(body=["Last words on trends."], extra=[("Range Basics", 16.0)]),
    ]
    read = read_book(write_pdf(tmp_path / "no_outline.pdf", pages))
    first, second, third = read.pages
    assert first.chapter == "Trend Basics" and first.chapter_starts == ()
    assert second.chapter == "Trend Basics"  # the 12 pt section heading is not a chapter
    assert third.chapter == "Trend Basics"
    ((offset, title),) = third.chapter_starts
    assert title == "Range Basics"
    assert third.text[offset:] == "Range Basics"
    assert third.chapter_at(0) == "Trend Basics"
    assert third.chapter_at(offset) == "Range Basics"


def test_image_only_page_is_flagged_and_not_chunked(tmp_path: Path) -> None:
    pages = [
        CraftedPage(body=["Text on the first page about stops."]),
        CraftedPage(image_only=True),
        CraftedPage(body=["Text on the third page about targets."]),
    ]
    read = read_book(write_pdf(tmp_path / "scanned.pdf", pages))
    assert [page.has_text_layer for page in read.pages] == [True, False, True]
    assert read.pages[1].text == ""
    assert read.book.flags == ["no_text_layer:p2"]
    assert {segment.page for segment in chunk_pages(read)} == {1, 3}


def test_book_without_any_text_layer_is_an_error(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "all_images.pdf", [CraftedPage(image_only=True)] * 2)
    with pytest.raises(BookError, match="text layer") as info:
        read_book(path)
    assert str(path) in str(info.value)


@pytest.fixture(scope="module")
def long_pdf_bytes() -> bytes:
    """A 30-page PDF of about 11 KB to damage in various ways."""
    doc = pymupdf.open()
    for number in range(30):
        lines = [f"Line {line} of page {number} about risk and stops." for line in range(30)]
        doc.new_page().insert_text((50, 60), "\n".join(lines), fontsize=10)
    data = doc.tobytes(garbage=4, deflate=True, no_new_id=True)
    doc.close()
    return data


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("garbage.pdf", lambda data: b"this is not a pdf at all " * 20, "not a readable PDF"),
        ("header_only.pdf", lambda data: b"%PDF-1.7\n", "not a readable PDF"),
        ("empty.pdf", lambda data: b"", "empty"),
        ("truncated.pdf", lambda data: data[:2000], "damaged"),
        ("half.pdf", lambda data: data[: len(data) // 2], "PDF"),
        ("no_xref.pdf", lambda data: data[:-200], "damaged PDF"),
    ],
)
def test_bad_pdf_raises_book_error_naming_the_file(
    tmp_path: Path, long_pdf_bytes: bytes, name: str, make, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(make(long_pdf_bytes))
    with pytest.raises(BookError, match=expected) as info:
        read_book(path)
    assert str(path) in str(info.value)


def test_encrypted_pdf_raises_book_error(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "locked.pdf", [CraftedPage(body=["secret"])], user_password="pw")
    assert pymupdf.open(path).needs_pass  # the fixture really is encrypted
    with pytest.raises(BookError, match="encrypted") as info:
        read_book(path)
    assert str(path) in str(info.value)


def test_unsupported_missing_and_directory_paths(tmp_path: Path) -> None:
    docx = tmp_path / "book.docx"
    docx.write_bytes(b"PK\x03\x04")
    with pytest.raises(BookError, match="unsupported") as info:
        read_book(docx)
    assert str(docx) in str(info.value)
    missing = tmp_path / "missing.pdf"
    with pytest.raises(BookError, match="cannot read") as info:
        read_book(missing)
    assert str(missing) in str(info.value)
    folder = tmp_path / "folder.md"
    folder.mkdir()
    with pytest.raises(BookError, match="cannot read"):
        read_book(folder)


def test_content_hash_and_stable_book_id(tmp_path: Path) -> None:
    path = _manual(tmp_path / "manual.pdf")
    read = read_book(path)
    assert read.book.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    copy_dir = tmp_path / "elsewhere"
    copy_dir.mkdir()
    copy = copy_dir / "manual.pdf"
    copy.write_bytes(path.read_bytes())
    assert read_book(copy).book.id == read.book.id
    assert book_id_for(path, "a") == book_id_for(copy, "b") == read.book.id
    assert book_id_for(tmp_path / "other.pdf", read.book.content_hash) != read.book.id
    assert all(page.book_id == read.book.id for page in read.pages)


def test_failed_book_record(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"garbage")
    with pytest.raises(BookError) as info:
        read_book(path)
    book = failed_book(path, info.value)
    assert book.status == "failed"
    assert book.pages == 0
    assert str(path) in book.error
    assert book.id == book_id_for(path)
    assert book.content_hash == hashlib.sha256(b"garbage").hexdigest()


# Plain text ------------------------------------------------------------------------------


def test_text_pages_from_form_feeds_with_running_lines_and_chapters(tmp_path: Path) -> None:
    pages = [
        "My Text Book\n\nChapter 1 Getting Started\n\nBuy the break-\nout on volume.\n\n- 1 -",
        "My Text Book\n\nSecond page body.\n\n- 2 -",
        "My Text Book\n\nChapter 2 Sizing\n\nRisk one percent.\n\n- 3 -",
        "My Text Book\n\nLast page body about breakout failures.\n\n- 4 -\n",
    ]
    path = tmp_path / "book.txt"
    path.write_text("\f".join(pages) + "\f", encoding="utf-8")
    read = read_book(path)
    assert [page.text for page in read.pages] == [
        "Chapter 1 Getting Started\n\nBuy the breakout on volume.",
        "Second page body.",
        "Chapter 2 Sizing\n\nRisk one percent.",
        "Last page body about breakout failures.",
    ]
    assert [page.chapter for page in read.pages] == [
        "Chapter 1 Getting Started",
        "Chapter 1 Getting Started",
        "Chapter 2 Sizing",
        "Chapter 2 Sizing",
    ]
    assert read.book.title == "book"


def test_text_without_form_feeds_uses_virtual_pages_at_paragraphs(tmp_path: Path) -> None:
    paragraphs = [f"P{index:02d} " + "x" * 395 for index in range(20)]  # 399 chars each
    path = tmp_path / "long_notes.txt"
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    read = read_book(path)
    # Each paragraph costs 400 characters of page budget: 7 fit in 3000, so 7 + 7 + 6.
    assert [len(page.text.split("\n\n")) for page in read.pages] == [7, 7, 6]
    assert "\n\n".join(page.text for page in read.pages) == "\n\n".join(paragraphs)
    assert read.book.title == "long notes"


def test_a_paragraph_on_one_huge_line_is_cut_into_pages(tmp_path: Path) -> None:
    words = [f"w{index:04d}" for index in range(2000)]  # 12,000 characters on one line
    path = tmp_path / "one_line.txt"
    path.write_text(" ".join(words), encoding="utf-8")
    read = read_book(path)
    assert len(read.pages) >= 4
    assert all(len(page.text) <= VIRTUAL_PAGE_CHARS for page in read.pages)
    assert " ".join(page.text for page in read.pages).split() == words


def test_text_encodings_and_binary_content(tmp_path: Path) -> None:
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\xe9 risk notes.".encode("cp1252"))
    assert read_book(latin).pages[0].text == "Café risk notes."
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffStops first.".encode())
    assert read_book(bom).pages[0].text == "Stops first."
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"abc\x00def")
    with pytest.raises(BookError, match="binary") as info:
        read_book(binary)
    assert str(binary) in str(info.value)
    blank = tmp_path / "blank.md"
    blank.write_text(" \n\n \t\n", encoding="utf-8")
    with pytest.raises(BookError, match="empty"):
        read_book(blank)


# Markdown ---------------------------------------------------------------------------------


def test_markdown_headings_give_chapters_and_markup_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "note.md"
    path.write_text(
        "---\nauthor: someone\n---\n"
        "# Squeeze Note\n\nIntro text.\n\n"
        "## Setup\n\nBands inside the **Keltner** channel, see [the docs](http://x.y).\n\n"
        "```\n# not a heading\n```\n\n"
        "## Entry\n\nBuy the `close` above the band.\n- first item\n- second item\n",
        encoding="utf-8",
    )
    read = read_book(path)
    (page,) = read.pages
    assert read.book.title == "Squeeze Note"
    assert page.text == (
        "Squeeze Note\n\nIntro text.\n\nSetup\n\n"
        "Bands inside the Keltner channel, see the docs.\n\n# not a heading\n\n"
        "Entry\n\nBuy the close above the band.\n- first item\n- second item"
    )
    # '##' is used twice, so sections are chapters; the single '#' title covers the intro.
    assert page.chapter == "Squeeze Note"
    assert [title for _, title in page.chapter_starts] == ["Setup", "Entry"]
    for offset, title in page.chapter_starts:
        assert page.text[offset:].startswith(title)
    assert page.chapter_at(page.text.index("Intro")) == "Squeeze Note"
    assert page.chapter_at(page.text.index("Keltner")) == "Setup"
    assert page.chapter_at(page.text.index("not a heading")) == "Setup"
    assert page.chapter_at(page.text.index("second item")) == "Entry"


# Discovery --------------------------------------------------------------------------------


def test_discover_books_is_sorted_recursive_and_skips_hidden(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for relative in ["b.pdf", "sub/c.TXT", ".hidden/d.md", ".e.md", "f.docx"]:
        (first / relative).parent.mkdir(parents=True, exist_ok=True)
        (first / relative).write_text("x")
    second.mkdir()
    (second / "g.markdown").write_text("x")
    found = discover_books([second, first, first / "b.pdf"])
    assert found == [first / "b.pdf", first / "sub" / "c.TXT", second / "g.markdown"]


def test_discover_books_rejects_missing_folders_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        discover_books([tmp_path / "nowhere"])
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.md").write_text(f"# {folder}")
    with pytest.raises(BookError, match="same file name"):
        discover_books([tmp_path / "x", tmp_path / "y"])
