"""The demo runner job and its schedule at every base-timeframe bar close.

The schedule is STOPPED by default: the embedded profile must not trade on its own (start it in
the UI, or use ``factory demo replay``). Each tick asks for the bar that closed at the scheduled
time, with run key ``demo-bar-<close ms>``: a re-evaluated tick launches nothing new, and the
runner itself sends nothing twice for one bar.
"""

import dagster as dg

from factory_pipeline.defs.trading.assets import demo_bar_decisions, latest_bar_close_ms
from factory_pipeline.market.timeframes import timeframe_ms
from factory_pipeline.settings import default_settings

#: Run tag carrying the bar close a run trades (epoch ms).
BAR_CLOSE_TAG = "factory/bar_close_ms"

demo_runner_job = dg.define_asset_job(
    "demo_runner_job",
    selection=dg.AssetSelection.assets(demo_bar_decisions),
    description="Decide and trade every demo system at one bar close (config: bar_close_ms).",
)


def cron_for_timeframe(timeframe: str) -> str:
    """Cron expression of the bar closes of ``timeframe`` (minutes, hours or one day)."""
    minutes = timeframe_ms(timeframe) // 60_000
    if minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *" if minutes > 1 else "* * * * *"
    if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
        hours = minutes // 60
        return f"0 */{hours} * * *" if hours > 1 else "0 * * * *"
    if minutes == 24 * 60:
        return "0 0 * * *"
    raise ValueError(f"timeframe {timeframe!r} has no cron schedule (bars must divide a day)")


def bar_close_run_request(scheduled_ms: int, timeframe: str) -> dg.RunRequest:
    """The run of the bar that closed at (or last before) ``scheduled_ms``."""
    close = latest_bar_close_ms(scheduled_ms, timeframe)
    return dg.RunRequest(
        run_key=f"demo-bar-{close}",
        run_config={"ops": {"demo_bar_decisions": {"config": {"bar_close_ms": close}}}},
        tags={BAR_CLOSE_TAG: str(close)},
    )


_BASE_TIMEFRAME = default_settings().base_timeframe


@dg.schedule(
    name="demo_runner_schedule",
    job=demo_runner_job,
    cron_schedule=cron_for_timeframe(_BASE_TIMEFRAME),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        f"Runs the demo runner at every {_BASE_TIMEFRAME} bar close (UTC). Stopped by default so "
        "the embedded profile never trades on its own."
    ),
)
def demo_runner_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    scheduled = context.scheduled_execution_time
    return bar_close_run_request(int(scheduled.timestamp() * 1000), _BASE_TIMEFRAME)
