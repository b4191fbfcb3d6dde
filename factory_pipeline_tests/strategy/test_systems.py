"""System specs: loading, validation problems with field paths, the spec hash, SystemDoc ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from factory_pipeline.errors import SpecError
from factory_pipeline.schemas import ModuleDoc, SystemStatus
from factory_pipeline.settings import DEFAULT_DATA_DIR
from factory_pipeline.strategy.modules import load_module_library
from factory_pipeline.strategy.systems import (
    SystemSpec,
    load_system_yaml,
    parse_system_spec,
    spec_hash,
    system_id,
    to_system_doc,
    validate_system,
)

SYSTEMS_DIR = DEFAULT_DATA_DIR / "systems"


@pytest.fixture(scope="module")
def library() -> dict[str, ModuleDoc]:
    return load_module_library()


def base_spec_data() -> dict:
    """A small valid system as plain data."""
    return {
        "name": "SMA cross test",
        "description": "crossover with a trend filter",
        "reasoning": "because",
        "symbols": ["BTCUSDT"],
        "timeframes": {"H": "4h", "M": "1h", "L": "15m"},
        "direction": "both",
        "entry": {"module": "entry_sma_cross", "params": {"fast": 10, "slow": 30}},
        "exits": [
            {"module": "exit_ma_cross", "params": {"fast": 10, "slow": 30}},
            {"module": "exit_atr_stop", "params": {"n": 14, "k": 2.0}},
        ],
        "filters": [
            {"module": "filter_trend_sma", "params": {"n": 50}, "timeframe": "H"},
            {"module": "filter_session", "params": {"start": 8, "end": 20}},
        ],
        "risk": {"module": "risk_per_trade", "params": {"risk_fraction": 0.01}},
        "management": [{"module": "mgmt_breakeven", "params": {"after_r": 1.0}}],
    }


def make_spec(**changes) -> SystemSpec:
    return SystemSpec.model_validate({**base_spec_data(), **changes})


def problem_texts(spec: SystemSpec, library) -> list[str]:
    return [str(p) for p in validate_system(spec, library)]


# -- the example systems -------------------------------------------------------------------


def test_example_systems_load_and_validate(library):
    files = sorted(SYSTEMS_DIR.glob("*.yaml"))
    assert len(files) >= 2
    names = set()
    for file in files:
        spec = load_system_yaml(file, library)
        assert validate_system(spec, library) == []
        names.add(spec.name)
        doc = to_system_doc(spec, library)
        assert doc.status == SystemStatus.CANDIDATE
        assert doc.spec_hash == spec_hash(spec, library)
        assert set(doc.provenance.module_ids) >= {spec.entry.module, spec.risk.module}
    assert len(names) == len(files)


def test_base_spec_is_valid(library):
    assert problem_texts(make_spec(), library) == []


# -- validation problems carry field paths -------------------------------------------------


def _with(path_update) -> SystemSpec:
    data = base_spec_data()
    path_update(data)
    return SystemSpec.model_validate(data)


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        (lambda d: d["entry"]["params"].update(fast=70), "entry.params.fast: 70 above max 50"),
        (lambda d: d["entry"]["params"].update(fast=1), "entry.params.fast: 1 below min 2"),
        (lambda d: d["entry"]["params"].update(slow=33), "entry.params.slow: 33 is not on the step grid"),
        (lambda d: d["entry"]["params"].update(fast=10.5), "entry.params.fast: 10.5 is not an integer"),
        (lambda d: d["entry"]["params"].update(fast="ten"), "entry.params.fast: 'ten' is not a number"),
        (lambda d: d["entry"]["params"].update(speed=3), "entry.params.speed: unknown parameter of 'entry_sma_cross'"),
        (lambda d: d["filters"][1].update(module="foo"), "filters[1].module: unknown module 'foo'"),
        (lambda d: d["entry"].update(module="filter_session", params={}), "entry.module: 'filter_session' is a filter, not an entry"),
        (lambda d: d["exits"][0].update(module="entry_sma_cross"), "exits[0].module: 'entry_sma_cross' is an entry, not an exit"),
        (lambda d: d["risk"].update(module="mgmt_time_stop", params={}), "risk.module: 'mgmt_time_stop' is a management, not a risk"),
        (lambda d: d["timeframes"].update(H="1h"), "timeframes: H (1h) must be longer than M (1h)"),
        (lambda d: d["timeframes"].update(M="15m"), "timeframes: M (15m) must be longer than L (15m)"),
        (lambda d: d["timeframes"].update(L="3m", M="1h", H="4h"), None),
        (lambda d: d["timeframes"].update(L="2h", M="6h", H="1d"), None),
        (lambda d: d["timeframes"].update(L="30m", M="1h", H="2h"), None),
        (lambda d: d["timeframes"].update(L="1h", M="2h", H="3h"), "timeframes.H: unknown timeframe '3h'"),
        (lambda d: d["timeframes"].update(L="4h", M="6h", H="1d"), "timeframes: M (6h) must be a whole multiple of L (4h)"),
        (lambda d: d.update(symbols=["btcusdt"]), "symbols[0]: 'btcusdt' must be 2-30 upper-case"),
        (lambda d: d.update(symbols=["BTCUSDT", "BTCUSDT"]), "symbols[1]: 'BTCUSDT' is listed twice"),
        (lambda d: d.update(name="   "), "name: must not be blank"),
        (lambda d: d.update(direction="long_only", entry={"module": "entry_sma_cross"}), None),
        (lambda d: d.update(exits=[], management=[]), "exits: no exit module, stop distance"),
        (lambda d: d.update(exits=[{"module": "exit_ma_cross"}]), "risk.module: rule risk_per_trade of 'risk_per_trade' sizes from the stop distance"),
        (lambda d: d.update(exits=[{"module": "exit_ma_cross"}], risk={"module": "risk_fixed_fraction"}), "management[0].module: rule breakeven measures R"),
        (lambda d: d["management"].append({"module": "mgmt_breakeven", "params": {"after_r": 2.0}}), "management[1].module: second 'breakeven' rule (management[0] has one)"),
    ],
)  # fmt: skip
def test_validation_problems_name_the_field(library, update, expected):
    problems = problem_texts(_with(update), library)
    if expected is None:
        assert problems == []
    else:
        assert any(p.startswith(expected) for p in problems), problems


def test_direction_must_be_covered_by_the_entry_module(library):
    long_only_entry = library["entry_sma_cross"].model_copy(
        update={
            "id": "entry_long_only",
            "logic": {"long": library["entry_sma_cross"].logic["long"]},
        }
    )
    modules = {**library, "entry_long_only": long_only_entry}
    spec = make_spec(entry={"module": "entry_long_only"})
    assert problem_texts(spec, modules) == [
        "entry.module: 'entry_long_only' defines no short logic but direction is both"
    ]
    assert problem_texts(make_spec(entry={"module": "entry_long_only"},
                                   direction="long_only"), modules) == []  # fmt: skip
    assert problem_texts(make_spec(entry={"module": "entry_long_only"},
                                   direction="short_only"), modules)  # fmt: skip


def test_inactive_and_invalid_modules_are_reported(library):
    retired = library["filter_session"].model_copy(update={"status": "retired"})
    broken = library["filter_session"].model_copy(update={"logic": {"allow": "hour >"}})
    for module, expected in ((retired, "'filter_session' is retired"),
                             (broken, "'filter_session' is not a valid module: logic.allow")):  # fmt: skip
        problems = problem_texts(make_spec(), {**library, "filter_session": module})
        assert any(p.startswith(f"filters[1].module: {expected}") for p in problems), problems


def test_a_module_that_cannot_run_on_its_role_is_reported(library):
    inner_tf = library["filter_trend_sma"].model_copy(
        update={"logic": {"allow_long": 'tf("1h", close > sma(close, n))'}}
    )
    modules = {**library, "filter_trend_sma": inner_tf}
    problems = problem_texts(make_spec(), modules)  # role H = 4h wraps an inner 1h tf()
    assert any(p.startswith("filters[0].timeframe: logic.allow_long of 'filter_trend_sma' "
                            "cannot run on H (4h)") for p in problems), problems  # fmt: skip


def test_all_problems_are_reported_at_once(library):
    data = base_spec_data()
    data["entry"]["params"]["fast"] = 70
    data["filters"][1]["module"] = "foo"
    data["timeframes"]["H"] = "1h"
    problems = problem_texts(SystemSpec.model_validate(data), library)
    assert len(problems) >= 3


# -- parsing and loading YAML --------------------------------------------------------------


def test_parse_reports_pydantic_errors_as_paths():
    data = base_spec_data()
    data["exits"][1]["bogus"] = 1
    data["entry"]["params"]["fast"] = [1, 2]
    data["entry"]["timeframe"] = "X"
    del data["risk"]
    spec, problems = parse_system_spec(data)
    assert spec is None
    texts = [str(p) for p in problems]
    assert "exits[1].bogus: unknown field" in texts
    assert "entry.params.fast: must be a number, a boolean or a string" in texts
    assert any(t.startswith("entry.timeframe: Input should be 'H', 'M' or 'L'") for t in texts)
    assert "risk: Field required" in texts


def test_status_is_not_part_of_the_spec():
    _, problems = parse_system_spec({**base_spec_data(), "status": "production"})
    assert [str(p) for p in problems] == ["status: unknown field"]


def _dump(tmp_path: Path, data, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_load_system_yaml_errors_name_file_and_field(tmp_path, library):
    data = base_spec_data()
    data["entry"]["params"]["fast"] = 70
    path = _dump(tmp_path, data)
    assert load_system_yaml(path).entry.params["fast"] == 70  # no library: shape only
    with pytest.raises(
        SpecError, match=r"s\.yaml: invalid system spec:\n  entry\.params\.fast: 70"
    ):
        load_system_yaml(path, library)
    data = base_spec_data()
    data["timeframe"] = {"L": "15m"}
    with pytest.raises(
        SpecError, match=r"s\.yaml: invalid system spec:\n  timeframe: unknown field"
    ):
        load_system_yaml(_dump(tmp_path, data))
    with pytest.raises(SpecError, match=r"bad\.yaml: invalid YAML"):
        load_system_yaml(_dump(tmp_path, "name: [unclosed\n", "bad.yaml"))
    with pytest.raises(SpecError, match=r"list\.yaml: a system spec must be a mapping"):
        load_system_yaml(_dump(tmp_path, "- a\n- b\n", "list.yaml"))
    with pytest.raises(SpecError, match=r"missing\.yaml: cannot read"):
        load_system_yaml(tmp_path / "missing.yaml")


# -- the spec hash -------------------------------------------------------------------------


def _reordered(value):
    """The same data with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def test_spec_hash_is_stable_across_key_order_and_yaml_round_trip(tmp_path, library):
    data = base_spec_data()
    reference = spec_hash(SystemSpec.model_validate(data), library)
    assert len(reference) == 64 and int(reference, 16) >= 0
    assert spec_hash(SystemSpec.model_validate(_reordered(data)), library) == reference
    loaded = load_system_yaml(_dump(tmp_path, _reordered(data)), library)
    assert spec_hash(loaded, library) == reference


def test_spec_hash_ignores_prose_defaults_spelling_and_set_order(library):
    reference = spec_hash(make_spec(), library)
    prose = make_spec(name="other", description="new words", reasoning="more",
                      provenance={"notes": "x", "pages": [3]})  # fmt: skip
    assert spec_hash(prose, library) == reference
    data = base_spec_data()
    data["exits"][1]["params"] = {"n": 14}  # k = 2.0 is the default
    data["exits"][1]["params"]["n"] = 14.0  # an int written as a float
    data["filters"].reverse()
    data["exits"].reverse()
    assert spec_hash(SystemSpec.model_validate(data), library) == reference


def test_spec_hash_changes_with_behaviour(library):
    reference = spec_hash(make_spec(), library)
    seen = {reference}
    variants = [
        lambda d: d["entry"]["params"].update(fast=11),
        lambda d: d["filters"][0].update(timeframe="M"),
        lambda d: d["timeframes"].update(H="1d"),
        lambda d: d.update(direction="long_only"),
        lambda d: d.update(symbols=["BTCUSDT", "ETHUSDT"]),
        lambda d: d["filters"].pop(),
        lambda d: d["risk"]["params"].update(risk_fraction=0.02),
    ]
    for update in variants:
        digest = spec_hash(_with(update), library)
        assert digest not in seen
        seen.add(digest)


def test_spec_hash_changes_when_a_module_changes_but_not_its_description(library):
    spec = make_spec()
    reference = spec_hash(spec, library)
    module = library["filter_session"]
    reworded = module.model_copy(update={"description": "a different explanation"})
    assert spec_hash(spec, {**library, "filter_session": reworded}) == reference
    new_logic = module.model_copy(update={"logic": {"allow": "hour >= start and hour < end"}})
    assert spec_hash(spec, {**library, "filter_session": new_logic}) != reference
    params = dict(module.parameters)
    params["end"] = params["end"].model_copy(update={"max": 22})
    new_schema = module.model_copy(update={"parameters": params})
    assert spec_hash(spec, {**library, "filter_session": new_schema}) != reference


def test_spec_hash_of_an_unknown_module_raises(library):
    data = base_spec_data()
    data["filters"][1]["module"] = "foo"
    with pytest.raises(SpecError, match=r"filters\[1\]\.module: unknown module 'foo'"):
        spec_hash(SystemSpec.model_validate(data), library)


# -- SystemDoc -----------------------------------------------------------------------------


def test_to_system_doc_ids_versions_and_provenance(library):
    spec = make_spec(provenance={"concept_ids": ["kbc-1"], "pages": [12, 3, 12]})
    doc = to_system_doc(spec, library)
    assert doc.id == f"sys-sma-cross-test-{doc.spec_hash[:12]}"
    assert doc.spec == spec.model_dump(mode="json")
    assert SystemSpec.model_validate(doc.spec) == spec
    assert doc.description == spec.description and doc.reasoning == spec.reasoning
    assert doc.provenance.pages == [3, 12]
    assert doc.provenance.concept_ids == ["kbc-1"]
    assert doc.provenance.module_ids[0] == "entry_sma_cross"
    assert "mgmt_breakeven" in doc.provenance.module_ids
    edited = to_system_doc(_with(lambda d: d["entry"]["params"].update(fast=12)), library)
    assert edited.id != doc.id and edited.spec_hash != doc.spec_hash
    assert edited.id.startswith("sys-sma-cross-test-")
    reworded = to_system_doc(make_spec(description="clearer"), library)
    assert reworded.id == to_system_doc(make_spec(), library).id


def test_to_system_doc_refuses_invalid_specs(library):
    spec = _with(lambda d: d["entry"]["params"].update(fast=70))
    with pytest.raises(SpecError, match=r"entry\.params\.fast: 70 above max 50"):
        to_system_doc(spec, library)


def test_system_id_slug():
    assert system_id("  RSI / Pullback (v2)!! ", "ab" * 32) == "sys-rsi-pullback-v2-abababababab"
    assert system_id("???", "cd" * 32) == "sys-system-cdcdcdcdcdcd"
