"""The demo runner schedule (one run key per bar close, stopped by default, cron of the base
timeframe) and the demo rule checks (one per policy rule, blocking exactly for demotions)."""

import datetime as dt

import dagster as dg
import pytest

from factory_pipeline.defs.trading.checks import DEMO_RULE_CHECKS, check_name
from factory_pipeline.defs.trading.schedules import (
    bar_close_run_request,
    cron_for_timeframe,
    demo_runner_schedule,
)
from factory_pipeline.promotion import load_policy
from factory_pipeline.promotion.rules import expected_rules
from factory_pipeline.schemas import SystemStatus
from factory_pipeline.settings import PROJECT_ROOT
from factory_pipeline_tests.promotion.helpers import make_policy


def _ms(*parts: int) -> int:
    return int(dt.datetime(*parts, tzinfo=dt.UTC).timestamp() * 1000)


def _tick(when: dt.datetime) -> dg.RunRequest:
    context = dg.build_schedule_context(scheduled_execution_time=when)
    data = demo_runner_schedule.evaluate_tick(context)
    (request,) = data.run_requests
    return request


def test_one_run_key_per_bar_close():
    at_close = dt.datetime(2025, 6, 1, 10, 15, tzinfo=dt.UTC)
    first, again = _tick(at_close), _tick(at_close)
    assert first.run_key == again.run_key == f"demo-bar-{_ms(2025, 6, 1, 10, 15)}"
    config = first.run_config["ops"]["demo_bar_decisions"]["config"]
    assert config["bar_close_ms"] == _ms(2025, 6, 1, 10, 15)
    later = _tick(at_close + dt.timedelta(minutes=15))
    assert later.run_key == f"demo-bar-{_ms(2025, 6, 1, 10, 30)}"
    # a tick evaluated late still names the bar that had closed at its scheduled time
    late = _tick(dt.datetime(2025, 6, 1, 10, 29, 59, tzinfo=dt.UTC))
    assert late.run_key == first.run_key


def test_schedule_is_stopped_by_default_and_follows_the_base_timeframe():
    assert demo_runner_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert demo_runner_schedule.cron_schedule == "*/15 * * * *"  # default base timeframe 15m
    assert demo_runner_schedule.execution_timezone == "UTC"


@pytest.mark.parametrize(
    ("timeframe", "cron"),
    [("1m", "* * * * *"), ("5m", "*/5 * * * *"), ("1h", "0 * * * *"), ("4h", "0 */4 * * *")],
)
def test_cron_per_timeframe(timeframe, cron):
    assert cron_for_timeframe(timeframe) == cron


def test_bar_close_request_for_hourly_bars():
    request = bar_close_run_request(_ms(2025, 6, 1, 10, 59), "1h")
    assert request.run_key == f"demo-bar-{_ms(2025, 6, 1, 10)}"


def test_checks_cover_exactly_the_policy_demo_rules():
    for policy in (make_policy(), load_policy(PROJECT_ROOT / "data/policy/promotion.yaml")):
        rules = expected_rules(SystemStatus.DEMO, policy)
        assert set(DEMO_RULE_CHECKS) == set(rules)
        for name, (_, demotion) in DEMO_RULE_CHECKS.items():
            assert demotion == (rules[name].on_fail != "hold"), name
    assert check_name("demo_demotion.max_drawdown") == "demo_demotion__max_drawdown"
