"""What a backtest returns: closed trades, the open trade at the end, the equity curve, counters.

Trades are a numpy structured array (``TRADE_DTYPE``) that the kernel fills in place, one
record per closed trade; :meth:`BacktestResult.trades_table` gives them as Arrow with readable
sides and exit reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from factory_pipeline.engine.config import ExitReason, SimConfig

#: One trade. Prices/PnL in quote currency; ``side`` is +1 long / -1 short;
#: ``mae``/``mfe`` are adverse/favourable excursions in price units (``*_pct``: % of entry);
#: ``risk`` is the initial stop distance (NaN without a stop); ``exit_price`` is the
#: quantity-weighted average of all exit fills (partial take-profit included).
TRADE_DTYPE = np.dtype(
    [
        ("entry_bar", np.int64),
        ("exit_bar", np.int64),
        ("entry_time", np.int64),
        ("exit_time", np.int64),
        ("side", np.int8),
        ("qty", np.float64),
        ("entry_price", np.float64),
        ("exit_price", np.float64),
        ("gross_pnl", np.float64),
        ("fees", np.float64),
        ("funding", np.float64),
        ("net_pnl", np.float64),
        ("mae", np.float64),
        ("mfe", np.float64),
        ("mae_pct", np.float64),
        ("mfe_pct", np.float64),
        ("risk", np.float64),
        ("r_multiple", np.float64),
        ("exit_reason", np.int8),
        ("bars_held", np.int64),
        ("partial_qty", np.float64),
        ("return_pct", np.float64),
    ],
    align=True,
)


@dataclass(frozen=True)
class BacktestResult:
    """Outcome of one simulation.

    ``trades`` holds closed trades only. ``open_trade`` (length 0 or 1) is the position still
    open after the last bar, marked to the last close with ``exit_reason == END`` and no exit
    fee; it is not counted in trade metrics. ``equity[i]`` is cash plus the open position
    marked at ``close[i]``, after everything that happened in bar ``i``.
    """

    config: SimConfig
    trades: np.ndarray
    open_trade: np.ndarray
    equity: np.ndarray
    open_time: np.ndarray
    close_time: np.ndarray
    ambiguous_bars: int
    skipped_orders: int
    stats: np.ndarray

    @property
    def initial_cash(self) -> float:
        return self.config.initial_cash

    @property
    def final_equity(self) -> float:
        """Equity after the last bar (the open trade marked to the last close)."""
        return float(self.equity[-1]) if len(self.equity) else self.initial_cash

    def trades_table(self, include_open: bool = False) -> pa.Table:
        """Closed trades (plus the open one when asked) as Arrow, exit reasons as names."""
        rows = np.concatenate([self.trades, self.open_trade]) if include_open else self.trades
        columns = {name: rows[name] for name in TRADE_DTYPE.names}
        columns["side"] = np.where(rows["side"] > 0, "long", "short")
        columns["exit_reason"] = np.array(
            [ExitReason(int(code)).name.lower() for code in rows["exit_reason"]], dtype=object
        )
        table = pa.table({name: pa.array(values) for name, values in columns.items()})
        for name in ("entry_time", "exit_time"):
            idx = table.schema.get_field_index(name)
            table = table.set_column(idx, name, table[name].cast(pa.timestamp("ms", tz="UTC")))
        return table
