"""Systems meet the simulator: sizing/management mapping, stress cases, the audit, and the
agent-facing backtest_run_tool."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from factory_pipeline.engine.metrics import compute_metrics
from factory_pipeline.engine.simulator import simulate
from factory_pipeline.engine.system_backtest import (
    DEFAULT_EXECUTION,
    audit_system,
    engine_inputs,
    run_system,
    stress_system,
)
from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.store import Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline.strategy.modules import load_module_library
from factory_pipeline.strategy.signals import SystemSignals, compile_system
from factory_pipeline.strategy.systems import load_system_yaml
from factory_pipeline.strategy.tools import TOOL_SCHEMAS, backtest_run_tool

SYSTEMS = ("ema_trend_follower", "turtle_breakout", "rsi_pullback_long")


@pytest.fixture(scope="module")
def library():
    return load_module_library()


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("bt") / "factory.duckdb"
    source = SyntheticSource(seed=11, start_date=dt.date(2024, 1, 1), end_date=dt.date(2024, 4, 30))
    market = MarketStore(Store(path))
    start = int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    end = int(dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp() * 1000)
    market.write_batch(source.fetch("BTCUSDT", "15m", start, end))
    return path


@pytest.fixture(scope="module")
def frame(store_path):
    return MarketStore(Store(store_path)).load_frame("BTCUSDT", "15m")


def _signals(n: int, rule: str, params: dict, management: dict | None = None) -> SystemSignals:
    false = np.zeros(n, dtype=bool)
    nan = np.full(n, np.nan)
    return SystemSignals(
        entry_long=false,
        entry_short=false,
        exit_long=false,
        exit_short=false,
        stop_distance=nan,
        take_profit_distance=nan,
        trail_distance=nan,
        volatility=np.linspace(0.001, 0.004, n),
        sizing_rule=rule,
        sizing_params=params,
        management=management or {},
        warmup_bars=0,
    )


def test_sizing_rules_map_onto_the_engine():
    _, c = engine_inputs(_signals(4, "fixed_fraction", {"fraction": 1.5, "max_leverage": 3.0}))
    assert (c.sizing, c.leverage) == ("fraction", 3.0)
    assert c.size * c.leverage == pytest.approx(1.5)  # notional = 1.5 x equity
    _, c = engine_inputs(_signals(4, "risk_per_trade", {"risk_fraction": 0.01, "max_leverage": 2}))
    assert (c.sizing, c.size, c.leverage) == ("risk", 0.01, 2.0)
    _, c = engine_inputs(_signals(4, "fixed_qty", {"qty": 0.5}))
    assert (c.sizing, c.size) == ("fixed", 0.5)
    s, c = engine_inputs(_signals(4, "volatility_target", {"target_vol": 0.002, "max_leverage": 3}))
    vol = np.linspace(0.001, 0.004, 4)
    expected = np.minimum(0.002 / vol, 3.0) / 3.0
    np.testing.assert_allclose(s.size, expected)
    assert c.sizing == "fraction" and c.leverage == 3.0


def test_management_rules_map_onto_the_engine():
    management = {
        "breakeven_after_r": 1.0,
        "time_stop_bars": 48,
        "partial_tp_r": 2.0,
        "partial_tp_fraction": 0.25,
        "trailing_stop": 1.0,
    }
    _, c = engine_inputs(_signals(4, "fixed_qty", {"qty": 1.0}, management))
    assert (c.breakeven_r, c.max_bars, c.partial_tp_r, c.partial_tp_fraction, c.trail_mult) == (
        1.0,
        48,
        2.0,
        0.25,
        1.0,
    )


@pytest.mark.parametrize("name", SYSTEMS)
def test_example_systems_backtest_and_equal_a_direct_simulation(name, library, frame):
    spec = load_system_yaml(f"data/systems/{name}.yaml", library)
    system = compile_system(spec, library)
    f = frame if spec.timeframes.L == "15m" else frame.resample(spec.timeframes.L)
    run = run_system(system, f)
    assert run.metrics["trades"] > 0
    assert len(run.result.equity) == len(f)
    signals, config = engine_inputs(system.signals(f))
    direct = compute_metrics(simulate(f, signals, config))
    assert direct["final_equity"] == pytest.approx(run.metrics["final_equity"], rel=1e-12)
    # entries only where the system said so (fills at the next open)
    trades = run.result.trades
    entry_bars = np.searchsorted(f.open_time, trades["entry_time"]) - 1
    decided = run.signals.entry_long | run.signals.entry_short
    assert decided[entry_bars].all()


def test_stress_cases_cost_money_and_delay_changes_fills(library, frame):
    spec = load_system_yaml("data/systems/ema_trend_follower.yaml", library)
    report = stress_system(compile_system(spec, library), frame)
    base = report.results["baseline"]
    doubled = report.results["double_costs"]
    assert base["trades"] > 0
    assert doubled["fees_paid"] > base["fees_paid"]
    assert doubled["final_equity"] < base["final_equity"]
    assert report.results["delay_1bar"]["final_equity"] != base["final_equity"]


@pytest.mark.parametrize("name", SYSTEMS)
def test_library_systems_pass_the_lookahead_audit(name, library, frame):
    spec = load_system_yaml(f"data/systems/{name}.yaml", library)
    f = frame if spec.timeframes.L == "15m" else frame.resample(spec.timeframes.L)
    report = audit_system(compile_system(spec, library), f, n_cuts=4)
    assert report.passed, report.failures
    assert report.checked_signals > 0


def test_backtest_run_tool_round_trip(store_path):
    spec = yaml.safe_load(Path("data/systems/ema_trend_follower.yaml").read_text())
    out = backtest_run_tool(spec, "BTCUSDT", "2024-01-01", "2024-04-01", store_path=str(store_path))
    assert out["ok"], out
    json.dumps(out)  # JSON-serializable for agents
    assert out["bars"] == (31 + 29 + 31) * 96
    assert out["metrics"]["trades"] >= len(out["trades"]) > 0
    assert "backtest_run" in TOOL_SCHEMAS


def test_backtest_run_tool_reports_problems_instead_of_raising(store_path):
    spec = yaml.safe_load(Path("data/systems/ema_trend_follower.yaml").read_text())
    broken = {**spec, "timeframes": {"H": "1h", "M": "1h", "L": "15m"}}
    out = backtest_run_tool(
        broken, "BTCUSDT", "2024-01-01", "2024-02-01", store_path=str(store_path)
    )
    assert not out["ok"] and out["problems"][0]["path"].startswith("timeframes")
    out = backtest_run_tool(
        spec, "DOGEUSDT", "2024-01-01", "2024-02-01", store_path=str(store_path)
    )
    assert not out["ok"] and "DOGEUSDT" in out["error"]
    out = backtest_run_tool(spec, "BTCUSDT", "yesterday", "2024-02-01", store_path=str(store_path))
    assert not out["ok"] and "'yesterday' is not an ISO date" in out["error"]
    assert DEFAULT_EXECUTION.slippage_bps > 0
