"""The global kill switch: fail-closed, latched in DuckDB, reset only by a named human.

Why latched in the store: a switch that lives in memory is silently reset by a restart. Every
trip and reset is an event row (``trading_killswitch_events``); the state is the latest event,
so it survives restarts and any process reading the same store sees it. Why fail-closed: when
the state cannot be read (the table is missing, the store is locked or corrupt) nothing can
prove it is safe to trade, so :meth:`KillSwitch.is_tripped` answers True.

Trips (see docs/trading.md): account loss from the UTC-day equity high-water mark beyond
``max_daily_loss_total_usdt``, stale market data (last closed bar older than
``max_stale_bars`` bars), ``max_consecutive_venue_errors`` failed venue requests in a row, or an
explicit :meth:`trip`. On a trip the ``on_trip`` callbacks run (the gateway cancels all open
orders). Reset: :meth:`reset` with a human actor and a reason, reached only from the
``factory killswitch reset`` command; automated actors are refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from factory_pipeline.errors import RiskLimitError
from factory_pipeline.schemas.trading import KillSwitchEvent, KillSwitchState
from factory_pipeline.store.db import Store

logger = logging.getLogger(__name__)

#: Key of the memoized state in :meth:`Store.pin_cache`.
_STATE_MEMO = "kill_switch.state"

#: Actor names that identify automation; a reset by one of them is refused.
AUTOMATED_ACTORS = frozenset(
    {"agent", "llm", "bot", "system", "dagster", "runner", "gateway", "scheduler", "sensor", "auto"}
)


class KillSwitch:
    """The latched switch of one store. ``on_trip`` callbacks run once per new trip."""

    def __init__(self, store: Store, *, clock_ms: Callable[[], int] | None = None) -> None:
        self.store = store
        self.clock_ms = clock_ms or _wall_ms
        self.on_trip: list[Callable[[str], None]] = []
        self._consecutive_errors = 0

    # state ----------------------------------------------------------------------------------
    def is_tripped(self) -> bool:
        """True when tripped, and True when the state cannot be read (fail-closed)."""
        return self.state().tripped

    def state(self) -> KillSwitchState:
        """The latest event's state. Inside :meth:`Store.pinned` a readable state is memoized
        until this switch appends an event (no other process can write while pinned); an
        unreadable one is never memoized, so it is retried and stays fail-closed."""
        cache = self.store.pin_cache()
        if cache is not None and _STATE_MEMO in cache:
            return cache[_STATE_MEMO]
        state = self._read_state()
        if cache is not None and state.readable:
            cache[_STATE_MEMO] = state
        return state

    def _read_state(self) -> KillSwitchState:
        try:
            with self.store.connect() as con:
                row = con.execute(
                    "SELECT action, reason, ts_ms, actor, (SELECT count(*) FROM "
                    "trading_killswitch_events) FROM trading_killswitch_events "
                    "ORDER BY event_id DESC LIMIT 1"
                ).fetchone()
                if row is None:
                    count = con.execute("SELECT count(*) FROM trading_killswitch_events").fetchone()
                    return KillSwitchState(tripped=False, events=int(count[0]))
        except Exception as exc:  # fail-closed: any read problem means "tripped"
            logger.error("kill switch state unreadable, treating as tripped: %s", exc)
            return KillSwitchState(tripped=True, reason=f"state unreadable: {exc}", readable=False)
        action, reason, ts_ms, actor, count = row
        if action not in ("trip", "reset"):
            return KillSwitchState(
                tripped=True, reason=f"state unreadable: unknown action {action!r}", readable=False
            )
        return KillSwitchState(
            tripped=action == "trip",
            reason=reason,
            since_ms=int(ts_ms),
            actor=actor,
            events=int(count),
        )

    def events(self) -> list[KillSwitchEvent]:
        with self.store.connect() as con:
            rows = con.execute(
                "SELECT event_id, ts_ms, action, reason, actor FROM trading_killswitch_events "
                "ORDER BY event_id"
            ).fetchall()
        return [
            KillSwitchEvent(event_id=r[0], ts_ms=r[1], action=r[2], reason=r[3], actor=r[4])
            for r in rows
        ]

    # transitions ----------------------------------------------------------------------------
    def trip(self, reason: str, *, actor: str = "gateway") -> bool:
        """Latch the switch; returns True when this call tripped it (False: already tripped).

        The on_trip callbacks run on every call, so a second trip retries cancelling orders.
        """
        current = self.state()
        newly = not current.tripped or not current.readable
        if not current.tripped:
            self._append("trip", reason, actor)
            logger.error("KILL SWITCH TRIPPED: %s", reason)
        for callback in list(self.on_trip):
            try:
                callback(reason)
            except Exception as exc:  # a failing cancel must not hide the trip
                logger.error("kill switch on_trip callback failed: %s", exc)
        return newly

    def reset(self, actor: str, reason: str) -> KillSwitchState:
        """Un-latch the switch. Human only: a named, non-automated actor and a reason."""
        actor_name = (actor or "").strip()
        why = (reason or "").strip()
        if not actor_name:
            raise RiskLimitError("kill switch reset: an actor (the human resetting it) is required")
        if not why:
            raise RiskLimitError("kill switch reset: a reason is required")
        if actor_name.lower() in AUTOMATED_ACTORS or actor_name.lower().startswith("agent"):
            raise RiskLimitError(
                f"kill switch reset: actor {actor_name!r} is automation; only a human may reset"
            )
        current = self.state()
        if not current.readable:
            raise RiskLimitError(f"kill switch reset: state unreadable ({current.reason})")
        self._consecutive_errors = 0
        if current.tripped:
            self._append("reset", why, actor_name)
        return self.state()

    # trip conditions ------------------------------------------------------------------------
    def record_venue_result(self, ok: bool, *, limit: int, detail: str = "") -> None:
        """Count consecutive failed venue requests; trip at ``limit``. A success resets it."""
        if ok:
            self._consecutive_errors = 0
            return
        self._consecutive_errors += 1
        if self._consecutive_errors >= limit:
            self.trip(f"{self._consecutive_errors} consecutive venue errors (last: {detail})")

    @property
    def consecutive_errors(self) -> int:
        return self._consecutive_errors

    def check_data_freshness(
        self, *, last_bar_close_ms: int | None, now_ms: int, bar_ms: int, max_stale_bars: int
    ) -> bool:
        """Trip when the last closed bar is older than ``max_stale_bars`` bars; True if fresh.

        Age is ``now - last_bar_close``; up to ``max_stale_bars x bar_ms`` is fresh. No bar at all
        is stale.
        """
        if last_bar_close_ms is None:
            self.trip("stale market data: no closed bar")
            return False
        age = now_ms - last_bar_close_ms
        if age > max_stale_bars * bar_ms:
            self.trip(
                f"stale market data: last closed bar {last_bar_close_ms} is {age / bar_ms:.2f} "
                f"bars old at {now_ms} (max {max_stale_bars})"
            )
            return False
        return True

    def check_daily_loss(self, *, loss: float, limit: float, scope: str) -> bool:
        """Trip when ``loss`` (from the day's high-water mark) exceeds ``limit``; True if within."""
        if loss > limit:
            self.trip(f"daily loss {loss:.2f} USDT of {scope} exceeds {limit:g} USDT")
            return False
        return True

    # helpers --------------------------------------------------------------------------------
    def _append(self, action: str, reason: str, actor: str) -> None:
        cache = self.store.pin_cache()
        if cache is not None:
            cache.pop(_STATE_MEMO, None)
        with self.store.transaction() as con:
            row = con.execute(
                "SELECT coalesce(max(event_id), 0) FROM trading_killswitch_events"
            ).fetchone()
            con.execute(
                "INSERT INTO trading_killswitch_events VALUES (?, ?, ?, ?, ?)",
                [int(row[0]) + 1, int(self.clock_ms()), action, reason, actor],
            )


def _wall_ms() -> int:
    return int(time.time() * 1000)
