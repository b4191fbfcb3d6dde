"""Read book files (PDF, plain text, Markdown) into clean, page-anchored text.

Why: every downstream artifact (segment, concept card, module) cites a book page, so a page
here must be exactly the page a reader sees, with its chapter, and free of the noise that
would otherwise pollute embeddings and quotes: running headers and footers, page numbers and
words broken across line ends. A file that cannot be read whole raises :class:`BookError`
naming the file; pages without text are flagged, never silently empty. The rules are written
down in docs/knowledge_ingestion.md.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf

from factory_pipeline.errors import BookError, ConfigError
from factory_pipeline.schemas import Book, Provenance, stable_id

#: File types read as books (compared case-insensitively).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".pdf", ".txt", ".md", ".markdown")
#: Size of a virtual page for text and Markdown files without form feeds.
VIRTUAL_PAGE_CHARS = 3000
#: Lines at the top and at the bottom of a page examined for running headers and footers.
ZONE_LINES = 2
#: A zone line is a running header/footer when it repeats on this share of pages (and >= 3).
RUNNING_LINE_SHARE = 0.3
#: Producer tag written into Book provenance; bump when the reading rules change.
READER_VERSION = "books.read_book v1"


@dataclass(frozen=True)
class Page:
    """One page of a book: 1-based physical page number, its chapter and its clean text.

    ``chapter`` is the chapter in effect at the start of the page (a chapter whose heading opens
    the page counts). ``chapter_starts`` lists chapters that begin later on this page, as
    (character offset in ``text``, title); :meth:`chapter_at` resolves an offset.
    """

    book_id: str
    page: int
    chapter: str
    text: str
    has_text_layer: bool
    chapter_starts: tuple[tuple[int, str], ...] = ()

    def chapter_at(self, offset: int) -> str:
        """The chapter in effect at character ``offset`` of this page's text."""
        chapter = self.chapter
        for start, title in self.chapter_starts:
            if start <= offset:
                chapter = title
        return chapter


@dataclass(frozen=True)
class BookRead:
    """A book document plus its pages, in page order."""

    book: Book
    pages: list[Page]


def read_book(path: Path) -> BookRead:
    """Read a .pdf, .txt or .md file into clean pages.

    Raises :class:`BookError` naming the file when it is missing, empty, of an unsupported type,
    corrupt, truncated, damaged (repaired by the PDF reader), encrypted, or has no text at all.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise BookError(
            f"{path}: unsupported book file type {suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BookError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if not data.strip():
        raise BookError(f"{path}: the file is empty")
    content_hash = content_hash_of(data)
    book_id = book_id_for(path, content_hash)

    raw = _read_pdf(path, data) if suffix == ".pdf" else _read_text(path, data, suffix)
    pages = _assemble_pages(book_id, raw)
    flags = [f"no_text_layer:p{page.page}" for page in pages if not page.has_text_layer]
    if not any(page.has_text_layer for page in pages):
        raise BookError(
            f"{path}: none of its {len(pages)} page(s) has a text layer "
            "(scanned or image-only?); run OCR on it first"
        )
    book = Book(
        id=book_id,
        path=str(path),
        title=raw.title or _title_from_file_name(path),
        content_hash=content_hash,
        pages=len(pages),
        status="ingested",
        flags=flags,
        provenance=Provenance(source=READER_VERSION, book_ids=[book_id]),
    )
    return BookRead(book=book, pages=pages)


def discover_books(folders: Sequence[Path]) -> list[Path]:
    """Book files (.pdf, .txt, .md, .markdown) under ``folders``, recursively, sorted by path.

    Hidden files and folders (name starting with ".") are skipped. A path to a file is taken as
    one book. Raises ConfigError for a missing folder and BookError when two different
    files share a file name (the book id is derived from the file name).
    """
    found: dict[Path, Path] = {}  # resolved path -> path as given, to drop duplicates
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            if folder.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise BookError(f"{folder}: unsupported book file type {folder.suffix!r}")
            found.setdefault(folder.resolve(), folder)
            continue
        if not folder.is_dir():
            raise ConfigError(f"books folder {folder} does not exist")
        for candidate in folder.rglob("*"):
            relative = candidate.relative_to(folder)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if candidate.is_file() and candidate.suffix.lower() in SUPPORTED_SUFFIXES:
                found.setdefault(candidate.resolve(), candidate)
    paths = sorted(found.values(), key=lambda p: p.as_posix())
    by_name: dict[str, Path] = {}
    for book_path in paths:
        if book_path.name in by_name:
            raise BookError(
                f"{book_path}: same file name as {by_name[book_path.name]}; "
                "book ids come from file names, so rename one of them"
            )
        by_name[book_path.name] = book_path
    return paths


def book_id_for(path: Path, content_hash: str = "") -> str:
    """Stable id of a book: derived from its file name only.

    The id names the book, not one version of its bytes: an edited file keeps its id, so its
    segments replace the old ones and pages that did not change keep their segment ids (those
    carry the page text hash). ``content_hash`` is recorded on the Book document and is
    deliberately not part of the id.
    """
    del content_hash  # see docstring: identity is the file name, the version is the hash
    return stable_id("book", Path(path).name)


def content_hash_of(data: bytes) -> str:
    """SHA-256 hex digest of a file's bytes: the version of a book."""
    return hashlib.sha256(data).hexdigest()


def failed_book(path: Path, error: Exception) -> Book:
    """A Book document with status "failed" recording why ``path`` could not be read."""
    path = Path(path)
    try:
        content_hash = content_hash_of(path.read_bytes())
    except OSError:
        content_hash = ""
    book_id = book_id_for(path, content_hash)
    return Book(
        id=book_id,
        path=str(path),
        title=_title_from_file_name(path),
        content_hash=content_hash,
        pages=0,
        status="failed",
        error=str(error),
        provenance=Provenance(source=READER_VERSION, book_ids=[book_id]),
    )


# --------------------------------------------------------------------------------------------
# Intermediate representation shared by all formats
# --------------------------------------------------------------------------------------------


@dataclass
class _Line:
    """One text line in reading order, before cleaning."""

    text: str
    paragraph_start: bool = False
    chapter: str | None = None  # set when this line is a chapter heading
    continues_heading: bool = False  # second line of a heading wrapped over two lines
    baseline: float = 0.0  # PDF only: baseline y, used to merge pieces of one visual line
    right: float = 0.0
    size: float = 0.0


@dataclass
class _RawPage:
    lines: list[_Line]


@dataclass
class _RawBook:
    title: str
    pages: list[_RawPage]
    #: Outline chapters (PDF): 1-based page -> titles starting on that page, in order.
    outline: dict[int, list[str]] = field(default_factory=dict)
    #: Whether pages are real pages (PDF, form feeds) whose zones may hold running lines.
    paged: bool = True


# --------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------

_PDF_TEXT_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
_HEADING_SIZE_RATIO = 1.2
_CHAPTER_LINE_RE = re.compile(
    r"^(chapter|part)\s+([0-9]+|[ivxlc]+|one|two|three|four|five|six|seven|eight|nine|ten)\b",
    re.IGNORECASE,
)


def _read_pdf(path: Path, data: bytes) -> _RawBook:
    """Extract lines per page with pymupdf, mapping its failure modes to BookError."""
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except pymupdf.EmptyFileError as exc:
        raise BookError(f"{path}: the PDF is empty") from exc
    except RuntimeError as exc:  # FileDataError and other MuPDF errors
        raise BookError(f"{path}: not a readable PDF (corrupt or not a PDF: {exc})") from exc
    with doc:
        if doc.needs_pass:
            raise BookError(f"{path}: the PDF is encrypted (a password is required to read it)")
        try:
            page_count = doc.page_count
        except RuntimeError as exc:
            raise BookError(
                f"{path}: truncated or damaged PDF (page tree unreadable: {exc})"
            ) from exc
        if doc.is_repaired:
            raise BookError(
                f"{path}: damaged PDF (MuPDF had to rebuild its structure, so text may be "
                "missing); re-export or re-download the file"
            )
        if page_count == 0:
            raise BookError(f"{path}: the PDF has no pages")
        try:
            title = (doc.metadata or {}).get("title", "") or ""
            outline = _pdf_outline(doc.get_toc(simple=True), page_count)
        except RuntimeError as exc:
            raise BookError(f"{path}: the PDF outline cannot be read ({exc})") from exc
        pages = []
        for index in range(page_count):
            try:
                content = doc[index].get_text("dict", flags=_PDF_TEXT_FLAGS, sort=True)
            except RuntimeError as exc:
                raise BookError(f"{path}: page {index + 1} cannot be read ({exc})") from exc
            pages.append(_RawPage(_pdf_lines(content)))
        if doc.is_repaired:
            raise BookError(f"{path}: damaged PDF (repaired while reading pages); text may be lost")
    raw = _RawBook(title=_clean_inline(title), pages=pages, outline=outline)
    if not outline:
        _mark_pdf_headings(raw)
    return raw


def _pdf_outline(toc: list[list], page_count: int) -> dict[int, list[str]]:
    """Level-1 outline entries by 1-based page (entries pointing outside the file are ignored)."""
    outline: dict[int, list[str]] = {}
    for entry in toc:
        level, title, page = int(entry[0]), _clean_inline(str(entry[1])), int(entry[2])
        if level == 1 and title and 1 <= page <= page_count:
            outline.setdefault(page, []).append(title)
    return outline


def _pdf_lines(content: dict) -> list[_Line]:
    """Text lines in reading order; pieces sharing a baseline become one line.

    A line starts a paragraph when its distance from the previous line exceeds both 1.25 x the
    page's line pitch (its most common line gap) and 1.55 x the font size, or when it opens a
    new text block, starts with a non-lower-case character and follows either a line ending a
    sentence or a line in another font size (a heading). A block that continues a sentence,
    such as an indented list item wrapped onto a second line, stays in its paragraph.
    """
    lines: list[_Line] = []
    opens_block: list[bool] = []
    for block in content.get("blocks", []):
        if block.get("type") != 0:
            continue
        new_block = True
        for raw_line in block.get("lines", []):
            spans = raw_line.get("spans", [])
            text = _clean_inline("".join(span.get("text", "") for span in spans))
            if not text:
                continue
            x0, _, x1, baseline = raw_line["bbox"]
            size = max(
                (span.get("size", 0.0) for span in spans if span.get("text", "").strip()),
                default=0.0,
            )
            previous = lines[-1] if lines else None
            if (
                previous is not None
                and abs(previous.baseline - baseline) <= 2.0
                and x0 >= previous.right - 1.0
            ):
                previous.text = f"{previous.text} {text}"
                previous.right = x1
                previous.size = max(previous.size, size)
                continue
            lines.append(_Line(text=text, baseline=baseline, right=x1, size=size))
            opens_block.append(new_block)
            new_block = False
    gaps = [b.baseline - a.baseline for a, b in zip(lines, lines[1:], strict=False)]
    positive = [gap for gap in gaps if gap > 0]
    # The line pitch is the most common gap (rounded to 0.5 pt, smallest on ties, seen at least
    # twice): the median is pulled up on pages full of spaced list items.
    rounded = Counter(round(gap * 2) / 2 for gap in positive)
    pitch = min(rounded, key=lambda gap: (-rounded[gap], gap)) if rounded else None
    if pitch is not None and rounded[pitch] < 2:
        pitch = None  # no gap repeats: too few lines to know the pitch
    for i, line in enumerate(lines):
        if i == 0:
            line.paragraph_start = True
            continue
        previous, gap = lines[i - 1], gaps[i - 1]
        wide_gap = gap <= 0 or (
            gap > 1.55 * max(previous.size, line.size) and (pitch is None or gap > 1.25 * pitch)
        )
        closes_sentence = previous.text.endswith((".", "!", "?", ":", ";", '"', "'", ")"))
        size_change = abs(previous.size - line.size) >= 0.5
        line.paragraph_start = wide_gap or (
            opens_block[i] and not line.text[0].islower() and (closes_sentence or size_change)
        )
    return lines


def _mark_pdf_headings(raw: _RawBook) -> None:
    """Chapters from typography when a PDF has no outline.

    Body size = the font size carrying most characters. Heading candidates are short lines at
    >= 1.2 x body size. The chapter size is the largest candidate size found on >= 2 pages (or
    the largest at all); lines of that size are chapter headings, consecutive ones are joined.
    """
    weights: Counter[float] = Counter()
    for page in raw.pages:
        for line in page.lines:
            weights[round(line.size, 1)] += len(line.text)
    if not weights:
        return
    body_size = weights.most_common(1)[0][0]
    pages_by_size: dict[float, set[int]] = {}
    for index, page in enumerate(raw.pages):
        for line in page.lines:
            if _is_heading_candidate(line, body_size):
                pages_by_size.setdefault(round(line.size, 1), set()).add(index)
    if not pages_by_size:
        for page in raw.pages:
            for line in page.lines:
                if (
                    _CHAPTER_LINE_RE.match(line.text)
                    and len(line.text) <= 80
                    and line.paragraph_start
                ):
                    line.chapter = line.text
        return
    repeated = [size for size, pages in pages_by_size.items() if len(pages) >= 2]
    chapter_size = max(repeated) if repeated else max(pages_by_size)
    for page in raw.pages:
        previous: _Line | None = None
        for line in page.lines:
            is_chapter = (
                _is_heading_candidate(line, body_size) and abs(line.size - chapter_size) <= 0.5
            )
            if is_chapter and previous is not None and not line.paragraph_start:
                previous.chapter = f"{previous.chapter} {line.text}"
                line.continues_heading = True
                continue  # ``previous`` stays the heading's first line
            if is_chapter:
                line.chapter = line.text
            previous = line if is_chapter else None


def _is_heading_candidate(line: _Line, body_size: float) -> bool:
    return (
        line.size >= _HEADING_SIZE_RATIO * body_size
        and len(line.text) <= 120
        and any(ch.isalpha() for ch in line.text)
    )


# --------------------------------------------------------------------------------------------
# Plain text and Markdown
# --------------------------------------------------------------------------------------------

_ATX_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT_RE = re.compile(r"^(=+|-+)\s*$")
_FENCE_RE = re.compile(r"^(```|~~~)")
_LIST_OR_TABLE_RE = re.compile(r"^([-*+]\s|\d+[.)]\s|>|\|)")


def _read_text(path: Path, data: bytes, suffix: str) -> _RawBook:
    """Decode a text file and split it into pages (form feeds, else virtual pages)."""
    if b"\x00" in data:
        raise BookError(f"{path}: binary content (NUL bytes) in a {suffix} file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise BookError(f"{path}: not UTF-8 or Windows-1252 text (byte {exc.start})") from exc
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    markdown = suffix in (".md", ".markdown")
    if markdown:
        text = _strip_front_matter(text)
    paged = "\f" in text
    lines: list[_Line] = []
    for index, page_text in enumerate(text.split("\f") if paged else [text]):
        if index:
            lines.append(_Line(text="\f"))
        lines.extend(_markdown_lines(page_text) if markdown else _text_lines(page_text))
    if not any(line.text not in ("", "\f") for line in lines):
        raise BookError(f"{path}: the file has no text")
    title = ""
    if markdown:
        title = next((line.chapter or "" for line in lines if line.chapter and line.size == 1), "")
        _assign_markdown_chapters(lines)
    pages = _split_form_feeds(lines) if paged else _virtual_pages(lines)
    return _RawBook(title=title, pages=pages, paged=paged)


def _text_lines(text: str) -> list[_Line]:
    """Lines of a .txt file; chapter headings are short 'Chapter N ...' paragraphs or
    setext-underlined lines."""
    raw = text.split("\n")
    lines: list[_Line] = []
    blank_before = True
    for index, source in enumerate(raw):
        stripped = _clean_inline(source)
        if not stripped:
            blank_before = True
            continue
        if _SETEXT_RE.match(stripped) and lines and not blank_before:
            lines[-1].chapter = lines[-1].text
            lines[-1].paragraph_start = True
            blank_before = True
            continue
        next_blank = index + 1 >= len(raw) or not raw[index + 1].strip()
        line = _Line(text=stripped, paragraph_start=blank_before)
        if blank_before and next_blank and len(stripped) <= 80 and _CHAPTER_LINE_RE.match(stripped):
            line.chapter = stripped
        lines.append(line)
        blank_before = False
    return lines


def _markdown_lines(text: str) -> list[_Line]:
    """Lines of a Markdown file with light markup removal; ATX and setext headings are kept
    as their own paragraphs with their level in ``size`` (1 = '#')."""
    lines: list[_Line] = []
    blank_before = True
    in_fence = False
    for source in text.split("\n"):
        if _FENCE_RE.match(source.strip()):
            in_fence = not in_fence
            blank_before = True
            continue
        if in_fence:
            if source.strip():
                lines.append(_Line(text=source.rstrip(), paragraph_start=blank_before))
                blank_before = False
            continue
        stripped = source.strip()
        if not stripped:
            blank_before = True
            continue
        heading = _ATX_HEADING_RE.match(stripped)
        if heading:
            title = _strip_markdown_inline(heading.group(2))
            lines.append(
                _Line(text=title, paragraph_start=True, chapter=title, size=len(heading.group(1)))
            )
            blank_before = True
            continue
        setext = _SETEXT_RE.match(stripped)
        if setext and lines and not blank_before:
            level = 1 if setext.group(1).startswith("=") else 2
            lines[-1].chapter, lines[-1].size, lines[-1].paragraph_start = (
                lines[-1].text,
                level,
                True,
            )
            blank_before = True
            continue
        lines.append(_Line(text=_strip_markdown_inline(stripped), paragraph_start=blank_before))
        blank_before = False
    return lines


def _assign_markdown_chapters(lines: list[_Line]) -> None:
    """Keep as chapter headings only levels up to the chapter level.

    Chapter level = the smallest heading level used at least twice (a single '#' title over
    several '##' sections makes the sections chapters), else the smallest level present.
    """
    levels = Counter(int(line.size) for line in lines if line.chapter)
    if not levels:
        return
    repeated = [level for level, count in levels.items() if count >= 2]
    chapter_level = min(repeated) if repeated else min(levels)
    for line in lines:
        if line.chapter and line.size > chapter_level:
            line.chapter = None


def _strip_front_matter(text: str) -> str:
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            return text[text.find("\n", end + 1) + 1 :] if "\n" in text[end + 1 :] else ""
    return text


_MD_IMAGE_RE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK_RE = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_EMPHASIS_RE = re.compile(r"(\*\*|__|\*|_)(?=\S)(.+?)(?<=\S)\1")
_MD_CODE_RE = re.compile(r"`([^`]*)`")
_MD_COMMENT_RE = re.compile(r"<!--.*?-->")


def _strip_markdown_inline(text: str) -> str:
    """Links and images become their text, emphasis and code markers are dropped."""
    text = _MD_COMMENT_RE.sub("", text)
    text = _MD_IMAGE_RE.sub(r"\1", text)
    text = _MD_LINK_RE.sub(r"\1", text)
    text = _MD_CODE_RE.sub(r"\1", text)
    text = _MD_EMPHASIS_RE.sub(r"\2", text)
    return _clean_inline(text)


def _split_form_feeds(lines: list[_Line]) -> list[_RawPage]:
    pages: list[_RawPage] = [_RawPage([])]
    for line in lines:
        if line.text == "\f":
            pages.append(_RawPage([]))
        else:
            pages[-1].lines.append(line)
    while len(pages) > 1 and not pages[-1].lines:
        pages.pop()  # a trailing form feed does not start a page
    return pages


def _virtual_pages(lines: list[_Line]) -> list[_RawPage]:
    """Pages of about VIRTUAL_PAGE_CHARS characters, cut at paragraph starts when possible."""
    pages: list[_RawPage] = [_RawPage([])]
    size = 0
    for line in _split_long_lines(lines, VIRTUAL_PAGE_CHARS // 2):
        length = len(line.text) + 1
        full = size + length > VIRTUAL_PAGE_CHARS and pages[-1].lines
        if full and (line.paragraph_start or size >= VIRTUAL_PAGE_CHARS // 2):
            pages.append(_RawPage([]))
            size = 0
        pages[-1].lines.append(line)
        size += length
    return pages


def _split_long_lines(lines: list[_Line], limit: int) -> list[_Line]:
    """Cut lines longer than ``limit`` at whitespace (a paragraph stored on one line)."""
    result: list[_Line] = []
    for line in lines:
        text, first = line.text, True
        while len(text) > limit:
            cut = text.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            result.append(
                _Line(text=text[:cut].rstrip(), paragraph_start=line.paragraph_start and first)
            )
            text, first = text[cut:].lstrip(), False
        if first:
            result.append(line)
        elif text:
            result.append(_Line(text=text))
    return result


# --------------------------------------------------------------------------------------------
# Cleaning and assembly (all formats)
# --------------------------------------------------------------------------------------------

_PAGE_NUMBER_RE = re.compile(
    r"^(?:page\s+)?[-\u2013\u2014\s]*"
    r"(\d{1,4}|(?=[ivxlcdm])m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3}))"
    r"(?:\s*(?:of|/)\s*\d{1,4})?[-\u2013\u2014\s]*$",
    re.IGNORECASE,
)
_HYPHENS_AT_END = ("-", "\u2010", "\u00ad")
_WORD_RE = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


def _assemble_pages(book_id: str, raw: _RawBook) -> list[Page]:
    """Clean every page and resolve chapters; the order of steps matters:
    running lines are removed first, then the hyphenation vocabulary is built from what remains."""
    if raw.paged:
        _remove_running_lines(raw)
    vocabulary = _Vocabulary.from_pages(raw.pages)
    pages: list[Page] = []
    current_chapter = ""
    for number, raw_page in enumerate(raw.pages, start=1):
        text, heading_offsets = _join_lines(raw_page.lines, vocabulary)
        marks = list(heading_offsets)
        for title in raw.outline.get(number, []):
            marks.append((_find_heading(text, title), title))
        marks.sort(key=lambda mark: mark[0])
        chapter_at_start = current_chapter
        later: list[tuple[int, str]] = []
        for offset, title in marks:
            if offset == 0:
                chapter_at_start = title
            else:
                later.append((offset, title))
        if marks:
            current_chapter = marks[-1][1]
        has_text = bool(text.strip())
        pages.append(
            Page(
                book_id=book_id,
                page=number,
                chapter=chapter_at_start,
                text=text,
                has_text_layer=has_text,
                chapter_starts=tuple(later),
            )
        )
    return pages


def _remove_running_lines(raw: _RawBook) -> None:
    """Drop page numbers and running headers/footers from the top and bottom zones of pages.

    The zones are the first and the last ZONE_LINES lines of a page. A zone line is dropped when
    - it is a page number ("7", "vii", "Page 7", "Page 7 of 20", "- 7 -", "7/20"), or
    - its key (lower case, punctuation removed, digit runs as '#') occurs in the same zone on at
      least max(3, 30% of pages) pages and, when the key holds digits, either the same text
      repeats that often ("Edition 2026") or one of its numbers follows the page number with a
      fixed offset on that many pages ("Trend Notes 7"): numbered body lines such as
      "Exercise 12" at the top of pages stay, or
    - it equals an outline title that occurs in zones on >= 2 pages (a chapter running header),
      except on the page where that chapter starts (there it is the heading).
    """
    threshold = max(3, math.ceil(RUNNING_LINE_SHARE * len(raw.pages)))
    entries: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
    zone_pages_by_key: dict[str, set[int]] = {}
    for index, page in enumerate(raw.pages):
        for zone, line_indexes in _zones(page).items():
            for i in line_indexes:
                text = page.lines[i].text
                key = _running_key(text)
                entries.setdefault((zone, key), []).append((index, i, text))
                zone_pages_by_key.setdefault(key, set()).add(index)
    running: set[tuple[int, int]] = set()
    for (_, key), items in entries.items():
        running.update(_running_occurrences(key, items, threshold))
    chapter_start_page = {
        _running_key(title): number - 1
        for number, titles in raw.outline.items()
        for title in titles
    }
    for index, page in enumerate(raw.pages):
        drop: set[int] = set()
        for line_indexes in _zones(page).values():
            for i in line_indexes:
                text = page.lines[i].text
                key = _running_key(text)
                chapter_header = (
                    key in chapter_start_page
                    and len(zone_pages_by_key[key]) >= 2
                    and chapter_start_page[key] != index
                )
                if _PAGE_NUMBER_RE.match(text) or (index, i) in running or chapter_header:
                    drop.add(i)
        if drop:
            kept = [line for i, line in enumerate(page.lines) if i not in drop]
            if kept and min(drop) == 0:
                kept[0].paragraph_start = True
            page.lines = kept


def _zones(page: _RawPage) -> dict[str, list[int]]:
    count = len(page.lines)
    top = list(range(min(ZONE_LINES, count)))
    bottom = [i for i in range(max(0, count - ZONE_LINES), count) if i not in top]
    return {"top": top, "bottom": bottom}


def _running_occurrences(
    key: str, items: list[tuple[int, int, str]], threshold: int
) -> set[tuple[int, int]]:
    """(page index, line index) of the occurrences of one zone key that are running lines."""
    if len({index for index, _, _ in items}) < threshold:
        return set()
    if "#" not in key:
        return {(index, i) for index, i, _ in items}
    found: set[tuple[int, int]] = set()
    pages_by_text: dict[str, set[int]] = {}
    for index, _, text in items:
        pages_by_text.setdefault(text, set()).add(index)
    found.update((index, i) for index, i, text in items if len(pages_by_text[text]) >= threshold)
    pages_by_offset: dict[int, set[int]] = {}
    for index, _, text in items:
        for number in _numbers(text):
            pages_by_offset.setdefault(number - (index + 1), set()).add(index)
    offset = max(pages_by_offset, key=lambda d: (len(pages_by_offset[d]), -abs(d)), default=None)
    if offset is not None and len(pages_by_offset[offset]) >= threshold:
        found.update((index, i) for index, i, text in items if index + 1 + offset in _numbers(text))
    return found


def _numbers(text: str) -> set[int]:
    return {int(digits) for digits in re.findall(r"\d{1,6}", text)}


def _running_key(text: str) -> str:
    key = re.sub(r"\d+", "#", text.lower())
    key = re.sub(r"[^\w#]+", " ", key)
    return " ".join(key.split())


@dataclass
class _Vocabulary:
    """Words and hyphenated compounds seen inside lines (not at line-end breaks) of one book."""

    words: set[str]
    compounds: set[str]

    @classmethod
    def from_pages(cls, pages: list[_RawPage]) -> _Vocabulary:
        words: set[str] = set()
        compounds: set[str] = set()
        for page in pages:
            lines = page.lines
            for i, line in enumerate(lines):
                tokens = _WORD_RE.findall(line.text)
                if tokens and line.text.endswith(_HYPHENS_AT_END):
                    tokens = tokens[:-1]  # a fragment before a line-end hyphen
                if (
                    tokens
                    and i > 0
                    and lines[i - 1].text.endswith(_HYPHENS_AT_END)
                    and not line.paragraph_start
                ):
                    tokens = tokens[1:]  # the fragment after it
                for token in tokens:
                    lowered = token.lower()
                    if "-" in lowered:
                        compounds.add(lowered)
                        words.update(lowered.split("-"))
                    else:
                        words.add(lowered)
        return cls(words=words, compounds=compounds)

    def join_hyphenated(self, left: str, right: str) -> bool:
        """True to join "left-|right" into one word, False to keep the hyphen.

        In order: keep when "left-right" occurs elsewhere in the book; join when "leftright"
        occurs elsewhere; keep when both halves occur as words elsewhere; otherwise join.
        """
        left_word, right_word = left.lower(), right.lower()
        if f"{left_word}-{right_word}" in self.compounds:
            return False
        if left_word + right_word in self.words:
            return True
        return not (left_word in self.words and right_word in self.words)


def _join_lines(lines: list[_Line], vocabulary: _Vocabulary) -> tuple[str, list[tuple[int, str]]]:
    """Page text: lines of a paragraph joined by spaces (repairing line-end hyphenation),
    paragraphs by a blank line; list items and table rows keep their own line.
    Returns the text and the offsets of chapter headings found in the lines."""
    parts: list[str] = []
    heading_offsets: list[tuple[int, str]] = []
    length = 0
    for i, line in enumerate(lines):
        text = line.text
        if line.continues_heading:
            separator = " "
        elif i == 0 or line.paragraph_start or line.chapter or _is_heading(lines[i - 1]):
            separator = "\n\n" if parts else ""
        elif _LIST_OR_TABLE_RE.match(text):
            separator = "\n"
        else:
            separator = _line_end_separator(parts[-1], text, vocabulary)
            if separator is None:  # drop the hyphen at the end of the previous part
                parts[-1] = parts[-1][:-1]
                length -= 1
                separator = ""
        if line.chapter:
            heading_offsets.append((length + len(separator), line.chapter))
        parts.append(separator)
        parts.append(text)
        length += len(separator) + len(text)
    return "".join(parts), heading_offsets


def _is_heading(line: _Line) -> bool:
    return line.chapter is not None or line.continues_heading


def _line_end_separator(previous: str, following: str, vocabulary: _Vocabulary) -> str | None:
    """What joins two lines of one paragraph: " ", "" (keep the hyphen), or None (drop it)."""
    if not previous.endswith(_HYPHENS_AT_END):
        return " "
    if previous.endswith("\u00ad"):
        return None  # a soft hyphen is a line-break hyphen by definition
    before = previous[:-1]
    left_match = re.search(r"([^\W\d_]+)$", before)
    right_match = re.match(r"([^\W\d_]+)", following)
    if not left_match:
        return " " if before.endswith(" ") else ""  # a dash, or a numeric range like "10-"
    if not right_match or following[0].isupper():
        return ""  # "Bollinger-" + "Band", "RSI-" + "2": keep the hyphen
    return None if vocabulary.join_hyphenated(left_match.group(1), right_match.group(1)) else ""


def _find_heading(text: str, title: str) -> int:
    """Offset of an outline title in the page text; 0 when it is not found (assume top)."""
    pattern = r"(?:^|\n\n)(" + re.escape(title).replace(r"\ ", r"\s+") + ")"
    match = re.search(pattern, text, re.IGNORECASE)
    return match.start(1) if match else 0


def _clean_inline(text: str) -> str:
    """NFKC (expands ligatures), non-breaking spaces to spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u00a0", " ").replace("\t", " ")
    return " ".join(text.split())


def _title_from_file_name(path: Path) -> str:
    return " ".join(re.split(r"[_\-\s]+", Path(path).stem)).strip()
