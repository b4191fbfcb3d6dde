"""Trading: the order gateway (the only code that sends orders), risk limits, kill switch,
reconciliation and the venue factory. Semantics: docs/trading.md."""

from factory_pipeline.schemas.trading import (
    Fill,
    KillSwitchEvent,
    KillSwitchState,
    OrderIntent,
    ReconciliationRecord,
    ReconciliationReport,
)
from factory_pipeline.trading.broker import (
    AmbiguousVenueError,
    Broker,
    InstrumentRules,
    PybitBroker,
    VenueRejection,
)
from factory_pipeline.trading.gateway import (
    InvalidOrderError,
    OrderGateway,
    OrderOutcome,
    OrderRequest,
    order_link_id,
)
from factory_pipeline.trading.killswitch import KillSwitch
from factory_pipeline.trading.ledger import TradingLedger
from factory_pipeline.trading.risk import (
    RISK_CEILINGS,
    Exposure,
    RiskGuard,
    RiskLimits,
    apply_override,
    default_limits_path,
    limits_hash,
    load_risk_limits,
)
from factory_pipeline.trading.venues import build_gateway, resolve_venue

__all__ = [
    "RISK_CEILINGS",
    "AmbiguousVenueError",
    "Broker",
    "Exposure",
    "Fill",
    "InstrumentRules",
    "InvalidOrderError",
    "KillSwitch",
    "KillSwitchEvent",
    "KillSwitchState",
    "OrderGateway",
    "OrderIntent",
    "OrderOutcome",
    "OrderRequest",
    "PybitBroker",
    "ReconciliationRecord",
    "ReconciliationReport",
    "RiskGuard",
    "RiskLimits",
    "TradingLedger",
    "VenueRejection",
    "apply_override",
    "build_gateway",
    "default_limits_path",
    "limits_hash",
    "load_risk_limits",
    "order_link_id",
    "resolve_venue",
]
