"""The Qdrant vector index of segments, concepts and modules, with hybrid retrieval.

One :class:`VectorIndex` wraps one qdrant-client: local mode on a folder (the embedded default;
only one client may open a folder at a time, so use it as a context manager), in memory, or a
Qdrant server by URL. Each collection holds two named vectors per point:

* ``dense``: the embedder's unit vector (cosine distance),
* ``sparse``: the BM25 vector of :mod:`factory_pipeline.knowledge.sparse`, with Qdrant's
  ``modifier=IDF`` so IDF comes from the live points of the collection.

Point ids are ``uuid5(POINT_NAMESPACE, document id)``, so upserting the same documents again
replaces their points instead of adding copies. Hybrid search fuses a dense and a sparse
candidate list with Reciprocal Rank Fusion inside Qdrant (``query_points`` with two prefetches
and ``RrfQuery(rrf=Rrf(k=60))``), never through a hub-downloaded sparse model.

The embedder and sparse encoder that built a collection are recorded in its metadata; writing
with a different one (or a different dense dimension) drops and recreates the collection, and
searching with a different one raises :class:`StoreError`. See docs/retrieval.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
from qdrant_client import QdrantClient, models

from factory_pipeline.errors import ConfigError, StoreError
from factory_pipeline.knowledge.embeddings import Embedder
from factory_pipeline.knowledge.sparse import SparseEncoder, SparseTerms
from factory_pipeline.schemas.documents import KbConcept, KbSegment, ModuleDoc
from factory_pipeline.settings import FactorySettings

SEGMENTS = "kb_segments"
CONCEPTS = "kb_concepts"
MODULES = "modules"
COLLECTIONS: tuple[str, ...] = (SEGMENTS, CONCEPTS, MODULES)

DENSE = "dense"
SPARSE = "sparse"

#: Namespace of point ids: ``uuid5(POINT_NAMESPACE, document_id)``.
POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "trading-research-factory/vector-index")

#: Filter keys accepted by :meth:`VectorIndex.search` (see :func:`build_filter`).
FILTER_KEYS: tuple[str, ...] = ("tags", "book_id", "kind", "page", "chapter", "doc_type")

SearchMode = Literal["hybrid", "dense", "sparse"]

#: Reciprocal Rank Fusion constant (Cormack et al. 2009). Qdrant's own default (k=2) lets the
#: top hit of one list outweigh a point both lists rank well; measured in docs/retrieval.md.
DEFAULT_RRF_K = 60

#: Points written per upsert request.
UPSERT_BATCH = 256


@dataclass(frozen=True)
class SearchHit:
    """One search result: the document id, its fused or raw score, and the stored payload."""

    id: str
    score: float
    payload: dict[str, Any]
    point_id: str


class VectorIndex:
    """Segments, concepts and modules in Qdrant, searchable by dense, sparse or hybrid queries.

    Open with ``location`` (a local-mode folder), ``url`` (a server) or neither (in memory).
    Always :meth:`close` it, or use ``with VectorIndex(...) as index:``.
    """

    def __init__(
        self,
        location: Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        *,
        embedder: Embedder,
        sparse: SparseEncoder | None = None,
        prefetch_limit: int = 50,
        rrf_k: int = DEFAULT_RRF_K,
        rrf_weights: tuple[float, float] | None = None,
    ) -> None:
        if location is not None and url is not None:
            raise ConfigError(
                f"VectorIndex takes a local path or a server URL, not both (path={location}, "
                f"url={url}): unset FACTORY_QDRANT_PATH or FACTORY_QDRANT_URL"
            )
        self.embedder = embedder
        self.sparse = sparse or SparseEncoder()
        self.prefetch_limit = prefetch_limit
        self.rrf_k = rrf_k
        self.rrf_weights = rrf_weights
        self.location = Path(location) if location is not None else None
        self.url = url
        self._ready: set[str] = set()
        self._client: QdrantClient | None = _open_client(self.location, url, api_key)

    @classmethod
    def from_settings(
        cls, settings: FactorySettings, *, embedder: Embedder, sparse: SparseEncoder | None = None
    ) -> VectorIndex:
        """The server at ``qdrant_url`` when set, else local mode at ``qdrant_location``."""
        if settings.qdrant_url:
            api_key = (
                settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            )
            return cls(url=settings.qdrant_url, api_key=api_key, embedder=embedder, sparse=sparse)
        return cls(location=settings.qdrant_location, embedder=embedder, sparse=sparse)

    # Lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the client (and the local folder's lock). Safe to call twice."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Writes -----------------------------------------------------------------------------------

    def upsert_segments(self, segments: Sequence[KbSegment]) -> int:
        """Insert or replace the points of ``segments``; returns the number of points written."""
        return self._write(SEGMENTS, self._points([_segment_record(s) for s in segments]))

    def upsert_concepts(self, concepts: Sequence[KbConcept]) -> int:
        return self._write(CONCEPTS, self._points([_concept_record(c) for c in concepts]))

    def upsert_modules(self, modules: Sequence[ModuleDoc]) -> int:
        return self._write(MODULES, self._points([_module_record(m) for m in modules]))

    def replace_book(self, book_id: str, segments: Sequence[KbSegment]) -> int:
        """Make ``book_id``'s segment points exactly ``segments``.

        Everything is embedded before anything is deleted, so an embedding failure leaves the
        old points in place.
        """
        strangers = sorted({s.book_id for s in segments if s.book_id != book_id})
        if strangers:
            raise StoreError(f"replace_book({book_id!r}) got segments of other books: {strangers}")
        points = self._points([_segment_record(s) for s in segments])
        self.delete_by_book(book_id)
        return self._write(SEGMENTS, points)

    def delete_by_book(self, book_id: str, collections: Sequence[str] = (SEGMENTS,)) -> int:
        """Delete the points whose payload ``book_id`` is (or contains) ``book_id``.

        Defaults to the segments collection; concepts and modules carry the book ids of their
        provenance and can be included explicitly. Returns the number of points deleted.
        """
        selector = build_filter({"book_id": book_id})
        deleted = 0
        for collection in collections:
            _check_collection(collection)
            if not self._exists(collection):
                continue
            deleted += self._delete_matching(collection, selector)
        return deleted

    def delete_ids(self, collection: str, doc_ids: Iterable[str]) -> None:
        """Delete the points of the given document ids (missing ids are ignored)."""
        _check_collection(collection)
        ids = [point_id(doc_id) for doc_id in doc_ids]
        if ids and self._exists(collection):
            self._call(
                collection,
                lambda c: c.delete(
                    collection, points_selector=models.PointIdsList(points=ids), wait=True
                ),
            )

    # Reads ------------------------------------------------------------------------------------

    def search(
        self,
        collection: str,
        query: str,
        *,
        mode: SearchMode = "hybrid",
        limit: int = 10,
        filters: Mapping[str, Any] | None = None,
    ) -> list[SearchHit]:
        """The ``limit`` best points for ``query``, best first.

        ``dense`` ranks by cosine similarity, ``sparse`` by BM25, ``hybrid`` by Reciprocal Rank
        Fusion (constant ``rrf_k``, optional ``rrf_weights`` for dense and sparse) of the top
        ``prefetch_limit`` of each. ``filters`` restrict every stage (see
        :func:`build_filter`). A missing collection returns no hits.
        """
        _check_collection(collection)
        if mode not in ("hybrid", "dense", "sparse"):
            raise ConfigError(f"search mode {mode!r} is not one of hybrid, dense, sparse")
        if limit < 1:
            raise ConfigError(f"search limit must be >= 1, got {limit}")
        if not self._exists(collection):
            return []
        self._check_compatible(collection)
        query_filter = build_filter(filters)
        sparse_query = self.sparse.encode_query(query)
        if mode == "sparse" and not sparse_query:
            return []  # only stop words: BM25 has nothing to match
        request: dict[str, Any] = {"query_filter": query_filter, "limit": limit}
        if mode == "sparse":
            request.update(query=_qdrant_sparse(sparse_query), using=SPARSE)
        else:
            dense_query = self.embedder.embed([query])[0].tolist()
            if mode == "dense" or not sparse_query:
                request.update(query=dense_query, using=DENSE)
            else:
                fetch = max(self.prefetch_limit, limit)
                request.update(
                    prefetch=[
                        models.Prefetch(query=dense_query, using=DENSE, limit=fetch),
                        models.Prefetch(
                            query=_qdrant_sparse(sparse_query), using=SPARSE, limit=fetch
                        ),
                    ],
                    query=self._fusion(),
                )
        response = self._call(
            collection, lambda c: c.query_points(collection, with_payload=True, **request)
        )
        return [
            SearchHit(
                id=str((point.payload or {}).get("doc_id", point.id)),
                score=float(point.score),
                payload=dict(point.payload or {}),
                point_id=str(point.id),
            )
            for point in response.points
        ]

    def count(self, collection: str) -> int:
        """Number of points in ``collection`` (0 when it does not exist yet)."""
        _check_collection(collection)
        if not self._exists(collection):
            return 0
        return self._call(collection, lambda c: c.count(collection, exact=True)).count

    # Internals --------------------------------------------------------------------------------

    @property
    def client(self) -> QdrantClient:
        if self._client is None:
            raise StoreError(f"vector index {self._where} is closed")
        return self._client

    @property
    def _where(self) -> str:
        return self.url or (str(self.location) if self.location else ":memory:")

    def _metadata(self) -> dict[str, Any]:
        return {
            "embedder": self.embedder.name,
            "dense_dim": self.embedder.dim,
            "sparse_encoder": self.sparse.name,
        }

    def _points(self, records: list[_Record]) -> list[models.PointStruct]:
        """Embed and encode ``records`` (deduplicated by id, last wins) into points."""
        unique = list({record.doc_id: record for record in records}.values())
        if not unique:
            return []
        dense = self.embedder.embed([record.text for record in unique])
        if dense.shape != (len(unique), self.embedder.dim) or not np.isfinite(dense).all():
            raise StoreError(
                f"embedder {self.embedder.name} returned an array of shape {dense.shape} "
                f"(expected {(len(unique), self.embedder.dim)}) or non-finite values"
            )
        return [
            models.PointStruct(
                id=point_id(record.doc_id),
                vector={
                    DENSE: vector.tolist(),
                    SPARSE: _qdrant_sparse(self.sparse.encode_document(record.text)),
                },
                payload=record.payload,
            )
            for record, vector in zip(unique, dense, strict=True)
        ]

    def _write(self, collection: str, points: list[models.PointStruct]) -> int:
        if not points:
            return 0
        self._ensure_collection(collection)
        for start in range(0, len(points), UPSERT_BATCH):
            batch = points[start : start + UPSERT_BATCH]
            self._call(collection, lambda c, b=batch: c.upsert(collection, points=b, wait=True))
        return len(points)

    def _fusion(self) -> models.RrfQuery:
        weights = list(self.rrf_weights) if self.rrf_weights is not None else None
        return models.RrfQuery(rrf=models.Rrf(k=self.rrf_k, weights=weights))

    def _delete_matching(self, collection: str, selector: models.Filter) -> int:
        matching = self._call(
            collection, lambda c: c.count(collection, count_filter=selector, exact=True)
        ).count
        self._call(
            collection,
            lambda c: c.delete(
                collection, points_selector=models.FilterSelector(filter=selector), wait=True
            ),
        )
        return int(matching)

    def _exists(self, collection: str) -> bool:
        if collection in self._ready:
            return True
        return bool(self._call(collection, lambda c: c.collection_exists(collection)))

    def _ensure_collection(self, collection: str) -> None:
        """Create ``collection`` if missing; recreate it if built with another vector space."""
        if collection in self._ready:
            return
        if self._exists(collection):
            if self._built_with(collection) == self._metadata():
                self._ready.add(collection)
                return
            self._call(collection, lambda c: c.delete_collection(collection))
        self._call(
            collection,
            lambda c: c.create_collection(
                collection,
                vectors_config={
                    DENSE: models.VectorParams(
                        size=self.embedder.dim, distance=models.Distance.COSINE
                    )
                },
                sparse_vectors_config={
                    SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
                metadata=self._metadata(),
            ),
        )
        self._ready.add(collection)

    def _built_with(self, collection: str) -> dict[str, Any]:
        info = self._call(collection, lambda c: c.get_collection(collection))
        metadata = dict(info.config.metadata or {})
        vectors = info.config.params.vectors
        dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
        return {
            "embedder": metadata.get("embedder"),
            "dense_dim": dense.size if dense is not None else None,
            "sparse_encoder": metadata.get("sparse_encoder"),
        }

    def _check_compatible(self, collection: str) -> None:
        if collection in self._ready:
            return
        built = self._built_with(collection)
        if built != self._metadata():
            raise StoreError(
                f"collection {collection!r} at {self._where} was built with {built}, but this "
                f"index uses {self._metadata()}: re-index it (upserts recreate it)"
            )
        self._ready.add(collection)

    def _call(self, collection: str, operation: Any) -> Any:
        try:
            return operation(self.client)
        except StoreError:
            raise
        except Exception as exc:  # qdrant raises ValueError, RuntimeError, HTTP exceptions
            raise StoreError(f"Qdrant {self._where} collection {collection!r}: {exc}") from exc


def point_id(doc_id: str) -> str:
    """Stable Qdrant point id of a document: ``uuid5(POINT_NAMESPACE, doc_id)``."""
    return str(uuid.uuid5(POINT_NAMESPACE, doc_id))


def build_filter(filters: Mapping[str, Any] | None) -> models.Filter | None:
    """Translate a filter dict into a Qdrant filter (all conditions must hold).

    * ``tags``: a tag or list of tags; a point matches if it has any of them.
    * ``book_id``, ``kind``, ``doc_type``, ``chapter``: a value or a list of values (any-of).
    * ``page``: an int, a ``(first, last)`` pair (inclusive), or ``{"gte": .., "lte": ..}``.
    """
    if not filters:
        return None
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise ConfigError(f"unknown search filter key(s) {unknown}; expected {list(FILTER_KEYS)}")
    conditions: list[models.Condition] = []
    for key, value in filters.items():
        if value is None:
            continue
        if key == "page":
            conditions.append(_page_condition(value))
        elif isinstance(value, str | int) and not isinstance(value, bool):
            conditions.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        elif isinstance(value, list | tuple | set | frozenset) and value:
            values = sorted(str(v) for v in value)
            conditions.append(models.FieldCondition(key=key, match=models.MatchAny(any=values)))
        else:
            raise ConfigError(
                f"search filter {key!r}={value!r}: expected a string or a non-empty list of strings"
            )
    return models.Filter(must=conditions) if conditions else None


def embedding_text(doc: KbSegment | KbConcept | ModuleDoc) -> str:
    """The text that is embedded and BM25-encoded for a document."""
    if isinstance(doc, KbSegment):
        return doc.text
    if isinstance(doc, KbConcept):
        parts = [
            doc.name,
            doc.description,
            *doc.setup_conditions,
            *doc.entry_ideas,
            *doc.exit_ideas,
            *doc.risk_constraints,
        ]
        if doc.tags:
            parts.append("tags: " + ", ".join(doc.tags))
        return "\n".join(part for part in parts if part)
    parts = [doc.name, f"{doc.kind.value} module", doc.description]
    parts.extend(spec.description for spec in doc.parameters.values() if spec.description)
    parts.extend(f"{name}: {expr}" for name, expr in doc.logic.items())
    if doc.rule:
        parts.append(f"rule: {doc.rule}")
    return "\n".join(part for part in parts if part)


# Helpers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    doc_id: str
    text: str
    payload: dict[str, Any]


def _segment_record(segment: KbSegment) -> _Record:
    payload = {
        "doc_id": segment.id,
        "doc_type": "segment",
        "book_id": segment.book_id,
        "book_title": segment.book_title,
        "chapter": segment.chapter,
        "page": segment.page,
        "offset": segment.offset,
        "tags": list(segment.tags),
        "text": segment.text,
        "provenance": segment.provenance.model_dump(mode="json"),
    }
    return _Record(segment.id, embedding_text(segment), payload)


def _concept_record(concept: KbConcept) -> _Record:
    pages = sorted({*concept.provenance.pages, *(quote.page for quote in concept.evidence)})
    payload = {
        "doc_id": concept.id,
        "doc_type": "concept",
        "name": concept.name,
        "book_id": list(concept.provenance.book_ids),
        "page": pages,
        "segment_ids": sorted(
            {*concept.provenance.segment_ids, *(quote.segment_id for quote in concept.evidence)}
        ),
        "tags": list(concept.tags),
        "text": embedding_text(concept),
        "provenance": concept.provenance.model_dump(mode="json"),
    }
    return _Record(concept.id, payload["text"], payload)


def _module_record(module: ModuleDoc) -> _Record:
    payload = {
        "doc_id": module.id,
        "doc_type": "module",
        "name": module.name,
        "kind": module.kind.value,
        "status": module.status,
        "concept_ids": list(module.concept_ids),
        "book_id": list(module.provenance.book_ids),
        "tags": [],
        "text": embedding_text(module),
        "provenance": module.provenance.model_dump(mode="json"),
    }
    return _Record(module.id, payload["text"], payload)


def _qdrant_sparse(terms: SparseTerms) -> models.SparseVector:
    return models.SparseVector(indices=list(terms.indices), values=list(terms.values))


def _page_condition(value: Any) -> models.FieldCondition:
    if isinstance(value, int) and not isinstance(value, bool):
        return models.FieldCondition(key="page", match=models.MatchValue(value=value))
    if isinstance(value, Mapping) and value and set(value) <= {"gt", "gte", "lt", "lte"}:
        return models.FieldCondition(key="page", range=models.Range(**value))
    if isinstance(value, list | tuple) and len(value) == 2:
        first, last = value
        return models.FieldCondition(key="page", range=models.Range(gte=first, lte=last))
    raise ConfigError(
        f"search filter 'page'={value!r}: expected a page number, a (first, last) pair or "
        "a dict with gte/lte"
    )


def _check_collection(collection: str) -> None:
    if collection not in COLLECTIONS:
        raise ConfigError(f"unknown collection {collection!r}; expected one of {list(COLLECTIONS)}")


def _open_client(location: Path | None, url: str | None, api_key: str | None) -> QdrantClient:
    if url is not None:
        try:
            return QdrantClient(url=url, api_key=api_key)
        except Exception as exc:
            raise StoreError(f"cannot open Qdrant server client for {url}: {exc}") from exc
    if location is None:
        return QdrantClient(location=":memory:")
    try:
        location.mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(location))
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise StoreError(
                f"Qdrant local storage {location} is already open in another client (local mode "
                "allows one opener at a time): close the other VectorIndex first"
            ) from exc
        raise StoreError(f"cannot open Qdrant local storage {location}: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"cannot open Qdrant local storage {location}: {exc}") from exc
