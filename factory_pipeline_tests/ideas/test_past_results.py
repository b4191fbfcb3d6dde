"""Past results reach the designers only as recorded by the design time: the as-of rule, the
status known then, relevance to the goal, the agent's prompt and the assembler's notes."""

from __future__ import annotations

import datetime as dt

from factory_pipeline.ideas import design_candidates, load_goals, past_results_as_of
from factory_pipeline.ideas.agent import render_design_prompt
from factory_pipeline.ideas.context import retrieve_context
from factory_pipeline.ideas.past_results import entry_record, relevant_results
from factory_pipeline.schemas import RobustnessDoc, StatusTransition, SystemDoc
from factory_pipeline.settings import DEFAULT_DATA_DIR
from factory_pipeline_tests.ideas.conftest import AS_OF

DAY = dt.timedelta(days=1)


def _system(sid: str, entry: str, symbols=("BTCUSDT",), created=AS_OF - 10 * DAY) -> SystemDoc:
    spec = {
        "name": sid,
        "symbols": list(symbols),
        "entry": {"module": entry, "params": {}},
        "exits": [{"module": "exit_atr_stop", "params": {}}],
        "risk": {"module": "risk_per_trade", "params": {}},
    }
    return SystemDoc(id=sid, name=sid, spec_hash=f"h-{sid}", spec=spec, created_at=created)


def _report(sid: str, dsr: float, created: dt.datetime) -> RobustnessDoc:
    return RobustnessDoc(
        id=f"rob-{sid}",
        system_id=sid,
        spec_hash=f"h-{sid}",
        engine_version="1",
        evidence={"trades": 120.0, "dsr": dsr, "pbo": 0.2, "expectancy_r": 0.1},
        created_at=created,
    )


def _decision(sid: str, to: str, created: dt.datetime, failed: str = "") -> StatusTransition:
    rules = [{"rule": failed, "passed": False}] if failed else []
    return StatusTransition(
        id=f"t-{sid}-{to}",
        system_id=sid,
        from_status="candidate",
        to_status=to,
        policy_hash="p",
        rule_results=rules,
        created_at=created,
    )


def test_only_results_recorded_by_the_design_time_are_visible():
    systems = [_system("old", "entry_macd_cross"), _system("new", "entry_sma_cross")]
    reports = [_report("old", 0.3, AS_OF - 2 * DAY), _report("new", 0.9, AS_OF + DAY)]
    decisions = [
        _decision("old", "rework_required", AS_OF - DAY, failed="min_dsr"),
        _decision("new", "demo", AS_OF + 2 * DAY),
    ]
    past = past_results_as_of(systems, reports, decisions, AS_OF)
    assert [p.system_id for p in past] == ["old"]
    (old,) = past
    assert old.status == "rework_required" and old.failed_rules == ("min_dsr",)
    assert old.figures["dsr"] == 0.3 and old.entry == "entry_macd_cross"
    # one day earlier the decision had not been taken yet: the system was still a candidate
    (earlier,) = past_results_as_of(systems, reports, decisions, AS_OF - 1.5 * DAY)
    assert earlier.status == "candidate" and earlier.failed_rules == ()


def test_relevance_needs_a_shared_symbol_and_ranks_by_module_overlap():
    goal = load_goals(DEFAULT_DATA_DIR / "goals")[0]
    systems = [
        _system("eth", "entry_macd_cross", symbols=("ETHUSDT",)),
        _system("btc-few", "entry_macd_cross", symbols=tuple(goal.symbols)),
        _system("btc-many", "entry_sma_cross", symbols=tuple(goal.symbols)),
    ]
    reports = [_report(s.id, 0.5, AS_OF - DAY) for s in systems]
    past = past_results_as_of(systems, reports, [], AS_OF)
    wanted = {"entry_sma_cross", "exit_atr_stop", "risk_per_trade"}
    ranked = relevant_results(goal, past, module_ids=wanted)
    if "ETHUSDT" not in goal.symbols:
        assert "eth" not in [p.system_id for p in ranked]
    assert [p.system_id for p in ranked][:2] == ["btc-many", "btc-few"]


def test_the_agent_prompt_carries_the_past_results_fenced(library, concepts):
    goal = load_goals(DEFAULT_DATA_DIR / "goals")[0]
    systems = [_system("tried", "entry_macd_cross", symbols=tuple(goal.symbols))]
    past = past_results_as_of(
        systems,
        [_report("tried", 0.12, AS_OF - DAY), _report("later", 0.9, AS_OF + DAY)],
        [_decision("tried", "rework_required", AS_OF - DAY, failed="min_dsr")],
        AS_OF,
    )
    context = retrieve_context(
        goal, index=None, library=library, concepts=concepts, as_of=AS_OF, past=past
    )
    prompt = render_design_prompt(goal, context, [], wanted=2, already=[])
    assert "<past_results" in prompt and "</past_results>" in prompt
    assert "tried [rework_required] entry entry_macd_cross" in prompt
    assert "failed min_dsr" in prompt and "dsr 0.12" in prompt


def test_the_assembler_cites_how_its_entry_fared_before(library, concepts):
    goals = load_goals(DEFAULT_DATA_DIR / "goals")[:1]
    first = design_candidates(
        goals, library=library, concepts=concepts, index=None, llm=None, as_of=AS_OF
    )
    entry = first[0].spec.entry.module
    tried = _system("tried", entry, symbols=tuple(goals[0].symbols))
    past = past_results_as_of([tried], [_report("tried", 0.4, AS_OF - DAY)], [], AS_OF)
    again = design_candidates(
        goals, library=library, concepts=concepts, index=None, llm=None, as_of=AS_OF,
        past_results=past,
    )  # fmt: skip
    noted = [c for c in again if c.spec.entry.module == entry]
    assert noted and all(entry_record(past, entry) in c.doc.reasoning for c in noted)
    assert "best DSR 0.40" in noted[0].doc.reasoning
    # past results inform the notes, not the specs: the same systems are designed
    assert [c.doc.spec_hash for c in again] == [c.doc.spec_hash for c in first]
