"""Each sanity check fails on a crafted system and passes on a good one."""

from __future__ import annotations

import numpy as np
import pytest

from factory_pipeline.ideas import SANITY_CHECKS, run_sanity
from factory_pipeline.ideas.candidates import make_candidate
from factory_pipeline.schemas import ModuleDoc, ModuleKind, ParameterSpec, SystemStatus
from factory_pipeline.settings import DEFAULT_DATA_DIR
from factory_pipeline.strategy.language import checker, functions
from factory_pipeline.strategy.systems import load_system_yaml
from factory_pipeline_tests.ideas.conftest import AS_OF, coverage_of

EXAMPLE = DEFAULT_DATA_DIR / "systems" / "rsi_pullback_long.yaml"


@pytest.fixture()
def good(library):
    return load_system_yaml(EXAMPLE, library)


def _doc_of(spec, library):
    return make_candidate(spec, library, goal_id="g", backend="test", as_of=AS_OF).doc


def _bad_doc(spec_dict, name="crafted"):
    """A SystemDoc whose spec is not validated (as if stored by an older factory)."""
    from factory_pipeline.schemas import SystemDoc

    return SystemDoc(id=f"sys-{name}", name=name, spec_hash="0" * 64, spec=spec_dict)


def _run(candidates, library, frames, **kwargs):
    kwargs.setdefault("coverage", coverage_of(frames))
    return run_sanity(candidates, library=library, frames=frames, **kwargs)


def _failed(report):
    return [name for name, check in report.checks.items() if not check.passed]


def test_a_good_system_passes_every_check_in_order(good, library, frames):
    doc = _doc_of(good, library)
    (report,) = _run([doc], library, frames).values()
    assert report.passed and list(report.checks) == [name for name, _ in SANITY_CHECKS]
    assert report.to_dict()["checks"]["lookahead"] == {"passed": True, "reasons": []}


def test_unknown_and_inactive_modules_fail_module_refs(good, library, frames):
    data = good.model_dump(mode="json")
    data["filters"][0]["module"] = "filter_nope"
    retired = library["mgmt_time_stop"].model_copy(update={"status": "retired"})
    lib = {**library, retired.id: retired}
    (report,) = _run([_bad_doc(data)], lib, frames).values()
    assert not report.passed
    reasons = report.checks["module_refs"].reasons
    assert "filters[0]: unknown module 'filter_nope'" in reasons
    assert "management[0]: module 'mgmt_time_stop' is retired" in reasons
    assert report.checks["lookahead"].reasons[0].startswith("not run")


def test_out_of_range_parameter_fails_parameter_ranges(good, library, frames):
    data = good.model_dump(mode="json")
    data["entry"]["params"]["n"] = 99  # RSI length max is 30
    data["exits"][1]["params"]["bogus"] = 1
    (report,) = _run([_bad_doc(data)], library, frames).values()
    assert _failed(report)[0] == "parameter_ranges" or "parameter_ranges" in _failed(report)
    reasons = report.checks["parameter_ranges"].reasons
    assert any(r.startswith("entry.params.n: 99 above max 30") for r in reasons)
    assert any(r.startswith("exits[1].params.bogus: unknown parameter") for r in reasons)
    assert report.checks["module_refs"].passed


def test_bad_ladder_and_missing_data_fail_timeframes(good, library, frames):
    data = good.model_dump(mode="json")
    data["timeframes"] = {"H": "1h", "M": "1h", "L": "15m"}
    (ladder,) = _run([_bad_doc(data)], library, frames).values()
    assert "timeframes: H (1h) must be longer than M (1h)" in ladder.checks["timeframes"].reasons

    no_sol = {k: v for k, v in coverage_of(frames).items() if k[0] != "SOLUSDT"}
    spec = good.model_copy(update={"symbols": ["BTCUSDT", "SOLUSDT"]})
    (missing,) = _run([_doc_of(spec, library)], library, frames, coverage=no_sol).values()
    assert missing.checks["timeframes"].reasons == [
        "no market data for SOLUSDT at L=15m (or a timeframe dividing it)"
    ]
    short = {("BTCUSDT", "1h"): (0, 99 * 3_600_000)}  # 1h bars cannot make 15m bars
    (thin,) = _run([_doc_of(good, library)], library, frames, coverage=short).values()
    assert "no market data for BTCUSDT" in thin.checks["timeframes"].reasons[0]
    few = {("BTCUSDT", "15m"): (0, 99 * 900_000)}
    (few_bars,) = _run([_doc_of(good, library)], library, frames, coverage=few).values()
    assert few_bars.checks["timeframes"].reasons == [
        "only 100 15m bars of BTCUSDT market data (need at least 500)"
    ]


def _lead(x: np.ndarray, n: int) -> np.ndarray:
    """x[t + n]: reads the future (a deliberate leak)."""
    out = np.full(x.shape[0], np.nan)
    out[:-n] = x[n:]
    return out


@pytest.fixture()
def leaky_language(monkeypatch):
    spec = functions.FunctionSpec(
        "lead", (("x", "number"), ("n", "window")), "number", "x[t+n] (leaks)",
        functions._apply("lead", _lead, functions._window_minus_one),
    )  # fmt: skip
    monkeypatch.setattr(checker, "KNOWN_FUNCTIONS", {**functions.KNOWN_FUNCTIONS, "lead": spec})


def test_a_module_that_looks_ahead_fails_the_audit(leaky_language, good, library, frames):
    leaky = ModuleDoc(
        id="entry_peek",
        kind=ModuleKind.ENTRY,
        name="Peek entry",
        description="Buys when the next close is higher.",
        parameters={"n": ParameterSpec(type="int", default=1, min=1, max=5, step=1)},
        logic={"long": "lead(close, n) > close"},
    )
    lib = {**library, leaky.id: leaky}
    entry = good.entry.model_copy(update={"module": "entry_peek", "params": {"n": 1}})
    spec = good.model_copy(update={"entry": entry, "filters": []})
    (report,) = _run([_doc_of(spec, lib)], lib, frames, n_cuts=4).values()
    assert _failed(report) == ["lookahead"]
    assert any("entry_long" in reason for reason in report.checks["lookahead"].reasons)


def test_near_duplicates_of_existing_and_earlier_systems(good, library, frames):
    first = _doc_of(good, library)
    entry = good.entry.model_copy(
        update={"params": {**good.entry.params, "oversold": 10.0, "n": 2}}
    )
    exits = [good.exits[0], good.exits[1].model_copy(update={"params": {"n": 14, "k": 2.5}})]
    twin_spec = good.model_copy(
        update={"name": "Twin", "entry": entry, "exits": exits, "symbols": ["ETHUSDT"]}
    )
    twin = _doc_of(twin_spec, library)  # same behaviour on another symbol: 0 % apart
    far_exit = good.exits[1].model_copy(update={"params": {"n": 14, "k": 2.75}})  # 10 % apart
    far = _doc_of(
        good.model_copy(update={"name": "Far", "exits": [good.exits[0], far_exit]}), library
    )
    close_exit = good.exits[1].model_copy(update={"params": {"n": 14, "k": 2.5}})
    close_mgmt = good.management[0].model_copy(update={"params": {"max_bars": 33}})  # 3 % apart
    close = _doc_of(
        good.model_copy(
            update={
                "name": "Close",
                "exits": [good.exits[0], close_exit],
                "management": [close_mgmt],
            }
        ),
        library,
    )
    reports = _run([first, twin, far, close], library, frames)
    assert reports[first.id].passed and reports[far.id].passed
    assert (
        reports[twin.id]
        .checks["near_duplicate"]
        .reasons[0]
        .startswith(f"near-duplicate of {first.id}")
    )
    assert _failed(reports[close.id]) == ["near_duplicate"]
    # against stored systems: the stored one is another id; the same id is never its own twin
    stored = first.model_copy(update={"status": SystemStatus.DEMO})
    again = _run([first, far], library, frames, existing=[stored])
    assert again[first.id].passed and again[far.id].passed
    renamed = _doc_of(good.model_copy(update={"name": "Renamed"}), library)
    (dup,) = _run([renamed], library, frames, existing=[stored]).values()
    assert _failed(dup) == ["near_duplicate"]


def test_reports_are_json_and_nothing_changes_a_status(good, library, frames):
    import json

    doc = _doc_of(good, library).model_copy(update={"status": SystemStatus.DEMO})
    reports = _run([doc], library, frames)
    assert json.loads(json.dumps(reports[doc.id].to_dict()))["passed"] is True
    assert doc.status == SystemStatus.DEMO
