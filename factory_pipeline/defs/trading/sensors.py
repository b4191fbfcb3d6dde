"""The day-closed sensor: after each UTC day closes, evaluate it if demo systems traded.

Cursor: the last UTC day considered (ISO date). Each tick looks at the closed days after the
cursor (at most :data:`MAX_DAYS_PER_TICK`; without a cursor, from the first day with a demo
fill), requests one ``demo_daily_evaluation`` partition per day on which a system fill happened
(run key = the day), and moves the cursor to the last day looked at, so days without trades are
passed over once and a day is requested once. The current UTC day is never requested: it has
not closed. Nothing to do -> a SkipReason saying why.
"""

import datetime as dt

import dagster as dg

from factory_pipeline.defs.resources import FactoryStoreResource
from factory_pipeline.defs.trading.assets import demo_daily_evaluation
from factory_pipeline.demo.evaluation import demo_trading_days, first_demo_trading_day

#: Most days one tick looks at (a long outage or a first run catches up over several ticks).
MAX_DAYS_PER_TICK = 31
#: A demotion fails its blocking check and so the run; retrying it would only repeat that.
NO_RETRY_TAGS = {"dagster/max_retries": "0"}


def utc_today() -> dt.date:
    """Today's UTC date (the only clock the sensor reads; tests replace it)."""
    return dt.datetime.now(dt.UTC).date()


@dg.sensor(
    name="demo_day_closed_sensor",
    target=dg.AssetSelection.assets(demo_daily_evaluation),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=300,
    description=(
        "After each UTC day closes, launches that day's demo_daily_evaluation partition when demo "
        "systems traded that day (run key = the day; cursor = the last day considered)."
    ),
)
def demo_day_closed_sensor(
    context: dg.SensorEvaluationContext, factory_store: FactoryStoreResource
) -> dg.SensorResult | dg.SkipReason:
    store = factory_store.store()
    last_closed = utc_today() - dt.timedelta(days=1)
    cursor = parse_day(context.cursor)
    start = cursor + dt.timedelta(days=1) if cursor else first_demo_trading_day(store)
    if start is None:
        return dg.SkipReason("no demo system has traded yet")
    if start > last_closed:
        return dg.SkipReason(f"no closed day after {cursor}: {last_closed} is the latest")
    end = min(last_closed, start + dt.timedelta(days=MAX_DAYS_PER_TICK - 1))
    traded = demo_trading_days(store, start, end)
    requests = [
        dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat(), tags=NO_RETRY_TAGS)
        for day in traded
    ]
    if not requests:
        return dg.SensorResult(
            skip_reason=f"no demo trades from {start} to {end}", cursor=end.isoformat()
        )
    context.log.info(f"demo days to evaluate: {', '.join(r.partition_key for r in requests)}")
    return dg.SensorResult(run_requests=requests, cursor=end.isoformat())


def parse_day(cursor: str | None) -> dt.date | None:
    """The day of a cursor; empty or unreadable -> None (start from the first trading day;
    run keys keep already-launched days from running twice)."""
    if not cursor:
        return None
    try:
        return dt.date.fromisoformat(cursor)
    except ValueError:
        return None
