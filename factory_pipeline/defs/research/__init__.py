"""Idea and backtest track: candidate systems, partitioned backtests, robustness, promotion."""
