"""pydantic models of the trading records: order intents, fills, reconciliation, kill switch.

Why separate models: these are rows of the trading tables (migration 6), written by the order
gateway only, and read by the runner and the daily evaluation. Each model maps 1:1 to a table so
a reader never has to guess what a column means. Semantics: docs/trading.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Side = Literal["Buy", "Sell"]

#: Life cycle of a stored order intent.
#: ``pending``: stored, about to be (or being) sent; ``unknown``: sent, outcome not resolved yet
#: (the next submit or reconciliation looks it up by orderLinkId); ``placed``: resting on the
#: venue; ``filled`` / ``partially_filled`` / ``cancelled``: venue state; ``rejected``: refused
#: (before sending or by the venue); ``blocked``: stopped by the kill switch, never sent.
IntentStatus = Literal[
    "pending",
    "unknown",
    "placed",
    "partially_filled",
    "filled",
    "cancelled",
    "rejected",
    "blocked",
]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrderIntent(_Row):
    """One order decision, stored (committed) before the request leaves."""

    order_link_id: str = Field(max_length=36)
    system_id: str
    symbol: str
    side: Side
    leg: str
    decision_time_ms: int
    qty_requested: float
    qty: float = Field(description="Quantity sent: rounded down to the venue's step.")
    order_type: Literal["Market", "Limit"]
    price: float | None = None
    reduce_only: bool = False
    stop_loss: float | None = None
    take_profit: float | None = None
    reference_price: float
    status: IntentStatus
    sent: bool = Field(description="True once a request carrying this id may have left.")
    order_id: str | None = None
    filled_qty: float = 0.0
    avg_price: float | None = None
    fee: float = 0.0
    reason: str = ""
    attempts: int = 0
    limits_hash: str = ""
    created_ms: int
    updated_ms: int


class Fill(_Row):
    """One execution on the venue, attributed to a system by its orderLinkId when possible.

    ``system_id`` is None for an execution whose orderLinkId matches no stored intent; such fills
    are flagged by reconciliation. Adjustment rows written by reconciliation (to adopt the venue
    position) have ``exec_type = "adjustment"``.
    """

    exec_id: str
    order_link_id: str | None
    order_id: str | None
    system_id: str | None
    symbol: str
    side: Side
    qty: float
    price: float
    fee: float
    exec_time_ms: int
    exec_type: str = "Trade"
    is_maker: bool = False


class ReconciliationRecord(_Row):
    """A difference between the venue and the store, and how it was resolved."""

    record_id: str
    run_ms: int
    kind: Literal[
        "position_mismatch",
        "unattributed_fill",
        "unknown_open_order",
        "intent_updated",
        "intent_missing_on_venue",
    ]
    symbol: str | None = None
    order_link_id: str | None = None
    system_ids: list[str] = Field(default_factory=list)
    venue_value: float | None = None
    store_value: float | None = None
    resolution: str
    detail: str = ""


class ReconciliationReport(_Row):
    """What one reconciliation pass found. ``clean`` means no difference was recorded."""

    run_ms: int
    records: list[ReconciliationRecord] = Field(default_factory=list)
    intents_resolved: int = 0
    fills_synced: int = 0
    flagged_systems: list[str] = Field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not any(r.kind != "intent_updated" for r in self.records)


class KillSwitchEvent(_Row):
    """One kill-switch action; the latched state is the latest trip/reset event."""

    event_id: int
    ts_ms: int
    action: Literal["trip", "reset"]
    reason: str
    actor: str


class KillSwitchState(_Row):
    """The switch as read from the store. ``readable`` False means fail-closed (tripped)."""

    tripped: bool
    reason: str = ""
    since_ms: int | None = None
    actor: str = ""
    readable: bool = True
    events: int = 0
