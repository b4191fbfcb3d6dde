"""Document store: migrations, idempotent upserts, partition replacement, atomic batches."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from factory_pipeline.errors import StoreError
from factory_pipeline.schemas import (
    BacktestDoc,
    KbSegment,
    Provenance,
    SystemDoc,
    SystemStatus,
    stable_id,
)
from factory_pipeline.store import DocumentStore, Store, apply_migrations, schema_version
from factory_pipeline.store.migrations import MIGRATIONS


def _system(i: int, status: SystemStatus = SystemStatus.CANDIDATE) -> SystemDoc:
    return SystemDoc(
        id=f"sys-{i}", name=f"system {i}", spec_hash=f"h{i}", spec={"entry": f"m{i}"}, status=status
    )


def _backtest(i: int, partition: str) -> BacktestDoc:
    return BacktestDoc(
        id=f"bt-{partition}-{i}",
        system_id=f"sys-{i}",
        spec_hash=f"h{i}",
        symbol=partition.split("|")[1],
        regime=partition.split("|")[0],
        partition_key=partition,
        data_start=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        data_end=dt.datetime(2024, 2, 1, tzinfo=dt.UTC),
        engine_version="1",
        metrics={"sharpe": float(i)},
    )


def test_migrations_apply_once_and_record_versions(tmp_path):
    path = tmp_path / "f.duckdb"
    Store(path)
    con = duckdb.connect(str(path))
    try:
        assert schema_version(con) == len(MIGRATIONS)
        assert apply_migrations(con) == []  # nothing pending the second time
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    finally:
        con.close()
    assert {"ohlcv", "funding", "systems", "backtests", "kb_segments", "trial_ledger"} <= tables


def test_migrations_are_contiguous():
    assert [m[0] for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_upsert_is_idempotent_by_id(tmp_path):
    docs = DocumentStore(Store(tmp_path / "f.duckdb"))
    docs.upsert([_system(1), _system(2)])
    docs.upsert([_system(1), _system(2)])
    assert docs.count(SystemDoc) == 2
    changed = _system(1).model_copy(update={"description": "edited"})
    docs.upsert([changed])
    assert docs.count(SystemDoc) == 2
    assert docs.get(SystemDoc, "sys-1").description == "edited"


def test_round_trip_keeps_every_field(tmp_path):
    docs = DocumentStore(Store(tmp_path / "f.duckdb"))
    seg = KbSegment(
        id=stable_id("seg", "abc", 3, 120),
        book_id="book-1",
        book_title="Trend",
        chapter="Ch 1",
        page=3,
        offset=120,
        text="Buy the breakout.",
        tags=["breakout"],
        provenance=Provenance(book_ids=["book-1"], pages=[3]),
    )
    docs.upsert([seg])
    assert docs.get(KbSegment, seg.id) == seg
    assert docs.list(KbSegment, {"book_id": "book-1", "page": 3}) == [seg]


def test_replace_partition_replaces_rows_never_duplicates(tmp_path):
    docs = DocumentStore(Store(tmp_path / "f.duckdb"))
    part = "trend_up|BTCUSDT"
    docs.replace_partition(BacktestDoc, part, [_backtest(i, part) for i in range(3)])
    docs.replace_partition(BacktestDoc, "range|BTCUSDT", [_backtest(9, "range|BTCUSDT")])
    docs.replace_partition(BacktestDoc, part, [_backtest(i, part) for i in range(2)])
    assert docs.count(BacktestDoc, {"partition_key": part}) == 2
    assert docs.count(BacktestDoc) == 3  # the other partition is untouched


def test_failed_batch_leaves_nothing_half_written(tmp_path):
    store = Store(tmp_path / "f.duckdb")
    docs = DocumentStore(store)
    docs.upsert([_system(1)])
    with pytest.raises(StoreError, match="duplicate id 'sys-2'"):
        docs.upsert([_system(2), _system(3), _system(2)])
    with pytest.raises(RuntimeError), store.transaction() as con:
        con.execute("DELETE FROM systems")
        raise RuntimeError("boom in the middle of a batch")
    assert [d.id for d in docs.list(SystemDoc)] == ["sys-1"]


def test_counts_and_filters(tmp_path):
    docs = DocumentStore(Store(tmp_path / "f.duckdb"))
    docs.upsert([_system(1), _system(2, SystemStatus.DEMO), _system(3, SystemStatus.DEMO)])
    assert docs.counts_by(SystemDoc, "status") == {"candidate": 1, "demo": 2}
    assert [d.id for d in docs.list(SystemDoc, {"status": ["demo"]})] == ["sys-2", "sys-3"]
    with pytest.raises(StoreError, match="cannot filter on 'doc'"):
        docs.list(SystemDoc, {"doc": "x"})


def test_store_reports_unopenable_file(tmp_path):
    bad = tmp_path / "not-a-db.duckdb"
    bad.write_bytes(b"this is not a duckdb file at all" * 100)
    with pytest.raises((StoreError, duckdb.Error)):
        Store(bad)


def test_replace_partitions_writes_every_collection_or_none(tmp_path) -> None:
    """Several collections of one partition are replaced together; a failing batch rolls back."""
    import pytest as _pytest

    from factory_pipeline.errors import StoreError
    from factory_pipeline.schemas import RobustnessDoc, StatusTransition
    from factory_pipeline.store import DocumentStore as _Docs
    from factory_pipeline.store import Store as _Store

    docs = _Docs(_Store(tmp_path / "p.duckdb"))
    first = RobustnessDoc(id="r1", system_id="s", spec_hash="h", engine_version="1")
    move = StatusTransition(
        id="t1", system_id="s", from_status="candidate", to_status="demo", policy_hash="p"
    )
    docs.replace_partitions("k", {RobustnessDoc: [first], StatusTransition: [move]})
    assert docs.count(RobustnessDoc) == 1 and docs.count(StatusTransition) == 1
    second = RobustnessDoc(id="r2", system_id="s", spec_hash="h", engine_version="1")
    with _pytest.raises(StoreError):
        docs.replace_partitions("k", {RobustnessDoc: [second], StatusTransition: [move, move]})
    assert [d.id for d in docs.list(RobustnessDoc)] == ["r1"]
    docs.replace_partitions("k", {RobustnessDoc: [second], StatusTransition: []})
    assert [d.id for d in docs.list(RobustnessDoc)] == ["r2"]
    assert docs.count(StatusTransition) == 0


def test_pinned_store_opens_the_file_once_for_its_thread_only(tmp_path, monkeypatch) -> None:
    """Store.pinned: every unit of work in the block reuses one connection (commits stay
    durable); other threads and code after the block open their own connections."""
    import threading

    import duckdb

    from factory_pipeline.schemas import RobustnessDoc
    from factory_pipeline.store import DocumentStore as _Docs
    from factory_pipeline.store import Store as _Store

    store = _Store(tmp_path / "pin.duckdb")
    opened: list[str] = []
    real_connect = duckdb.connect

    def counting_connect(*args, **kwargs):
        opened.append(threading.current_thread().name)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr("factory_pipeline.store.db.duckdb.connect", counting_connect)
    docs = _Docs(store)
    doc = RobustnessDoc(id="r", system_id="s", spec_hash="h", engine_version="1")
    with store.pinned() as pinned:
        assert pinned is store
        with store.pinned():  # nested: the outer pin stays in charge
            for _ in range(5):
                docs.upsert([doc])
                assert docs.count(RobustnessDoc) == 1
        other = threading.Thread(target=lambda: docs.count(RobustnessDoc), name="other")
        other.start()
        other.join()
    assert opened.count("MainThread") == 1 and opened.count("other") == 1
    docs.count(RobustnessDoc)
    assert opened.count("MainThread") == 2  # unpinned again: a short-lived connection
    assert _Docs(_Store(tmp_path / "pin.duckdb")).get(RobustnessDoc, "r") is not None
