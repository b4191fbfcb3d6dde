"""End to end on the embedded venue: a demo system replayed for two days on the local exchange
(the runner, the gateway and its tables), the day-closed sensor requesting the traded days, and
demo_daily_evaluation materialized for each: the evaluation reads what the gateway wrote."""

import datetime as dt

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from factory_pipeline.defs.resources import FactoryStoreResource
from factory_pipeline.defs.trading import sensors
from factory_pipeline.defs.trading.assets import demo_bar_decisions, demo_daily_evaluation
from factory_pipeline.defs.trading.resources import TradingResource
from factory_pipeline.defs.trading.sensors import demo_day_closed_sensor
from factory_pipeline.demo.evaluation import evaluation_doc_id
from factory_pipeline.demo.replay import replay_demo
from factory_pipeline.exchange.local import LocalExchangeState
from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.schemas import DemoEvaluationDoc, SystemStatus
from factory_pipeline.settings import PROJECT_ROOT, load_settings
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline.strategy.modules import load_module_library
from factory_pipeline.strategy.systems import to_system_doc
from factory_pipeline.trading import TradingLedger
from factory_pipeline_tests.demo.conftest import sma_cross_spec

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.mark.slow
def test_replayed_demo_days_are_evaluated_through_the_sensor(tmp_path, monkeypatch):
    db = tmp_path / "factory.duckdb"
    store = Store(db)
    source = SyntheticSource(seed=5, start_date=START.date(), end_date=END.date())
    MarketStore(store).write_batch(source.fetch("BTCUSDT", "15m", _ms(START), _ms(END)))
    system = to_system_doc(sma_cross_spec(), load_module_library())
    DocumentStore(store).upsert([system.model_copy(update={"status": SystemStatus.DEMO})])
    replay_demo(load_settings(data_dir=tmp_path, duckdb_path=db), days=2, store=store)
    fills = TradingLedger(store).fills(system_id=system.id)
    assert fills, "the replay traded nothing: the scenario needs demo fills"

    resources = {
        "factory_store": FactoryStoreResource(duckdb=DuckDBResource(database=str(db))),
        "trading": TradingResource(policy_path=str(PROJECT_ROOT / "data/policy/promotion.yaml")),
    }
    definitions = dg.Definitions(
        assets=[demo_bar_decisions, demo_daily_evaluation],
        sensors=[demo_day_closed_sensor],
        resources=resources,
    )
    monkeypatch.setattr(sensors, "utc_today", lambda: END.date() + dt.timedelta(days=5))
    with dg.build_sensor_context(resources=resources, definitions=definitions) as context:
        tick = demo_day_closed_sensor.evaluate_tick(context)
    fill_days = sorted(
        {dt.datetime.fromtimestamp(f.exec_time_ms / 1000, tz=dt.UTC).date() for f in fills}
    )
    assert [r.partition_key for r in tick.run_requests] == [d.isoformat() for d in fill_days]

    instance = dg.DagsterInstance.ephemeral()
    for request in tick.run_requests:
        result = dg.materialize(
            [demo_daily_evaluation],
            partition_key=request.partition_key,
            resources=resources,
            instance=instance,
        )
        assert result.success
    docs = DocumentStore(store)
    last = docs.get(DemoEvaluationDoc, evaluation_doc_id(system.id, fill_days[-1]))
    assert last.metrics["demo_days"] == len(fill_days)
    # every fill has the decision price of its intent: slippage is the venue's model
    assert last.metrics["avg_slippage_bps"] == pytest.approx(
        LocalExchangeState().slippage_bps, abs=1.0
    )
    assert last.metrics["execution_issues"] == 0
    assert docs.get(type(system), system.id).status == SystemStatus.DEMO  # too early to move
