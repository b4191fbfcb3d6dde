"""materialize() of the knowledge assets in a Dagster test instance (hash embedder, offline LLM,
tmp data dir): per-book partitions, a corrupt book failing alone, idempotent re-ingestion, a
changed book replacing only its own points, concepts and modules with their checks, a fabricated
quote caught by the blocking evidence check, and a removed book forgotten."""

import hashlib
import shutil
from pathlib import Path

import dagster as dg
import pytest

from factory_pipeline.defs.knowledge.assets import (
    CONCEPTS_PARTITION,
    book_pages,
    builtin_modules,
    kb_concepts,
    kb_segments,
    strategy_modules,
)
from factory_pipeline.defs.knowledge.checks import (
    active_modules_compile,
    concept_evidence_verified,
    library_modules_compile,
    module_provenance_complete,
)
from factory_pipeline.defs.knowledge.partitions import BOOKS_PARTITIONS_NAME
from factory_pipeline.defs.knowledge.resources import knowledge_resource
from factory_pipeline.defs.resources import build_resources
from factory_pipeline.knowledge.embeddings import HashingEmbedder
from factory_pipeline.knowledge.index import (
    CONCEPTS,
    MODULES,
    SEGMENTS,
    VectorIndex,
    build_filter,
)
from factory_pipeline.schemas import Book, EvidenceQuote, KbConcept, KbSegment, ModuleDoc
from factory_pipeline.settings import load_settings
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.strategy.modules import load_module_library

REPO_DATA = Path(__file__).resolve().parents[2] / "data"
SAMPLE_BOOK = "volatility_squeeze_breakout.md"
ALL_CHECKS = [
    concept_evidence_verified,
    active_modules_compile,
    library_modules_compile,
    module_provenance_complete,
]
# Three form-feed pages, each shorter than one chunk: 3 pages, 3 segments, one chapter.
ALPHA_PAGES = [
    "Chapter 1 Trends\n\nA trend is a sequence of higher highs and higher lows on the daily chart.",
    "Buy the pullback to the 20 period moving average when the trend is up.",
    "Place the stop below the last swing low and risk one percent per trade.",
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "books").mkdir()
    shutil.copytree(REPO_DATA / "modules", tmp_path / "modules")
    return tmp_path


@pytest.fixture
def resources(data_dir: Path) -> dict:
    settings = load_settings(data_dir=data_dir, embedding_backend="hash")
    return build_resources(settings) | {"knowledge": knowledge_resource(settings)}


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _book_id(name: str) -> str:
    """Independent of the reader: the documented id rule, stable_id('book', file name)."""
    import json

    digest = hashlib.sha256(json.dumps([name], sort_keys=True).encode()).hexdigest()
    return f"book-{digest[:16]}"


def _write_alpha(folder: Path, pages: list[str] = ALPHA_PAGES) -> str:
    (folder / "alpha.txt").write_text("\n\f\n".join(pages) + "\n")
    return _book_id("alpha.txt")


def _ingest(resources, instance, book_id: str, *, raise_on_error: bool = True):
    if book_id not in instance.get_dynamic_partitions(BOOKS_PARTITIONS_NAME):
        instance.add_dynamic_partitions(BOOKS_PARTITIONS_NAME, [book_id])
    return dg.materialize(
        [book_pages, kb_segments],
        resources=resources,
        instance=instance,
        partition_key=book_id,
        raise_on_error=raise_on_error,
    )


def _docs(data_dir: Path) -> DocumentStore:
    return DocumentStore(Store(data_dir / "factory.duckdb"))


def _points(data_dir: Path, collection: str, book_id: str | None = None) -> int:
    with VectorIndex(location=data_dir / "qdrant", embedder=HashingEmbedder()) as index:
        if book_id is None:
            return index.count(collection)
        selector = build_filter({"book_id": book_id})
        return index.client.count(collection, count_filter=selector, exact=True).count


def _failure_message(result) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a failed step"
    return failures[0].step_failure_data.error.message


def test_good_book_ingests_and_corrupt_book_fails_alone(data_dir, resources, instance):
    alpha = _write_alpha(data_dir / "books")
    broken_path = data_dir / "books" / "broken.pdf"
    broken_path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    broken = _book_id("broken.pdf")

    bad = _ingest(resources, instance, broken, raise_on_error=False)
    assert not bad.success
    message = _failure_message(bad)
    assert "broken.pdf" in message and "\n" not in message.strip()

    good = _ingest(resources, instance, alpha)
    assert good.success
    pages_meta = good.asset_materializations_for_node("book_pages")[0].metadata
    assert pages_meta["pages"].value == 3
    assert pages_meta["chapters"].value == 1
    assert "higher highs" in pages_meta["first_page"].value
    seg_meta = good.asset_materializations_for_node("kb_segments")[0].metadata
    assert seg_meta["segments"].value == 3
    assert seg_meta["vectors_written"].value == 3

    docs = _docs(data_dir)
    failed = docs.get(Book, broken)
    assert failed is not None and failed.status == "failed"
    assert "broken.pdf" in failed.error
    assert failed.content_hash == hashlib.sha256(broken_path.read_bytes()).hexdigest()
    ingested = docs.get(Book, alpha)
    assert ingested is not None and ingested.status == "ingested" and ingested.pages == 3
    segments = docs.list(KbSegment, {"book_id": alpha})
    assert sorted(s.page for s in segments) == [1, 2, 3]
    assert docs.list(KbSegment, {"book_id": broken}) == []
    assert _points(data_dir, SEGMENTS) == 3


def test_reingesting_is_idempotent_and_a_changed_book_replaces_only_its_points(
    data_dir, resources, instance
):
    alpha = _write_alpha(data_dir / "books")
    shutil.copy(REPO_DATA / "books" / SAMPLE_BOOK, data_dir / "books" / SAMPLE_BOOK)
    sample = _book_id(SAMPLE_BOOK)
    for book_id in (alpha, sample):
        assert _ingest(resources, instance, book_id).success
    docs = _docs(data_dir)

    def snapshot() -> dict[str, set[str]]:
        return {b: {s.id for s in docs.list(KbSegment, {"book_id": b})} for b in (alpha, sample)}

    before = snapshot()
    points_before = _points(data_dir, SEGMENTS)
    assert points_before == len(before[alpha]) + len(before[sample])

    assert _ingest(resources, instance, alpha).success  # unchanged file
    assert snapshot() == before
    assert _points(data_dir, SEGMENTS) == points_before

    # Edit page 3 only: page 1 and 2 keep their segment ids, page 3 gets a new one.
    _write_alpha(data_dir / "books", [*ALPHA_PAGES[:2], "Exit when the close crosses the average."])
    assert _ingest(resources, instance, alpha).success
    after = snapshot()
    assert after[sample] == before[sample]
    assert len(after[alpha]) == 3
    assert len(after[alpha] & before[alpha]) == 2
    assert _points(data_dir, SEGMENTS) == points_before
    assert _points(data_dir, SEGMENTS, alpha) == 3


@pytest.mark.slow
def test_concepts_and_modules_materialize_with_checks_passing(data_dir, resources, instance):
    for name in (SAMPLE_BOOK, "trend_following_across_timeframes.pdf"):
        shutil.copy(REPO_DATA / "books" / name, data_dir / "books" / name)
        assert _ingest(resources, instance, _book_id(name)).success

    result = dg.materialize(
        [kb_concepts, strategy_modules, builtin_modules, *ALL_CHECKS],
        resources=resources,
        instance=instance,
    )
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {c.check_key.name for c in ALL_CHECKS}
    assert all(c.passed for c in checks.values()), {k: c.metadata for k, c in checks.items()}

    docs = _docs(data_dir)
    concepts = docs.list(KbConcept)
    proposed = docs.list(ModuleDoc, {"partition_key": "proposed"})
    active = [m for m in proposed if m.status == "active"]
    library = load_module_library(data_dir / "modules")
    assert concepts and active
    assert all(m.invalid_reason for m in proposed if m.status == "invalid")
    assert {m.id for m in docs.list(ModuleDoc, {"partition_key": "library"})} == set(library)
    assert _points(data_dir, CONCEPTS) == len(concepts)
    assert _points(data_dir, MODULES) == len(active) + len(library)

    meta = result.asset_materializations_for_node("kb_concepts")[0].metadata
    assert meta["concepts"].value == len(concepts)
    assert meta["books"].value == 2
    assert "###" in meta["sample_cards"].value
    module_meta = result.asset_materializations_for_node("strategy_modules")[0].metadata
    assert module_meta["modules_active"].value == len(active)
    assert sum(
        module_meta[f"active_{k}"].value for k in ("entry", "exit", "filter", "risk", "management")
    ) == len(active)

    # A second run over the same corpus keeps every id.
    again = dg.materialize([kb_concepts, strategy_modules], resources=resources, instance=instance)
    assert again.success
    assert {c.id for c in docs.list(KbConcept)} == {c.id for c in concepts}
    assert {m.id for m in docs.list(ModuleDoc, {"partition_key": "proposed"})} == {
        m.id for m in proposed
    }


def test_fabricated_quote_fails_the_blocking_check_and_stops_modules(data_dir, resources, instance):
    shutil.copy(REPO_DATA / "books" / SAMPLE_BOOK, data_dir / "books" / SAMPLE_BOOK)
    assert _ingest(resources, instance, _book_id(SAMPLE_BOOK)).success
    docs = _docs(data_dir)
    segment = docs.list(KbSegment)[0]
    fake = KbConcept(
        id="concept-fabricated",
        name="Invented edge",
        description="A rule the book never states.",
        evidence=[
            EvidenceQuote(
                segment_id=segment.id,
                page=segment.page,
                quote="Always buy every breakout with ten times leverage.",
            )
        ],
    )
    docs.upsert([fake], partition_key=CONCEPTS_PARTITION + "-manual")

    result = dg.materialize(
        [kb_concepts, strategy_modules, concept_evidence_verified],
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    evaluation = next(
        c
        for c in result.get_asset_check_evaluations()
        if c.check_name == "concept_evidence_verified"
    )
    assert not evaluation.passed
    assert evaluation.metadata["problems"].value == 1
    failures = evaluation.metadata["failures"].value.records
    assert failures[0].data["id"] == "concept-fabricated"
    assert "quote not found" in failures[0].data["problem"]
    # blocking: strategy_modules did not run in that run
    assert result.asset_materializations_for_node("strategy_modules") == []
    assert docs.list(ModuleDoc) == []


def test_provenance_check_fails_when_a_cited_segment_is_gone(data_dir, resources, instance):
    shutil.copy(REPO_DATA / "books" / SAMPLE_BOOK, data_dir / "books" / SAMPLE_BOOK)
    assert _ingest(resources, instance, _book_id(SAMPLE_BOOK)).success
    assert dg.materialize(
        [kb_concepts, strategy_modules], resources=resources, instance=instance
    ).success
    docs = _docs(data_dir)
    module = next(m for m in docs.list(ModuleDoc) if m.status == "active")
    concept = docs.get(KbConcept, module.concept_ids[0])
    cited = concept.evidence[0].segment_id
    with Store(data_dir / "factory.duckdb").transaction() as con:
        con.execute("DELETE FROM kb_segments WHERE id = ?", [cited])

    result = dg.materialize(
        [strategy_modules, module_provenance_complete],
        selection=dg.AssetSelection.checks(module_provenance_complete),
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    evaluation = result.get_asset_check_evaluations()[0]
    assert not evaluation.passed
    problems = [r.data["problem"] for r in evaluation.metadata["failures"].value.records]
    assert any(cited in p and "missing" in p for p in problems)


def test_removed_book_is_forgotten_by_kb_concepts(data_dir, resources, instance):
    alpha = _write_alpha(data_dir / "books")
    shutil.copy(REPO_DATA / "books" / SAMPLE_BOOK, data_dir / "books" / SAMPLE_BOOK)
    sample = _book_id(SAMPLE_BOOK)
    for book_id in (alpha, sample):
        assert _ingest(resources, instance, book_id).success
    (data_dir / "books" / "alpha.txt").unlink()
    instance.delete_dynamic_partition(BOOKS_PARTITIONS_NAME, alpha)

    result = dg.materialize([kb_concepts], resources=resources, instance=instance)
    assert result.success
    assert (
        result.asset_materializations_for_node("kb_concepts")[0].metadata["books_removed"].value
        == 1
    )
    docs = _docs(data_dir)
    assert docs.get(Book, alpha) is None
    assert docs.list(KbSegment, {"book_id": alpha}) == []
    remaining = docs.list(KbSegment, {"book_id": sample})
    assert remaining
    assert _points(data_dir, SEGMENTS) == len(remaining)
    assert all(
        e.segment_id in {s.id for s in remaining} for c in docs.list(KbConcept) for e in c.evidence
    )


def test_automation_rebuilds_concepts_despite_a_failed_book(data_dir, resources, instance):
    shutil.copy(REPO_DATA / "books" / SAMPLE_BOOK, data_dir / "books" / SAMPLE_BOOK)
    (data_dir / "books" / "broken.pdf").write_bytes(b"not a pdf at all")
    definitions = dg.Definitions(
        assets=[book_pages, kb_segments, kb_concepts, strategy_modules, builtin_modules],
        asset_checks=ALL_CHECKS,
        resources=resources,
    )

    def requested(cursor=None) -> tuple[set[str], object]:
        evaluation = dg.evaluate_automation_conditions(
            defs=definitions, instance=instance, cursor=cursor
        )
        keys = {r.key.to_user_string() for r in evaluation.results if r.true_subset.size}
        return keys, evaluation.cursor

    first, cursor = requested()
    assert first == {"builtin_modules"}  # built once on a fresh deployment, books not yet in
    assert not _ingest(resources, instance, _book_id("broken.pdf"), raise_on_error=False).success
    assert _ingest(resources, instance, _book_id(SAMPLE_BOOK)).success
    second, cursor = requested(cursor)
    assert "kb_concepts" in second and "strategy_modules" not in second
    assert dg.materialize(
        [kb_concepts, concept_evidence_verified], resources=resources, instance=instance
    ).success
    third, _ = requested(cursor)
    assert "strategy_modules" in third and "kb_concepts" not in third
