"""The factory's documents as pydantic v2 models.

Every document has a stable ``id``, a schema ``version``, ``created_at`` and ``provenance``
(the ids of what it was derived from), so any artifact can be traced back to a book page:
page -> segment -> concept -> module -> system -> backtest -> forecast/orders -> outcomes.
Documents are stored by :mod:`factory_pipeline.store` as typed columns plus the full JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stable_id(prefix: str, *parts: object) -> str:
    """Deterministic id from content: ``prefix-`` + 16 hex chars of a SHA-256."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}-{digest[:16]}"


class Provenance(BaseModel):
    """Where a document came from. Lists hold ids of upstream documents."""

    model_config = ConfigDict(frozen=True)

    source: str = Field(default="", description="Producer, e.g. 'offline-extractor v1' or a model.")
    book_ids: list[str] = Field(default_factory=list)
    pages: list[int] = Field(default_factory=list)
    segment_ids: list[str] = Field(default_factory=list)
    concept_ids: list[str] = Field(default_factory=list)
    module_ids: list[str] = Field(default_factory=list)
    system_ids: list[str] = Field(default_factory=list)
    notes: str = ""


class Document(BaseModel):
    """Common fields of every stored document."""

    model_config = ConfigDict(extra="forbid")

    #: Collection (DuckDB table) name; set by each subclass.
    collection: ClassVar[str] = ""

    id: str
    version: int = 1
    created_at: dt.datetime = Field(default_factory=utc_now)
    provenance: Provenance = Field(default_factory=Provenance)


class Book(Document):
    collection: ClassVar[str] = "books"
    path: str
    title: str
    content_hash: str
    pages: int = 0
    status: Literal["ingested", "failed"] = "ingested"
    error: str = ""
    flags: list[str] = Field(default_factory=list)


class KbSegment(Document):
    """A page-anchored chunk of book text."""

    collection: ClassVar[str] = "kb_segments"
    book_id: str
    book_title: str
    chapter: str = ""
    page: int
    offset: int = 0
    text: str
    tags: list[str] = Field(default_factory=list)


class EvidenceQuote(BaseModel):
    segment_id: str
    page: int
    quote: str


class KbConcept(Document):
    """A concept card extracted from segments, with verifiable evidence quotes."""

    collection: ClassVar[str] = "kb_concepts"
    name: str
    description: str
    timeframes: dict[str, list[str]] = Field(default_factory=dict, description="HTF/MTF/LTF")
    setup_conditions: list[str] = Field(default_factory=list)
    entry_ideas: list[str] = Field(default_factory=list)
    exit_ideas: list[str] = Field(default_factory=list)
    risk_constraints: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    evidence: list[EvidenceQuote] = Field(default_factory=list)


class ModuleKind(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"
    FILTER = "filter"
    RISK = "risk"
    MANAGEMENT = "management"


class ParameterSpec(BaseModel):
    """One parameter of a module's schema."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["int", "float", "bool", "enum"]
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: list[Any] | None = None
    description: str = ""


class ModuleDoc(Document):
    """A reusable strategy building block (see strategy.modules for semantics)."""

    collection: ClassVar[str] = "modules"
    kind: ModuleKind
    name: str
    description: str
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    logic: dict[str, str] = Field(default_factory=dict, description="Named signal expressions.")
    rule: str | None = Field(default=None, description="Sizing/management rule from a closed set.")
    concept_ids: list[str] = Field(default_factory=list)
    status: Literal["active", "invalid", "retired"] = "active"
    invalid_reason: str = ""


class SystemStatus(StrEnum):
    CANDIDATE = "candidate"
    DEMO = "demo"
    LIVE_TEST = "live_test"
    PRODUCTION = "production"
    REWORK_REQUIRED = "rework_required"
    DISABLED = "disabled"


class SystemDoc(Document):
    """A frozen system spec; ``spec_hash`` identifies the version. Status is owned by the
    promotion engine only."""

    collection: ClassVar[str] = "systems"
    name: str
    spec_hash: str
    spec: dict[str, Any]
    status: SystemStatus = SystemStatus.CANDIDATE
    description: str = ""
    reasoning: str = ""
    sanity: dict[str, Any] = Field(default_factory=dict)


class BacktestDoc(Document):
    collection: ClassVar[str] = "backtests"
    system_id: str
    spec_hash: str
    symbol: str
    regime: str
    partition_key: str
    data_start: dt.datetime
    data_end: dt.datetime
    engine_version: str
    metrics: dict[str, float] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)


class BacktestTrade(Document):
    collection: ClassVar[str] = "backtest_trades"
    backtest_id: str
    system_id: str
    partition_key: str
    side: Literal["long", "short"]
    entry_time: dt.datetime
    exit_time: dt.datetime
    entry_price: float
    exit_price: float
    qty: float
    gross_pnl: float
    net_pnl: float
    fees: float
    funding: float
    mae: float
    mfe: float
    r_multiple: float
    exit_reason: str
    bars_held: int


class RobustnessDoc(Document):
    """A system version's robustness across all its backtest partitions, and its evidence.

    ``evidence`` holds the metrics the promotion rules read (promotion.rules.CANDIDATE_METRICS);
    ``regimes`` the per-regime breakdown; ``walk_forward`` / ``stress`` the detailed reports.
    """

    collection: ClassVar[str] = "robustness_reports"
    system_id: str
    spec_hash: str
    engine_version: str
    evidence: dict[str, float | bool | None] = Field(default_factory=dict)
    regimes: dict[str, dict[str, float]] = Field(default_factory=dict)
    walk_forward: dict[str, Any] = Field(default_factory=dict)
    stress: dict[str, Any] = Field(default_factory=dict)
    backtest_ids: list[str] = Field(default_factory=list)
    n_trials: int = 0


class ForecastDoc(Document):
    """A decision logged by the demo/live runner with what the backtest expected."""

    collection: ClassVar[str] = "forecasts"
    system_id: str
    spec_hash: str
    symbol: str
    decision_time: dt.datetime
    regime: str = ""
    features: dict[str, float] = Field(default_factory=dict)
    expected: dict[str, float] = Field(default_factory=dict)
    action: Literal["enter", "hold", "exit", "skip"]
    orders: list[str] = Field(default_factory=list)


class DemoEvaluationDoc(Document):
    """One demo system's evaluation for one UTC day (partition key = the day, ISO).

    ``metrics`` carries the day's and the cumulative demo figures the demo rules read
    (promotion.rules.DEMO_METRICS) plus the comparison with the backtest's expectation.
    """

    collection: ClassVar[str] = "demo_evaluations"
    system_id: str
    spec_hash: str
    day: dt.date
    metrics: dict[str, float | bool | None] = Field(default_factory=dict)
    issues: list[str] = Field(default_factory=list)
    order_ids: list[str] = Field(default_factory=list)


class StatusTransition(Document):
    """Append-only audit record of a status change."""

    collection: ClassVar[str] = "status_transitions"
    system_id: str
    from_status: SystemStatus
    to_status: SystemStatus
    rule_results: list[dict[str, Any]] = Field(default_factory=list)
    evidence_ids: list[str] = Field(default_factory=list)
    policy_hash: str
    decided_by: str = "promotion-engine"
