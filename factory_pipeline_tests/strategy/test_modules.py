"""The module library: every module loads, validates and evaluates; each validation rule fires.

Also home of ``random_walk_frame``, the seeded synthetic frame the other strategy tests use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factory_pipeline.errors import SpecError
from factory_pipeline.market.frame import MarketFrame, make_frame
from factory_pipeline.market.timeframes import HOUR_MS, timeframe_ms
from factory_pipeline.schemas import ModuleDoc, ModuleKind, ParameterSpec
from factory_pipeline.strategy.language import EvalContext, IndicatorCache, compile_expression
from factory_pipeline.strategy.modules import (
    DEFAULT_MODULES_DIR,
    LOGIC_KEYS,
    RULES,
    check_parameter_value,
    load_module_library,
    module_content_hash,
    validate_module,
)

# 2024-01-01 00:00 UTC: a Monday, on every timeframe boundary up to 1d.
START_MS = 1_704_067_200_000


def random_walk_frame(
    n: int = 1500, timeframe: str = "15m", seed: int = 7, symbol: str = "BTCUSDT"
) -> MarketFrame:
    """A seeded random-walk frame with funding every 8h and open interest every hour."""
    rng = np.random.default_rng(seed)
    step = timeframe_ms(timeframe)
    open_time = START_MS + np.arange(n, dtype=np.int64) * step
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.003, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.003, n))
    end = int(open_time[-1]) + step
    funding_time = np.arange(START_MS, end + 1, 8 * HOUR_MS, dtype=np.int64)
    funding_rates = rng.normal(0.0001, 0.0004, funding_time.shape[0])
    oi_time = np.arange(START_MS + HOUR_MS // 2, end, HOUR_MS, dtype=np.int64)
    oi_values = 1e6 * np.exp(np.cumsum(rng.normal(0.0, 0.01, oi_time.shape[0])))
    return make_frame(
        symbol, timeframe, open_time, open_, high, low, close,
        volume=rng.uniform(10.0, 100.0, n), funding_time=funding_time,
        funding_rates=funding_rates, oi_time=oi_time, oi_values=oi_values,
    )  # fmt: skip


@pytest.fixture(scope="module")
def library() -> dict[str, ModuleDoc]:
    return load_module_library()


def _module(**fields) -> ModuleDoc:
    base = {"id": "m_test", "kind": "entry", "name": "t", "description": "t"}
    return ModuleDoc.model_validate({**base, **fields})


def _param(**fields) -> ParameterSpec:
    return ParameterSpec.model_validate(fields)


# -- the library ---------------------------------------------------------------------------


def test_library_loads_at_least_20_valid_modules_of_every_kind(library):
    assert len(library) >= 20
    kinds = {doc.kind for doc in library.values()}
    assert kinds == set(ModuleKind)
    for module_id, doc in library.items():
        assert doc.id == module_id
        assert validate_module(doc) == [], module_id
        assert doc.description.strip() and doc.name.strip()
        assert doc.concept_ids == []
        assert doc.status == "active"


def test_library_ids_are_the_yaml_ids_and_stable(library):
    again = load_module_library(DEFAULT_MODULES_DIR)
    assert list(again) == list(library)
    assert {k: module_content_hash(v) for k, v in again.items()} == {
        k: module_content_hash(v) for k, v in library.items()
    }
    assert {"entry_sma_cross", "exit_atr_stop", "filter_session", "risk_fixed_fraction",
            "mgmt_time_stop"} <= set(library)  # fmt: skip


def test_library_covers_the_required_rules(library):
    rules = {doc.rule for doc in library.values() if doc.rule}
    assert rules == set(RULES)


def test_every_module_evaluates_on_a_synthetic_frame(library):
    frame = random_walk_frame(800, "15m")
    ctx = EvalContext(frame, IndicatorCache())
    for module_id, doc in library.items():
        for key, text in doc.logic.items():
            compiled = compile_expression(text, parameters=doc.parameters, base_timeframe="15m")
            values = compiled.evaluate(ctx)
            expected = LOGIC_KEYS[doc.kind][key]
            assert compiled.kind == expected, (module_id, key)
            assert values.shape == (len(frame),), (module_id, key)
            if expected == "bool":
                assert values.dtype == np.bool_, (module_id, key)
            else:
                assert values.dtype == np.float64, (module_id, key)
                assert np.isfinite(values[compiled.warmup_bars() :]).all(), (module_id, key)
                if key != "volatility":
                    assert (values[compiled.warmup_bars() :] > 0).all(), (module_id, key)


# -- validate_module: one crafted module per problem class ---------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"logic": {"long": "close > 1", "buy": "close > 2"}}, "logic.buy: not a logic key"),
        ({"logic": {}}, "logic: an entry module needs 'long' and/or 'short'"),
        ({"logic": {"long": "close >"}}, "logic.long:"),
        ({"logic": {"long": "sma(close, 10)"}}, "logic.long: must be a bool expression"),
        ({"logic": {"long": "close > foo"}}, "logic.long:"),
        (
            {"kind": "exit", "logic": {"stop_distance": "close > 1"}},
            "logic.stop_distance: must be a number expression",
        ),
        (
            {"parameters": {"n": {"type": "int", "default": 70, "max": 50}},
             "logic": {"long": "close > sma(close, n)"}},
            "parameters.n.default: 70 above max 50",
        ),
        (
            {"parameters": {"n": {"type": "int", "default": 1, "min": 2}},
             "logic": {"long": "close > sma(close, n)"}},
            "parameters.n.default: 1 below min 2",
        ),
        (
            {"parameters": {"k": {"type": "float", "default": 2.05, "min": 1.0, "step": 0.1}},
             "logic": {"long": "close > k"}},
            "parameters.k.default: 2.05 is not on the step grid",
        ),
        (
            {"parameters": {"n": {"type": "int", "default": 2.5}},
             "logic": {"long": "close > n"}},
            "parameters.n.default: 2.5 is not an integer",
        ),
        (
            {"parameters": {"mode": {"type": "enum", "default": "x", "choices": ["a", "b"]}},
             "logic": {"long": "close > 1"}},
            "parameters.mode.default: 'x' is not one of ['a', 'b']",
        ),
        (
            {"parameters": {"mode": {"type": "enum", "default": "a"}},
             "logic": {"long": "close > 1"}},
            "parameters.mode.choices: an enum parameter needs",
        ),
        (
            {"parameters": {"n": {"type": "int", "default": 5, "min": 9, "max": 3}},
             "logic": {"long": "close > n"}},
            "parameters.n.min: 9 is above max 3",
        ),
        (
            {"parameters": {"unused": {"type": "int", "default": 5}},
             "logic": {"long": "close > 1"}},
            "parameters.unused: declared but used by no logic expression or rule",
        ),
        ({"rule": "fixed_qty", "logic": {"long": "close > 1"}}, "rule: an entry module has no rule"),
        (
            {"kind": "risk", "rule": "martingale", "parameters": {}},
            "rule: 'martingale' is not a risk rule",
        ),
        (
            {"kind": "risk", "rule": "breakeven", "parameters": {}},
            "rule: 'breakeven' is not a risk rule",
        ),
        ({"kind": "risk"}, "rule: a risk module needs a rule"),
        (
            {"kind": "risk", "rule": "risk_per_trade", "parameters": {}},
            "parameters.risk_fraction: required by rule 'risk_per_trade' but missing",
        ),
        (
            {"kind": "risk", "rule": "risk_per_trade",
             "parameters": {"risk_fraction": {"type": "float", "default": 0.5}}},
            "parameters.risk_fraction.default: 0.5 outside the domain of rule 'risk_per_trade'",
        ),
        (
            {"kind": "management", "rule": "trailing_stop"},
            "logic.trail_distance: required by rule 'trailing_stop' but missing",
        ),
        (
            {"kind": "management", "rule": "time_stop",
             "parameters": {"max_bars": {"type": "float", "default": 10.0}}},
            "parameters.max_bars.type: rule 'time_stop' needs an int",
        ),
        (
            {"kind": "risk", "rule": "fixed_qty",
             "parameters": {"qty": {"type": "float", "default": 1.0}},
             "logic": {"volatility": "stdev(close, 10)"}},
            "logic.volatility: only the volatility_target rule uses it",
        ),
        (
            {"kind": "filter", "logic": {"allow": "close > 1", "allow_long": "close > 2"}},
            "logic.allow: cannot be combined with allow_long/allow_short",
        ),
        ({"id": "Bad-Id", "logic": {"long": "close > 1"}}, "id: 'Bad-Id' must be lower-case"),
    ],
)  # fmt: skip
def test_validate_module_names_the_field_and_the_problem(fields, expected):
    problems = validate_module(_module(**fields))
    assert any(p.startswith(expected) for p in problems), problems


def test_a_correct_module_has_no_problems():
    doc = _module(
        parameters={"n": {"type": "int", "default": 20, "min": 5, "max": 50, "step": 5}},
        logic={"long": "close > sma(close, n)", "short": "close < sma(close, n)"},
    )
    assert validate_module(doc) == []


def test_check_parameter_value_rules():
    spec = _param(type="float", default=2.0, min=1.0, max=3.0, step=0.25)
    assert check_parameter_value(spec, 2.75) is None
    assert check_parameter_value(spec, 0.3 * 10) is None  # 3.0000000000000004 rounds onto grid
    assert check_parameter_value(spec, 2.6) == "2.6 is not on the step grid 1 + k * 0.25"
    assert check_parameter_value(spec, True) == "True is not a number"
    assert check_parameter_value(spec, "2") == "'2' is not a number"
    assert check_parameter_value(spec, float("nan")) == "nan is not a finite number"
    ints = _param(type="int", default=3)
    assert check_parameter_value(ints, 4.0) is None
    assert check_parameter_value(ints, 4.5) == "4.5 is not an integer"
    assert check_parameter_value(_param(type="bool", default=True), 1) == "1 is not a boolean"


# -- load_module_library errors name the file and field ------------------------------------


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


GOOD = """
modules:
  - id: good_entry
    kind: entry
    name: good
    description: fine
    parameters:
      n: {type: int, default: 20, min: 5, max: 50}
    logic:
      long: close > sma(close, n)
"""


def test_loader_reports_invalid_yaml_with_the_file(tmp_path):
    _write(tmp_path, "broken.yaml", "modules: [\n  - id: x\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: invalid YAML"):
        load_module_library(tmp_path)


def test_loader_reports_schema_errors_with_file_and_field(tmp_path):
    _write(tmp_path, "a.yaml", GOOD)
    _write(tmp_path, "b.yaml", "id: bad\nkind: sideways\nname: b\ndescription: b\n")
    with pytest.raises(SpecError, match=r"b\.yaml: module \(id 'bad'\)\.kind: Input should be"):
        load_module_library(tmp_path)


def test_loader_reports_validation_problems_with_file_and_field(tmp_path):
    _write(tmp_path, "a.yaml", GOOD.replace("default: 20", "default: 70"))
    with pytest.raises(SpecError, match=r"a\.yaml: modules\[0\]\.parameters\.n\.default: 70"):
        load_module_library(tmp_path)


def test_loader_rejects_duplicate_ids_naming_both_files(tmp_path):
    _write(tmp_path, "a.yaml", GOOD)
    _write(tmp_path, "b.yaml", GOOD)
    with pytest.raises(
        SpecError, match=r"b\.yaml: modules\[0\]: id 'good_entry' already .* a\.yaml"
    ):
        load_module_library(tmp_path)


def test_loader_rejects_empty_or_missing_folders(tmp_path):
    with pytest.raises(SpecError, match="holds no"):
        load_module_library(tmp_path)
    with pytest.raises(SpecError, match="does not exist"):
        load_module_library(tmp_path / "nope")


def test_loader_accepts_single_module_files(tmp_path):
    _write(tmp_path, "one.yaml", GOOD.replace("modules:\n  - ", "").replace("\n    ", "\n"))
    library = load_module_library(tmp_path)
    assert list(library) == ["good_entry"]
    assert library["good_entry"].provenance.notes == "data/modules/one.yaml"


# -- content hash --------------------------------------------------------------------------


def test_module_hash_tracks_behaviour_not_prose(library):
    doc = library["entry_sma_cross"]
    base = module_content_hash(doc)
    prose = doc.model_copy(update={"description": "other words", "name": "renamed"})
    assert module_content_hash(prose) == base
    spaced = doc.model_copy(
        update={"logic": {k: "  " + v.replace(", ", " ,  ") for k, v in doc.logic.items()}}
    )
    assert module_content_hash(spaced) == base
    new_logic = dict(doc.logic, long="crosses_above(ema(close, fast), sma(close, slow))")
    assert module_content_hash(doc.model_copy(update={"logic": new_logic})) != base
    params = dict(doc.parameters)
    params["fast"] = params["fast"].model_copy(update={"default": 12})
    assert module_content_hash(doc.model_copy(update={"parameters": params})) != base
    params["fast"] = doc.parameters["fast"].model_copy(update={"description": "x"})
    assert module_content_hash(doc.model_copy(update={"parameters": params})) == base
