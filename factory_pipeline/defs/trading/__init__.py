"""Trading track: the demo runner job and its bar-close schedule, the daily demo evaluation
(UTC-day partitions) with the demo promotion rules as asset checks, the day-closed sensor, and
the trading venue resource (local exchange or Bybit demo)."""
