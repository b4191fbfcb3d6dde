"""Retrieval evaluation: metric definitions on hand-made ranks, the queries file format, and an
end-to-end run over tiny books written here (hashing embedder, so it is fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory_pipeline.errors import ConfigError
from factory_pipeline.knowledge.embeddings import HashingEmbedder
from factory_pipeline.knowledge.index import VectorIndex
from factory_pipeline.knowledge.retrieval_eval import (
    EvalQuery,
    evaluate,
    evaluate_sample_corpus,
    first_relevant_rank,
    format_report,
    load_queries,
    mean_reciprocal_rank,
    recall_at_k,
)
from factory_pipeline.schemas import KbSegment


def test_first_relevant_rank_is_one_based_and_none_when_absent() -> None:
    retrieved = [("a.pdf", 3), ("b.pdf", 1), ("a.pdf", 4), ("b.pdf", 1)]
    assert first_relevant_rank(retrieved, {("b.pdf", 1)}) == 2
    assert first_relevant_rank(retrieved, {("a.pdf", 4), ("a.pdf", 3)}) == 1
    assert first_relevant_rank(retrieved, {("a.pdf", 1)}) is None  # same page, other book


def test_recall_at_k_and_mrr_on_hand_computed_ranks() -> None:
    ranks = [1, 3, 6, None]
    assert recall_at_k(ranks, 5) == pytest.approx(2 / 4)
    assert recall_at_k(ranks, 6) == pytest.approx(3 / 4)
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 4)
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 1 / 6 + 0) / 4)
    assert recall_at_k([], 5) == 0.0 and mean_reciprocal_rank([]) == 0.0


def test_load_queries_reads_pages_and_page_lists(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(
        "queries:\n"
        "  - id: stops\n"
        "    query: where to put the stop\n"
        "    relevant:\n"
        "      - {book: books/risk.pdf, page: 3}\n"
        "      - {book: trend.md, pages: [1, 2]}\n"
        "  - query: funding\n"
        "    relevant: [{book: perps.txt, page: 7}]\n"
    )
    queries = load_queries(path)
    assert queries[0] == EvalQuery(
        "stops",
        "where to put the stop",
        frozenset({("risk.pdf", 3), ("trend.md", 1), ("trend.md", 2)}),
    )
    assert queries[1].id == "q2" and queries[1].relevant == frozenset({("perps.txt", 7)})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("queries: []\n", "non-empty 'queries'"),
        ("queries:\n  - {query: '', relevant: [{book: a.pdf, page: 1}]}\n", "'query'"),
        ("queries:\n  - {query: x, relevant: []}\n", "'relevant'"),
        ("queries:\n  - {query: x, relevant: [{book: a.pdf, page: 0}]}\n", "page 0"),
        ("queries:\n  - {query: x, relevant: [{page: 2}]}\n", "'book'"),
        (
            "queries:\n  - {id: a, query: x, relevant: [{book: a, page: 1}]}\n"
            "  - {id: a, query: y, relevant: [{book: a, page: 1}]}\n",
            "duplicate id 'a'",
        ),
        ("queries: [\n", "not valid YAML"),
    ],
)
def test_load_queries_rejects_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_queries(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_queries(tmp_path / "missing.yaml")


def test_evaluate_scores_each_mode_from_ranked_pages() -> None:
    pages = {
        1: "Pyramiding adds units to a winning position.",
        2: "Funding settles every eight hours on perpetual contracts.",
        3: "Donchian channels mark the highest high of twenty days.",
    }
    segments = [
        KbSegment(id=f"s{page}", book_id="book-x", book_title="X", page=page, text=text)
        for page, text in pages.items()
    ]
    queries = [
        EvalQuery("pyramid", "pyramiding winning position", frozenset({("x.pdf", 1)})),
        EvalQuery("funding", "funding perpetual contracts", frozenset({("x.pdf", 2)})),
        EvalQuery("missing", "donchian highest high", frozenset({("x.pdf", 9)})),
    ]
    with VectorIndex(embedder=HashingEmbedder(dim=512)) as index:
        index.upsert_segments(segments)
        report = evaluate(index, queries, {"book-x": "x.pdf"}, modes=["sparse"], k=5, depth=10)
    outcomes = {o.query_id: o for o in report.scores["sparse"].outcomes}
    assert outcomes["pyramid"].rank == 1 and outcomes["funding"].rank == 1
    assert outcomes["missing"].rank is None
    assert outcomes["missing"].retrieved[0] == ("x.pdf", 3)
    assert report.figures() == {
        "recall_at_5_sparse": pytest.approx(2 / 3),
        "mrr_sparse": pytest.approx(2 / 3),
    }
    assert "missing" in format_report(report)
    with pytest.raises(ConfigError, match="k <= depth"):
        evaluate(index, queries, {}, k=11, depth=10)


def test_evaluate_sample_corpus_reads_chunks_and_indexes_books(tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    (books / "risk.txt").write_text(
        "Position sizing divides the account risk by the stop distance in price.\f"
        "A trailing stop follows the price and locks in open profit on a trend.\n"
    )
    (books / "perps.txt").write_text(
        "Perpetual futures settle funding between longs and shorts every eight hours.\n"
    )
    queries = tmp_path / "q.yaml"
    queries.write_text(
        "queries:\n"
        "  - {id: sizing, query: position sizing by stop distance, "
        "relevant: [{book: risk.txt, page: 1}]}\n"
        "  - {id: trailing, query: trailing stop locks profit, "
        "relevant: [{book: risk.txt, page: 2}]}\n"
        "  - {id: funding, query: funding longs shorts perpetual, "
        "relevant: [{book: perps.txt, page: 1}]}\n"
    )
    report = evaluate_sample_corpus(
        HashingEmbedder(), queries_path=queries, books_dir=books, k=1, depth=3
    )
    figures = report.figures()
    assert set(figures) == {
        f"{m}_{mode}" for m in ("recall_at_1", "mrr") for mode in ("dense", "sparse", "hybrid")
    }
    assert figures["recall_at_1_sparse"] == 1.0 and figures["mrr_sparse"] == 1.0
    queries.write_text("queries:\n  - {query: x, relevant: [{book: other.pdf, page: 1}]}\n")
    with pytest.raises(ConfigError, match="other.pdf"):
        evaluate_sample_corpus(HashingEmbedder(), queries_path=queries, books_dir=books)
