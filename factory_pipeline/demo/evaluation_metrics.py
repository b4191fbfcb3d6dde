"""The math of the daily demo evaluation, on small typed inputs (no store, no Dagster).

Why a module of its own: every figure the demo rules read (promotion.rules.DEMO_METRICS) must be
derivable by hand from a handful of fills, so the math is kept apart from where the fills come
from (the gateway's tables, loaded by :mod:`factory_pipeline.demo.evaluation`). Definitions and
units: docs/demo_evaluation.md.

Conventions:

- A fill is signed by side (Buy +qty, Sell -qty). Positions are tracked per (system, symbol) at
  average cost; a **closed trade** runs from the fill that opens a flat position to the fill
  that brings it back to flat (a fill that crosses zero closes one trade and opens the next with
  the remainder, its fee split pro rata by quantity).
- A trade's net PnL = realized price PnL - every fee of its fills; ``return_pct`` = net / entry
  notional x 100 and ``r_multiple`` = net / (stop distance x qty) exactly as the backtest
  (docs/backtest_semantics.md); a trade whose entry carried no stop has no R.
- Day attribution is by UTC day of the fill time (a trade belongs to the day its last fill is in).
- Slippage of a fill in bps, signed so that adverse is positive: Buy ``(price/ref - 1) x 1e4``,
  Sell ``(1 - price/ref) x 1e4``; fills without a reference (decision) price are not counted.
- Demo equity = initial equity + cumulative realized PnL net of fees, sampled after every fill
  and, when a mark price is available, marked to market at every UTC day close.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

DAY_MS = 86_400_000
#: A position smaller than this (relative to the fill size) counts as flat: float dust.
_FLAT_TOLERANCE = 1e-9

IssueKind = Literal["rejected", "ambiguous_unresolved", "reconciliation_diff"]
ISSUE_KINDS: tuple[IssueKind, ...] = ("rejected", "ambiguous_unresolved", "reconciliation_diff")

#: A mark price source: (symbol, time_ms) -> the last known price at or before time_ms, or None.
MarkPrice = Callable[[str, int], float | None]


@dataclass(frozen=True)
class DemoFill:
    """One execution of a demo order, attributed to a system."""

    system_id: str
    symbol: str
    side: Literal["Buy", "Sell"]
    qty: float
    price: float
    fee: float
    time_ms: int
    order_link_id: str = ""
    #: The decision price the order was sent against (OrderRequest.reference_price).
    reference_price: float | None = None
    #: The stop-loss price set with the order (gives the trade's initial risk, hence R).
    stop_loss: float | None = None


@dataclass(frozen=True)
class ExecutionIssue:
    """Something that went wrong executing a system's orders on demo."""

    system_id: str
    time_ms: int
    kind: IssueKind
    detail: str = ""


@dataclass(frozen=True)
class BacktestExpectation:
    """What the backtest of the same spec expects (None = unknown)."""

    win_rate: float | None = None
    expectancy_r: float | None = None
    expectancy_pct: float | None = None
    slippage_bps: float | None = None
    evidence_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClosedTrade:
    """A round trip from flat to flat of one system on one symbol."""

    system_id: str
    symbol: str
    side: Literal["long", "short"]
    entry_time_ms: int
    exit_time_ms: int
    qty: float
    entry_price: float
    exit_price: float
    gross_pnl: float
    fees: float
    net_pnl: float
    return_pct: float
    r_multiple: float | None


@dataclass(frozen=True)
class SystemDemoActivity:
    """Everything the evaluation of one system needs, all of it up to the evaluated day's end."""

    system_id: str
    spec_hash: str
    fills: Sequence[DemoFill]
    issues: Sequence[ExecutionIssue] = ()
    expectation: BacktestExpectation = field(default_factory=BacktestExpectation)
    initial_equity: float = 10_000.0
    #: Ids of the orders behind the fills (exchange order ids or orderLinkIds), for traceability.
    order_ids: Sequence[str] = ()


def compute_demo_metrics(
    activity: SystemDemoActivity, day: dt.date, *, mark_price: MarkPrice | None = None
) -> tuple[dict[str, float | None], list[str]]:
    """The metrics of one system for UTC ``day`` (day figures and cumulative through its end),
    and the day's execution issues as text. Fills and issues after the day are ignored.

    Keys (units in docs/demo_evaluation.md): every name of promotion.rules.DEMO_METRICS plus the
    day figures and the comparisons with the backtest.
    """
    day_start = day_start_ms(day)
    day_end = day_start + DAY_MS
    fills = sorted(
        (f for f in activity.fills if f.time_ms < day_end), key=lambda f: (f.time_ms, f.symbol)
    )
    trades, fill_pnl = reconstruct_trades(fills)
    day_trades = [t for t in trades if day_start <= t.exit_time_ms < day_end]
    day_fill_pnl = [p for f, p in zip(fills, fill_pnl, strict=True) if f.time_ms >= day_start]
    issues = [i for i in activity.issues if i.time_ms < day_end]
    day_issues = [i for i in issues if i.time_ms >= day_start]
    expectation = activity.expectation

    hit_rate = _mean([1.0 if t.net_pnl > 0 else 0.0 for t in trades])
    realized_r = _mean([t.r_multiple for t in trades if t.r_multiple is not None])
    expectancy_pct = _mean([t.return_pct for t in trades])
    slippage = [s for s in (fill_slippage_bps(f) for f in fills) if s is not None]
    day_slippage = [fill_slippage_bps(f) for f in fills if f.time_ms >= day_start]
    avg_slippage = _mean(slippage)
    counts = {kind: sum(1 for i in issues if i.kind == kind) for kind in ISSUE_KINDS}
    equity = equity_path(activity.initial_equity, fills, fill_pnl, day, mark_price)

    metrics: dict[str, float | None] = {
        # DEMO_METRICS (read by the rules)
        "demo_days": float(len({day_of_ms(f.time_ms) for f in fills})),
        "demo_trades": float(len(trades)),
        "pnl_deviation": pnl_deviation(expectancy_pct, expectation.expectancy_pct),
        "avg_slippage_bps": avg_slippage,
        "execution_issues": float(len(issues)),
        "demo_max_drawdown": max_drawdown(equity),
        # the day
        "day_fills": float(len(day_fill_pnl)),
        "day_closed_trades": float(len(day_trades)),
        "day_realized_pnl": float(sum(day_fill_pnl)),
        "day_fees": float(sum(f.fee for f in fills if f.time_ms >= day_start)),
        "day_avg_slippage_bps": _mean(day_slippage),
        "day_execution_issues": float(len(day_issues)),
        # cumulative, against the backtest
        "realized_pnl": float(sum(fill_pnl)),
        "demo_equity": equity[-1] if equity else activity.initial_equity,
        "hit_rate": hit_rate,
        "expected_win_rate": expectation.win_rate,
        "hit_rate_deviation": _difference(hit_rate, expectation.win_rate),
        "realized_r": realized_r,
        "expected_r": expectation.expectancy_r,
        "r_deviation": _difference(realized_r, expectation.expectancy_r),
        "expectancy_pct": expectancy_pct,
        "backtest_expectancy_pct": expectation.expectancy_pct,
        "model_slippage_bps": expectation.slippage_bps,
        "slippage_vs_model_bps": _difference(avg_slippage, expectation.slippage_bps),
        "rejected_orders": float(counts["rejected"]),
        "unresolved_ambiguous_orders": float(counts["ambiguous_unresolved"]),
        "reconciliation_diffs": float(counts["reconciliation_diff"]),
        "open_position_symbols": float(len(open_positions(fills))),
    }
    issue_lines = [
        f"{_iso_ms(i.time_ms)} {i.kind}: {i.detail}".rstrip(": ")
        for i in sorted(day_issues, key=lambda i: (i.time_ms, i.kind, i.detail))
    ]
    return metrics, issue_lines


def reconstruct_trades(fills: Sequence[DemoFill]) -> tuple[list[ClosedTrade], list[float]]:
    """Closed trades from time-ordered fills, and each fill's realized PnL net of its fee.

    One system's fills may span several symbols; positions are kept per symbol.
    """
    books: dict[str, _OpenTrade] = {}
    trades: list[ClosedTrade] = []
    fill_pnl: list[float] = []
    for fill in fills:
        if fill.qty <= 0 or fill.price <= 0:
            raise ValueError(
                f"fill {fill.order_link_id or '?'} of {fill.system_id}: qty and price must be "
                f"> 0 (got qty={fill.qty}, price={fill.price})"
            )
        direction = 1.0 if fill.side == "Buy" else -1.0
        remaining = fill.qty
        realized_net = 0.0
        book = books.get(fill.symbol)
        if book is not None and book.direction != direction:
            closing = min(remaining, book.qty)
            fee = fill.fee * closing / fill.qty
            gross = (fill.price - book.avg_price) * closing * book.direction
            book.close_part(closing, fill.price, gross, fee)
            realized_net += gross - fee
            remaining -= closing
            if book.qty <= _FLAT_TOLERANCE * max(1.0, fill.qty):
                trades.append(book.finish(fill.time_ms))
                del books[fill.symbol]
                book = None
            if remaining <= _FLAT_TOLERANCE * max(1.0, fill.qty):
                remaining = 0.0
        if remaining > 0:
            fee = fill.fee * remaining / fill.qty
            if book is None:
                books[fill.symbol] = _OpenTrade.open(fill, direction, remaining, fee)
            else:
                book.add(fill, remaining, fee)
            realized_net -= fee
        fill_pnl.append(realized_net)
    return trades, fill_pnl


def fill_slippage_bps(fill: DemoFill) -> float | None:
    """Adverse slippage of a fill against its decision price, in bps (None without one)."""
    ref = fill.reference_price
    if ref is None or not math.isfinite(ref) or ref <= 0:
        return None
    if fill.side == "Buy":
        return (fill.price / ref - 1.0) * 1e4
    return (1.0 - fill.price / ref) * 1e4


def pnl_deviation(demo_expectancy_pct: float | None, backtest_pct: float | None) -> float | None:
    """``|demo - backtest| / |backtest|`` (fraction); None when either is unknown or the
    backtest expectancy is 0 (the deviation is then undefined, and the rule treats it as
    missing instead of passing)."""
    if demo_expectancy_pct is None or backtest_pct is None:
        return None
    if not math.isfinite(backtest_pct) or backtest_pct == 0:
        return None
    return abs(demo_expectancy_pct - backtest_pct) / abs(backtest_pct)


def equity_path(
    initial_equity: float,
    fills: Sequence[DemoFill],
    fill_pnl: Sequence[float],
    through_day: dt.date,
    mark_price: MarkPrice | None = None,
) -> list[float]:
    """Demo equity after every fill and, with ``mark_price``, at every UTC day close from the
    first fill's day through ``through_day`` (realized PnL plus open positions marked to the
    price at the close; a symbol without a price is held at its average entry price)."""
    if not fills:
        return [initial_equity]
    points: list[tuple[int, int, float]] = []  # (time, order: fills before the close, equity)
    realized = 0.0
    for fill, pnl in zip(fills, fill_pnl, strict=True):
        realized += pnl
        points.append((fill.time_ms, 0, initial_equity + realized))
    if mark_price is not None:
        first = day_of_ms(fills[0].time_ms)
        for offset in range((through_day - first).days + 1):
            close_ms = day_start_ms(first + dt.timedelta(days=offset + 1))
            upto = [(f, p) for f, p in zip(fills, fill_pnl, strict=True) if f.time_ms < close_ms]
            realized_at = sum(p for _, p in upto)
            unrealized = 0.0
            for symbol, (qty, avg) in open_positions([f for f, _ in upto]).items():
                price = mark_price(symbol, close_ms)
                if price is not None and math.isfinite(price):
                    unrealized += (price - avg) * qty
            points.append((close_ms, 1, initial_equity + realized_at + unrealized))
    points.sort(key=lambda p: (p[0], p[1]))
    return [initial_equity] + [equity for _, _, equity in points]


def max_drawdown(equity: Sequence[float]) -> float:
    """Largest ``(peak - equity) / peak`` along the path (0 for a path that never drops)."""
    peak = -math.inf
    worst = 0.0
    for value in equity:
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, (peak - value) / peak)
    return worst


def open_positions(fills: Sequence[DemoFill]) -> dict[str, tuple[float, float]]:
    """{symbol: (signed qty, average entry price)} still open after ``fills``."""
    books: dict[str, tuple[float, float]] = {}
    for fill in fills:
        signed = fill.qty if fill.side == "Buy" else -fill.qty
        qty, avg = books.get(fill.symbol, (0.0, 0.0))
        new_qty = qty + signed
        if qty == 0 or (qty > 0) == (signed > 0):
            avg = (avg * abs(qty) + fill.price * abs(signed)) / abs(new_qty)
        elif abs(signed) > abs(qty):
            avg = fill.price  # crossed zero: the remainder opened at this price
        if abs(new_qty) <= _FLAT_TOLERANCE * max(1.0, fill.qty):
            books.pop(fill.symbol, None)
        else:
            books[fill.symbol] = (new_qty, avg)
    return books


def day_start_ms(day: dt.date) -> int:
    """Epoch ms of 00:00 UTC of ``day``."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def day_of_ms(time_ms: int) -> dt.date:
    """The UTC day an epoch-ms instant falls in."""
    return dt.datetime.fromtimestamp(time_ms / 1000, tz=dt.UTC).date()


def trading_days(fills: Iterable[DemoFill]) -> set[dt.date]:
    """The distinct UTC days with at least one fill."""
    return {day_of_ms(f.time_ms) for f in fills}


# --- helpers -------------------------------------------------------------------------------------


@dataclass
class _OpenTrade:
    """Accumulators of a trade that is still open."""

    system_id: str
    symbol: str
    direction: float
    entry_time_ms: int
    qty: float
    avg_price: float
    entry_qty: float
    entry_notional: float
    risk: float | None
    gross: float = 0.0
    fees: float = 0.0
    exit_qty: float = 0.0
    exit_notional: float = 0.0

    @classmethod
    def open(cls, fill: DemoFill, direction: float, qty: float, fee: float) -> _OpenTrade:
        trade = cls(
            system_id=fill.system_id,
            symbol=fill.symbol,
            direction=direction,
            entry_time_ms=fill.time_ms,
            qty=qty,
            avg_price=fill.price,
            entry_qty=qty,
            entry_notional=qty * fill.price,
            risk=_risk(fill, qty),
            fees=fee,
        )
        return trade

    def add(self, fill: DemoFill, qty: float, fee: float) -> None:
        self.avg_price = (self.avg_price * self.qty + fill.price * qty) / (self.qty + qty)
        self.qty += qty
        self.entry_qty += qty
        self.entry_notional += qty * fill.price
        self.fees += fee
        added = _risk(fill, qty)
        self.risk = None if self.risk is None or added is None else self.risk + added

    def close_part(self, qty: float, price: float, gross: float, fee: float) -> None:
        self.qty -= qty
        self.exit_qty += qty
        self.exit_notional += qty * price
        self.gross += gross
        self.fees += fee

    def finish(self, exit_time_ms: int) -> ClosedTrade:
        net = self.gross - self.fees
        return ClosedTrade(
            system_id=self.system_id,
            symbol=self.symbol,
            side="long" if self.direction > 0 else "short",
            entry_time_ms=self.entry_time_ms,
            exit_time_ms=exit_time_ms,
            qty=self.entry_qty,
            entry_price=self.entry_notional / self.entry_qty,
            exit_price=self.exit_notional / self.exit_qty,
            gross_pnl=self.gross,
            fees=self.fees,
            net_pnl=net,
            return_pct=net / self.entry_notional * 100.0,
            r_multiple=net / self.risk if self.risk else None,
        )


def _risk(fill: DemoFill, qty: float) -> float | None:
    """Money at risk to the stop for ``qty`` of an entry fill (None without a usable stop)."""
    stop = fill.stop_loss
    if stop is None or not math.isfinite(stop) or stop <= 0:
        return None
    distance = abs(fill.price - stop)
    return distance * qty if distance > 0 else None


def _mean(values: Sequence[float | None]) -> float | None:
    usable = [v for v in values if v is not None and math.isfinite(v)]
    return sum(usable) / len(usable) if usable else None


def _difference(measured: float | None, expected: float | None) -> float | None:
    if measured is None or expected is None:
        return None
    return measured - expected


def _iso_ms(time_ms: int) -> str:
    return dt.datetime.fromtimestamp(time_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
