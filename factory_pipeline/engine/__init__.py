"""Backtest engine: numba simulator, metrics, sweeps, robustness, lookahead audit."""
