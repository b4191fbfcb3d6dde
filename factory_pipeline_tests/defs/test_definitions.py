"""The Definitions load, and every asset is documented and grouped."""

from __future__ import annotations

import ast
from pathlib import Path

import dagster as dg

from factory_pipeline.definitions import defs

PACKAGE = Path(__file__).resolve().parents[2] / "factory_pipeline"


def test_definitions_load_with_resources_and_jobs():
    d = defs()
    graph = d.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"market_bars", "regime_labels"} <= keys
    assert {"duckdb", "factory_store", "market_data", "llm", "embeddings", "vector_index"} <= set(
        d.resources
    )
    assert d.get_schedule_def("market_daily_schedule") is not None
    assert d.get_sensor_def("factory_automation_sensor") is not None


def test_every_asset_has_description_and_group():
    graph = defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 20, f"{key} has no description"
        assert node.group_name and node.group_name != "default", f"{key} has no group"


def test_blocking_quality_checks_exist_on_market_bars():
    graph = defs().resolve_asset_graph()
    checks = {(c.asset_key.to_user_string(), c.name): c for c in graph.asset_check_keys}
    assert ("market_bars", "ohlc_consistency") in checks
    node = graph.get(dg.AssetKey("market_bars"))
    assert node.partitions_def is not None


def test_functional_core_imports_no_dagster():
    """Principle 4: only defs/ and cli/ may import dagster."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        if rel[0] in {"defs", "cli", "definitions.py"}:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0].startswith("dagster") for n in names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []
