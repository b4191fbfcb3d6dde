"""The trial ledger: every configuration the factory ever backtests, counted for the DSR.

The deflated Sharpe ratio discounts a result by how many configurations were tried to find it
and by how much their Sharpe ratios varied. Forgetting trials flatters every system, so each
backtested configuration is recorded here, in the DuckDB table ``trial_ledger``, and the DSR
reads ``N`` (:meth:`TrialLedger.count`) and ``Var[SR]`` (:meth:`TrialLedger.sharpe_variance`)
from it.

Counting rule: one trial per distinct (family, config hash, symbol, data range). Re-running the
same configuration on the same data is not a new trial (recording is idempotent by
``trial_id``); the same configuration on another symbol or another data range is. A family
groups the trials of one search (e.g. one system template on one timeframe): Sharpe ratios are
per period, so a family should hold trials of one bar period.

A trial whose Sharpe ratio is undefined (no trades, constant returns) is recorded with NaN: it
still counts in ``N`` (it was tried) but not in the variance. Semantics: docs/robustness.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from factory_pipeline.errors import StoreError
from factory_pipeline.schemas.documents import stable_id
from factory_pipeline.store.db import Store

_MAX_INTEGER = 2**31 - 1  # trial_ledger.n_periods is a 32-bit INTEGER


@dataclass(frozen=True)
class Trial:
    """One backtested configuration.

    ``sharpe`` is the per-period Sharpe ratio (NaN when undefined), ``n_periods`` the number of
    return periods it was measured on, ``data_start_ms``/``data_end_ms`` the bar range the
    backtest covered (open time of the first bar, close time of the last), ``detail`` any
    JSON-serializable extra (parameters, timeframe, engine version).
    """

    family: str
    config_hash: str
    sharpe: float
    n_periods: int
    data_start_ms: int
    data_end_ms: int
    symbol: str | None = None
    system_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def trial_id(self) -> str:
        """Stable id from family + config hash + symbol + data range."""
        return stable_id(
            "trial",
            self.family,
            self.config_hash,
            self.symbol,
            int(self.data_start_ms),
            int(self.data_end_ms),
        )


@dataclass(frozen=True)
class TrialStats:
    """Summary of the trials matching a filter (Sharpe figures ignore undefined Sharpe ratios)."""

    n_trials: int
    n_with_sharpe: int
    sharpe_mean: float
    sharpe_variance: float  # sample variance (ddof=1); NaN with fewer than 2 defined values
    sharpe_max: float


def hash_config(config: Mapping[str, Any]) -> str:
    """Stable hash of a configuration (parameters) for ``Trial.config_hash``; key order ignored."""
    try:
        return stable_id("cfg", json.loads(json.dumps(config, sort_keys=True, allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"configuration is not JSON-serializable: {exc}") from exc


class TrialLedger:
    """Reads and writes the ``trial_ledger`` table of a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, trials: Iterable[Trial]) -> int:
        """Record a batch in one transaction; returns how many trial ids were new.

        Idempotent by ``trial_id``: a trial already in the ledger is updated in place (latest
        Sharpe, period count and detail win; ``created_at`` keeps the first recording). Within a
        batch the last occurrence of an id wins. Any invalid trial rejects the whole batch with
        StoreError and nothing is written.
        """
        rows: dict[str, dict[str, Any]] = {}
        for position, trial in enumerate(trials):
            row = _row(trial, position)
            rows[row["trial_id"]] = row
        if not rows:
            return 0
        table = pa.table(
            {
                "trial_id": pa.array([r["trial_id"] for r in rows.values()], pa.string()),
                "family": pa.array([r["family"] for r in rows.values()], pa.string()),
                "system_id": pa.array([r["system_id"] for r in rows.values()], pa.string()),
                "config_hash": pa.array([r["config_hash"] for r in rows.values()], pa.string()),
                "symbol": pa.array([r["symbol"] for r in rows.values()], pa.string()),
                "sharpe": pa.array([r["sharpe"] for r in rows.values()], pa.float64()),
                "n_periods": pa.array([r["n_periods"] for r in rows.values()], pa.int32()),
                "detail": pa.array([r["detail"] for r in rows.values()], pa.string()),
            }
        )
        try:
            with self.store.transaction() as con:
                # (re)registering replaces a view left behind by an aborted batch; unregistering
                # is skipped on failure because an aborted transaction refuses it
                con.register("_incoming_trials", table)
                known = con.execute(
                    "SELECT count(*) FROM trial_ledger WHERE trial_id IN "
                    "(SELECT trial_id FROM _incoming_trials)"
                ).fetchone()
                con.execute(_UPSERT_SQL)
                con.unregister("_incoming_trials")
        except duckdb.Error as exc:
            raise StoreError(f"trial_ledger: writing {len(rows)} trials failed: {exc}") from exc
        return len(rows) - int(known[0] if known else 0)

    def count(self, family: str | None = None, *, symbol: str | None = None) -> int:
        """N for the DSR: trials recorded (for one family and/or symbol when given)."""
        return self.stats(family, symbol=symbol).n_trials

    def sharpe_variance(self, family: str | None = None, *, symbol: str | None = None) -> float:
        """Var[SR] for the DSR: sample variance of the defined per-period Sharpe ratios."""
        return self.stats(family, symbol=symbol).sharpe_variance

    def stats(self, family: str | None = None, *, symbol: str | None = None) -> TrialStats:
        """Count, defined-Sharpe count, mean, sample variance and max of the matching trials."""
        where, params = _filter(family, symbol)
        sql = (
            "SELECT count(*), count(sharpe), avg(sharpe), var_samp(sharpe), max(sharpe) "
            f"FROM trial_ledger{where}"
        )
        with self.store.connect() as con:
            row = con.execute(sql, params).fetchone()
        n_trials, n_sharpe, mean, variance, best = row if row else (0, 0, None, None, None)
        return TrialStats(
            n_trials=int(n_trials),
            n_with_sharpe=int(n_sharpe),
            sharpe_mean=_float_or_nan(mean),
            sharpe_variance=_float_or_nan(variance),
            sharpe_max=_float_or_nan(best),
        )

    def trials(self, family: str | None = None, *, symbol: str | None = None) -> list[Trial]:
        """The recorded trials matching the filter, ordered by trial id."""
        where, params = _filter(family, symbol)
        sql = (
            "SELECT family, config_hash, sharpe, n_periods, symbol, system_id, detail "
            f"FROM trial_ledger{where} ORDER BY trial_id"
        )
        with self.store.connect() as con:
            rows = con.execute(sql, params).fetchall()
        trials: list[Trial] = []
        for family_, config_hash, sharpe, n_periods, symbol_, system_id, detail in rows:
            payload = json.loads(detail)
            trials.append(
                Trial(
                    family=family_,
                    config_hash=config_hash,
                    sharpe=_float_or_nan(sharpe),
                    n_periods=int(n_periods),
                    data_start_ms=int(payload["data_start_ms"]),
                    data_end_ms=int(payload["data_end_ms"]),
                    symbol=symbol_,
                    system_id=system_id,
                    detail=payload["info"],
                )
            )
        return trials


_UPSERT_SQL = """
INSERT INTO trial_ledger
    (trial_id, family, system_id, config_hash, symbol, sharpe, n_periods, created_at, detail)
SELECT trial_id, family, system_id, config_hash, symbol, sharpe, n_periods, now(),
       CAST(detail AS JSON)
FROM _incoming_trials
ON CONFLICT (trial_id) DO UPDATE SET
    system_id = excluded.system_id,
    sharpe = excluded.sharpe,
    n_periods = excluded.n_periods,
    detail = excluded.detail
"""


def _row(trial: Trial, position: int) -> dict[str, Any]:
    """Validate one trial and turn it into a ledger row; StoreError names the bad field."""
    if not isinstance(trial, Trial):
        raise StoreError(f"trial #{position}: expected a Trial, got {type(trial).__name__}")
    where = f"trial #{position} (family {trial.family!r}, config {trial.config_hash!r})"
    for name in ("family", "config_hash"):
        value = getattr(trial, name)
        if not isinstance(value, str) or not value.strip():
            raise StoreError(f"{where}: {name} must be a non-empty string, got {value!r}")
    for name in ("symbol", "system_id"):
        value = getattr(trial, name)
        if value is not None and not isinstance(value, str):
            raise StoreError(f"{where}: {name} must be a string or None, got {value!r}")
    if isinstance(trial.sharpe, bool) or not isinstance(trial.sharpe, int | float | np.floating):
        raise StoreError(
            f"{where}: sharpe must be a number (NaN if undefined), got {trial.sharpe!r}"
        )
    sharpe = float(trial.sharpe)
    if math.isinf(sharpe):
        raise StoreError(f"{where}: sharpe must be finite or NaN, got {sharpe}")
    for name, low, high in (
        ("n_periods", 0, _MAX_INTEGER),
        ("data_start_ms", None, None),
        ("data_end_ms", None, None),
    ):
        value = getattr(trial, name)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise StoreError(f"{where}: {name} must be an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise StoreError(f"{where}: {name} must be in [{low}, {high}], got {value}")
    if trial.data_end_ms < trial.data_start_ms:
        raise StoreError(
            f"{where}: data_end_ms ({trial.data_end_ms}) is before data_start_ms "
            f"({trial.data_start_ms})"
        )
    if not isinstance(trial.detail, Mapping):
        raise StoreError(f"{where}: detail must be a mapping, got {type(trial.detail).__name__}")
    try:
        detail = json.dumps(
            {
                "data_start_ms": int(trial.data_start_ms),
                "data_end_ms": int(trial.data_end_ms),
                "info": dict(trial.detail),
            },
            sort_keys=True,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: detail is not JSON-serializable: {exc}") from exc
    return {
        "trial_id": trial.trial_id,
        "family": trial.family,
        "system_id": trial.system_id,
        "config_hash": trial.config_hash,
        "symbol": trial.symbol,
        "sharpe": None if math.isnan(sharpe) else sharpe,
        "n_periods": int(trial.n_periods),
        "detail": detail,
    }


def _filter(family: str | None, symbol: str | None) -> tuple[str, list[str]]:
    clauses: list[str] = []
    params: list[str] = []
    if family is not None:
        clauses.append("family = ?")
        params.append(family)
    if symbol is not None:
        clauses.append("symbol = ?")
        params.append(symbol)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _float_or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
