"""Vector index over Qdrant local mode: idempotent upserts with stable ids, book replacement,
payload filters, BM25 scores, hybrid fusion, collection recreation and the one-opener rule."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from factory_pipeline.errors import ConfigError, StoreError
from factory_pipeline.knowledge.embeddings import HashingEmbedder
from factory_pipeline.knowledge.index import (
    CONCEPTS,
    MODULES,
    SEGMENTS,
    VectorIndex,
    point_id,
)
from factory_pipeline.knowledge.sparse import SparseEncoder, tokenize
from factory_pipeline.schemas import (
    EvidenceQuote,
    KbConcept,
    KbSegment,
    ModuleDoc,
    ModuleKind,
    Provenance,
)
from factory_pipeline.settings import load_settings

TEXTS = {
    ("book-a", 1): "A protective stop below the swing low caps the loss of each trade.",
    ("book-a", 2): "Average true range measures volatility; size positions by ATR.",
    ("book-a", 3): "Moving average crossovers follow the trend after it starts.",
    ("book-b", 1): "Funding payments on perpetual futures move cash between longs and shorts.",
    ("book-b", 2): "Breakouts above the Donchian channel high start a new trend.",
    ("book-b", 7): "Open interest rising with price confirms the breakout.",
}
TAGS = {
    ("book-a", 1): ["risk"],
    ("book-a", 2): ["volatility", "entry"],
    ("book-a", 3): ["trend"],
    ("book-b", 1): ["funding"],
    ("book-b", 2): ["entry"],
    ("book-b", 7): ["entry"],
}


def _segments(texts: dict[tuple[str, int], str] = TEXTS) -> list[KbSegment]:
    return [
        KbSegment(
            id=f"seg-{book}-{page}",
            book_id=book,
            book_title=book.upper(),
            chapter=f"Chapter {page}",
            page=page,
            text=text,
            tags=TAGS.get((book, page), []),
            provenance=Provenance(source="test", book_ids=[book], pages=[page]),
        )
        for (book, page), text in texts.items()
    ]


@pytest.fixture
def index(tmp_path: Path) -> VectorIndex:
    with VectorIndex(tmp_path / "qdrant", embedder=HashingEmbedder(dim=64)) as opened:
        yield opened


def test_upsert_is_idempotent_with_stable_uuid5_point_ids(index: VectorIndex) -> None:
    segments = _segments()
    assert index.upsert_segments(segments) == len(segments)
    assert index.upsert_segments(segments) == len(segments)
    assert index.count(SEGMENTS) == len(segments)
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "trading-research-factory/vector-index")
    assert point_id("seg-book-a-1") == str(uuid.uuid5(namespace, "seg-book-a-1"))
    hits = index.search(SEGMENTS, "protective stop swing low", mode="sparse", limit=1)
    assert hits[0].id == "seg-book-a-1"
    assert hits[0].point_id == point_id("seg-book-a-1")
    payload = hits[0].payload
    assert payload["book_id"] == "book-a" and payload["book_title"] == "BOOK-A"
    assert payload["page"] == 1 and payload["chapter"] == "Chapter 1"
    assert payload["tags"] == ["risk"] and payload["doc_type"] == "segment"
    assert payload["text"] == TEXTS[("book-a", 1)]
    assert payload["provenance"]["book_ids"] == ["book-a"]


def test_upsert_replaces_changed_text_in_place(index: VectorIndex) -> None:
    index.upsert_segments(_segments())
    changed = _segments()[0].model_copy(update={"text": "Pyramiding adds to winners."})
    index.upsert_segments([changed])
    assert index.count(SEGMENTS) == len(TEXTS)
    hit = index.search(SEGMENTS, "pyramiding winners", mode="sparse", limit=1)[0]
    assert hit.id == changed.id and hit.payload["text"] == "Pyramiding adds to winners."


def test_delete_by_book_removes_only_that_book(index: VectorIndex) -> None:
    index.upsert_segments(_segments())
    assert index.delete_by_book("book-a") == 3
    assert index.count(SEGMENTS) == 3
    hits = index.search(SEGMENTS, "stop loss trend volatility breakout", mode="dense", limit=10)
    assert {hit.payload["book_id"] for hit in hits} == {"book-b"}
    assert index.delete_by_book("book-missing") == 0


def test_replace_book_swaps_its_points_and_rejects_foreign_segments(index: VectorIndex) -> None:
    index.upsert_segments(_segments())
    new_a = _segments({("book-a", 9): "Scaling out at two R locks in profit."})
    assert index.replace_book("book-a", new_a) == 1
    assert index.count(SEGMENTS) == 4
    assert index.search(SEGMENTS, "scaling out", mode="sparse")[0].id == "seg-book-a-9"
    with pytest.raises(StoreError, match="book-b"):
        index.replace_book("book-a", _segments({("book-b", 3): "x y z"}))
    assert index.count(SEGMENTS) == 4  # nothing deleted on the rejected call


def test_filters_tags_any_of_book_and_page_range(index: VectorIndex) -> None:
    index.upsert_segments(_segments())
    query = "trend breakout stop volatility funding interest"

    def ids(**filters: object) -> set[str]:
        return {
            h.id for h in index.search(SEGMENTS, query, mode="dense", limit=10, filters=filters)
        }

    assert ids(tags=["risk", "trend"]) == {"seg-book-a-1", "seg-book-a-3"}
    assert ids(tags="entry") == {"seg-book-a-2", "seg-book-b-2", "seg-book-b-7"}
    assert ids(book_id="book-b", page=(2, 7)) == {"seg-book-b-2", "seg-book-b-7"}
    assert ids(page={"gte": 3}) == {"seg-book-a-3", "seg-book-b-7"}
    assert ids(book_id=["book-a"], tags=["entry"], page=2) == {"seg-book-a-2"}
    for mode in ("sparse", "hybrid"):
        hits = index.search(SEGMENTS, query, mode=mode, limit=10, filters={"book_id": "book-a"})
        assert hits and {h.payload["book_id"] for h in hits} == {"book-a"}
    with pytest.raises(ConfigError, match="colour"):
        index.search(SEGMENTS, query, filters={"colour": "red"})
    with pytest.raises(ConfigError, match="page"):
        index.search(SEGMENTS, query, filters={"page": "three"})


def test_sparse_scores_equal_reference_bm25(index: VectorIndex) -> None:
    """Qdrant's IDF modifier plus our document weights must give textbook Okapi BM25."""
    k1, b, avgdl = index.sparse.k1, index.sparse.b, index.sparse.avg_doc_length
    index.upsert_segments(_segments())
    docs = {f"seg-{book}-{page}": tokenize(text) for (book, page), text in TEXTS.items()}
    n = len(docs)
    query = "trend breakout with rising price"
    terms = set(tokenize(query))

    def bm25(tokens: list[str]) -> float:
        counts = Counter(tokens)
        score = 0.0
        for term in terms:
            df = sum(term in set(d) for d in docs.values())
            if counts[term] == 0:
                continue
            idf = math.log((n - df + 0.5) / (df + 0.5) + 1)
            tf = counts[term]
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(tokens) / avgdl))
        return score

    expected = {doc_id: bm25(tokens) for doc_id, tokens in docs.items() if bm25(tokens) > 0}
    hits = index.search(SEGMENTS, query, mode="sparse", limit=10)
    assert {h.id for h in hits} == set(expected)
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.id], rel=1e-5)
    assert [h.id for h in hits] == sorted(expected, key=expected.__getitem__, reverse=True)


class TableEmbedder:
    """A crafted 'semantic' embedder: each known text maps to a hand-set topic vector."""

    name = "table-4"
    dim = 4

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = table

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.array([self.table[text] for text in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_hybrid_recovers_what_dense_and_sparse_each_miss(tmp_path: Path) -> None:
    # Topic axes: [stop, atr, funding, trend].
    docs = {
        "stop": (
            "Hold the position and cut its cost: place the protective stop below the low.",
            [1, 0, 0, 0],
        ),
        "atr": ("Divide the risk budget by the average true range (ATR) for sizing.", [0, 1, 0, 0]),
        "funding": ("Perpetual swaps charge longs a periodic funding payment.", [0, 0, 1, 0]),
        "trend": ("Moving averages follow the trend.", [0, 0, 0, 1]),
    }
    # q_atr: the dense model confuses ATR sizing with stops; BM25 matches 'atr' and 'sizing'.
    # q_funding: BM25 is lured by 'hold', 'position', 'cost'; the dense model knows it's funding.
    queries = {
        "q_atr": ("ATR sizing", [0.8, 0.6, 0, 0], "atr"),
        "q_funding": ("cost to hold a perpetual position", [0, 0.1, 0.95, 0.2], "funding"),
    }
    table = {text: vec for text, vec in docs.values()}
    table.update({text: vec for text, vec, _ in queries.values()})
    segments = [
        KbSegment(id=key, book_id="b", book_title="B", page=i + 1, text=text)
        for i, (key, (text, _)) in enumerate(docs.items())
    ]
    with VectorIndex(tmp_path / "q", embedder=TableEmbedder(table)) as index:
        index.upsert_segments(segments)

        def top(query: str, mode: str) -> str:
            return index.search(SEGMENTS, query, mode=mode, limit=3)[0].id

        q_atr, _, want_atr = queries["q_atr"]
        q_funding, _, want_funding = queries["q_funding"]
        assert top(q_atr, "dense") != want_atr  # premise: dense misses one query
        assert top(q_atr, "sparse") == want_atr
        assert top(q_funding, "sparse") != want_funding  # premise: sparse misses the other
        assert top(q_funding, "dense") == want_funding
        assert top(q_atr, "hybrid") == want_atr
        assert top(q_funding, "hybrid") == want_funding
        # RRF score: sum over lists of 1 / (rank + k - 1); 'atr' is dense #2 and sparse #1.
        k = index.rrf_k
        fused = index.search(SEGMENTS, q_atr, mode="hybrid", limit=1)[0].score
        assert fused == pytest.approx(1 / (2 + k - 1) + 1 / (1 + k - 1))
        # Weighted: a list of weight w contributes 1 / (rank / w + k - 1).
        index.rrf_weights = (2.0, 1.0)
        fused = index.search(SEGMENTS, q_atr, mode="hybrid", limit=1)[0].score
        assert fused == pytest.approx(1 / (2 / 2.0 + k - 1) + 1 / (1 + k - 1))


def test_concepts_and_modules_are_indexed_with_their_payloads(index: VectorIndex) -> None:
    concept = KbConcept(
        id="con-1",
        name="Volatility breakout",
        description="Enter when price closes beyond a multiple of ATR from the prior close.",
        entry_ideas=["close > prior close + 2 * ATR"],
        tags=["volatility", "entry"],
        evidence=[EvidenceQuote(segment_id="seg-book-a-2", page=2, quote="size positions by ATR")],
        provenance=Provenance(book_ids=["book-a"], pages=[2], segment_ids=["seg-book-a-2"]),
    )
    modules = [
        ModuleDoc(
            id="mod-1",
            kind=ModuleKind.ENTRY,
            name="donchian_breakout",
            description="Long when the close breaks the highest high.",
            logic={"long": "close > highest(high, 20)[1]"},
            concept_ids=["con-1"],
        ),
        ModuleDoc(
            id="mod-2",
            kind=ModuleKind.EXIT,
            name="atr_trailing_stop",
            description="Exit when price falls 3 ATR below the highest close.",
            logic={"exit_long": "close < highest(close, 22) - 3 * atr(14)"},
        ),
    ]
    assert index.upsert_concepts([concept]) == 1
    assert index.upsert_modules(modules) == 2
    hit = index.search(CONCEPTS, "ATR breakout", limit=1, filters={"page": 2})[0]
    assert hit.id == "con-1" and hit.payload["book_id"] == ["book-a"]
    assert hit.payload["segment_ids"] == ["seg-book-a-2"]
    exits = index.search(MODULES, "breakout highest stop", limit=5, filters={"kind": "exit"})
    assert [h.id for h in exits] == ["mod-2"]
    assert index.search(MODULES, "highest", mode="sparse", limit=5)[0].payload["kind"] in {
        "entry",
        "exit",
    }
    assert index.delete_by_book("book-a", collections=(CONCEPTS,)) == 1
    assert index.count(CONCEPTS) == 0 and index.count(MODULES) == 2


def test_second_client_on_same_path_fails_until_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    first = VectorIndex(path, embedder=HashingEmbedder(dim=32))
    first.upsert_segments(_segments())
    with pytest.raises(StoreError, match="already open"):
        VectorIndex(path, embedder=HashingEmbedder(dim=32))
    first.close()
    first.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        first.count(SEGMENTS)
    with VectorIndex(path, embedder=HashingEmbedder(dim=32)) as second:
        assert second.count(SEGMENTS) == len(TEXTS)


def test_changed_embedder_recreates_on_write_and_refuses_search(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    with VectorIndex(path, embedder=HashingEmbedder(dim=32)) as index:
        index.upsert_segments(_segments())
    with VectorIndex(path, embedder=HashingEmbedder(dim=48)) as index:
        assert index.count(SEGMENTS) == len(TEXTS)
        with pytest.raises(StoreError, match="re-index"):
            index.search(SEGMENTS, "stop")
        index.upsert_segments(_segments()[:2])
        assert index.count(SEGMENTS) == 2
        assert len(index.search(SEGMENTS, "stop", limit=5)) >= 1
    other_sparse = SparseEncoder(k1=2.0)
    with (
        VectorIndex(path, embedder=HashingEmbedder(dim=48), sparse=other_sparse) as index,
        pytest.raises(StoreError, match="sparse_encoder"),
    ):
        index.search(SEGMENTS, "stop")


def test_missing_collection_searches_empty_and_bad_arguments_raise(index: VectorIndex) -> None:
    assert index.search(CONCEPTS, "anything") == []
    assert index.count(MODULES) == 0
    with pytest.raises(ConfigError, match="unknown collection"):
        index.search("nope", "x")
    index.upsert_segments(_segments())
    with pytest.raises(ConfigError, match="mode"):
        index.search(SEGMENTS, "x", mode="fuzzy")  # type: ignore[arg-type]
    assert index.search(SEGMENTS, "the and of", mode="sparse") == []
    assert len(index.search(SEGMENTS, "the and of", mode="hybrid", limit=2)) == 2  # dense only
    with pytest.raises(ConfigError, match="not both"):
        VectorIndex(Path("x"), url="http://127.0.0.1:6333", embedder=HashingEmbedder())


def test_from_settings_opens_local_path_or_server_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server client checks the server version in a background thread and warns when it
    # cannot; there is no server in this test, so skip that check.
    monkeypatch.setattr(
        "qdrant_client.qdrant_remote.QdrantRemote._check_compatibility",
        staticmethod(lambda *args: None),
    )
    local = load_settings(qdrant_path=tmp_path / "q")
    with VectorIndex.from_settings(local, embedder=HashingEmbedder(dim=32)) as index:
        index.upsert_segments(_segments())
    assert (tmp_path / "q").is_dir()
    remote = load_settings(qdrant_url="http://127.0.0.1:9")  # nothing listens on port 9
    with VectorIndex.from_settings(remote, embedder=HashingEmbedder(dim=32)) as index:
        assert index.url == "http://127.0.0.1:9"
        with pytest.raises(StoreError, match="127.0.0.1:9"):
            index.count(SEGMENTS)
