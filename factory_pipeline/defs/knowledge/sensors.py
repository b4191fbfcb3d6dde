"""The books sensor: new, changed and removed book files become partitions and runs.

Why a sensor and not a schedule: books arrive at any time and ingesting one is cheap, so each
file is ingested soon after it lands, exactly once per version. The cursor is the JSON object
``{book_id: content_hash}`` of the files seen at the last tick:

- a file whose book id is not a ``books`` partition yet -> add request for the partition;
- a file whose hash differs from the cursor (new or edited) -> one run of ``book_pages`` and
  ``kb_segments`` for its partition, run key ``"<book_id>:<hash>:<tick>"`` where ``<tick>`` is a
  short digest of the previous cursor, so a retried tick never launches twice while a file
  reverted to an earlier version is still ingested again;
- a registered partition whose file is gone -> delete request for the partition plus one run of
  ``kb_concepts`` and ``strategy_modules``, which remove the book's segments, vectors and Book
  row and rebuild concepts and modules without it (docs/knowledge_assets.md).

A configured folder that does not exist (an unmounted disk looks the same) suppresses deletions
for that tick: books are only forgotten when their folder is readable and they are not in it.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from factory_pipeline.defs.knowledge.partitions import BOOKS_PARTITIONS_NAME, books_partitions
from factory_pipeline.defs.knowledge.resources import KnowledgeResource
from factory_pipeline.errors import ConfigError
from factory_pipeline.knowledge.books import book_id_for, content_hash_of, discover_books
from factory_pipeline.settings import FactorySettings

#: Assets a new or changed book runs (one partition each).
BOOK_ASSETS = (dg.AssetKey("book_pages"), dg.AssetKey("kb_segments"))
#: Assets rebuilt over all books when a book is removed.
KNOWLEDGE_ASSETS = (dg.AssetKey("kb_concepts"), dg.AssetKey("strategy_modules"))
#: Run tag carrying the file a sensor run ingests (for the UI; assets resolve paths themselves).
BOOK_PATH_TAG = "factory/book_path"


@dataclass(frozen=True)
class BookFile:
    """One book file on disk: its partition key, path and content hash (SHA-256 of its bytes)."""

    book_id: str
    path: Path
    content_hash: str


@dataclass(frozen=True)
class BookChanges:
    """What one tick must do: partitions to add and delete, books to (re)ingest, next cursor."""

    to_add: list[str]
    to_ingest: list[BookFile]
    to_delete: list[str]
    cursor: dict[str, str]


@dg.sensor(
    name="books_sensor",
    target=dg.AssetSelection.assets(*BOOK_ASSETS, *KNOWLEDGE_ASSETS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "Watches the book folders (data/books and FACTORY_BOOKS_DIRS). A new book file adds a "
        "`books` partition and runs book_pages + kb_segments for it; an edited file re-runs its "
        "partition; a removed file deletes its partition and rebuilds kb_concepts and "
        "strategy_modules without it. Cursor: {book_id: content hash}."
    ),
)
def books_sensor(
    context: dg.SensorEvaluationContext, knowledge: KnowledgeResource
) -> dg.SensorResult:
    folders = knowledge.book_folders()
    missing = [folder for folder in folders if not folder.exists()]
    for folder in missing:
        context.log.warning(f"book folder {folder} does not exist: no book is removed this tick")
    on_disk = scan_books(folders)
    registered = set(context.instance.get_dynamic_partitions(BOOKS_PARTITIONS_NAME))
    previous = parse_cursor(context.cursor)
    changes = plan_book_changes(previous, on_disk, registered, allow_deletes=not missing)
    tick = hashlib.sha256((context.cursor or "").encode()).hexdigest()[:8]
    run_requests = [
        dg.RunRequest(
            partition_key=book.book_id,
            run_key=f"{book.book_id}:{book.content_hash}:{tick}",
            asset_selection=list(BOOK_ASSETS),
            tags={BOOK_PATH_TAG: str(book.path)},
        )
        for book in changes.to_ingest
    ]
    if changes.to_delete:
        run_requests.append(
            dg.RunRequest(
                run_key=f"books-removed:{','.join(changes.to_delete)}:{tick}",
                asset_selection=list(KNOWLEDGE_ASSETS),
            )
        )
    partition_requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]
    partition_requests = []
    if changes.to_add:
        partition_requests.append(books_partitions.build_add_request(changes.to_add))
    if changes.to_delete:
        partition_requests.append(books_partitions.build_delete_request(changes.to_delete))
    if run_requests or partition_requests:
        context.log.info(
            f"books: {len(changes.to_add)} new partition(s), {len(changes.to_ingest)} to ingest, "
            f"{len(changes.to_delete)} removed"
        )
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=partition_requests,
        cursor=format_cursor(changes.cursor),
    )


def register_books(instance: dg.DagsterInstance, settings: FactorySettings) -> list[str]:
    """Make the ``books`` partitions match the book files on disk; return their keys, sorted.

    For the CLI, which materializes every book partition without the sensor: partitions of new
    files are added, and partitions whose file is gone are deleted (only when every configured
    folder exists, as in the sensor). Raises ConfigError when no folder exists and BookError when
    two files share a file name.
    """
    folders = list(settings.all_books_dirs)
    if not any(folder.exists() for folder in folders):
        raise ConfigError(
            f"no book folder exists (looked in {', '.join(str(f) for f in folders)}): "
            "create data/books or set FACTORY_BOOKS_DIRS"
        )
    on_disk = scan_books(folders)
    registered = set(instance.get_dynamic_partitions(BOOKS_PARTITIONS_NAME))
    new = sorted(set(on_disk) - registered)
    if new:
        instance.add_dynamic_partitions(BOOKS_PARTITIONS_NAME, new)
    if all(folder.exists() for folder in folders):
        for gone in sorted(registered - set(on_disk)):
            instance.delete_dynamic_partition(BOOKS_PARTITIONS_NAME, gone)
    return sorted(on_disk)


def scan_books(folders: Sequence[Path]) -> dict[str, BookFile]:
    """Book files under the existing ``folders``, by book id (missing folders are skipped)."""
    existing = [Path(folder) for folder in folders if Path(folder).exists()]
    books: dict[str, BookFile] = {}
    for path in discover_books(existing) if existing else []:
        try:
            data = path.read_bytes()
        except OSError:
            continue  # vanished or unreadable between listing and reading: next tick sees it
        book_id = book_id_for(path)
        books[book_id] = BookFile(book_id, path, content_hash_of(data))
    return books


def plan_book_changes(
    previous: Mapping[str, str],
    on_disk: Mapping[str, BookFile],
    registered: Set[str],
    *,
    allow_deletes: bool = True,
) -> BookChanges:
    """The pure decision of one tick (see the module docstring for the rules)."""
    to_add = sorted(set(on_disk) - set(registered))
    to_ingest = [
        on_disk[book_id]
        for book_id in sorted(on_disk)
        if book_id not in registered or previous.get(book_id) != on_disk[book_id].content_hash
    ]
    cursor = {book_id: book.content_hash for book_id, book in sorted(on_disk.items())}
    if allow_deletes:
        to_delete = sorted(set(registered) - set(on_disk))
    else:
        to_delete = []
        # keep what we knew of books we cannot see, so their return is not taken as new
        cursor = {**{k: v for k, v in previous.items() if k not in on_disk}, **cursor}
    return BookChanges(to_add=to_add, to_ingest=to_ingest, to_delete=to_delete, cursor=cursor)


def parse_cursor(cursor: str | None) -> dict[str, str]:
    """The ``{book_id: content_hash}`` of a cursor; an empty or unreadable cursor is ``{}``
    (every book is then ingested again, which is idempotent)."""
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except json.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def format_cursor(books: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(books.items())), separators=(",", ":"))
