"""Kill switch: latched across restarts, fail-closed, reset by a named human only."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory_pipeline.cli.killswitch import killswitch_command
from factory_pipeline.errors import RiskLimitError
from factory_pipeline.store import Store
from factory_pipeline.trading import KillSwitch


def test_trip_latches_across_a_new_store_object(tmp_path: Path) -> None:
    path = tmp_path / "factory.duckdb"
    switch = KillSwitch(Store(path), clock_ms=lambda: 1_000)
    assert not switch.is_tripped()
    assert switch.trip("drill") is True
    assert switch.trip("again") is False  # already latched: no second event
    reopened = KillSwitch(Store(path))
    state = reopened.state()
    assert state.tripped and state.reason == "drill" and state.since_ms == 1_000
    assert [e.action for e in reopened.events()] == ["trip"]


def test_reset_needs_a_human_actor_and_a_reason(tmp_path: Path) -> None:
    switch = KillSwitch(Store(tmp_path / "f.duckdb"))
    switch.trip("drill")
    for actor, reason in [("", "ok"), ("alice", ""), ("agent", "llm says fine"), ("runner", "x")]:
        with pytest.raises(RiskLimitError):
            switch.reset(actor, reason)
    assert switch.is_tripped()
    state = switch.reset("alice", "loss reviewed, data feed fixed")
    assert not state.tripped
    events = KillSwitch(Store(tmp_path / "f.duckdb")).events()
    assert [(e.action, e.actor) for e in events] == [("trip", "gateway"), ("reset", "alice")]
    assert events[-1].reason == "loss reviewed, data feed fixed"


def test_unreadable_state_counts_as_tripped(tmp_path: Path) -> None:
    store = Store(tmp_path / "f.duckdb")
    switch = KillSwitch(store)
    with store.connect() as con:
        con.execute("DROP TABLE trading_killswitch_events")
    state = switch.state()
    assert state.tripped and not state.readable
    with pytest.raises(RiskLimitError, match="unreadable"):
        switch.reset("alice", "try")


def test_unknown_action_in_the_table_counts_as_tripped(tmp_path: Path) -> None:
    store = Store(tmp_path / "f.duckdb")
    with store.connect() as con:
        con.execute("INSERT INTO trading_killswitch_events VALUES (1, 0, 'pause', 'x', 'y')")
    assert KillSwitch(store).is_tripped()


def test_consecutive_venue_errors_trip_and_a_success_resets_the_count(tmp_path: Path) -> None:
    switch = KillSwitch(Store(tmp_path / "f.duckdb"))
    cancelled: list[str] = []
    switch.on_trip.append(cancelled.append)
    for _ in range(2):
        switch.record_venue_result(False, limit=3, detail="503")
    switch.record_venue_result(True, limit=3)
    for _ in range(2):
        switch.record_venue_result(False, limit=3, detail="503")
    assert not switch.is_tripped() and cancelled == []
    switch.record_venue_result(False, limit=3, detail="503")
    assert switch.is_tripped()
    assert len(cancelled) == 1 and "3 consecutive venue errors" in cancelled[0]


def test_stale_data_trips_beyond_the_allowed_bars(tmp_path: Path) -> None:
    switch = KillSwitch(Store(tmp_path / "f.duckdb"))
    bar = 900_000
    assert switch.check_data_freshness(
        last_bar_close_ms=10 * bar, now_ms=12 * bar, bar_ms=bar, max_stale_bars=2
    )
    assert not switch.is_tripped()
    assert not switch.check_data_freshness(
        last_bar_close_ms=10 * bar, now_ms=12 * bar + 1, bar_ms=bar, max_stale_bars=2
    )
    assert "stale market data" in switch.state().reason


def test_no_bar_at_all_is_stale(tmp_path: Path) -> None:
    switch = KillSwitch(Store(tmp_path / "f.duckdb"))
    assert not switch.check_data_freshness(
        last_bar_close_ms=None, now_ms=0, bar_ms=1, max_stale_bars=2
    )
    assert switch.is_tripped()


def test_daily_loss_beyond_the_limit_trips(tmp_path: Path) -> None:
    switch = KillSwitch(Store(tmp_path / "f.duckdb"))
    assert switch.check_daily_loss(loss=100.0, limit=100.0, scope="account")
    assert not switch.is_tripped()
    assert not switch.check_daily_loss(loss=100.01, limit=100.0, scope="account")
    assert switch.is_tripped()


def test_cli_status_and_reset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("FACTORY_DATA_DIR", str(tmp_path))
    assert killswitch_command("status", actor=None, reason=None) == 0
    assert "not tripped" in capsys.readouterr().out
    KillSwitch(Store(tmp_path / "factory.duckdb")).trip("drill")
    assert killswitch_command("status", actor=None, reason=None) == 1
    assert "TRIPPED" in capsys.readouterr().out
    assert killswitch_command("reset", actor=None, reason="x") == 2
    assert killswitch_command("reset", actor="agent", reason="x") == 2
    assert KillSwitch(Store(tmp_path / "factory.duckdb")).is_tripped()
    assert killswitch_command("reset", actor="alice", reason="reviewed") == 0
    assert not KillSwitch(Store(tmp_path / "factory.duckdb")).is_tripped()
    assert killswitch_command("explode", actor=None, reason=None) == 2
