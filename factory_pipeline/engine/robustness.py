"""Robustness statistics: is a backtested edge real, or the best of many lucky tries?

A sweep over many configurations always finds one that looks good. This module measures how
much of that is luck, on plain numpy arrays of per-period returns and on user callables, so it
depends on no simulator internals:

- :func:`probabilistic_sharpe_ratio` (PSR): the probability that the true Sharpe ratio exceeds a
  benchmark, given the sample length and the skewness/kurtosis of the returns.
- :func:`deflated_sharpe_ratio` (DSR): PSR against the Sharpe ratio the best of ``N`` useless
  trials would reach by luck (:func:`expected_max_sharpe`); ``N`` and the variance of the trials'
  Sharpe ratios come from the trial ledger (:mod:`factory_pipeline.engine.trials`).
- :func:`probability_of_backtest_overfitting` (PBO via CSCV): how often the in-sample winner of a
  sweep ends up in the bottom half out of sample.
- Walk-forward and purged k-fold splits with purge and embargo, and :func:`run_walk_forward` that
  evaluates a user function per fold and aggregates out-of-sample results.
- Stress: :func:`run_stress` runs a user function under doubled costs and one bar of extra signal
  delay; :func:`survives` applies the documented survival rule.

Statistics never raise on degenerate data (constant returns, too few periods): they return NaN,
so one bad configuration cannot abort a batch. Malformed arguments (wrong shape, odd block count,
negative windows) raise :class:`~factory_pipeline.errors.BacktestError` naming the argument.
Formulas and conventions are written down in docs/robustness.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from factory_pipeline.errors import BacktestError

#: Euler-Mascheroni constant, used by the expected maximum of ``N`` Gaussian Sharpe ratios.
EULER_GAMMA = 0.5772156649015329

#: CSCV refuses layouts with more splits than this (``n_blocks = 20`` gives 184,756).
MAX_CSCV_SPLITS = 200_000

_STANDARD_NORMAL = NormalDist()
# Rows of the (splits x configs) working matrices processed per pass in CSCV (memory bound).
_CSCV_CELLS_PER_CHUNK = 2_000_000


# ---------------------------------------------------------------------------------------------
# Sharpe-based statistics
# ---------------------------------------------------------------------------------------------


def sharpe_ratio(returns: ArrayLike) -> float:
    """Per-period Sharpe ratio ``mean / std`` (sample std, ``ddof=1``), no risk-free rate.

    NaN when undefined: fewer than 2 periods, any non-finite value, or constant returns.
    """
    values = _as_returns(returns, "returns")
    return _sharpe_of(values)


def sharpe_ratios(returns_matrix: ArrayLike) -> np.ndarray:
    """Per-period Sharpe ratio of every column of a ``T x N`` matrix (same rules as above)."""
    matrix = _as_matrix(returns_matrix, "returns_matrix")
    return np.array([_sharpe_of(matrix[:, j]) for j in range(matrix.shape[1])], dtype=np.float64)


def annualized_sharpe(returns: ArrayLike, periods_per_year: float) -> float:
    """Per-period Sharpe ratio times ``sqrt(periods_per_year)`` (e.g. 8760 for hourly bars)."""
    if isinstance(periods_per_year, bool) or not (
        isinstance(periods_per_year, int | float | np.integer | np.floating)
        and math.isfinite(periods_per_year)
    ):
        raise BacktestError(f"periods_per_year must be a finite number, got {periods_per_year!r}")
    if periods_per_year <= 0:
        raise BacktestError(f"periods_per_year must be > 0, got {periods_per_year!r}")
    return sharpe_ratio(returns) * math.sqrt(periods_per_year)


def probabilistic_sharpe_ratio(returns: ArrayLike, sr_benchmark: float = 0.0) -> float:
    """PSR: probability that the true per-period Sharpe ratio exceeds ``sr_benchmark``.

    ``PSR = Phi((SR - SR*) * sqrt(T - 1) / sqrt(1 - g3*SR + (g4 - 1)/4 * SR^2))`` with the
    per-period SR of :func:`sharpe_ratio`, population skewness ``g3`` and (non-excess) kurtosis
    ``g4``. ``sr_benchmark`` is per period too (divide an annual figure by
    ``sqrt(periods_per_year)``). NaN for fewer than 3 periods, non-finite or constant returns, a
    non-finite benchmark, or a non-positive variance term.
    """
    moments = _sharpe_moments(_as_returns(returns, "returns"))
    if moments is None:
        return math.nan
    sr, skewness, kurtosis, n_periods = moments
    return _psr(sr, skewness, kurtosis, n_periods, sr_benchmark)


def expected_max_sharpe(sr_variance: float, n_trials: int) -> float:
    """SR0: the Sharpe ratio the best of ``n_trials`` skill-less trials reaches by luck.

    ``SR0 = sqrt(V) * ((1 - e_g) * Phi^-1(1 - 1/N) + e_g * Phi^-1(1 - 1/(N e)))`` where ``V`` is
    the variance of the trials' per-period Sharpe ratios. One trial means no selection: 0.0.
    NaN when ``sr_variance`` is NaN or infinite (and ``N > 1``).
    """
    n = _check_n_trials(n_trials)
    if n == 1:
        return 0.0
    try:
        variance = float(sr_variance)
    except (TypeError, ValueError) as exc:
        raise BacktestError(f"sr_variance must be a number, got {sr_variance!r}") from exc
    if not math.isfinite(variance):
        return math.nan
    if variance < 0:
        raise BacktestError(f"sr_variance must be >= 0, got {sr_variance!r}")
    quantile_n = _STANDARD_NORMAL.inv_cdf(1.0 - 1.0 / n)
    quantile_ne = _STANDARD_NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(variance) * ((1.0 - EULER_GAMMA) * quantile_n + EULER_GAMMA * quantile_ne)


def deflated_sharpe_ratio(returns: ArrayLike, n_trials: int, sr_variance: float) -> float:
    """DSR = PSR(SR0): PSR against the best Sharpe ratio expected from ``n_trials`` lucky tries.

    ``n_trials`` is every configuration tried (``TrialLedger.count``), ``sr_variance`` the
    variance of their per-period Sharpe ratios (``TrialLedger.sharpe_variance``). With one trial
    DSR equals PSR(0). NaN where PSR or SR0 is undefined.
    """
    sr0 = expected_max_sharpe(sr_variance, n_trials)
    if math.isnan(sr0):
        return math.nan
    return probabilistic_sharpe_ratio(returns, sr0)


# ---------------------------------------------------------------------------------------------
# Probability of backtest overfitting (CSCV)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PBOResult:
    """Outcome of CSCV; arrays have one entry per split, in combination order."""

    pbo: float  # share of splits whose in-sample best ranks at or below the OOS median
    logits: np.ndarray  # ln(w / (1 - w)) of the in-sample best's OOS relative rank w
    n_splits: int  # C(S, S/2)
    n_blocks: int  # S
    n_configs: int  # N
    n_periods: int  # T
    relative_ranks: np.ndarray  # w = rank / (N + 1), rank 1 = worst OOS, N = best
    best_in_sample: np.ndarray  # column index of the in-sample best config
    in_sample_sharpe: np.ndarray  # per-period Sharpe of that config in sample
    out_of_sample_sharpe: np.ndarray  # ... and out of sample
    prob_oos_loss: float  # share of splits where that config has OOS Sharpe < 0


def probability_of_backtest_overfitting(returns_matrix: ArrayLike, n_blocks: int = 16) -> PBOResult:
    """PBO by combinatorially symmetric cross-validation (Bailey, Borwein, Lopez de Prado, Zhu).

    ``returns_matrix`` is ``T x N``: per-period returns of N configurations over the same T
    periods. Rows are cut into ``n_blocks`` contiguous blocks (sizes differ by at most one row);
    for every choice of half of the blocks as in-sample (the rest out-of-sample) the config with
    the best in-sample Sharpe is taken, its out-of-sample rank among the N is turned into
    ``w = rank / (N + 1)`` and ``logit = ln(w / (1 - w))``. PBO is the share of splits with
    ``logit <= 0``. Ties rank by their average rank; the in-sample argmax takes the lowest index.
    A zero-variance subset has Sharpe 0 when its mean is 0, else +-inf (so an idle config ranks
    in the middle instead of being undefined).
    """
    matrix = _as_matrix(returns_matrix, "returns_matrix")
    n_periods, n_configs = matrix.shape
    _validate_cscv(matrix, n_blocks)

    edges = np.array([(n_periods * b) // n_blocks for b in range(n_blocks + 1)], dtype=np.int64)
    block_counts = np.diff(edges).astype(np.float64)
    block_means = np.add.reduceat(matrix, edges[:-1], axis=0) / block_counts[:, None]
    block_m2 = np.stack(
        [
            ((matrix[lo:hi] - block_means[b]) ** 2).sum(axis=0)
            for b, (lo, hi) in enumerate(itertools.pairwise(edges))
        ]
    )
    block_sum = block_means * block_counts[:, None]
    block_sum_sq_means = block_means**2 * block_counts[:, None]

    combos = np.array(list(itertools.combinations(range(n_blocks), n_blocks // 2)), dtype=np.intp)
    n_splits = combos.shape[0]
    in_sample_mask = np.zeros((n_splits, n_blocks), dtype=np.float64)
    in_sample_mask[np.arange(n_splits)[:, None], combos] = 1.0

    # In lexicographic order the complement of combination i is combination C-1-i (checked
    # below), so each half-set's Sharpe ratios serve two splits: IS for one, OOS for the other.
    if not np.all(in_sample_mask + in_sample_mask[::-1] == 1.0):
        raise AssertionError("CSCV combinations are not complement-symmetric")
    logits = np.empty(n_splits)
    ranks = np.empty(n_splits)
    best = np.empty(n_splits, dtype=np.int64)
    best_is = np.empty(n_splits)
    best_oos = np.empty(n_splits)
    half = n_splits // 2
    chunk = max(1, _CSCV_CELLS_PER_CHUNK // n_configs)
    stats = (block_counts, block_sum, block_sum_sq_means, block_m2)
    for lo in range(0, half, chunk):
        hi = min(lo + chunk, half)
        mask = in_sample_mask[lo:hi]
        first_half = _subset_sharpe(mask, *stats)
        second_half = _subset_sharpe(1.0 - mask, *stats)
        forward = np.arange(lo, hi)
        for split_ids, is_sharpe, oos_sharpe in (
            (forward, first_half, second_half),
            (n_splits - 1 - forward, second_half, first_half),
        ):
            w, chosen, chosen_is, chosen_oos = _rank_in_sample_best(is_sharpe, oos_sharpe)
            logits[split_ids] = np.log(w / (1.0 - w))
            ranks[split_ids] = w
            best[split_ids] = chosen
            best_is[split_ids] = chosen_is
            best_oos[split_ids] = chosen_oos

    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        n_splits=n_splits,
        n_blocks=n_blocks,
        n_configs=n_configs,
        n_periods=n_periods,
        relative_ranks=ranks,
        best_in_sample=best,
        in_sample_sharpe=best_is,
        out_of_sample_sharpe=best_oos,
        prob_oos_loss=float(np.mean(best_oos < 0.0)),
    )


# ---------------------------------------------------------------------------------------------
# Walk-forward and purged k-fold splits
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Fold:
    """One train/test split: increasing integer bar positions, plus the windows they came from.

    Windows are half-open ``[start, end)`` in the unit of the input (bar positions for an
    ``n_bars`` input, timestamps for a ``times`` input). For purged k-fold, ``train_window`` is
    the whole data span (training surrounds the test window).
    """

    index: int
    train: np.ndarray
    test: np.ndarray
    train_window: tuple[int, int]
    test_window: tuple[int, int]


def walk_forward_splits(
    n_bars_or_times: int | ArrayLike,
    /,
    *,
    train: int,
    test: int,
    step: int | None = None,
    anchored: bool = False,
    purge: int = 0,
    embargo: int = 0,
) -> list[Fold]:
    """Walk-forward folds: train on a window, test on the window right after it, move on.

    Give either a bar count (windows in bars) or strictly increasing integer timestamps
    (windows, step, purge and embargo in the same time unit; a bar belongs to a window by its
    timestamp). With ``t0`` the first bar, fold ``k`` tests ``[t0 + train + k*step, ... + test)``
    (``step`` defaults to ``test``: back-to-back test windows) and trains on the ``train`` units
    before it (rolling) or on everything from ``t0`` (``anchored=True``). Only folds whose test
    window ends inside the data are made. ``purge`` drops training bars whose label horizon
    ``[t, t + purge]`` reaches the test window (the last ``purge`` bars before it); ``embargo``
    drops training bars in ``[test_end, test_end + embargo)`` (only relevant where training
    follows the test window, see :func:`purged_kfold_splits`). Folds left with an empty train or
    test set (data gaps) are skipped; no fold at all raises BacktestError.
    """
    times, data_end = _timeline(n_bars_or_times)
    train_len = _check_length(train, "train", minimum=1)
    test_len = _check_length(test, "test", minimum=1)
    step_len = test_len if step is None else _check_length(step, "step", minimum=1)
    purge_len = _check_length(purge, "purge", minimum=0)
    embargo_len = _check_length(embargo, "embargo", minimum=0)
    if purge_len >= train_len:
        raise BacktestError(
            f"purge ({purge_len}) must be smaller than train ({train_len}): "
            "it would empty every training window"
        )

    start = int(times[0])
    folds: list[Fold] = []
    k = 0
    while True:
        test_start = start + train_len + k * step_len
        test_end = test_start + test_len
        if test_end > data_end:
            break
        train_start = start if anchored else test_start - train_len
        train_idx = _purge_and_embargo(
            times,
            _window(times, train_start, test_start),
            test_start,
            test_end,
            purge_len,
            embargo_len,
        )
        test_idx = _window(times, test_start, test_end)
        if train_idx.size and test_idx.size:
            folds.append(
                Fold(
                    len(folds),
                    train_idx,
                    test_idx,
                    (train_start, test_start),
                    (test_start, test_end),
                )
            )
        k += 1
    if not folds:
        raise BacktestError(
            f"walk_forward_splits: no fold fits in the data span [{start}, {data_end}) with "
            f"train={train_len}, test={test_len}, step={step_len}, purge={purge_len}"
        )
    return folds


def purged_kfold_splits(
    n_bars_or_times: int | ArrayLike,
    /,
    *,
    n_folds: int,
    purge: int = 0,
    embargo: int = 0,
) -> list[Fold]:
    """K contiguous test folds; training is every other bar minus purge and embargo.

    Bars are cut into ``n_folds`` contiguous groups by position (sizes differ by at most one).
    A group's test window ends one bar interval after its last bar (the smallest gap between
    timestamps; 1 for bar counts). Training bars before the test window whose horizon
    ``[t, t + purge]`` reaches it are purged; training bars in ``[test_end, test_end + embargo)``
    are embargoed (their features may still be computed from test data).
    """
    times, data_end = _timeline(n_bars_or_times)
    folds_n = _check_length(n_folds, "n_folds", minimum=2)
    purge_len = _check_length(purge, "purge", minimum=0)
    embargo_len = _check_length(embargo, "embargo", minimum=0)
    if times.size < folds_n:
        raise BacktestError(f"purged_kfold_splits: {times.size} bars cannot make {folds_n} folds")
    spacing = _spacing(times)
    everything = np.arange(times.size, dtype=np.int64)
    span = (int(times[0]), data_end)
    folds: list[Fold] = []
    for group in np.array_split(everything, folds_n):
        test_start = int(times[group[0]])
        test_end = int(times[group[-1]]) + spacing
        outside = np.setdiff1d(everything, group, assume_unique=True)
        train_idx = _purge_and_embargo(times, outside, test_start, test_end, purge_len, embargo_len)
        if train_idx.size:
            folds.append(Fold(len(folds), train_idx, group.copy(), span, (test_start, test_end)))
    if not folds:
        raise BacktestError(
            f"purged_kfold_splits: purge={purge_len} and embargo={embargo_len} leave no training "
            f"bars in any of the {folds_n} folds"
        )
    return folds


@dataclass(frozen=True, eq=False)
class FoldResult:
    """What a user's fold evaluation returns.

    ``returns`` are the per-period simple returns over the test window (out of sample);
    ``total_return`` defaults to ``prod(1 + returns) - 1``. ``params`` records what was chosen on
    the training window, ``metrics`` any extra figures.
    """

    returns: np.ndarray
    n_trades: int
    total_return: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class FoldOutcome:
    """A fold, its result, and the figures derived from it."""

    fold: Fold
    result: FoldResult
    total_return: float
    sharpe: float  # per-period Sharpe of the fold's OOS returns


@dataclass(frozen=True, eq=False)
class WalkForwardReport:
    """Per-fold and aggregate out-of-sample figures of a walk-forward run."""

    outcomes: list[FoldOutcome]
    trades_per_fold: np.ndarray
    return_per_fold: np.ndarray
    sharpe_per_fold: np.ndarray
    oos_returns: np.ndarray  # the folds' returns concatenated in fold order
    oos_sharpe: float  # per-period Sharpe of oos_returns
    compounded_return: float  # prod(1 + return_per_fold) - 1
    share_profitable: float  # share of folds with total_return > 0
    total_trades: int

    @property
    def n_folds(self) -> int:
        return len(self.outcomes)

    def summary(self) -> dict[str, float]:
        """Flat figures for metadata and reports."""
        return {
            "n_folds": float(self.n_folds),
            "total_trades": float(self.total_trades),
            "min_trades_per_fold": float(self.trades_per_fold.min()),
            "oos_sharpe": self.oos_sharpe,
            "compounded_return": self.compounded_return,
            "share_profitable": self.share_profitable,
            "worst_fold_return": float(self.return_per_fold.min()),
        }


def run_walk_forward(
    folds: Sequence[Fold], evaluate: Callable[[np.ndarray, np.ndarray], FoldResult]
) -> WalkForwardReport:
    """Call ``evaluate(train_idx, test_idx)`` per fold (e.g. optimize on train, run on test).

    An exception from ``evaluate`` propagates with a note naming the fold. The stitched
    out-of-sample Sharpe assumes non-overlapping test windows (``step >= test``).
    """
    if not folds:
        raise BacktestError("run_walk_forward: no folds given")
    outcomes: list[FoldOutcome] = []
    for fold in folds:
        try:
            result = evaluate(fold.train, fold.test)
        except Exception as exc:
            exc.add_note(
                f"while evaluating walk-forward fold {fold.index} (test {fold.test_window})"
            )
            raise
        outcomes.append(_fold_outcome(fold, result))
    return_per_fold = np.array([o.total_return for o in outcomes])
    oos_returns = np.concatenate([o.result.returns for o in outcomes])
    trades = np.array([o.result.n_trades for o in outcomes], dtype=np.int64)
    return WalkForwardReport(
        outcomes=outcomes,
        trades_per_fold=trades,
        return_per_fold=return_per_fold,
        sharpe_per_fold=np.array([o.sharpe for o in outcomes]),
        oos_returns=oos_returns,
        oos_sharpe=_sharpe_of(oos_returns),
        compounded_return=float(np.prod(1.0 + return_per_fold) - 1.0),
        share_profitable=float(np.mean(return_per_fold > 0.0)),
        total_trades=int(trades.sum()),
    )


# ---------------------------------------------------------------------------------------------
# Stress
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StressCase:
    """How to perturb a backtest: multiply fees and slippage, delay signals by extra bars."""

    name: str
    fee_multiplier: float = 1.0
    slippage_multiplier: float = 1.0
    extra_delay_bars: int = 0


BASELINE = StressCase("baseline")
STRESS_CASES: tuple[StressCase, ...] = (
    BASELINE,
    StressCase("double_costs", fee_multiplier=2.0, slippage_multiplier=2.0),
    StressCase("delay_1bar", extra_delay_bars=1),
    StressCase("both", fee_multiplier=2.0, slippage_multiplier=2.0, extra_delay_bars=1),
)


@dataclass(frozen=True)
class StressReport:
    """Metrics per case name, as returned by the user's run function."""

    cases: tuple[StressCase, ...]
    results: Mapping[str, Mapping[str, float]]

    def metric(self, case: str, name: str = "total_return") -> float:
        """One metric of one case; BacktestError if the case or metric is missing."""
        if case not in self.results:
            raise BacktestError(f"stress report has no case {case!r}")
        metrics = self.results[case]
        if name not in metrics:
            raise BacktestError(f"stress case {case!r} did not report metric {name!r}")
        return float(metrics[name])


def run_stress(
    run: Callable[[StressCase], Mapping[str, float]],
    cases: Iterable[StressCase] = STRESS_CASES,
) -> StressReport:
    """Run ``run(case)`` for each case (baseline first) and collect the metrics it returns.

    ``cases`` must contain one named ``baseline`` and unique names. Metric values must be
    numbers; an exception from ``run`` propagates with a note naming the case.
    """
    case_list = tuple(cases)
    names = [case.name for case in case_list]
    if len(set(names)) != len(names):
        raise BacktestError(f"run_stress: duplicate case names in {names}")
    if BASELINE.name not in names:
        raise BacktestError(f"run_stress: the cases {names} have no {BASELINE.name!r} case")
    results: dict[str, dict[str, float]] = {}
    for case in case_list:
        try:
            metrics = run(case)
        except Exception as exc:
            exc.add_note(f"while running stress case {case.name!r}")
            raise
        results[case.name] = _numeric_metrics(metrics, case.name)
    return StressReport(cases=case_list, results=results)


def survives(
    report: StressReport,
    *,
    min_return_ratio: float = 0.5,
    require_positive: bool = True,
    metric: str = "total_return",
) -> bool:
    """The survival rule: True when :func:`stress_failures` finds nothing."""
    return not stress_failures(
        report, min_return_ratio=min_return_ratio, require_positive=require_positive, metric=metric
    )


def stress_failures(
    report: StressReport,
    *,
    min_return_ratio: float = 0.5,
    require_positive: bool = True,
    metric: str = "total_return",
) -> list[str]:
    """Reasons the system fails the survival rule (empty list: it survives).

    With ``B`` the baseline's ``metric`` and ``X`` a stressed case's: the baseline must be finite
    and ``B > 0``; every stressed case must have a finite ``X >= min_return_ratio * B`` and, when
    ``require_positive``, ``X > 0``. ``min_return_ratio`` must be finite and ``<= 1``.
    """
    ratio = float(min_return_ratio)
    if not math.isfinite(ratio) or ratio > 1.0:
        raise BacktestError(f"min_return_ratio must be finite and <= 1, got {min_return_ratio!r}")
    baseline = report.metric(BASELINE.name, metric)
    if not (math.isfinite(baseline) and baseline > 0.0):
        return [f"baseline: {metric} = {baseline!r} is not > 0"]
    failures: list[str] = []
    floor = ratio * baseline
    for case in report.cases:
        if case.name == BASELINE.name:
            continue
        value = report.metric(case.name, metric)
        if not math.isfinite(value):
            failures.append(f"{case.name}: {metric} = {value!r} is not finite")
        elif value < floor:
            failures.append(
                f"{case.name}: {metric} = {value!r} < {ratio!r} x baseline {baseline!r}"
            )
        elif require_positive and value <= 0.0:
            failures.append(f"{case.name}: {metric} = {value!r} is not > 0")
    return failures


def delay_signals(signal: ArrayLike, bars: int) -> np.ndarray:
    """Shift a signal ``bars`` bars later along axis 0; a new array of the same dtype.

    The first ``bars`` rows are padded with "no signal": False for booleans, NaN for floats,
    0 for integers (flat). ``bars = 0`` copies. Negative delays would be lookahead: refused.
    """
    delay = _check_length(bars, "bars", minimum=0)
    values = np.asarray(signal)
    if values.ndim == 0:
        raise BacktestError("delay_signals: signal must be an array of at least one dimension")
    if values.dtype == np.bool_:
        pad: Any = False
    elif np.issubdtype(values.dtype, np.floating) or np.issubdtype(
        values.dtype, np.complexfloating
    ):
        pad = np.nan
    elif np.issubdtype(values.dtype, np.integer):
        pad = 0
    else:
        raise BacktestError(f"delay_signals: unsupported signal dtype {values.dtype}")
    shifted = np.empty_like(values)
    shift = min(delay, values.shape[0])
    shifted[:shift] = pad
    shifted[shift:] = values[: values.shape[0] - shift]
    return shifted


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _as_returns(returns: ArrayLike, name: str) -> np.ndarray:
    try:
        values = np.asarray(returns, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BacktestError(f"{name} must be numeric: {exc}") from exc
    if values.ndim != 1:
        raise BacktestError(f"{name} must be one-dimensional, got shape {values.shape}")
    return values


def _as_matrix(matrix: ArrayLike, name: str) -> np.ndarray:
    try:
        values = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BacktestError(f"{name} must be numeric: {exc}") from exc
    if values.ndim != 2:
        raise BacktestError(f"{name} must be T x N (two-dimensional), got shape {values.shape}")
    return values


def _sharpe_of(values: np.ndarray) -> float:
    if values.size < 2 or not np.all(np.isfinite(values)) or values.max() == values.min():
        return math.nan
    std = float(values.std(ddof=1))
    if not std > 0.0:
        return math.nan
    return float(values.mean()) / std


def _sharpe_moments(values: np.ndarray) -> tuple[float, float, float, int] | None:
    """(per-period SR, population skewness, population kurtosis, T), or None if undefined."""
    if values.size < 3:
        return None
    sr = _sharpe_of(values)
    if math.isnan(sr):
        return None
    deviations = values - values.mean()
    m2 = float(np.mean(deviations**2))
    m3 = float(np.mean(deviations**3))
    m4 = float(np.mean(deviations**4))
    if not m2 > 0.0:
        return None
    return sr, m3 / m2**1.5, m4 / m2**2, int(values.size)


def _psr(sr: float, skewness: float, kurtosis: float, n_periods: int, benchmark: float) -> float:
    benchmark = float(benchmark)
    if not math.isfinite(benchmark):
        return math.nan
    variance_term = 1.0 - skewness * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not variance_term > 0.0:
        return math.nan
    z = (sr - benchmark) * math.sqrt(n_periods - 1) / math.sqrt(variance_term)
    return _STANDARD_NORMAL.cdf(z)


def _check_n_trials(n_trials: int) -> int:
    if isinstance(n_trials, bool) or not isinstance(n_trials, int | np.integer):
        raise BacktestError(f"n_trials must be an integer, got {n_trials!r}")
    if n_trials < 1:
        raise BacktestError(f"n_trials must be >= 1, got {n_trials}")
    return int(n_trials)


def _validate_cscv(matrix: np.ndarray, n_blocks: int) -> None:
    n_periods, n_configs = matrix.shape
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int | np.integer):
        raise BacktestError(f"n_blocks must be an integer, got {n_blocks!r}")
    if n_blocks < 2 or n_blocks % 2:
        raise BacktestError(f"n_blocks must be even and >= 2, got {n_blocks}")
    if math.comb(n_blocks, n_blocks // 2) > MAX_CSCV_SPLITS:
        raise BacktestError(
            f"n_blocks={n_blocks} gives {math.comb(n_blocks, n_blocks // 2)} splits "
            f"(more than {MAX_CSCV_SPLITS}); use n_blocks <= 20"
        )
    if n_configs < 2:
        raise BacktestError(
            f"returns_matrix needs at least 2 configurations (columns), got {n_configs}"
        )
    if n_periods < n_blocks:
        raise BacktestError(
            f"returns_matrix has {n_periods} periods (rows), fewer than n_blocks={n_blocks}"
        )
    if (n_periods // n_blocks) * (n_blocks // 2) < 2:
        raise BacktestError(
            f"returns_matrix has {n_periods} periods: each half of {n_blocks} blocks needs 2 rows"
        )
    bad = np.argwhere(~np.isfinite(matrix))
    if bad.size:
        row, col = (int(v) for v in bad[0])
        raise BacktestError(
            f"returns_matrix has a non-finite value at row {row}, column {col} "
            f"({bad.shape[0]} in total)"
        )


def _subset_sharpe(
    mask: np.ndarray,
    block_counts: np.ndarray,
    block_sum: np.ndarray,
    block_sum_sq_means: np.ndarray,
    block_m2: np.ndarray,
) -> np.ndarray:
    """Per-period Sharpe (ddof=1) of each config over the blocks selected by each mask row.

    Combines per-block means and squared deviations (parallel variance), so idle blocks (all
    zeros) contribute exactly zero and an all-idle subset is recognised exactly.
    """
    count = mask @ block_counts
    mean = mask @ block_sum
    mean /= count[:, None]
    m2 = mask @ block_sum_sq_means
    m2 -= count[:, None] * mean**2  # between-block part; rounding may leave it slightly < 0
    np.maximum(m2, 0.0, out=m2)
    m2 += mask @ block_m2
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = mean * np.sqrt(count - 1.0)[:, None] / np.sqrt(m2)
    flat = m2 <= 0.0
    if flat.any():
        flat_mean = mean[flat]
        sharpe[flat] = np.where(flat_mean > 0.0, np.inf, np.where(flat_mean < 0.0, -np.inf, 0.0))
    return sharpe


def _rank_in_sample_best(
    is_sharpe: np.ndarray, oos_sharpe: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per split (row): OOS relative rank w of the IS-best config, its index, IS and OOS SR."""
    n_configs = is_sharpe.shape[1]
    rows = np.arange(is_sharpe.shape[0])
    chosen = np.argmax(is_sharpe, axis=1)
    chosen_oos = oos_sharpe[rows, chosen]
    n_below = (oos_sharpe < chosen_oos[:, None]).sum(axis=1)
    n_equal = (oos_sharpe == chosen_oos[:, None]).sum(axis=1)  # includes the config itself
    rank = n_below + (n_equal + 1) / 2.0
    return rank / (n_configs + 1), chosen, is_sharpe[rows, chosen], chosen_oos


def _timeline(n_bars_or_times: int | ArrayLike) -> tuple[np.ndarray, int]:
    """Bar timestamps and the end of the data span (last timestamp + one bar interval)."""
    if isinstance(n_bars_or_times, int | np.integer) and not isinstance(n_bars_or_times, bool):
        n_bars = int(n_bars_or_times)
        if n_bars < 1:
            raise BacktestError(f"n_bars must be >= 1, got {n_bars}")
        return np.arange(n_bars, dtype=np.int64), n_bars
    times = np.asarray(n_bars_or_times)
    if times.ndim != 1 or not np.issubdtype(times.dtype, np.integer):
        raise BacktestError(
            "walk-forward input must be a bar count or a 1-D array of integer timestamps, "
            f"got dtype {times.dtype} and shape {times.shape}"
        )
    if times.size < 2:
        raise BacktestError(f"times needs at least 2 timestamps, got {times.size}")
    times = times.astype(np.int64)
    if np.any(np.diff(times) <= 0):
        position = int(np.argmax(np.diff(times) <= 0)) + 1
        raise BacktestError(f"times must be strictly increasing; position {position} is not")
    return times, int(times[-1]) + _spacing(times)


def _spacing(times: np.ndarray) -> int:
    return int(np.diff(times).min()) if times.size > 1 else 1


def _check_length(value: int, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise BacktestError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise BacktestError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _window(times: np.ndarray, start: int, end: int) -> np.ndarray:
    lo, hi = np.searchsorted(times, [start, end], side="left")
    return np.arange(lo, hi, dtype=np.int64)


def _purge_and_embargo(
    times: np.ndarray,
    train_idx: np.ndarray,
    test_start: int,
    test_end: int,
    purge: int,
    embargo: int,
) -> np.ndarray:
    t = times[train_idx]
    overlaps_test = (t + purge >= test_start) & (t < test_end)
    embargoed = (t >= test_end) & (t < test_end + embargo)
    return train_idx[~(overlaps_test | embargoed)]


def _fold_outcome(fold: Fold, result: FoldResult) -> FoldOutcome:
    if not isinstance(result, FoldResult):
        raise BacktestError(
            f"walk-forward fold {fold.index}: evaluate must return a FoldResult, "
            f"got {type(result).__name__}"
        )
    returns = _as_returns(result.returns, f"fold {fold.index} returns")
    if isinstance(result.n_trades, bool) or not isinstance(result.n_trades, int | np.integer):
        raise BacktestError(
            f"fold {fold.index}: n_trades must be an integer, got {result.n_trades!r}"
        )
    if result.n_trades < 0:
        raise BacktestError(f"fold {fold.index}: n_trades must be >= 0, got {result.n_trades}")
    if result.total_return is None:
        total = float(np.prod(1.0 + returns) - 1.0)
    else:
        total = float(result.total_return)
    if returns is not result.returns:
        result = FoldResult(
            returns, result.n_trades, result.total_return, result.params, result.metrics
        )
    return FoldOutcome(fold=fold, result=result, total_return=total, sharpe=_sharpe_of(returns))


def _numeric_metrics(metrics: Mapping[str, float], case_name: str) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise BacktestError(
            f"stress case {case_name!r}: run must return a mapping of metric name to number, "
            f"got {type(metrics).__name__}"
        )
    numeric: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise BacktestError(
                f"stress case {case_name!r}: metric {key!r} is not a number ({value!r})"
            )
        numeric[str(key)] = float(value)
    return numeric
