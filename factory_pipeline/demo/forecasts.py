"""Forecast documents: what the runner decided and what the backtest expected from it.

Why: every demo decision is logged next to the backtest's expectation (win probability,
expected R) so the daily evaluation can compare demo outcomes with what the spec promised, and
so every order traces back to the decision, the spec version and the modules that made it.

- :class:`BacktestExpectations` reads a system's backtests (only those of its current spec hash)
  and their trades once; :meth:`~BacktestExpectations.expected` gives the overall figures plus
  the same figures restricted to the symbol and to the regime at decision time when the
  backtests have trades there.
- :func:`build_forecast` makes the ForecastDoc with a stable id (system, symbol, bar): a re-run
  for the same bar replaces the document instead of adding one.
- :func:`regime_at` is the stored regime label at a time: the last labelled window that had
  *ended* by then (a window still open is not known yet).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from factory_pipeline.demo.decisions import Decision
from factory_pipeline.schemas import (
    BacktestDoc,
    BacktestTrade,
    ForecastDoc,
    Provenance,
    SystemDoc,
    stable_id,
)
from factory_pipeline.store import DocumentStore

#: ForecastDoc.action for each decision action (the document's closed set).
FORECAST_ACTIONS = {
    "enter": "enter",
    "reverse": "enter",
    "exit": "exit",
    "hold": "hold",
    "skip": "skip",
}


@dataclass(frozen=True)
class _TradeRow:
    symbol: str
    regime: str
    net_pnl: float
    r_multiple: float
    return_pct: float
    bars_held: int


@dataclass(frozen=True)
class BacktestExpectations:
    """A system version's backtest trades, ready to summarize per symbol and regime."""

    system_id: str
    spec_hash: str
    backtest_ids: tuple[str, ...]
    trades: tuple[_TradeRow, ...]

    @classmethod
    def load(cls, docs: DocumentStore, system: SystemDoc) -> BacktestExpectations:
        """The backtests of ``system`` with its spec hash and their trades (one query each)."""
        return cls.load_many(docs, [system])[system.id]

    @classmethod
    def load_many(
        cls, docs: DocumentStore, systems: Sequence[SystemDoc]
    ) -> dict[str, BacktestExpectations]:
        """:meth:`load` for several systems with two queries in all (system id -> result)."""
        if not systems:
            return {}
        hashes = {system.id: system.spec_hash for system in systems}
        backtests = docs.list(BacktestDoc, {"system_id": sorted(hashes)})
        current = {b.id: b for b in backtests if b.spec_hash == hashes.get(b.system_id)}
        rows: dict[str, list[_TradeRow]] = {system_id: [] for system_id in hashes}
        if current:
            for trade in docs.list(BacktestTrade, {"backtest_id": sorted(current)}):
                backtest = current[trade.backtest_id]
                notional = trade.entry_price * trade.qty
                rows[backtest.system_id].append(
                    _TradeRow(
                        symbol=backtest.symbol,
                        regime=backtest.regime,
                        net_pnl=trade.net_pnl,
                        r_multiple=trade.r_multiple,
                        return_pct=trade.net_pnl / notional * 100.0 if notional > 0 else math.nan,
                        bars_held=trade.bars_held,
                    )
                )
        ids: dict[str, list[str]] = {system_id: [] for system_id in hashes}
        for backtest in current.values():
            ids[backtest.system_id].append(backtest.id)
        return {
            system_id: cls(system_id, spec, tuple(sorted(ids[system_id])), tuple(rows[system_id]))
            for system_id, spec in hashes.items()
        }

    def expected(self, symbol: str = "", regime: str = "") -> dict[str, float]:
        """``n_trades``, ``win_probability`` (share with net PnL > 0), ``expected_r`` (mean R
        over trades with a stop), ``expected_return_pct`` and ``avg_bars_held`` over all the
        version's backtest trades; the same with suffix ``_symbol`` / ``_regime`` over the
        trades of backtests on ``symbol`` / labelled ``regime`` when there are any. Empty when
        the system has no backtest trades."""
        out = _summary(self.trades, "")
        if symbol:
            out |= _summary([t for t in self.trades if t.symbol == symbol], "_symbol")
        if regime:
            out |= _summary([t for t in self.trades if t.regime == regime], "_regime")
        return out


def build_forecast(
    system: SystemDoc,
    symbol: str,
    decision: Decision,
    *,
    regime: str,
    expected: dict[str, float],
    orders: Sequence[str],
    notes: str = "",
) -> ForecastDoc:
    """The ForecastDoc of one decision (stable id: system, symbol, bar close)."""
    features = {
        key: value
        for key, value in {**decision.features, **decision.position_after.to_features()}.items()
        if math.isfinite(value)  # JSON has no NaN; a missing state key reads back as NaN
    }
    detail = f"action={decision.action}"
    if decision.exit_reason:
        detail += f" exit_reason={decision.exit_reason}"
    if decision.entry_qty > 0:
        detail += f" side={'long' if decision.side > 0 else 'short'} qty={decision.entry_qty:g}"
    if decision.reason:
        detail += f" reason={decision.reason}"
    if notes:
        detail += f" {notes}"
    return ForecastDoc(
        id=forecast_id(system.id, symbol, decision.bar_close_ms),
        system_id=system.id,
        spec_hash=system.spec_hash,
        symbol=symbol,
        decision_time=dt.datetime.fromtimestamp(decision.bar_close_ms / 1000, tz=dt.UTC),
        regime=regime,
        features=features,
        expected=expected,
        action=FORECAST_ACTIONS[decision.action],  # type: ignore[arg-type]
        orders=list(orders),
        provenance=Provenance(
            source="demo-runner",
            system_ids=[system.id],
            module_ids=list(system.provenance.module_ids),
            concept_ids=list(system.provenance.concept_ids),
            notes=detail,
        ),
    )


def forecast_id(system_id: str, symbol: str, bar_close_ms: int) -> str:
    """Stable id of the forecast of one system, symbol and decision bar."""
    return stable_id("forecast", system_id, symbol, int(bar_close_ms))


def regime_at(labels: pa.Table, time_ms: int) -> str:
    """Label of the last window ending at or before ``time_ms`` ("" when none has)."""
    if labels.num_rows == 0:
        return ""
    ends = labels.column("window_end").to_numpy()
    order = np.argsort(ends, kind="stable")
    k = int(np.searchsorted(ends[order], time_ms, side="right")) - 1
    if k < 0:
        return ""
    return str(labels.column("regime")[int(order[k])].as_py())


# -- helpers ---------------------------------------------------------------------------------


def _summary(trades: Iterable[_TradeRow], suffix: str) -> dict[str, float]:
    rows = list(trades)
    if not rows:
        return {}
    net = np.array([t.net_pnl for t in rows])
    r = np.array([t.r_multiple for t in rows])
    ret = np.array([t.return_pct for t in rows])
    out = {
        f"n_trades{suffix}": float(len(rows)),
        f"win_probability{suffix}": float(np.mean(net > 0)),
        f"avg_bars_held{suffix}": float(np.mean([t.bars_held for t in rows])),
    }
    if np.isfinite(r).any():
        out[f"expected_r{suffix}"] = float(np.mean(r[np.isfinite(r)]))
    if np.isfinite(ret).any():
        out[f"expected_return_pct{suffix}"] = float(np.mean(ret[np.isfinite(ret)]))
    return out
