"""Everything the local exchange knows, behind one lock: accounts, prices, clock, faults.

:class:`LocalExchangeState` is the venue's whole memory. The HTTP server only parses, signs and
routes; every decision (fills, margin, stops) is made here and in
:mod:`~factory_pipeline.exchange.local.matching`, so tests and the replay can drive the venue
in-process (``state.advance_to(ms)``) and over HTTP with the same results.

Clock: ``now_ms`` is the venue clock (``None`` = wall clock). Prices are looked up at that
clock; bars are processed (resting limits, position stops, funding) once their close is at or
before the clock, either explicitly with :meth:`advance_to` / :meth:`set_time` or lazily at the
start of every request. The signature check always uses the wall clock (clients stamp requests
with it), shifted by ``clock_skew_ms``.

Persistence: :meth:`open` binds the state to a JSON snapshot file. After every request that
changed something and after every :meth:`advance_to`, what changed is appended as one line to
``<snapshot>.journal``; the full snapshot is rewritten atomically (temp file + rename) at the
first save, every ``COMPACT_EVERY`` journal lines, on open and when the server stops. A
restart therefore continues with the same accounts, orders, positions and wallet.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory_pipeline.errors import ExchangeError
from factory_pipeline.exchange.local.faults import Fault
from factory_pipeline.exchange.local.models import Account
from factory_pipeline.exchange.local.prices import BarSeries, StorePrices, series_from_batch
from factory_pipeline.market.source import MarketBatch
from factory_pipeline.market.timeframes import timeframe_ms
from factory_pipeline.store.db import Store
from factory_pipeline.store.market import MarketStore

#: Credentials of the embedded venue's default account (loopback only, not a secret).
LOCAL_API_KEY = "local-factory-key"
LOCAL_API_SECRET = "local-factory-secret"

SNAPSHOT_VERSION = 1
COMPACT_EVERY = 2000  # journal lines before the snapshot is rewritten in full
_MAX_REQUEST_LOG = 100_000


@dataclass
class LocalExchangeState:
    """The venue's data; handlers read and mutate it under ``lock``."""

    batches: dict[tuple[str, str], MarketBatch] = field(default_factory=dict)
    instruments: dict[str, dict[str, Any]] = field(default_factory=dict)
    now_ms: int | None = None  # venue clock; None = wall clock
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    accounts: dict[str, Account] = field(default_factory=dict)
    #: Slippage against the trader on market, marketable-limit and stop fills (basis points).
    slippage_bps: float = 2.0
    default_leverage: float = 10.0
    #: Per-key limit on signed requests: (requests, window_ms); None disables it.
    rate_limit: tuple[int, int] | None = (100, 1000)
    #: Offset added to the wall clock by the timestamp check (a server whose clock is off).
    clock_skew_ms: int = 0
    path: Path | None = None
    prices: StorePrices | None = None
    seq: int = 0
    cursors: dict[str, int] = field(default_factory=dict)  # symbol -> next bar open to process
    dirty: bool = False
    _series: dict[str, BarSeries] = field(default_factory=dict)
    _windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (start, count)
    _journal_lines: int = 0

    # --- construction and persistence -----------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, **settings: Any) -> LocalExchangeState:
        """A state bound to the snapshot ``path``: loaded when it exists, created otherwise.

        The snapshot is ``path`` (full state) plus ``<path>.journal`` (one JSON line per save
        with what changed); opening replays the journal and compacts both into ``path``.
        Raises :class:`ExchangeError` naming the file when it cannot be read.
        """
        path = Path(path)
        state = cls(**settings)
        state.path = path
        journal = state.journal_path
        try:
            if path.exists():
                data = json.loads(path.read_text())
                if data.get("version") != SNAPSHOT_VERSION:
                    raise ValueError(f"snapshot version {data.get('version')!r} is not supported")
                state._restore(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ExchangeError(f"local exchange snapshot {path}: cannot load: {exc}") from exc
        if journal is not None and journal.exists():
            lines = journal.read_text().splitlines()
            for number, line in enumerate(lines, start=1):
                try:
                    state._apply_delta(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    if number == len(lines):
                        break  # a torn last line: the write was cut short by a crash
                    raise ExchangeError(
                        f"local exchange journal {journal} line {number}: cannot apply: {exc}"
                    ) from exc
            state.compact()
        return state

    @property
    def journal_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".journal")

    def save(self) -> None:
        """Persist what changed: one appended journal line (the first save and every
        ``COMPACT_EVERY`` lines write the full snapshot instead). No-op without a path."""
        with self.lock:
            self.dirty = False
            if self.path is None:
                return
            if not self.path.exists() or self._journal_lines >= COMPACT_EVERY:
                self.compact()
                return
            delta = {
                "now_ms": self.now_ms,
                "seq": self.seq,
                "cursors": self.cursors,
                "accounts": [a.delta_json() for a in self.accounts.values()],
            }
            assert self.journal_path is not None
            with self.journal_path.open("a") as handle:
                handle.write(json.dumps(delta, separators=(",", ":")) + "\n")
            self._journal_lines += 1
            for account in self.accounts.values():
                account.mark_saved()

    def compact(self) -> None:
        """Write the full snapshot atomically (temp file + rename), then drop the journal."""
        with self.lock:
            self.dirty = False
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self._snapshot(), separators=(",", ":")))
            os.replace(tmp, self.path)
            assert self.journal_path is not None
            self.journal_path.unlink(missing_ok=True)
            self._journal_lines = 0
            for account in self.accounts.values():
                account.mark_saved()

    def save_if_dirty(self) -> None:
        if self.dirty:
            self.save()

    # --- accounts, instruments, prices ----------------------------------------------------

    def add_account(
        self,
        api_key: str,
        api_secret: str,
        usdt: float = 10_000.0,
        *,
        taker_fee: float = 0.00055,
        maker_fee: float = 0.0002,
    ) -> Account:
        """Create an account funded with ``usdt`` (an existing key is kept as it is)."""
        with self.lock:
            if api_key not in self.accounts:
                self.accounts[api_key] = Account(
                    api_key=api_key,
                    api_secret=api_secret,
                    deposit=float(usdt),
                    cash=float(usdt),
                    taker_fee=taker_fee,
                    maker_fee=maker_fee,
                )
                self.dirty = True
            self.save_if_dirty()
            return self.accounts[api_key]

    def load(self, batch: MarketBatch, **instrument: Any) -> None:
        """Serve and trade on ``batch`` (klines of its timeframe, mark, funding, open interest).

        The finest timeframe loaded for a symbol is the one fills and stops walk through.
        """
        with self.lock:
            self.batches[(batch.symbol, batch.timeframe)] = batch
            self._series.pop(batch.symbol, None)
            if batch.symbol not in self.instruments:
                self.instruments[batch.symbol] = default_instrument(batch.symbol, **instrument)
            elif instrument:
                self.instruments[batch.symbol].update(instrument)

    def use_store(
        self, store: Store | MarketStore, timeframe: str = "15m", *, refresh_s: float = 5.0
    ) -> None:
        """Trade on the market store's ``timeframe`` bars (the embedded default venue)."""
        if isinstance(store, MarketStore):
            store = store.store
        with self.lock:
            self.prices = StorePrices(store, timeframe, refresh_s=refresh_s)
            self._series.clear()
            for symbol in self.prices.symbols():
                self.instruments.setdefault(symbol, default_instrument(symbol))

    def set_instrument(self, symbol: str, **overrides: Any) -> None:
        """Create or change an instrument record (e.g. ``lotSizeFilter`` minimums)."""
        with self.lock:
            record = self.instruments.setdefault(symbol, default_instrument(symbol))
            for key, value in overrides.items():
                if isinstance(value, dict) and isinstance(record.get(key), dict):
                    record[key] = {**record[key], **value}
                else:
                    record[key] = value

    def series(self, symbol: str) -> BarSeries | None:
        """The bars ``symbol`` trades on (None when the venue has no prices for it)."""
        with self.lock:
            candidates = [b for (s, _), b in self.batches.items() if s == symbol]
            if candidates:
                if symbol not in self._series:
                    finest = min(candidates, key=lambda b: timeframe_ms(b.timeframe))
                    self._series[symbol] = series_from_batch(finest)
                return self._series[symbol]
            if self.prices is not None:
                return self.prices.series(symbol)
            return None

    def last_price(self, symbol: str) -> tuple[float, float] | None:
        """``(last, mark)`` at the clock: the close of the last bar closed by then.

        Before the first bar closes, the first bar's open. None without prices.
        """
        series = self.series(symbol)
        if series is None or series.size == 0:
            return None
        i = series.last_closed(self.clock())
        if i < 0:
            return float(series.open[0]), float(series.open[0])
        return float(series.close[i]), float(series.mark[i])

    # --- clock ----------------------------------------------------------------------------

    def clock(self) -> int:
        return self.now_ms if self.now_ms is not None else int(time.time() * 1000)

    def set_time(self, ms: int) -> None:
        """Move the venue clock to ``ms``; moving forward processes the bars in between."""
        self.advance_to(ms)

    def advance_to(self, ms: int) -> None:
        """Set the clock to ``ms`` and process every bar closed by then (limits, stops, funding)."""
        from factory_pipeline.exchange.local.matching import process_until

        with self.lock:
            self.now_ms = int(ms)
            process_until(self, self.now_ms)
            self.save_if_dirty()

    def sync(self) -> None:
        """Process bars up to the current clock (called at the start of every request)."""
        from factory_pipeline.exchange.local.matching import process_until

        with self.lock:
            process_until(self, self.clock())

    # --- faults, request log, ids ---------------------------------------------------------

    def inject(self, kind: str, count: int = 1, path: str | None = None, **options: Any) -> None:
        """Queue a fault (see :mod:`~factory_pipeline.exchange.local.faults` for the kinds)."""
        with self.lock:
            self.faults.append(Fault(kind=kind, count=count, path=path, **options))

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and (fault.path is None or fault.path == path):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def log_request(self, path: str, query: dict[str, str]) -> None:
        with self.lock:
            self.requests.append((path, query))
            if len(self.requests) > _MAX_REQUEST_LOG:
                del self.requests[: _MAX_REQUEST_LOG // 2]

    def requests_to(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [q for p, q in self.requests if p == path]

    def batch_for(self, symbol: str, timeframe: str | None = None) -> MarketBatch | None:
        with self.lock:
            if timeframe is not None:
                return self.batches.get((symbol, timeframe))
            for (sym, _), batch in self.batches.items():
                if sym == symbol:
                    return batch
        return None

    def next_id(self, prefix: str) -> tuple[str, int]:
        """A deterministic UUID-shaped id and its sequence number."""
        with self.lock:
            self.seq += 1
            tag = {"order": "0a", "exec": "0e"}.get(prefix, "00")
            return f"{tag}000000-0000-4000-8000-{self.seq:012d}", self.seq

    def take_rate_slot(self, api_key: str) -> tuple[bool, int, int, int]:
        """Count a signed request: ``(allowed, limit, remaining, reset_ms)`` (wall clock)."""
        now = int(time.time() * 1000)
        with self.lock:
            if self.rate_limit is None:
                return True, 0, 0, now
            limit, window_ms = self.rate_limit
            start, count = self._windows.get(api_key, (now, 0))
            if now - start >= window_ms:
                start, count = now, 0
            reset = start + window_ms
            if count >= limit:
                return False, limit, 0, reset
            self._windows[api_key] = (start, count + 1)
            return True, limit, limit - count - 1, reset

    # --- snapshot -------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "now_ms": self.now_ms,
            "seq": self.seq,
            "cursors": self.cursors,
            "slippage_bps": self.slippage_bps,
            "default_leverage": self.default_leverage,
            "instruments": self.instruments,
            "accounts": [a.to_json() for a in self.accounts.values()],
        }

    def _restore(self, data: dict[str, Any]) -> None:
        self.now_ms = data["now_ms"]
        self.seq = int(data["seq"])
        self.cursors = {k: int(v) for k, v in data["cursors"].items()}
        self.slippage_bps = float(data["slippage_bps"])
        self.default_leverage = float(data["default_leverage"])
        self.instruments.update(data["instruments"])
        for raw in data["accounts"]:
            account = Account.from_json(raw)
            self.accounts[account.api_key] = account

    def _apply_delta(self, delta: dict[str, Any]) -> None:
        self.now_ms = delta["now_ms"]
        self.seq = max(self.seq, int(delta["seq"]))
        self.cursors = {k: int(v) for k, v in delta["cursors"].items()}
        for raw in delta["accounts"]:
            account = self.accounts.get(raw["api_key"])
            if account is None:
                self.accounts[raw["api_key"]] = Account.from_json(raw)
            else:
                account.apply(raw)


def default_instrument(symbol: str, **overrides: Any) -> dict[str, Any]:
    """A linear-perpetual instrument record shaped like Bybit's."""
    record: dict[str, Any] = {
        "symbol": symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": symbol.removesuffix("USDT"),
        "quoteCoin": "USDT",
        "settleCoin": "USDT",
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "priceScale": "2",
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
        "lotSizeFilter": {
            "maxOrderQty": "1190.000",
            "minOrderQty": "0.001",
            "qtyStep": "0.001",
            "postOnlyMaxOrderQty": "1190.000",
            "maxMktOrderQty": "500.000",
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
    }
    record.update(overrides)
    return record
