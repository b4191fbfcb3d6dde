"""Demo trading: the bar-close runner, its decisions and forecasts, replay mode, and the daily
evaluation. Free of Dagster; the shell in defs/trading calls these."""
