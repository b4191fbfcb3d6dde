"""Document repositories: idempotent upserts by stable id, partition replacement, reads.

Each collection is a DuckDB table with ``id`` (primary key), ``version``, ``created_at``,
``partition_key``, a few typed columns for filtering (see migrations.DOC_TABLES) and ``doc``,
the full document as JSON. Writing the same documents twice leaves one row per id; replacing a
partition deletes that partition's rows and writes the new ones in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from factory_pipeline.errors import StoreError
from factory_pipeline.schemas.documents import Document
from factory_pipeline.store.db import Store
from factory_pipeline.store.migrations import DOC_TABLES, DocTable

D = TypeVar("D", bound=Document)


def _table_for(model: type[Document]) -> DocTable:
    try:
        return DOC_TABLES[model.collection]
    except KeyError as exc:
        raise StoreError(f"no table for document type {model.__name__}") from exc


def _rows(docs: Sequence[Document], table: DocTable, partition_key: str | None) -> pa.Table:
    data: dict[str, list[Any]] = {
        "id": [],
        "version": [],
        "created_at": [],
        "partition_key": [],
        "doc": [],
    }
    for name, _ in table.columns:
        data[name] = []
    for doc in docs:
        payload = doc.model_dump(mode="json")
        data["id"].append(doc.id)
        data["version"].append(doc.version)
        data["created_at"].append(doc.created_at)
        data["partition_key"].append(partition_key)
        data["doc"].append(json.dumps(payload, sort_keys=True))
        for name, _ in table.columns:
            value = payload.get(name)
            data[name].append(value.value if hasattr(value, "value") else value)
    return pa.table(data)


def upsert_documents(
    con: duckdb.DuckDBPyConnection,
    docs: Sequence[Document],
    *,
    partition_key: str | None = None,
) -> int:
    """Insert or replace ``docs`` (all of one type) by id on an open connection/transaction."""
    if not docs:
        return 0
    model = type(docs[0])
    if any(type(d) is not model for d in docs):
        raise StoreError("upsert_documents: all documents in one batch must be of one type")
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise StoreError(f"{model.collection}: duplicate id {dup!r} within one write batch")
    table = _table_for(model)
    rows = _rows(docs, table, partition_key)
    con.register("_incoming_docs", rows)
    try:
        con.execute(f"DELETE FROM {table.name} WHERE id IN (SELECT id FROM _incoming_docs)")
        cols = ", ".join(rows.column_names)
        con.execute(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM _incoming_docs")
    finally:
        con.unregister("_incoming_docs")
    return len(docs)


class DocumentStore:
    """Typed access to the document collections of a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def upsert(self, docs: Iterable[Document], *, partition_key: str | None = None) -> int:
        """Idempotent insert-or-replace by id, in one transaction."""
        batch = list(docs)
        with self.store.transaction() as con:
            return upsert_documents(con, batch, partition_key=partition_key)

    def replace_partition(
        self, model: type[Document], partition_key: str, docs: Iterable[Document]
    ) -> int:
        """Delete every ``model`` row of ``partition_key`` and write ``docs``, atomically."""
        batch = list(docs)
        table = _table_for(model)
        with self.store.transaction() as con:
            con.execute(f"DELETE FROM {table.name} WHERE partition_key = ?", [partition_key])
            return upsert_documents(con, batch, partition_key=partition_key)

    def replace_partitions(
        self, partition_key: str, batches: Mapping[type[Document], Iterable[Document]]
    ) -> dict[str, int]:
        """Replace ``partition_key``'s rows in several collections in ONE transaction.

        Why: a backtest partition writes its results and their trade logs; a failure between the
        two writes must not leave results without trades (or trades of an older run).
        """
        materialized = {model: list(docs) for model, docs in batches.items()}
        written: dict[str, int] = {}
        with self.store.transaction() as con:
            for model, docs in materialized.items():
                table = _table_for(model)
                con.execute(f"DELETE FROM {table.name} WHERE partition_key = ?", [partition_key])
                written[table.name] = upsert_documents(con, docs, partition_key=partition_key)
        return written

    def get(self, model: type[D], doc_id: str) -> D | None:
        table = _table_for(model)
        with self.store.connect() as con:
            rows = con.execute(f"SELECT doc FROM {table.name} WHERE id = ?", [doc_id]).fetchall()
        return model.model_validate_json(rows[0][0]) if rows else None

    def list(
        self,
        model: type[D],
        where: dict[str, Any] | None = None,
        *,
        order_by: str = "id",
        limit: int | None = None,
    ) -> list[D]:
        """Documents whose typed columns equal ``where`` (column -> value or list of values)."""
        table = _table_for(model)
        allowed = {"id", "version", "partition_key", *(c for c, _ in table.columns)}
        clauses, params = [], []
        for column, value in (where or {}).items():
            if column not in allowed:
                raise StoreError(f"{table.name}: cannot filter on {column!r}")
            if isinstance(value, list | tuple | set):
                values = list(value)
                if not values:
                    return []
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
            else:
                clauses.append(f"{column} = ?")
                params.append(value)
        if order_by not in allowed | {"created_at"}:
            raise StoreError(f"{table.name}: cannot order by {order_by!r}")
        sql = f"SELECT doc FROM {table.name}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.store.connect() as con:
            rows = con.execute(sql, params).fetchall()
        return [model.model_validate_json(r[0]) for r in rows]

    def count(self, model: type[Document], where: dict[str, Any] | None = None) -> int:
        return len(self.list(model, where)) if where else self._count_all(model)

    def counts_by(self, model: type[Document], column: str) -> dict[str, int]:
        table = _table_for(model)
        if column not in {c for c, _ in table.columns}:
            raise StoreError(f"{table.name}: no typed column {column!r}")
        with self.store.connect() as con:
            rows = con.execute(
                f"SELECT {column}, count(*) FROM {table.name} GROUP BY 1 ORDER BY 1"
            ).fetchall()
        return {str(k): int(v) for k, v in rows}

    def _count_all(self, model: type[Document]) -> int:
        table = _table_for(model)
        with self.store.connect() as con:
            rows = con.execute(f"SELECT count(*) FROM {table.name}").fetchall()
        return int(rows[0][0]) if rows else 0
