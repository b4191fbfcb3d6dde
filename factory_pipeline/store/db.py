"""Opening the DuckDB store: short-lived connections, migrations on open, transactions.

DuckDB allows one writing process per file, so the factory never holds a connection longer than
one unit of work: open, do the batch in one transaction, close. Dagster steps that write share a
concurrency pool of size 1 (dagster.yaml), and :class:`Store` retries briefly when another
process holds the file. A unit of work made of many small reads and commits (one order, one bar
close of the demo runner) pins one connection for its duration (:meth:`Store.pinned`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import duckdb

from factory_pipeline.errors import StoreError
from factory_pipeline.store.migrations import MIGRATIONS

_migrate_lock = threading.Lock()


class Store:
    """A DuckDB file (or ``:memory:`` for tests) with the factory's schema."""

    def __init__(
        self,
        path: str | Path,
        *,
        lock_timeout_s: float = 30.0,
        connection_factory: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
        | None = None,
    ) -> None:
        """``connection_factory`` lets the Dagster shell hand in ``DuckDBResource.get_connection``
        so connections follow the resource's configuration and retry policy."""
        self.path = str(path)
        self.lock_timeout_s = lock_timeout_s
        self._connection_factory = connection_factory
        self._memory_con: duckdb.DuckDBPyConnection | None = None
        self._pin = threading.local()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            apply_migrations(con)

    @contextmanager
    def pinned(self) -> Iterator[Store]:
        """Hold ONE connection for a unit of work in the calling thread.

        Why: opening a DuckDB file costs ~10-30 ms, and an order or a bar close needs many reads
        and several commits. Inside the block every ``connect()`` / ``transaction()`` of this
        thread uses a fresh cursor of the one open connection (a commit is still a real, durable
        commit); other threads and nested pins behave as before. Pin for one unit of work, never
        longer: while pinned, other processes cannot open the file.
        """
        if getattr(self._pin, "cache", None) is not None:  # nested: the outer pin holds it
            yield self
            return
        self._pin.cache = {}
        try:
            if self.path == ":memory:":  # one shared connection already
                yield self
                return
            with self.connect() as con:
                self._pin.con = con
                try:
                    yield self
                finally:
                    self._pin.con = None
        finally:
            self._pin.cache = None

    def pin_cache(self) -> dict[str, Any] | None:
        """A dict that lives exactly as long as this thread's outermost pin (None unpinned).

        Why: while pinned, this process holds DuckDB's lock on the file, so no other process
        can change a table behind this thread's back. A reader that owns its tables (the
        trading ledger, the kill switch) may memoize reads here, provided it updates or drops
        them on each of its own writes. Nothing survives the pin: the next unit of work reads
        the store afresh.
        """
        return getattr(self._pin, "cache", None)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection, closed on exit (a cursor of the pinned connection inside
        :meth:`pinned`; of the shared one for ``:memory:``)."""
        pinned = getattr(self._pin, "con", None)
        if pinned is not None:
            cursor = pinned.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
            return
        if self._connection_factory is not None and self.path != ":memory:":
            with self._connection_factory() as con:
                yield con
            return
        if self.path == ":memory:":
            if self._memory_con is None:
                self._memory_con = duckdb.connect(":memory:")
            # A cursor per unit of work: DuckDB 2.0 refuses a new query on a connection whose
            # previous result was not fully consumed.
            cursor = self._memory_con.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
            return
        con = self._open_with_retry()
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One atomic write batch: everything or nothing is written."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            else:
                con.execute("COMMIT")

    def close(self) -> None:
        if self._memory_con is not None:
            self._memory_con.close()
            self._memory_con = None

    def _open_with_retry(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                return duckdb.connect(self.path)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise StoreError(f"cannot open DuckDB store {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)


def apply_migrations(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply pending migrations in one transaction; returns the versions applied."""
    with _migrate_lock:
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMPTZ)"
        )
        done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
        applied: list[int] = []
        pending = [m for m in MIGRATIONS if m[0] not in done]
        if pending:
            con.execute("BEGIN TRANSACTION")
            try:
                for version, description, sql in pending:
                    con.execute(sql)
                    con.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, now())", [version, description]
                    )
                    applied.append(version)
            except Exception as exc:
                con.execute("ROLLBACK")
                raise StoreError(f"schema migration failed: {exc}") from exc
            con.execute("COMMIT")
        return applied


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    rows = con.execute("SELECT max(version) FROM schema_migrations").fetchall()
    return int(rows[0][0] or 0) if rows else 0
