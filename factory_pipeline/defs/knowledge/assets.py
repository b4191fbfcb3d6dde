"""Knowledge track assets: book pages -> segments (DuckDB + Qdrant) -> concept cards -> modules.

Thin shell over factory_pipeline.knowledge: resolve the book file of a partition, call the core,
write through DocumentStore and VectorIndex, attach UI metadata. Each book is its own partition
(and, when the sensor or a UI backfill launches it, its own run), so one unreadable book fails
only its own step. Writes replace exactly what an asset owns: a book's segments and points, the
whole concept set, the proposed modules, the library modules. Qdrant is written before DuckDB,
because embedding is the step most likely to fail (an endpoint down), and a failed step then
leaves the store as it was. Semantics in docs/knowledge_assets.md.
"""

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from factory_pipeline.defs.knowledge.partitions import BOOKS_PARTITIONS_NAME, books_partitions
from factory_pipeline.defs.knowledge.resources import KnowledgeResource
from factory_pipeline.defs.resources import (
    EmbeddingsResource,
    FactoryStoreResource,
    LLMResource,
    VectorIndexResource,
)
from factory_pipeline.defs.ui import table
from factory_pipeline.errors import BookError, FactoryError
from factory_pipeline.knowledge.books import (
    BookRead,
    book_id_for,
    discover_books,
    failed_book,
    read_book,
)
from factory_pipeline.knowledge.chunking import chunk_pages
from factory_pipeline.knowledge.concepts import extract_concepts
from factory_pipeline.knowledge.index import CONCEPTS, MODULES, SEGMENTS
from factory_pipeline.knowledge.proposals import propose_modules
from factory_pipeline.schemas import Book, KbConcept, KbSegment, ModuleDoc
from factory_pipeline.store import DocumentStore
from factory_pipeline.strategy.modules import load_module_library

KNOWLEDGE_GROUP = "knowledge"
STRATEGY_GROUP = "strategy"
#: ``partition_key`` of the rows each unpartitioned asset owns in its document table.
CONCEPTS_PARTITION = "kb_concepts"
PROPOSED_MODULES_PARTITION = "proposed"
LIBRARY_MODULES_PARTITION = "library"
#: Characters of the first page shown in the book_pages preview.
PREVIEW_CHARS = 1500
#: Concept cards shown in full in the kb_concepts metadata.
SAMPLE_CARDS = 3

#: Re-run when any book's segments change, even while some book is missing its segments (a
#: failed book must not block the others' concepts); never while a book is being ingested.
REBUILD_ON_NEW_SEGMENTS = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
)

#: Build once on a fresh deployment (``on_missing`` skips assets missing when it is first
#: evaluated) and again whenever the rows are gone; a failed run is not retried every tick.
BUILD_WHEN_MISSING = (
    dg.AutomationCondition.missing()
    & ~dg.AutomationCondition.in_progress()
    & ~dg.AutomationCondition.execution_failed()
).with_label("missing, not in progress, not failed")


@dg.asset(
    partitions_def=books_partitions,
    pool="duckdb",
    group_name=KNOWLEDGE_GROUP,
    kinds={"duckdb"},
    description=(
        "One book file (PDF, text or Markdown) read into clean, page-anchored text: running "
        "headers/footers and page numbers removed, hyphenation joined, chapters found. Stores "
        "the Book document (id from the file name, content hash, pages, flags for pages without "
        "a text layer). An unreadable file is recorded as a failed Book with the reason and "
        "fails only its own partition."
    ),
)
def book_pages(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    knowledge: KnowledgeResource,
) -> dg.MaterializeResult:
    docs = DocumentStore(factory_store.store())
    reads: list[BookRead] = []
    failures: list[str] = []
    for book_id in context.partition_keys:
        path = book_path(knowledge, book_id)
        try:
            read = read_book(path)
        except BookError as exc:  # a file the user must fix; the other books go on
            docs.upsert([failed_book(path, exc)], partition_key=book_id)
            failures.append(one_line(str(exc)))
            context.log.error(failures[-1])
            continue
        docs.upsert([read.book], partition_key=book_id)
        reads.append(read)
        context.log.info(f"{path}: {read.book.pages} page(s) read as {book_id}")
    if failures:
        raise dg.Failure(
            description="; ".join(failures),
            metadata={"failed_books": len(failures), "ingested_books": len(reads)},
            allow_retries=False,
        )
    return dg.MaterializeResult(metadata=_pages_metadata(reads))


@dg.asset(
    partitions_def=books_partitions,
    deps=[book_pages],
    pool="qdrant",
    group_name=KNOWLEDGE_GROUP,
    kinds={"duckdb", "qdrant"},
    description=(
        "The book's pages split into sentence-aligned segments of at most ~800 characters, each "
        "an exact slice of one page (book, page, offset) with a stable id and ontology tags. "
        "Replaces the book's segments in DuckDB and its points in the Qdrant kb_segments "
        "collection (dense + BM25 vectors); other books are untouched."
    ),
)
def kb_segments(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    vector_index: VectorIndexResource,
    embeddings: EmbeddingsResource,
    knowledge: KnowledgeResource,
) -> dg.MaterializeResult:
    docs = DocumentStore(factory_store.store())
    by_book: dict[str, list[KbSegment]] = {}
    for book_id in context.partition_keys:
        by_book[book_id] = chunk_pages(
            _current_read(docs, knowledge, book_id),
            chunk_size=knowledge.chunk_size,
            overlap=knowledge.chunk_overlap,
        )
    vectors = 0
    with vector_index.open(embeddings.build()) as index:
        for book_id, segments in by_book.items():
            vectors += index.replace_book(book_id, segments)
        points_total = index.count(SEGMENTS)
    for book_id, segments in by_book.items():
        docs.replace_partition(KbSegment, book_id, segments)
        context.log.info(f"{book_id}: {len(segments)} segment(s) stored and indexed")
    segments = [s for group in by_book.values() for s in group]
    tags = Counter(tag for s in segments for tag in s.tags)
    return dg.MaterializeResult(
        metadata={
            "segments": len(segments),
            "pages_with_segments": len({(s.book_id, s.page) for s in segments}),
            "untagged_segments": sum(1 for s in segments if not s.tags),
            "mean_segment_chars": round(
                sum(len(s.text) for s in segments) / max(len(segments), 1), 1
            ),
            "vectors_written": vectors,
            "points_in_collection": points_total,
            "tags": table(
                [{"tag": tag, "segments": n} for tag, n in sorted(tags.items(), key=_by_count)],
                columns=["tag", "segments"],
            ),
        }
    )


@dg.asset(
    deps=[kb_segments],
    pool="qdrant",
    group_name=KNOWLEDGE_GROUP,
    kinds={"duckdb", "qdrant"},
    automation_condition=REBUILD_ON_NEW_SEGMENTS,
    description=(
        "Concept cards extracted by the configured LLM (offline by default) from the segments of "
        "every readable book, each with evidence quotes verified against the cited segment, "
        "merged across books. Replaces the whole concept set (ids are content-derived, so an "
        "unchanged corpus keeps its ids) and its Qdrant points. Also forgets books whose file "
        "was removed or no longer reads: their segments and vectors are deleted here."
    ),
)
def kb_concepts(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    vector_index: VectorIndexResource,
    embeddings: EmbeddingsResource,
    llm: LLMResource,
) -> dg.MaterializeResult:
    store = factory_store.store()
    docs = DocumentStore(store)
    live = set(context.instance.get_dynamic_partitions(BOOKS_PARTITIONS_NAME))
    books = docs.list(Book)
    if books and not live:
        raise dg.Failure(
            description=(
                "no `books` partition is registered in this Dagster instance although the store "
                f"holds {len(books)} book(s): let the books sensor run (or `factory run`) first; "
                "refusing to treat every book as removed"
            ),
            allow_retries=False,
        )
    readable = sorted(b.id for b in books if b.status == "ingested" and b.id in live)
    removed = sorted(b.id for b in books if b.id not in live)
    stale = sorted(set(docs.counts_by(KbSegment, "book_id")) - set(readable))
    segments = docs.list(KbSegment, {"book_id": readable}) if readable else []
    try:
        result = extract_concepts(segments, llm.build(store))
    except FactoryError as exc:  # LLMError / ConfigError: the backend, not the data
        raise dg.Failure(description=one_line(str(exc)), allow_retries=False) from exc
    old_ids = {c.id for c in docs.list(KbConcept, {"partition_key": CONCEPTS_PARTITION})}
    new_ids = {c.id for c in result.concepts}
    with vector_index.open(embeddings.build()) as index:
        vectors = index.upsert_concepts(result.concepts)
        for book_id in stale:
            index.delete_by_book(book_id)
        docs.replace_partition(KbConcept, CONCEPTS_PARTITION, result.concepts)
        for book_id in stale:
            docs.replace_partition(KbSegment, book_id, [])
        for book_id in removed:
            docs.replace_partition(Book, book_id, [])
        index.delete_ids(CONCEPTS, old_ids - new_ids)
    if stale or removed:
        context.log.info(f"forgot segments of {stale} and Book rows of removed files {removed}")
    return dg.MaterializeResult(
        metadata={
            "books": len(readable),
            "books_failed": sum(1 for b in books if b.status == "failed" and b.id in live),
            "books_removed": len(removed),
            "segments": len(segments),
            "segment_groups": result.groups,
            "cards_proposed": result.cards_proposed,
            "concepts": len(result.concepts),
            "concepts_added": len(new_ids - old_ids),
            "concepts_dropped": len(old_ids - new_ids),
            "rejected": len(result.rejected),
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "llm_cache_hits": result.cache_hits,
            "vectors_written": vectors,
            "sample_cards": dg.MetadataValue.md(_cards_markdown(result.concepts[:SAMPLE_CARDS])),
            "rejected_cards": table(
                [
                    {"group": r.group_id, "name": r.name, "reason": r.reason}
                    for r in result.rejected
                ],
                columns=["group", "name", "reason"],
            ),
        }
    )


@dg.asset(
    deps=[kb_concepts],
    pool="qdrant",
    group_name=KNOWLEDGE_GROUP,
    kinds={"duckdb", "qdrant"},
    automation_condition=dg.AutomationCondition.eager()
    & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    description=(
        "Strategy modules (entry, exit, filter, risk, management) proposed by the configured LLM "
        "for every concept card, written in the signal language and validated by code. Valid "
        "ones are stored active and indexed in Qdrant; invalid ones are stored with "
        "status=invalid and the reason, never used. Replaces the previous proposals."
    ),
)
def strategy_modules(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    vector_index: VectorIndexResource,
    embeddings: EmbeddingsResource,
    llm: LLMResource,
) -> dg.MaterializeResult:
    store = factory_store.store()
    docs = DocumentStore(store)
    concepts = docs.list(KbConcept, {"partition_key": CONCEPTS_PARTITION})
    try:
        result = propose_modules(concepts, llm.build(store))
    except FactoryError as exc:
        raise dg.Failure(description=one_line(str(exc)), allow_retries=False) from exc
    previous = {m.id for m in docs.list(ModuleDoc, {"partition_key": PROPOSED_MODULES_PARTITION})}
    valid_ids = {m.id for m in result.valid}
    with vector_index.open(embeddings.build()) as index:
        vectors = index.upsert_modules(result.valid)
        docs.replace_partition(ModuleDoc, PROPOSED_MODULES_PARTITION, result.modules)
        index.delete_ids(MODULES, previous - valid_ids)
    context.log.info(
        f"{len(result.valid)} valid and {len(result.invalid)} invalid module(s) "
        f"from {len(concepts)} concept(s)"
    )
    by_kind = Counter(m.kind.value for m in result.valid)
    return dg.MaterializeResult(
        metadata={
            "concepts": len(concepts),
            "modules_active": len(result.valid),
            "modules_invalid": len(result.invalid),
            "concepts_without_answer": len(result.failed),
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "llm_cache_hits": result.cache_hits,
            "vectors_written": vectors,
        }
        | {f"active_{kind}": by_kind.get(kind, 0) for kind in _KINDS}
        | {
            "active_modules": table(
                [
                    {
                        "name": m.name,
                        "kind": m.kind.value,
                        "id": m.id,
                        "concepts": len(m.concept_ids),
                    }
                    for m in result.valid
                ],
                columns=["name", "kind", "id", "concepts"],
            ),
            "invalid_modules": table(
                [
                    {"name": m.name, "kind": m.kind.value, "reason": m.invalid_reason}
                    for m in result.invalid
                ]
                + [
                    {"name": f"(concept {f.concept_id})", "kind": "", "reason": f.reason}
                    for f in result.failed
                ],
                columns=["name", "kind", "reason"],
            ),
        }
    )


@dg.asset(
    pool="qdrant",
    group_name=STRATEGY_GROUP,
    kinds={"duckdb", "qdrant"},
    automation_condition=BUILD_WHEN_MISSING,
    description=(
        "The human-written module library (data/modules/*.yaml), validated, stored as active "
        "modules with no concept links and indexed in Qdrant next to the agent-proposed ones, "
        "so retrieval and system design see both. Re-materialize after editing the YAML."
    ),
)
def builtin_modules(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    vector_index: VectorIndexResource,
    embeddings: EmbeddingsResource,
    knowledge: KnowledgeResource,
) -> dg.MaterializeResult:
    try:
        modules = list(load_module_library(knowledge.modules_folder()).values())
    except FactoryError as exc:  # SpecError naming file and field
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    docs = DocumentStore(factory_store.store())
    previous = {m.id for m in docs.list(ModuleDoc, {"partition_key": LIBRARY_MODULES_PARTITION})}
    with vector_index.open(embeddings.build()) as index:
        vectors = index.upsert_modules(modules)
        docs.replace_partition(ModuleDoc, LIBRARY_MODULES_PARTITION, modules)
        index.delete_ids(MODULES, previous - {m.id for m in modules})
    context.log.info(f"{len(modules)} library module(s) from {knowledge.modules_folder()}")
    by_kind = Counter(m.kind.value for m in modules)
    return dg.MaterializeResult(
        metadata={"modules": len(modules), "vectors_written": vectors}
        | {f"modules_{kind}": by_kind.get(kind, 0) for kind in _KINDS}
        | {
            "library": table(
                [{"id": m.id, "kind": m.kind.value, "name": m.name} for m in modules],
                columns=["id", "kind", "name"],
            )
        }
    )


# Helpers ----------------------------------------------------------------------------------------

_KINDS = ("entry", "exit", "filter", "risk", "management")


def book_path(knowledge: KnowledgeResource, book_id: str) -> Path:
    """The file of partition ``book_id`` in the configured folders, or a Failure naming them."""
    folders = [f for f in knowledge.book_folders() if f.exists()]
    try:
        paths = discover_books(folders)
    except FactoryError as exc:  # two files with one name
        raise dg.Failure(description=one_line(str(exc)), allow_retries=False) from exc
    for path in paths:
        if book_id_for(path) == book_id:
            return path
    raise dg.Failure(
        description=(
            f"book partition {book_id!r} has no file in "
            f"{', '.join(str(f) for f in knowledge.book_folders())} (removed or renamed?)"
        ),
        allow_retries=False,
    )


def one_line(message: str) -> str:
    """A message on one line (reader errors may quote multi-line library messages)."""
    return " ".join(message.split())


def _current_read(docs: DocumentStore, knowledge: KnowledgeResource, book_id: str) -> BookRead:
    """Read the book again for chunking, insisting it is the version book_pages stored."""
    book = docs.get(Book, book_id)
    if book is None or book.status != "ingested":
        state = "not stored" if book is None else f"failed: {book.error}"
        raise dg.Failure(
            description=f"book {book_id} is {state}; materialize book_pages for it first",
            allow_retries=False,
        )
    path = book_path(knowledge, book_id)
    try:
        read = read_book(path)
    except FactoryError as exc:
        raise dg.Failure(description=one_line(str(exc)), allow_retries=False) from exc
    if read.book.content_hash != book.content_hash:
        raise dg.Failure(
            description=(
                f"{path} changed after book_pages read it; re-run book_pages and kb_segments "
                "for this book (the sensor does so on its next tick)"
            ),
            allow_retries=False,
        )
    return read


def _pages_metadata(reads: Sequence[BookRead]) -> dict[str, object]:
    pages = [page for read in reads for page in read.pages]
    chapters: list[str] = []
    for page in pages:
        for title in (page.chapter, *(title for _, title in page.chapter_starts)):
            if title and title not in chapters:
                chapters.append(title)
    flags = [flag for read in reads for flag in read.book.flags]
    metadata: dict[str, object] = {
        "books": len(reads),
        "pages": len(pages),
        "chapters": len(chapters),
        "pages_without_text": sum(1 for page in pages if not page.has_text_layer),
        "flags": ", ".join(flags) or "none",
        "chapter_list": dg.MetadataValue.md("\n".join(f"- {c}" for c in chapters) or "none"),
    }
    if len(reads) == 1:
        book = reads[0].book
        metadata |= {
            "title": book.title,
            "path": book.path,
            "content_hash": book.content_hash,
        }
    first = next((page for page in pages if page.has_text_layer), None)
    if first is not None:
        text = first.text[:PREVIEW_CHARS] + (" ..." if len(first.text) > PREVIEW_CHARS else "")
        quoted = "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
        metadata["first_page"] = dg.MetadataValue.md(
            f"**{reads[0].book.title}**, page {first.page} ({first.chapter or 'no chapter'})"
            f"\n\n{quoted}"
        )
    return metadata


def _cards_markdown(concepts: Sequence[KbConcept]) -> str:
    if not concepts:
        return "no concepts"
    parts = []
    for concept in concepts:
        lines = [f"### {concept.name}", "", concept.description, ""]
        for label, items in (
            ("Setup", concept.setup_conditions),
            ("Entry", concept.entry_ideas),
            ("Exit", concept.exit_ideas),
            ("Risk", concept.risk_constraints),
        ):
            if items:
                lines.append(f"- **{label}:** " + "; ".join(items))
        timeframes = ", ".join(f"{k} {'/'.join(v)}" for k, v in concept.timeframes.items() if v)
        if timeframes:
            lines.append(f"- **Timeframes:** {timeframes}")
        if concept.tags:
            lines.append(f"- **Tags:** {', '.join(concept.tags)}")
        for evidence in concept.evidence[:3]:
            lines.append(f'- p.{evidence.page} `{evidence.segment_id}`: "{evidence.quote}"')
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])
