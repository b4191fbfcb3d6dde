"""Retrieval quality on labelled queries: recall@k and MRR for dense, sparse and hybrid search.

Why: the embedder, the BM25 encoder and the fusion settings are choices that must be measured,
not assumed. ``data/eval/retrieval_queries.yaml`` labels each query with the book pages that
answer it; the sample books are read, chunked and indexed exactly as the pipeline does, and each
query is run in every mode.

Definitions (a "hit page" is the ``(book file name, page)`` of a returned segment):

* ``rank(q)``: 1-based position of the first returned segment whose page is labelled relevant
  for ``q``, looking at the top ``depth`` (default 10) segments; none if there is no such one.
* ``recall@k`` = share of queries with ``rank(q) <= k`` (a query counts once however many
  relevant pages it has; this is also called success@k or hit rate).
* ``MRR`` = mean over queries of ``1 / rank(q)``, counting 0 when there is no rank (MRR@depth).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from factory_pipeline.errors import ConfigError
from factory_pipeline.knowledge.embeddings import Embedder, HashingEmbedder, LocalMiniLMEmbedder
from factory_pipeline.knowledge.index import SEGMENTS, SearchMode, VectorIndex
from factory_pipeline.knowledge.sparse import SparseEncoder
from factory_pipeline.schemas import KbSegment
from factory_pipeline.settings import DEFAULT_DATA_DIR

DEFAULT_QUERIES_PATH = DEFAULT_DATA_DIR / "eval" / "retrieval_queries.yaml"
DEFAULT_BOOKS_DIR = DEFAULT_DATA_DIR / "books"
MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")

PageRef = tuple[str, int]
"""A labelled or retrieved page: (book file name, 1-based page number)."""


@dataclass(frozen=True)
class EvalQuery:
    """A labelled query: its text and the pages that answer it."""

    id: str
    text: str
    relevant: frozenset[PageRef]


@dataclass(frozen=True)
class Corpus:
    """Segments of the evaluation books and the file name of each book id."""

    segments: list[KbSegment]
    book_files: dict[str, str]
    pages: int


@dataclass(frozen=True)
class QueryOutcome:
    query_id: str
    retrieved: tuple[PageRef, ...]
    rank: int | None


@dataclass(frozen=True)
class ModeScore:
    mode: str
    recall_at_k: float
    mrr: float
    outcomes: tuple[QueryOutcome, ...]


@dataclass(frozen=True)
class RetrievalReport:
    k: int
    depth: int
    scores: dict[str, ModeScore]

    def figures(self) -> dict[str, float]:
        """Flat figures: ``recall_at_{k}_{mode}`` and ``mrr_{mode}`` for each mode."""
        out: dict[str, float] = {}
        for mode, score in self.scores.items():
            out[f"recall_at_{self.k}_{mode}"] = score.recall_at_k
            out[f"mrr_{mode}"] = score.mrr
        return out


def evaluate_sample_corpus(
    embedder: Embedder | None = None,
    *,
    queries_path: Path = DEFAULT_QUERIES_PATH,
    books_dir: Path = DEFAULT_BOOKS_DIR,
    sparse: SparseEncoder | None = None,
    k: int = 5,
    depth: int = 10,
) -> RetrievalReport:
    """Read and chunk the books, index them in memory and evaluate every mode.

    Defaults to the local MiniLM embedder (the product default).
    """
    queries = load_queries(queries_path)
    corpus = load_corpus(books_dir)
    _check_labels(queries, corpus, queries_path)
    with VectorIndex(embedder=embedder or LocalMiniLMEmbedder(), sparse=sparse) as index:
        index.upsert_segments(corpus.segments)
        return evaluate(index, queries, corpus.book_files, k=k, depth=depth)


def evaluate(
    index: VectorIndex,
    queries: Sequence[EvalQuery],
    book_files: Mapping[str, str],
    *,
    modes: Iterable[SearchMode] = MODES,
    k: int = 5,
    depth: int = 10,
    filters: Mapping[str, Any] | None = None,
) -> RetrievalReport:
    """Run every query in every mode against the segments of ``index``."""
    if not queries:
        raise ConfigError("retrieval evaluation needs at least one query")
    if not 1 <= k <= depth:
        raise ConfigError(f"retrieval evaluation needs 1 <= k <= depth, got k={k}, depth={depth}")
    scores: dict[str, ModeScore] = {}
    for mode in modes:
        outcomes = []
        for query in queries:
            hits = index.search(SEGMENTS, query.text, mode=mode, limit=depth, filters=filters)
            retrieved = tuple(
                (
                    book_files.get(str(h.payload["book_id"]), str(h.payload["book_id"])),
                    int(h.payload["page"]),
                )
                for h in hits
            )
            outcomes.append(
                QueryOutcome(query.id, retrieved, first_relevant_rank(retrieved, query.relevant))
            )
        ranks = [outcome.rank for outcome in outcomes]
        scores[mode] = ModeScore(
            mode, recall_at_k(ranks, k), mean_reciprocal_rank(ranks), tuple(outcomes)
        )
    return RetrievalReport(k=k, depth=depth, scores=scores)


def first_relevant_rank(retrieved: Sequence[PageRef], relevant: Iterable[PageRef]) -> int | None:
    """1-based position of the first retrieved page that is relevant, or None."""
    wanted = set(relevant)
    for position, page in enumerate(retrieved, start=1):
        if page in wanted:
            return position
    return None


def recall_at_k(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose first relevant result is within the top ``k``."""
    if not ranks:
        return 0.0
    return sum(1 for rank in ranks if rank is not None and rank <= k) / len(ranks)


def mean_reciprocal_rank(ranks: Sequence[int | None]) -> float:
    """Mean of ``1 / rank`` over queries, 0 for a query without a relevant result."""
    if not ranks:
        return 0.0
    return sum(1.0 / rank for rank in ranks if rank is not None) / len(ranks)


def load_queries(path: Path = DEFAULT_QUERIES_PATH) -> list[EvalQuery]:
    """Parse the labelled queries file (see docs/retrieval.md for its format)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"retrieval queries file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"retrieval queries file {path} is not valid YAML: {exc}") from exc
    items = data.get("queries") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ConfigError(f"retrieval queries file {path}: expected a non-empty 'queries' list")
    queries: list[EvalQuery] = []
    seen: set[str] = set()
    for number, item in enumerate(items, start=1):
        where = f"retrieval queries file {path}, query {number}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(item).__name__}")
        query_id = str(item.get("id") or f"q{number}")
        text = item.get("query", item.get("text"))
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where} ({query_id}): 'query' must be a non-empty string")
        if query_id in seen:
            raise ConfigError(f"{where}: duplicate id {query_id!r}")
        seen.add(query_id)
        relevant = _relevant_pages(item.get("relevant"), f"{where} ({query_id})")
        queries.append(EvalQuery(query_id, text.strip(), frozenset(relevant)))
    return queries


def load_corpus(books_dir: Path = DEFAULT_BOOKS_DIR) -> Corpus:
    """Read and chunk every book in ``books_dir`` the way the pipeline does."""
    from factory_pipeline.knowledge.books import discover_books, read_book
    from factory_pipeline.knowledge.chunking import chunk_pages

    segments: list[KbSegment] = []
    book_files: dict[str, str] = {}
    pages = 0
    for path in discover_books([Path(books_dir)]):
        read = read_book(path)
        book_files[read.book.id] = Path(read.book.path).name
        pages += len(read.pages)
        segments.extend(chunk_pages(read))
    if not segments:
        raise ConfigError(f"no book segments found under {books_dir}")
    return Corpus(segments=segments, book_files=book_files, pages=pages)


def format_report(report: RetrievalReport) -> str:
    """A small text table of the figures, plus the queries each mode missed."""
    lines = [f"mode     recall@{report.k}  MRR@{report.depth}"]
    for mode, score in report.scores.items():
        lines.append(f"{mode:<8} {score.recall_at_k:9.3f}  {score.mrr:6.3f}")
    for mode, score in report.scores.items():
        missed = [o.query_id for o in score.outcomes if o.rank is None or o.rank > report.k]
        lines.append(f"{mode} missed@{report.k}: {', '.join(missed) or '-'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m factory_pipeline.knowledge.retrieval_eval [--embedder local|hash]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", choices=["local", "hash"], default="local")
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES_PATH)
    parser.add_argument("--books", type=Path, default=DEFAULT_BOOKS_DIR)
    args = parser.parse_args(argv)
    embedder: Embedder = LocalMiniLMEmbedder() if args.embedder == "local" else HashingEmbedder()
    report = evaluate_sample_corpus(embedder, queries_path=args.queries, books_dir=args.books)
    print(format_report(report))


# Helpers -----------------------------------------------------------------------------------


def _relevant_pages(value: Any, where: str) -> list[PageRef]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: 'relevant' must be a non-empty list of {{book, page}}")
    pages: list[PageRef] = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("book"), str):
            raise ConfigError(f"{where}: relevant entry {entry!r} needs 'book' (a file name)")
        numbers = entry.get("pages", [entry.get("page")])
        if not isinstance(numbers, list) or not numbers:
            raise ConfigError(f"{where}: relevant entry {entry!r} needs 'page' or 'pages'")
        for number in numbers:
            if not isinstance(number, int) or isinstance(number, bool) or number < 1:
                raise ConfigError(
                    f"{where}: page {number!r} of {entry['book']} must be an int >= 1"
                )
            pages.append((Path(entry["book"]).name, number))
    return pages


def _check_labels(queries: Sequence[EvalQuery], corpus: Corpus, path: Path) -> None:
    """Every labelled book must be in the corpus, or the metrics would be silently low."""
    known = set(corpus.book_files.values())
    for query in queries:
        missing = sorted({book for book, _ in query.relevant} - known)
        if missing:
            raise ConfigError(
                f"retrieval queries file {path}, query {query.id}: labelled book(s) {missing} "
                f"are not among the books read ({sorted(known)})"
            )


if __name__ == "__main__":
    main()
