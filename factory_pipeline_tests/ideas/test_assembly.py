"""The offline assembler: deterministic, valid, inside schemas and budgets, and enough
sanity-passing systems from the shipped goals and module library."""

from __future__ import annotations

import pytest

from factory_pipeline.ideas import design_candidates, load_goals, run_sanity
from factory_pipeline.ideas.assembly import assemble_candidates
from factory_pipeline.ideas.context import retrieve_context
from factory_pipeline.schemas import SystemStatus
from factory_pipeline.settings import DEFAULT_DATA_DIR
from factory_pipeline.strategy.systems import (
    iter_ref_slots,
    resolve_params,
    spec_hash,
    validate_system,
)
from factory_pipeline_tests.ideas.conftest import AS_OF, coverage_of


@pytest.fixture(scope="module")
def goals():
    return load_goals(DEFAULT_DATA_DIR / "goals")


@pytest.fixture(scope="module")
def batch(goals, library, concepts):
    return design_candidates(
        goals, library=library, concepts=concepts, index=None, llm=None, as_of=AS_OF, existing=[]
    )


def _inside(spec, value) -> bool:
    """Independent schema check: type, [min, max] and the grid min + k * step."""
    if spec.type == "bool":
        return isinstance(value, bool)
    if spec.type == "enum":
        return value in spec.choices
    if spec.type == "int" and not isinstance(value, int):
        return False
    if spec.min is not None and value < spec.min:
        return False
    if spec.max is not None and value > spec.max:
        return False
    if spec.step:
        k = (value - (spec.min or 0.0)) / spec.step
        return abs(k - round(k)) < 1e-6
    return True


def test_same_inputs_give_the_same_candidates(batch, goals, library, concepts):
    again = design_candidates(
        goals, library=library, concepts=concepts, index=None, llm=None, as_of=AS_OF, existing=[]
    )
    assert [c.doc.model_dump() for c in again] == [c.doc.model_dump() for c in batch]


def test_every_candidate_is_valid_inside_its_schemas_and_the_goal(batch, goals, library):
    by_id = {goal.id: goal for goal in goals}
    assert len(batch) == sum(goal.n_candidates for goal in goals)
    for candidate in batch:
        goal = by_id[candidate.goal_id]
        spec = candidate.spec
        assert validate_system(spec, library) == []
        assert candidate.doc.spec_hash == spec_hash(spec, library)
        assert candidate.doc.id.endswith(candidate.doc.spec_hash[:12])
        assert candidate.doc.status == SystemStatus.CANDIDATE
        assert candidate.doc.created_at == AS_OF
        assert candidate.backend == "offline-assembler"
        assert spec.symbols == goal.symbols and spec.timeframes == goal.timeframes
        assert spec.direction == goal.direction
        for slot in iter_ref_slots(spec):
            module = library[slot.ref.module]
            assert goal.module_allowed(module.id)
            assert set(slot.ref.params) == set(module.parameters)  # every value chosen explicitly
            for name, value in slot.ref.params.items():
                assert _inside(module.parameters[name], value), (slot.path, name, value)
        used = {slot.ref.module for slot in iter_ref_slots(spec)}
        assert set(goal.required_modules) <= used
        risk = resolve_params(spec.risk, library[spec.risk.module])
        assert risk.get("risk_fraction", 0) <= goal.risk.max_risk_per_trade
        assert risk.get("max_leverage", 0) <= goal.risk.max_leverage
        assert risk.get("target_vol", 0) <= goal.risk.target_vol
        for ref in (spec.entry, *spec.exits):
            params = ref.params
            if "fast" in params and "slow" in params:
                assert params["fast"] < params["slow"]
        assert len(spec.filters) <= goal.max_filters and len(spec.management) <= goal.max_management


def test_signal_exits_of_the_same_family_share_the_entry_lengths(batch):
    pairs = 0
    for candidate in batch:
        spec = candidate.spec
        for ref in spec.exits:
            if spec.entry.module == "entry_sma_cross" and ref.module == "exit_ma_cross":
                pairs += 1
                assert ref.params == spec.entry.params
            if (
                spec.entry.module == "entry_donchian_breakout"
                and ref.module == "exit_donchian_channel"
            ):
                pairs += 1
                assert ref.params["n"] <= spec.entry.params["n"]
    assert pairs > 0


def test_trend_filters_run_on_the_goal_role_and_reasoning_cites_concepts(batch, goals):
    by_id = {goal.id: goal for goal in goals}
    cited = 0
    for candidate in batch:
        for ref in candidate.spec.filters:
            if ref.module in ("filter_trend_sma", "filter_trend_strength"):
                assert ref.timeframe == by_id[candidate.goal_id].trend_filter_role
        provenance = candidate.doc.provenance
        assert f"goal {candidate.goal_id}" in provenance.notes
        assert candidate.spec.entry.module in provenance.module_ids
        if provenance.concept_ids:
            cited += 1
            assert provenance.pages and provenance.segment_ids and provenance.book_ids
            assert provenance.concept_ids[0] in candidate.doc.reasoning
    assert cited > len(batch) // 2


def test_at_least_fifty_candidates_pass_sanity(batch, library, frames):
    reports = run_sanity(
        batch, library=library, frames=frames, coverage=coverage_of(frames), existing=[]
    )
    passed = [system_id for system_id, report in reports.items() if report.passed]
    assert len(reports) == len(batch)
    assert len(passed) >= 50


def test_the_same_goal_seed_changes_with_the_goal_id(goals, library, concepts):
    goal = goals[0].model_copy(update={"n_candidates": 4})
    renamed = goal.model_copy(update={"id": goal.id + "-b"})
    context = retrieve_context(goal, index=None, library=library, concepts=concepts, as_of=AS_OF)
    a, _ = assemble_candidates(goal, context, library, as_of=AS_OF)
    b, _ = assemble_candidates(renamed, context, library, as_of=AS_OF)
    assert [c.doc.spec_hash for c in a] != [c.doc.spec_hash for c in b]


def test_an_impossible_goal_reports_why(goals, library, concepts):
    goal = goals[0].model_copy(update={"styles": ["carry"]})  # no carry entry in the library
    context = retrieve_context(goal, index=None, library=library, concepts=concepts, as_of=AS_OF)
    made, dropped = assemble_candidates(goal, context, library, as_of=AS_OF)
    assert made == [] and "no compatible module combination" in dropped[0].reason
