"""Market data: frames, timeframes, sources, quality checks, resampling, regimes."""
