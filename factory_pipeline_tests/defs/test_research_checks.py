"""The research checks' verdicts on crafted systems: a gate that held passes and lists what it
caught; a candidate marked sane that fails re-verification (or has no verdict) is an ERROR."""

from __future__ import annotations

import dagster as dg

from factory_pipeline.defs.research.checks import (
    gate_check_name,
    reverified_problems,
    sanity_result,
)
from factory_pipeline.schemas import SystemDoc

SANE = {"passed": True, "checks": {"module_refs": {"passed": True, "reasons": []}}}
CAUGHT = {
    "passed": False,
    "checks": {"module_refs": {"passed": False, "reasons": ["entry.module: no module 'x'"]}},
}


def _system(name: str, sanity: dict, spec: dict | None = None) -> SystemDoc:
    return SystemDoc(id=f"sys-{name}", name=name, spec_hash="h", spec=spec or {}, sanity=sanity)


def test_a_gate_that_held_passes_and_lists_the_candidates_it_stopped():
    systems = [_system("good", SANE), _system("bad", CAUGHT)]
    result = sanity_result("module_refs", systems, broken={})
    assert result.passed
    assert result.metadata["failing"].value == 1 and result.metadata["gate_broken"].value == 0
    rows = result.metadata["systems"].value.records
    assert [r.data["id"] for r in rows] == ["sys-bad"]
    assert "no module" in rows[0].data["reasons"]


def test_a_sane_candidate_whose_spec_no_longer_validates_is_an_error():
    systems = [_system("stale", SANE, spec={"name": "stale"})]
    broken = reverified_problems(systems, library={})
    assert set(broken) == {"sys-stale"}
    result = sanity_result("module_refs", systems, broken=broken)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR


def test_a_candidate_without_a_verdict_breaks_every_sanity_gate():
    systems = [_system("unchecked", {})]
    broken = reverified_problems(systems, library={})
    assert broken == {"sys-unchecked": "no sanity verdict stored"}
    for name in ("module_refs", "lookahead", "near_duplicate"):
        assert not sanity_result(name, systems, broken=broken).passed


def test_policy_rules_map_to_their_gate_checks():
    assert gate_check_name("min_trades") == "gate_min_trades"
    assert gate_check_name("min_trades_per_fold") == "gate_min_trades_per_fold"
    assert gate_check_name("min_expectancy_r") == "gate_min_expectancy"
    assert gate_check_name("disable_when.max_drawdown_multiple") == "gate_disable_triggers"
    assert gate_check_name("lookahead_passed") == "gate_lookahead_passed"
