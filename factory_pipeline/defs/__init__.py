"""The Dagster shell: assets, checks, schedules, sensors and resources per track."""
