"""Agent tools over system specs: JSON in, JSON out, never an exception for bad input.

Agents (LLMs) propose systems as JSON. ``validate_system_tool`` tells them, with field paths,
everything that is wrong so they can repair the proposal; it returns problems instead of raising
because a malformed proposal is an expected outcome, not an error of the factory.
``TOOL_SCHEMAS`` describes the tools in the OpenAI tools format (``{"type": "function",
"function": {"name", "description", "parameters"}}``), with parameter schemas generated from the
pydantic models so they cannot drift from what the validator accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory_pipeline.errors import FactoryError
from factory_pipeline.schemas import ModuleDoc
from factory_pipeline.strategy.modules import DEFAULT_MODULES_DIR, load_module_library
from factory_pipeline.strategy.systems import (
    SystemSpec,
    parse_system_spec,
    spec_hash,
    validate_system,
)


def validate_system_tool(
    spec: Any, *, library: Mapping[str, ModuleDoc] | None = None
) -> dict[str, Any]:
    """Validate a system spec given as plain JSON data.

    Returns ``{"valid": bool, "problems": [{"path", "message"}], "spec_hash": str | None}``;
    ``spec_hash`` is set only for a valid spec. ``library`` defaults to the module library in
    data/modules (loaded once per change of its files). Never raises for bad input.
    """
    try:
        modules = library if library is not None else default_library()
    except FactoryError as exc:
        return _result([{"path": "(library)", "message": str(exc)}])
    if not isinstance(spec, dict):
        kind = type(spec).__name__
        return _result([{"path": "(root)", "message": f"spec must be a JSON object, got {kind}"}])
    parsed, problems = parse_system_spec(spec)
    if parsed is None:
        return _result([p.to_dict() for p in problems])
    try:
        problems = validate_system(parsed, modules)
        if problems:
            return _result([p.to_dict() for p in problems])
        return {"valid": True, "problems": [], "spec_hash": spec_hash(parsed, modules)}
    except FactoryError as exc:  # defensive: any user-caused failure becomes a problem
        return _result([{"path": "(root)", "message": str(exc)}])


def backtest_run_tool(
    system: Any,
    symbol: str,
    start: str,
    end: str,
    *,
    store_path: str | None = None,
    library: Mapping[str, ModuleDoc] | None = None,
    max_trades: int = 20,
) -> dict[str, Any]:
    """Backtest a system spec (JSON) on ``symbol`` over ``[start, end)`` (ISO dates or times, UTC)
    with the factory's execution assumptions, on data in the market store.

    Returns ``{"ok": True, "spec_hash", "symbol", "timeframe", "bars", "metrics", "trades",
    "open_trade", "config", "engine_version"}`` or ``{"ok": False, "problems"/"error": ...}``;
    never raises for bad input (an invalid spec, an unknown symbol, an empty range).
    """
    from factory_pipeline.engine.system_backtest import run_summary, run_system
    from factory_pipeline.settings import default_settings
    from factory_pipeline.store import Store
    from factory_pipeline.store.market import MarketStore
    from factory_pipeline.strategy.signals import compile_system

    verdict = validate_system_tool(system, library=library)
    if not verdict["valid"]:
        return {"ok": False, "problems": verdict["problems"]}
    try:
        modules = library if library is not None else default_library()
        spec, _ = parse_system_spec(system)
        assert spec is not None  # validated above
        start_ms, end_ms = _iso_ms(start, "start"), _iso_ms(end, "end")
        if end_ms <= start_ms:
            raise FactoryError(f"end {end!r} must be after start {start!r}")
        path = store_path or str(default_settings().database_path)
        frame = MarketStore(Store(path)).load_frame(symbol, spec.timeframes.L, start_ms, end_ms)
        run = run_system(compile_system(spec, modules), frame)
    except (FactoryError, ValueError) as exc:
        return {"ok": False, "error": str(exc)}
    return {
        "ok": True,
        "spec_hash": verdict["spec_hash"],
        "symbol": symbol,
        "timeframe": spec.timeframes.L,
        "bars": len(frame),
        **run_summary(run, limit_trades=max_trades),
    }


def _iso_ms(text: str, name: str) -> int:
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise FactoryError(f"{name} {text!r} is not an ISO date or time") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1000)


def default_library(folder: Path | None = None) -> dict[str, ModuleDoc]:
    """The module library from ``folder`` (default data/modules), reloaded only when a file in
    it changes (name, size or modification time)."""
    root = Path(folder) if folder is not None else DEFAULT_MODULES_DIR
    stamp = tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    )
    cached = _LIBRARY_CACHE.get(root)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    library = load_module_library(root)
    _LIBRARY_CACHE[root] = (stamp, library)
    return library


def tool_schema(name: str, description: str, arguments: Mapping[str, dict[str, Any]]) -> dict:
    """An OpenAI-format tool description whose arguments are JSON schemas; nested ``$defs`` of
    the argument schemas are hoisted to the parameters object so ``#/$defs/...`` refs resolve."""
    defs: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for arg, schema in arguments.items():
        schema = copy.deepcopy(schema)
        defs.update(schema.pop("$defs", {}))
        properties[arg] = schema
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(arguments),
        "additionalProperties": False,
    }
    if defs:
        parameters["$defs"] = defs
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def _result(problems: list[dict[str, str]]) -> dict[str, Any]:
    return {"valid": False, "problems": problems, "spec_hash": None}


_LIBRARY_CACHE: dict[Path, tuple[tuple, dict[str, ModuleDoc]]] = {}

#: Tool descriptions for agents, by tool name (OpenAI tools format).
TOOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "validate_system": tool_schema(
        "validate_system",
        "Check a trading-system spec against the module library. Returns valid, a list of "
        "problems with field paths (fix each and call again) and the spec hash when valid. "
        "Timeframes: H > M > L, each a whole multiple of L (L is the decision timeframe). "
        "Each module ref names a library module of the right kind, parameter values inside "
        "the module's schema, and the timeframe role its logic runs on (default L).",
        {"spec": SystemSpec.model_json_schema()},
    ),
}

TOOL_SCHEMAS["backtest_run"] = tool_schema(
    "backtest_run",
    "Backtest a trading-system spec on one symbol over [start, end) (ISO dates, UTC) with the "
    "factory's execution assumptions (decide at bar close, fill at next open, taker fees, "
    "slippage, funding). Returns metrics (total_return, sharpe, max_drawdown, trades, "
    "win_rate, expectancy_r, ...) and the last trades, or problems/error.",
    {
        "system": TOOL_SCHEMAS["validate_system"]["function"]["parameters"]["properties"]["spec"],
        "symbol": {"type": "string", "description": "e.g. BTCUSDT"},
        "start": {"type": "string", "description": "ISO date, e.g. 2024-01-01"},
        "end": {"type": "string", "description": "ISO date, exclusive"},
    },
)
