"""The demo runner: at each bar close, every system in ``demo`` decides and trades.

Why this shape: the runner is the only path from a frozen, audited spec to orders, so it checks
that the spec it is about to trade is the one that was tested (spec hash recomputed from the
stored spec and the current module library), sees only closed bars (nothing with
``close_time > bar_close_ms``), decides with the backtest's rules (demo.decisions), sends every
order through the one order gateway (risk checks, kill switch, deterministic orderLinkIds,
stored intents) and logs one ForecastDoc per system, symbol and bar.

Restart safety and idempotency: a re-run for the same bar decides from the same inputs (the
position state recorded by the previous bar's forecast and the equity recorded by this bar's
forecast when it exists), so it builds the same requests with the same orderLinkIds, which
the gateway recognizes as already sent; the forecast is replaced, never duplicated. Semantics:
docs/demo_runner.md.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pyarrow as pa

from factory_pipeline.demo.decisions import (
    FLAT,
    Decision,
    PositionState,
    SignalWindow,
    decide_at,
    decision_window_bars,
)
from factory_pipeline.demo.forecasts import (
    BacktestExpectations,
    build_forecast,
    forecast_id,
    regime_at,
)
from factory_pipeline.errors import FactoryError, MarketDataError, SpecError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.market.timeframes import timeframe_ms
from factory_pipeline.schemas import ForecastDoc, ModuleDoc, SystemDoc, SystemStatus
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline.strategy.signals import CompiledSystem, compile_system
from factory_pipeline.strategy.systems import SystemSpec, spec_hash
from factory_pipeline.strategy.tools import default_library

log = logging.getLogger(__name__)


class Gateway(Protocol):
    """What the runner needs from trading.OrderGateway (the contract's names)."""

    def submit(self, request: Any) -> Any: ...
    def system_position(self, system_id: str, symbol: str) -> float: ...
    def system_equity(self, system_id: str) -> float: ...
    def bar_close(self, decision_time_ms: int) -> AbstractContextManager[dict[str, Any]]: ...


@dataclass(frozen=True)
class SymbolResult:
    """One system's decision on one symbol at one bar close."""

    system_id: str
    symbol: str
    action: str
    orders: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    forecast_id: str = ""
    note: str = ""


@dataclass
class BarCloseReport:
    """What one bar close did: decisions, orders and the systems refused or skipped."""

    bar_close_ms: int
    results: list[SymbolResult] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def decisions(self) -> int:
        return len(self.results)

    @property
    def orders(self) -> list[str]:
        return [oid for r in self.results for oid in r.orders]

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            for status in result.statuses:
                counts[status] = counts.get(status, 0) + 1
        return counts

    def summary(self) -> dict[str, Any]:
        actions: dict[str, int] = {}
        for result in self.results:
            actions[result.action] = actions.get(result.action, 0) + 1
        return {
            "bar_close_ms": self.bar_close_ms,
            "decisions": self.decisions,
            "actions": actions,
            "orders": len(self.orders),
            "order_statuses": self.status_counts(),
            "refused": dict(self.refused),
            "skipped": len(self.skipped),
            "elapsed_s": round(self.elapsed_s, 4),
        }


FrameLoader = Callable[[str, str, int, int], MarketFrame]


@dataclass
class RunnerCache:
    """State kept between bar closes of one process (replay, a long-running schedule): compiled
    systems, backtest expectations, regime labels, and an optional frame loader. Nothing in it
    changes a decision; it only avoids recomputing."""

    compiled: dict[tuple[str, str, int], CompiledSystem] = field(default_factory=dict)
    expectations: dict[str, BacktestExpectations] = field(default_factory=dict)
    regimes: dict[str, pa.Table] = field(default_factory=dict)
    states: dict[tuple[str, str], tuple[int, PositionState]] = field(default_factory=dict)
    frame_loader: FrameLoader | None = None
    library: Mapping[str, ModuleDoc] | None = None


def run_bar_close(
    store: Store,
    gateway: Gateway,
    *,
    bar_close_ms: int,
    timeframe: str | None = None,
    library: Mapping[str, ModuleDoc] | None = None,
    cache: RunnerCache | None = None,
    venue_stops: bool = False,
) -> BarCloseReport:
    """Decide and trade every ``demo`` system at the bar closing at ``bar_close_ms``.

    ``timeframe`` restricts the run to systems whose L timeframe it is (a schedule per L);
    systems whose L bars do not close at ``bar_close_ms`` are left out. ``library`` defaults to
    the active modules in the store (else data/modules). A system whose recomputed spec hash
    differs from its stored one is refused and recorded, never traded.

    ``venue_stops=False`` (default): stop-loss and take-profit levels are tracked by the runner
    and a level touched by a closed bar exits at market (attributed to the system by its
    orderLinkId). ``True`` also sends them as the venue's position-level stopLoss/takeProfit,
    which is only sound with one system per symbol (one-way mode nets all systems' positions).
    """
    started = time.perf_counter()
    with store.pinned() as fast, gateway.bar_close(int(bar_close_ms)) as settled:
        cache = cache if cache is not None else RunnerCache()
        docs = DocumentStore(fast)
        market = MarketStore(fast)
        lib = library if library is not None else (cache.library or current_library(docs))
        cache.library = lib
        report = BarCloseReport(bar_close_ms=int(bar_close_ms))
        systems = docs.list(SystemDoc, {"status": SystemStatus.DEMO.value})
        plan: list[tuple[SystemDoc, CompiledSystem, str]] = []
        for system in systems:
            compiled = _compiled(system, lib, cache, report)
            if compiled is None:
                continue
            tf = compiled.spec.timeframes.L
            if (timeframe is not None and tf != timeframe) or bar_close_ms % timeframe_ms(tf):
                continue
            plan.extend((system, compiled, symbol) for symbol in compiled.spec.symbols)
        ids = [forecast_id(system.id, symbol, bar_close_ms) for system, _, symbol in plan]
        frames = _frames_at(
            plan, int(bar_close_ms), cache.frame_loader or store_frame_loader(market)
        )
        existing = {doc.id: doc for doc in docs.list(ForecastDoc, {"id": ids})} if ids else {}
        undecided = [p for p, fid in zip(plan, ids, strict=True) if fid not in existing]
        _prefetch(docs, cache, undecided, int(bar_close_ms))
        forecasts: list[ForecastDoc] = []
        try:
            for (system, compiled, symbol), fid in zip(plan, ids, strict=True):
                try:
                    result, doc = _decide_symbol(
                        frames, market, gateway, system, compiled, symbol, len(compiled.spec.symbols),
                        int(bar_close_ms), cache, docs, existing.get(fid), venue_stops,
                    )  # fmt: skip
                except MarketDataError as exc:
                    report.skipped.append((system.id, symbol, str(exc)))
                    log.warning("%s %s: skipped: %s", system.id, symbol, exc)
                    continue
                report.results.append(result)
                forecasts.append(doc)
        finally:
            docs.upsert(forecasts)  # one write per bar close; decided systems are logged even if a
            # later one fails (a re-run then finds their orders already sent)
    # orders acknowledged during the bar close were settled when its gateway block ended
    report.results = [_settled_statuses(result, settled) for result in report.results]
    report.elapsed_s = time.perf_counter() - started
    log.info("bar close %d: %s", bar_close_ms, json.dumps(report.summary()))
    return report


def _settled_statuses(result: SymbolResult, settled: Mapping[str, Any]) -> SymbolResult:
    """``result`` with each order's status as settled at the end of the bar close."""
    if not any(link in settled for link in result.orders):
        return result
    statuses = tuple(
        settled[link].status if link in settled else status
        for link, status in zip(result.orders, result.statuses, strict=True)
    )
    return replace(result, statuses=statuses)


def current_library(docs: DocumentStore) -> dict[str, ModuleDoc]:
    """The active modules stored in the factory (library + agent-proposed), or data/modules
    when the store holds none."""
    stored = {m.id: m for m in docs.list(ModuleDoc, {"status": "active"})}
    return stored or dict(default_library())


def previous_state(
    docs: DocumentStore, system_id: str, symbol: str, before_ms: int
) -> PositionState:
    """The position recorded by the latest forecast of (system, symbol) strictly before the
    bar closing at ``before_ms`` (flat when there is none)."""
    doc = _latest_forecast(docs, system_id, symbol, before_ms)
    return PositionState.from_features(doc.features) if doc is not None else FLAT


def store_frame_loader(market: MarketStore) -> FrameLoader:
    """Loads the ``n_bars`` bars of ``symbol`` closing at or before ``bar_close_ms``."""

    def load(symbol: str, timeframe: str, bar_close_ms: int, n_bars: int) -> MarketFrame:
        tf_ms = timeframe_ms(timeframe)
        end_open = bar_close_ms - tf_ms  # open of the decision bar
        start = end_open - (n_bars - 1) * tf_ms
        return market.load_frame(symbol, timeframe, start, end_open + 1)

    return load


def preloaded_frame_loader(frames: Mapping[tuple[str, str], MarketFrame]) -> FrameLoader:
    """A loader slicing frames held in memory (replay): the same bars as the store would give."""
    import numpy as np

    def load(symbol: str, timeframe: str, bar_close_ms: int, n_bars: int) -> MarketFrame:
        frame = frames.get((symbol, timeframe))
        if frame is None:
            raise MarketDataError(f"no {symbol} {timeframe} bars loaded for the replay")
        stop = int(np.searchsorted(frame.close_time, bar_close_ms, side="right"))
        if stop == 0:
            raise MarketDataError(f"no {symbol} {timeframe} bars closed by {bar_close_ms}")
        return frame.slice(max(0, stop - n_bars), stop)

    return load


# -- one system and symbol -------------------------------------------------------------------


def compile_checked(system: SystemDoc, library: Mapping[str, ModuleDoc]) -> CompiledSystem:
    """The system's stored spec compiled against ``library``, after checking that its spec hash
    recomputed from the stored spec and the library equals the stored one (SpecError naming
    both hashes otherwise: a module changed since the system was tested)."""
    try:
        spec = SystemSpec.model_validate(system.spec)
    except ValueError as exc:
        raise SpecError(f"system {system.id}: stored spec is invalid: {exc}") from exc
    digest = spec_hash(spec, library)
    if digest != system.spec_hash:
        raise SpecError(
            f"spec hash mismatch: stored {system.spec_hash[:12]}, recomputed {digest[:12]} "
            "from the stored spec and the current module library (a module changed?)"
        )
    return compile_system(spec, library)


def _frames_at(
    plan: list[tuple[SystemDoc, CompiledSystem, str]], bar_close_ms: int, loader: FrameLoader
) -> Callable[[str, str, int], MarketFrame]:
    """Frames for one bar close: each (symbol, timeframe) loaded once with the longest window
    any system needs, and each system given exactly its own window (its decision does not
    depend on which other systems run)."""
    longest: dict[tuple[str, str], int] = {}
    for _, compiled, symbol in plan:
        key = (symbol, compiled.spec.timeframes.L)
        longest[key] = max(longest.get(key, 0), decision_window_bars(compiled))
    loaded: dict[tuple[str, str], MarketFrame | MarketDataError] = {}

    def frame_for(symbol: str, timeframe: str, n_bars: int) -> MarketFrame:
        key = (symbol, timeframe)
        if key not in loaded:
            try:
                loaded[key] = loader(symbol, timeframe, bar_close_ms, longest.get(key, n_bars))
            except MarketDataError as exc:
                loaded[key] = exc
        frame = loaded[key]
        if isinstance(frame, MarketDataError):
            raise frame
        return frame.slice(max(0, len(frame) - n_bars), len(frame))

    return frame_for


def _compiled(
    system: SystemDoc,
    library: Mapping[str, ModuleDoc],
    cache: RunnerCache,
    report: BarCloseReport,
) -> CompiledSystem | None:
    """The checked compiled spec (cached per system version and library); a system that fails
    the check is refused and recorded in the report."""
    key = (system.id, system.spec_hash, id(library))
    if key in cache.compiled:
        return cache.compiled[key]
    try:
        compiled = compile_checked(system, library)
    except FactoryError as exc:
        report.refused[system.id] = str(exc).splitlines()[0]
        log.error("%s refused: %s", system.id, report.refused[system.id])
        return None
    cache.compiled[key] = compiled
    return compiled


def _decide_symbol(
    frames: Callable[[str, str, int], MarketFrame],
    market: MarketStore,
    gateway: Gateway,
    system: SystemDoc,
    compiled: CompiledSystem,
    symbol: str,
    n_symbols: int,
    bar_close_ms: int,
    cache: RunnerCache,
    docs: DocumentStore,
    existing: ForecastDoc | None,
    venue_stops: bool,
) -> tuple[SymbolResult, ForecastDoc]:
    if existing is not None:
        return _logged(existing, cache, bar_close_ms), existing
    tf = compiled.spec.timeframes.L
    frame = frames(symbol, tf, decision_window_bars(compiled))
    if len(frame) == 0 or int(frame.close_time[-1]) != bar_close_ms:
        last = int(frame.close_time[-1]) if len(frame) else None
        raise MarketDataError(
            f"no {symbol} {tf} bar closing at {bar_close_ms} (last closed bar: {last}); "
            "stale data, nothing decided"
        )
    state = _state_before(docs, cache, system.id, symbol, bar_close_ms)
    state, note = _reconcile(state, gateway.system_position(system.id, symbol), frame)
    equity = gateway.system_equity(system.id) / max(n_symbols, 1)
    qty_step, min_notional = _instrument_limits(gateway, symbol)
    window = SignalWindow.compute(compiled, frame)
    decision = decide_at(
        window, len(frame) - 1, state, equity, qty_step=qty_step, min_notional=min_notional
    )
    decision = _clip_to_order_cap(decision, gateway, qty_step)
    orders, statuses, decision = _send(gateway, system.id, symbol, decision, state, venue_stops)
    regime = regime_at(_regimes(market, cache, symbol), bar_close_ms)
    expectations = cache.expectations.get(system.id)
    if expectations is None or expectations.spec_hash != system.spec_hash:
        expectations = BacktestExpectations.load(docs, system)
        cache.expectations[system.id] = expectations
    features = {**decision.features, "equity": float(equity)}
    doc = build_forecast(
        system,
        symbol,
        _with_features(decision, features),
        regime=regime,
        expected=expectations.expected(symbol, regime),
        orders=orders,
        notes=note,
    )
    cache.states[(system.id, symbol)] = (bar_close_ms, decision.position_after)
    log.debug("%s %s %s: %s %s", system.id, symbol, bar_close_ms, decision.action, orders)
    result = SymbolResult(
        system_id=system.id,
        symbol=symbol,
        action=decision.action,
        orders=tuple(orders),
        statuses=tuple(statuses),
        forecast_id=doc.id,
        note=note,
    )
    return result, doc


def _logged(existing: ForecastDoc, cache: RunnerCache, bar_close_ms: int) -> SymbolResult:
    """A bar already decided and logged: nothing is decided or sent again (the gateway would
    also refuse a second copy of a sent order, but an order it rejected before sending would be
    decided afresh against today's exposure); the logged decision stands."""
    state = PositionState.from_features(existing.features)
    cache.states[(existing.system_id, existing.symbol)] = (bar_close_ms, state)
    notes = existing.provenance.notes
    action = notes.split()[0].removeprefix("action=") if notes.startswith("action=") else ""
    return SymbolResult(
        system_id=existing.system_id,
        symbol=existing.symbol,
        action=action or existing.action,
        orders=tuple(existing.orders),
        statuses=("logged",) * len(existing.orders),
        forecast_id=existing.id,
        note="already decided and logged at this bar: nothing sent",
    )


def _prefetch(
    docs: DocumentStore,
    cache: RunnerCache,
    plan: list[tuple[SystemDoc, CompiledSystem, str]],
    bar_close_ms: int,
) -> None:
    """Read what the systems about to decide need from the store in a few queries, into the
    cache: backtest expectations of each system version, and the position state each
    (system, symbol) held before this bar (its latest earlier forecast). The same values the
    per-system reads would give; a bar close of one process then reads the store O(1) times,
    not O(systems)."""
    stale = {
        system.id: system
        for system, _, _ in plan
        if (known := cache.expectations.get(system.id)) is None
        or known.spec_hash != system.spec_hash
    }
    cache.expectations.update(BacktestExpectations.load_many(docs, list(stale.values())))
    missing = sorted(
        {
            (system.id, symbol)
            for system, _, symbol in plan
            if (known_state := cache.states.get((system.id, symbol))) is None
            or known_state[0] >= bar_close_ms
        }
    )
    if not missing:
        return
    latest = _latest_forecasts(docs, missing, bar_close_ms)
    for key in missing:
        doc = latest.get(key)
        if doc is None:
            cache.states[key] = (-1, FLAT)  # never decided before this bar: flat
        else:
            decided = int(doc.decision_time.timestamp() * 1000)
            cache.states[key] = (decided, PositionState.from_features(doc.features))


def _state_before(
    docs: DocumentStore, cache: RunnerCache, system_id: str, symbol: str, bar_close_ms: int
) -> PositionState:
    cached = cache.states.get((system_id, symbol))
    if cached is not None and cached[0] < bar_close_ms:
        return cached[1]
    return previous_state(docs, system_id, symbol, bar_close_ms)


def _reconcile(
    state: PositionState, venue_qty: float, frame: MarketFrame
) -> tuple[PositionState, str]:
    """The tracked position made consistent with the system's position at the venue (from its
    attributed fills): the venue wins; a note says what was adopted."""
    tracked = state.side * state.qty
    if math.isclose(tracked, venue_qty, rel_tol=1e-9, abs_tol=1e-12):
        return state, ""
    if venue_qty == 0.0:
        return FLAT, f"venue flat while tracked {tracked:g} (stop/target filled at the venue)"
    side = 1 if venue_qty > 0 else -1
    if side == state.side:
        adopted = PositionState(
            side=side,
            qty=abs(venue_qty),
            entry_price=state.entry_price,
            entry_time_ms=state.entry_time_ms,
            risk=state.risk,
            stop_price=state.stop_price,
            take_profit_price=state.take_profit_price,
            breakeven_done=state.breakeven_done,
        )
    else:
        adopted = PositionState(
            side=side,
            qty=abs(venue_qty),
            entry_price=float(frame.close[-1]),
            entry_time_ms=int(frame.close_time[-1]),
        )
    return adopted, f"adopted venue position {venue_qty:g} (tracked {tracked:g})"


def _send(
    gateway: Gateway,
    system_id: str,
    symbol: str,
    decision: Decision,
    before: PositionState,
    venue_stops: bool,
) -> tuple[list[str], list[str], Decision]:
    """Submit the decision's orders in order (exit, entry, partial take-profit); the entry is
    dropped from the expected state when the gateway does not accept it."""
    from factory_pipeline.trading import OrderRequest

    requests: list[Any] = []
    common = {
        "system_id": system_id,
        "symbol": symbol,
        "decision_time_ms": decision.bar_close_ms,
        "reference_price": decision.reference_price,
    }
    if decision.exit_qty > 0:
        requests.append(
            OrderRequest(
                side="Sell" if before.side > 0 else "Buy",
                qty=decision.exit_qty,
                leg="exit",
                **common,
            )
        )
    if decision.entry_qty > 0:
        requests.append(
            OrderRequest(
                side="Buy" if decision.side > 0 else "Sell",
                qty=decision.entry_qty,
                leg="entry",
                stop_loss=_price_or_none(decision.stop_loss) if venue_stops else None,
                take_profit=_price_or_none(decision.take_profit) if venue_stops else None,
                **common,
            )
        )
    if decision.partial_tp_qty > 0:
        requests.append(
            OrderRequest(
                side="Sell" if decision.side > 0 else "Buy",
                qty=decision.partial_tp_qty,
                leg="partial",
                order_type="Limit",
                price=decision.partial_tp_price,
                reduce_only=True,
                **common,
            )
        )
    orders: list[str] = []
    statuses: list[str] = []
    entry_ok = True
    for request in requests:
        outcome = gateway.submit(request)
        orders.append(outcome.order_link_id)
        statuses.append(outcome.status)
        if outcome.status in ("rejected", "blocked"):
            log.warning(
                "%s %s %s %s: %s", system_id, symbol, request.leg, outcome.status, outcome.reason
            )
            if request.leg == "entry":
                entry_ok = False
    if not entry_ok:
        exited = decision.exit_qty > 0
        decision = replace(
            decision,
            position_after=FLAT if exited else before,
            reason=(decision.reason + " entry not accepted by the gateway").strip(),
        )
    return orders, statuses, decision


def _clip_to_order_cap(decision: Decision, gateway: Any, qty_step: float) -> Decision:
    """An entry larger than the human-owned per-order notional cap is sized down to it (rather
    than rejected whole by the gateway); the forecast notes it. Other caps still reject."""
    limits = getattr(gateway, "limits", None)
    cap = getattr(limits, "max_order_notional_usdt", None)
    price = decision.reference_price
    if not decision.entry_qty > 0 or cap is None or decision.entry_qty * price <= cap:
        return decision
    qty = _round_down(cap / price * (1.0 - 1e-9), qty_step)
    ratio = qty / decision.entry_qty
    partial = _round_down(decision.partial_tp_qty * ratio, qty_step)
    note = f"entry {decision.entry_qty:g} clipped to {qty:g} by max_order_notional_usdt {cap:g}"
    if not qty > 0:
        return replace(
            decision,
            action="exit" if decision.exit_qty > 0 else "skip",
            entry_qty=0.0,
            side=0,
            partial_tp_qty=0.0,
            position_after=FLAT,
            reason=note,
        )
    return replace(
        decision,
        entry_qty=qty,
        partial_tp_qty=partial if 0 < partial < qty else 0.0,
        position_after=replace(decision.position_after, qty=qty),
        reason=note,
    )


def _round_down(q: float, step: float) -> float:
    if step <= 0:
        return q
    return math.floor(q / step + 1e-9) * step


def _with_features(decision: Decision, features: dict[str, float]) -> Decision:
    return replace(decision, features=features)


def _instrument_limits(gateway: Any, symbol: str) -> tuple[float, float]:
    """The venue's quantity step and minimum notional (the gateway's broker caches them); 0, 0
    when the gateway exposes no broker or the lookup fails (the gateway enforces them anyway)."""
    broker = getattr(gateway, "broker", None)
    lookup = getattr(broker, "instrument", None)
    if lookup is None:
        return 0.0, 0.0
    try:
        rules = lookup(symbol)
    except FactoryError:
        return 0.0, 0.0
    return float(getattr(rules, "qty_step", 0.0)), float(getattr(rules, "min_notional", 0.0))


def _regimes(market: MarketStore, cache: RunnerCache, symbol: str) -> pa.Table:
    labels = cache.regimes.get(symbol)
    if labels is None:
        labels = market.regimes(symbol)
        cache.regimes[symbol] = labels
    return labels


def _latest_forecast(
    docs: DocumentStore, system_id: str, symbol: str, before_ms: int
) -> ForecastDoc | None:
    """The latest forecast of (system, symbol) decided strictly before ``before_ms``."""
    return _latest_forecasts(docs, [(system_id, symbol)], before_ms).get((system_id, symbol))


def _latest_forecasts(
    docs: DocumentStore, keys: list[tuple[str, str]], before_ms: int
) -> dict[tuple[str, str], ForecastDoc]:
    """The latest forecast decided strictly before ``before_ms`` of each (system, symbol) pair
    that has one, in one query."""
    system_ids = sorted({system_id for system_id, _ in keys})
    wanted = set(keys)
    with docs.store.connect() as con:
        rows = con.execute(
            "SELECT system_id, symbol, doc FROM forecasts "
            f"WHERE system_id IN ({', '.join('?' * len(system_ids))}) "
            "AND CAST(json_extract_string(doc, '$.decision_time') AS TIMESTAMPTZ) "
            "< make_timestamptz(? * 1000) "
            "QUALIFY row_number() OVER (PARTITION BY system_id, symbol ORDER BY "
            "CAST(json_extract_string(doc, '$.decision_time') AS TIMESTAMPTZ) DESC) = 1",
            [*system_ids, int(before_ms)],
        ).fetchall()
    return {
        (system_id, symbol): ForecastDoc.model_validate_json(doc)
        for system_id, symbol, doc in rows
        if (system_id, symbol) in wanted
    }


def _price_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
