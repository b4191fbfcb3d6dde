"""pydantic v2 models of every document and market row the factory stores."""

from factory_pipeline.schemas.documents import (
    BacktestDoc,
    BacktestTrade,
    Book,
    Document,
    EvidenceQuote,
    ForecastDoc,
    KbConcept,
    KbSegment,
    ModuleDoc,
    ModuleKind,
    ParameterSpec,
    Provenance,
    StatusTransition,
    SystemDoc,
    SystemStatus,
    stable_id,
    utc_now,
)
from factory_pipeline.schemas.market import FundingRate, MarkPrice, OhlcvBar, OpenInterest

__all__ = [
    "BacktestDoc", "BacktestTrade", "Book", "Document", "EvidenceQuote", "ForecastDoc",
    "FundingRate", "KbConcept", "KbSegment", "MarkPrice", "ModuleDoc", "ModuleKind",
    "OhlcvBar", "OpenInterest", "ParameterSpec", "Provenance", "StatusTransition", "SystemDoc",
    "SystemStatus", "stable_id", "utc_now",
]
