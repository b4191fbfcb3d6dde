"""demo_daily_evaluation materialized in an ephemeral Dagster instance: evaluation documents
written, the demo rules applied through the state machine, one asset check per rule with the
measured values, and a demotion reported as a failed blocking (ERROR) check."""

import datetime as dt

import dagster as dg
import pytest
import yaml
from dagster_duckdb import DuckDBResource

from factory_pipeline.defs.resources import FactoryStoreResource
from factory_pipeline.defs.trading.assets import demo_daily_evaluation
from factory_pipeline.defs.trading.resources import TradingResource
from factory_pipeline.demo.evaluation import evaluation_doc_id
from factory_pipeline.promotion import transitions_for
from factory_pipeline.schemas import DemoEvaluationDoc, SystemDoc, SystemStatus
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline_tests.defs_trading.helpers import (
    backtest,
    demo_system,
    round_trip,
    round_trips,
)
from factory_pipeline_tests.promotion.helpers import POLICY_DATA

START = dt.date(2025, 6, 1)
DAY30 = START + dt.timedelta(days=29)


@pytest.fixture
def setup(tmp_path):
    db = tmp_path / "factory.duckdb"
    policy = tmp_path / "promotion.yaml"
    policy.write_text(yaml.safe_dump(POLICY_DATA))
    resources = {
        "factory_store": FactoryStoreResource(duckdb=DuckDBResource(database=str(db))),
        "trading": TradingResource(policy_path=str(policy)),
    }
    return Store(db), resources


def _good_system(store, system_id="sys-good"):
    system = demo_system(store, system_id)
    backtest(store, system, expectancy_pct=1.0)
    days = [START + dt.timedelta(days=offset) for offset in range(30)]
    round_trips(store, system.id, days, entry=100.0, exit=101.0)
    return system


def _materialize(resources, day):
    return dg.materialize(
        [demo_daily_evaluation],
        partition_key=day.isoformat(),
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _checks(result):
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_promotion_day_materializes_with_every_rule_check_passing(setup):
    store, resources = setup
    system = _good_system(store)
    result = _materialize(resources, DAY30)
    assert result.success
    checks = _checks(result)
    assert len(checks) == 8
    assert all(check.passed for check in checks.values())
    min_days = checks["min_days"].metadata
    assert min_days["systems"].value == 1
    assert min_days["threshold"].value == 30
    (materialization,) = result.asset_materializations_for_node("demo_daily_evaluation")
    assert materialization.metadata["promoted_to_live_test"].value == 1
    assert materialization.metadata["systems_evaluated"].value == 1
    docs = DocumentStore(store)
    assert docs.get(SystemDoc, system.id).status == SystemStatus.LIVE_TEST
    doc = docs.get(DemoEvaluationDoc, evaluation_doc_id(system.id, DAY30))
    assert doc.metrics["demo_days"] == 30
    (record,) = transitions_for(docs, system.id)
    assert record.to_status == SystemStatus.LIVE_TEST


def test_a_demotion_fails_its_blocking_check(setup):
    store, resources = setup
    _good_system(store, "sys-young")  # only checked on day 1: not enough days yet
    bad = demo_system(store, "sys-bad")
    backtest(store, bad)
    round_trip(store, bad.id, START, entry=100.0, exit=70.0, qty=100.0)  # drawdown 0.30
    result = _materialize(resources, START)
    checks = _checks(result)
    drawdown = checks["demo_demotion__max_drawdown"]
    assert not drawdown.passed
    assert drawdown.severity == dg.AssetCheckSeverity.ERROR
    assert drawdown.metadata["failed_systems"].value == "sys-bad"
    gate = checks["min_days"]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.metadata["failed_systems"].value == "sys-bad, sys-young"
    docs = DocumentStore(store)
    assert docs.get(SystemDoc, "sys-bad").status == SystemStatus.DISABLED
    assert docs.get(SystemDoc, "sys-young").status == SystemStatus.DEMO
    assert [t.to_status for t in transitions_for(docs, "sys-bad")] == [SystemStatus.DISABLED]
    # the run fails on the blocking check, after the materialization and transition are stored
    assert not result.success
    assert len(result.asset_materializations_for_node("demo_daily_evaluation")) == 1
    # a re-run reports the recorded demotion again and records nothing new
    again = _checks(_materialize(resources, START))
    assert not again["demo_demotion__max_drawdown"].passed
    assert again["demo_demotion__max_drawdown"].metadata["failed_systems"].value == "sys-bad"
    assert len(transitions_for(docs, "sys-bad")) == 1


def test_a_day_without_demo_systems_passes_with_nothing_evaluated(setup):
    _, resources = setup
    result = _materialize(resources, START)
    assert result.success
    assert all(check.passed for check in _checks(result).values())
    (materialization,) = result.asset_materializations_for_node("demo_daily_evaluation")
    assert materialization.metadata["systems_evaluated"].value == 0
