"""UTC-day partitions of the daily demo evaluation.

Why not the market track's daily partitions: those end with the synthetic history, while demo
trading (replayed or on the venue) runs up to today. The last partition is the last *closed*
UTC day (Dagster daily partitions only exist once the day has ended), so the current day can
never be evaluated.
"""

import dagster as dg

from factory_pipeline.settings import FactorySettings, default_settings


def demo_day_partitions_def(
    settings: FactorySettings | None = None,
) -> dg.DailyPartitionsDefinition:
    s = settings or default_settings()
    return dg.DailyPartitionsDefinition(start_date=s.synthetic_start.isoformat(), timezone="UTC")


demo_day_partitions = demo_day_partitions_def()
