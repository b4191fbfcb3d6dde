"""The idea flow over the store: design goals + knowledge -> candidate systems with sanity verdicts.

Shared by the ``candidate_systems`` asset and the ``factory`` benchmark. Reads goals from
``<data_dir>/goals``, the active modules and concept cards from the store, retrieves design
context through the vector index, assembles candidates (offline combinatorial backend, or the LLM
agent), runs the sanity checks against the market store, and stores every candidate, passing or
not, with its verdict. Statuses are never set here: ``store_systems`` keeps a stored system's
status and stores new ones as candidates.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory_pipeline.flows.research import CANDIDATES_PARTITION, active_library, load_frames
from factory_pipeline.ideas import design_candidates, load_goals, past_results_as_of, run_sanity
from factory_pipeline.promotion.state_machine import store_systems
from factory_pipeline.schemas import (
    KbConcept,
    KbSegment,
    RobustnessDoc,
    StatusTransition,
    SystemDoc,
)
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.store.market import MarketStore

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DesignOutcome:
    """Candidates designed in one run, with their sanity verdicts."""

    goals: int
    systems: list[SystemDoc]
    passed: int
    failed: int
    backend: str
    wall_s: float


def design_and_store(
    store: Store,
    *,
    goals_dir: Path,
    timeframe: str,
    index: Any,
    llm: Any,
    as_of: dt.datetime | None = None,
    progress: Progress | None = None,
) -> DesignOutcome:
    """Design candidates for every goal, check them, store them (statuses untouched)."""
    started = time.perf_counter()
    docs = DocumentStore(store)
    market = MarketStore(store)
    goals = load_goals(goals_dir)
    library = active_library(docs)
    concepts = docs.list(KbConcept)
    cited = sorted({e.segment_id for c in concepts for e in c.evidence})
    segments = docs.list(KbSegment, {"id": cited}) if cited else []
    existing = docs.list(SystemDoc)
    moment = as_of or dt.datetime.now(dt.UTC)
    past = past_results_as_of(
        existing, docs.list(RobustnessDoc), docs.list(StatusTransition), moment
    )
    candidates = design_candidates(
        goals,
        library=library,
        concepts=concepts,
        index=index,
        llm=llm,
        as_of=moment,
        existing=existing,
        segments=segments,
        past_results=past,
    )
    if progress:
        progress(f"{len(candidates)} candidate(s) designed for {len(goals)} goal(s)")
    symbols = sorted({s for c in candidates for s in c.spec.symbols})
    frames = load_frames(market, symbols, timeframe)
    coverage = {
        (row["symbol"], row["timeframe"]): (row["first_open_time"], row["last_open_time"])
        for row in market.coverage()
    }
    reports = run_sanity(
        candidates, library=library, frames=frames, coverage=coverage, existing=existing
    )
    systems = [c.doc.model_copy(update={"sanity": reports[c.doc.id].to_dict()}) for c in candidates]
    store_systems(docs, systems, partition_key=CANDIDATES_PARTITION)
    passed = sum(1 for s in systems if s.sanity.get("passed"))
    backend = candidates[0].backend if candidates else "none"
    return DesignOutcome(
        goals=len(goals),
        systems=systems,
        passed=passed,
        failed=len(systems) - passed,
        backend=backend,
        wall_s=time.perf_counter() - started,
    )
