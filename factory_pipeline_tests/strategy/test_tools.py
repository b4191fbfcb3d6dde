"""Agent tools: validate_system_tool returns problems instead of raising; schemas are usable."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from factory_pipeline.strategy.modules import DEFAULT_MODULES_DIR, load_module_library
from factory_pipeline.strategy.systems import SystemSpec, spec_hash
from factory_pipeline.strategy.tools import TOOL_SCHEMAS, default_library, validate_system_tool
from factory_pipeline_tests.strategy.test_systems import SYSTEMS_DIR, base_spec_data


@pytest.fixture(scope="module")
def library():
    return load_module_library()


def test_a_valid_spec_returns_its_hash(library):
    data = base_spec_data()
    result = validate_system_tool(data)
    assert result == {
        "valid": True,
        "problems": [],
        "spec_hash": spec_hash(SystemSpec.model_validate(data), library),
    }
    json.dumps(result)


def test_problems_come_back_with_paths_instead_of_exceptions():
    data = base_spec_data()
    data["entry"]["params"]["fast"] = 70
    data["filters"][1]["module"] = "foo"
    result = validate_system_tool(data)
    assert result["valid"] is False and result["spec_hash"] is None
    assert {"path": "entry.params.fast", "message": "70 above max 50"} in result["problems"]
    assert {"path": "filters[1].module", "message": "unknown module 'foo'"} in result["problems"]


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        (None, "(root)"),
        ([], "(root)"),
        ("BTCUSDT", "(root)"),
        (42, "(root)"),
        ({}, "name"),
        ({**base_spec_data(), "entry": 5}, "entry"),
        ({**base_spec_data(), "status": "production"}, "status"),
        ({**base_spec_data(), "timeframes": {"H": "4h", "M": "1h", "L": "banana"}}, "timeframes.L"),
        ({**base_spec_data(), "timeframes": {"H": 4, "M": None, "L": []}}, "timeframes.H"),
        ({**base_spec_data(), "exits": [{"module": ["x"]}]}, "exits[0].module"),
        ({**base_spec_data(), "exits": "exit_ma_cross"}, "exits"),
        ({**base_spec_data(), "risk": {"module": "risk_fixed_qty", "params": {"qty": -1}}},
         "risk.params.qty"),
        ({**base_spec_data(), "entry": {"module": "entry_sma_cross",
                                        "params": {"fast": {"nested": [1]}}}}, "entry.params.fast"),
        ({**base_spec_data(), "symbols": [None]}, "symbols[0]"),
    ],
)  # fmt: skip
def test_bad_input_never_raises(spec, path):
    result = validate_system_tool(spec)
    assert result["valid"] is False and result["spec_hash"] is None
    assert path in {p["path"] for p in result["problems"]}, result["problems"]
    assert all(set(p) == {"path", "message"} and p["message"] for p in result["problems"])
    json.dumps(result)


def test_a_broken_library_is_reported_not_raised():
    result = validate_system_tool(base_spec_data(), library={})
    assert result["valid"] is False
    assert result["problems"][0]["path"] == "entry.module"


def test_default_library_is_cached_until_files_change(tmp_path):
    for file in ("entries.yaml", "exits.yaml"):
        (tmp_path / file).write_text((DEFAULT_MODULES_DIR / file).read_text())
    first = default_library(tmp_path)
    assert default_library(tmp_path) is first
    text = (tmp_path / "exits.yaml").read_text()
    changed = text.replace("pct: {type: float, default: 2.0", "pct: {type: float, default: 3.0")
    assert changed != text
    (tmp_path / "exits.yaml").write_text(changed + "\n")
    second = default_library(tmp_path)
    assert second is not first
    assert second["exit_percent_stop"].parameters["pct"].default == 3.0


def test_tool_schema_is_openai_format_and_matches_the_validator():
    tool = TOOL_SCHEMAS["validate_system"]
    assert tool["type"] == "function"
    function = tool["function"]
    assert function["name"] == "validate_system" and function["description"]
    parameters = function["parameters"]
    assert parameters["type"] == "object" and parameters["required"] == ["spec"]
    json.dumps(tool)
    validator = jsonschema.Draft202012Validator(parameters)
    jsonschema.Draft202012Validator.check_schema(parameters)
    for file in sorted(SYSTEMS_DIR.glob("*.yaml")):
        validator.validate({"spec": yaml.safe_load(file.read_text())})
    spec_schema = parameters["properties"]["spec"]
    assert set(spec_schema["required"]) == {"name", "symbols", "timeframes", "entry", "risk"}
    assert spec_schema["additionalProperties"] is False
    assert "status" not in spec_schema["properties"]
    for bad in ({"status": "production"}, {"direction": "sideways"}, {"entry": {"module": 1}}):
        errors = list(validator.iter_errors({"spec": {**base_spec_data(), **bad}}))
        assert errors, bad
        assert validate_system_tool({**base_spec_data(), **bad})["valid"] is False
