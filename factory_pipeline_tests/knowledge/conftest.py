"""Shared helpers for the knowledge tests: a small builder for crafted PDF books.

Tests describe pages (header, body lines, footer, an image instead of text) and get a real PDF
written with pymupdf, so the reader is exercised on the same kind of files it meets in use.
Test modules import :class:`CraftedPage` and :func:`write_pdf` from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf

BODY_SIZE = 10.0
LEADING = 14.0


@dataclass
class CraftedPage:
    """A page to write. ``body`` lines are placed one per line; an empty string leaves a blank
    line (a paragraph break). ``heading`` is written large and bold above the body."""

    body: Sequence[str] = ()
    header: str | None = None
    header_right: str | None = None  # on the header's baseline, right-aligned
    footer: str | None = None
    heading: str | None = None
    image_only: bool = False
    extra: list[tuple[str, float]] = field(default_factory=list)  # (text, size) lines after body


def write_pdf(
    path: Path,
    pages: Sequence[CraftedPage],
    *,
    toc: list[list] | None = None,
    title: str = "",
    user_password: str | None = None,
) -> Path:
    """Write ``pages`` as a PDF at ``path`` (A5 pages, Helvetica)."""
    doc = pymupdf.open()
    for spec in pages:
        page = doc.new_page(width=420, height=595)
        if spec.header:
            page.insert_text((50, 36), spec.header, fontname="helv", fontsize=8)
        if spec.header_right:
            width = pymupdf.get_text_length(spec.header_right, fontname="helv", fontsize=8)
            page.insert_text((370 - width, 36), spec.header_right, fontname="helv", fontsize=8)
        if spec.footer:
            page.insert_text((200, 570), spec.footer, fontname="helv", fontsize=8)
        if spec.image_only:
            pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 16, 16), False)
            pixmap.clear_with(180)
            page.insert_image(pymupdf.Rect(60, 100, 360, 400), pixmap=pixmap)
        y = 80.0
        if spec.heading:
            page.insert_text((50, y), spec.heading, fontname="hebo", fontsize=16)
            y += 30.0
        for line in spec.body:
            if line:
                page.insert_text((50, y), line, fontname="helv", fontsize=BODY_SIZE)
            y += LEADING
        for text, size in spec.extra:
            y += size
            page.insert_text((50, y), text, fontname="hebo", fontsize=size)
            y += size * 1.5
    if toc:
        doc.set_toc(toc)
    doc.set_metadata({"title": title, "creationDate": "D:20260101000000Z"})
    if user_password:
        doc.save(
            path,
            encryption=pymupdf.PDF_ENCRYPT_AES_256,
            user_pw=user_password,
            owner_pw=user_password + "-owner",
        )
    else:
        doc.save(path, garbage=4, deflate=True, no_new_id=True)
    doc.close()
    return path
