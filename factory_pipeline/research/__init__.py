"""Research: partitioned regime backtests and robustness evidence for the promotion rules.

Functional core (no Dagster): :func:`backtest_partition` runs every candidate system on the
windows of one symbol x regime partition; :func:`assess_system` turns one system version's
partition backtests plus walk-forward, PBO, DSR, stress and the lookahead audit into a
RobustnessDoc and the promotion Evidence. Semantics: docs/research.md.
"""

from factory_pipeline.research.assessment import (
    DEFAULT_N_VARIANTS,
    SystemAssessment,
    WalkForwardSettings,
    assess_system,
    neighbourhood_sharpe_variance,
    neighbourhood_trials,
    redeflate,
)
from factory_pipeline.research.regime_backtest import (
    MIN_WINDOW_BARS,
    REGIME_TRIAL_FAMILY,
    TRIAL_FAMILY,
    WINDOW_END,
    PartitionBacktest,
    SystemBacktest,
    backtest_partition,
    partition_key,
)

__all__ = [
    "DEFAULT_N_VARIANTS",
    "MIN_WINDOW_BARS",
    "REGIME_TRIAL_FAMILY",
    "TRIAL_FAMILY",
    "WINDOW_END",
    "PartitionBacktest",
    "SystemAssessment",
    "SystemBacktest",
    "WalkForwardSettings",
    "assess_system",
    "backtest_partition",
    "neighbourhood_sharpe_variance",
    "neighbourhood_trials",
    "partition_key",
    "redeflate",
]
