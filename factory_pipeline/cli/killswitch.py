"""``factory killswitch status|reset``: read the latched kill switch, or reset it as a human.

Why a CLI command: the reset is the one action no automation may take. It needs the name of
the person resetting (``--actor``) and why (``--reason``); both are recorded with the event in
the store (``trading_killswitch_events``). Exit codes: ``status`` answers 0 when trading is
allowed and 1 when the switch is tripped (or its state is unreadable: fail-closed); ``reset``
answers 0 on success; any refused input answers 2 with one ``error:`` line.
"""

from __future__ import annotations

import datetime as dt
import sys

from factory_pipeline.errors import FactoryError
from factory_pipeline.schemas.trading import KillSwitchState
from factory_pipeline.settings import load_settings
from factory_pipeline.store import Store
from factory_pipeline.trading.killswitch import KillSwitch


def killswitch_command(action: str, *, actor: str | None, reason: str | None) -> int:
    """Print the switch state (``status``) or reset it (``reset``, human actor + reason)."""
    if action not in ("status", "reset"):
        print(f"error: killswitch action {action!r} must be 'status' or 'reset'", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        switch = KillSwitch(Store(settings.database_path))
        if action == "status":
            state = switch.state()
            print(describe_state(state))
            return 1 if state.tripped else 0
        if not actor or not reason:
            print("error: killswitch reset needs --actor NAME and --reason TEXT", file=sys.stderr)
            return 2
        before = switch.state()
        after = switch.reset(actor, reason)
        if before.tripped:
            print(f"kill switch reset by {actor}: {reason}")
        else:
            print("kill switch was not tripped; nothing to reset")
        print(describe_state(after))
        return 0
    except FactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def describe_state(state: KillSwitchState) -> str:
    """One line: tripped or not, since when, why, by whom."""
    since = (
        dt.datetime.fromtimestamp(state.since_ms / 1000, dt.UTC).isoformat(timespec="seconds")
        if state.since_ms is not None
        else "-"
    )
    if not state.readable:
        return f"kill switch: TRIPPED (fail-closed: {state.reason})"
    if state.tripped:
        return f"kill switch: TRIPPED since {since}: {state.reason} ({state.events} events)"
    if state.events:
        return f"kill switch: not tripped (last reset {since} by {state.actor}: {state.reason})"
    return "kill switch: not tripped (never tripped)"
