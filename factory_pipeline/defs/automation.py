"""Declarative automation: downstream assets with an ``eager()`` condition re-run when their
upstream partitions get new data (e.g. the daily market schedule lands a day, regimes and
resampled bars follow). The sensor is on by default so a fresh deployment needs no UI toggle."""

from __future__ import annotations

import dagster as dg

automation_sensor = dg.AutomationConditionSensorDefinition(
    "factory_automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
