"""Tests of the robustness statistics, splits and stress helpers.

Reference values are derived by hand or computed here with plain Python (statistics, math,
itertools loops), never with the module under test.
"""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest

from factory_pipeline.engine.robustness import (
    EULER_GAMMA,
    STRESS_CASES,
    FoldResult,
    StressCase,
    StressReport,
    annualized_sharpe,
    deflated_sharpe_ratio,
    delay_signals,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    purged_kfold_splits,
    run_stress,
    run_walk_forward,
    sharpe_ratio,
    sharpe_ratios,
    stress_failures,
    survives,
    walk_forward_splits,
)
from factory_pipeline.errors import BacktestError

# ---------------------------------------------------------------------------------------------
# Plain-Python references
# ---------------------------------------------------------------------------------------------


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _phi_inv(p: float) -> float:
    """Inverse normal CDF by bisection on math.erf (independent of statistics.NormalDist)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if _phi(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def _moments(xs: list[float]) -> tuple[float, float, float]:
    """(SR with sample std, population skewness, population kurtosis) in plain Python."""
    n = len(xs)
    mean = sum(xs) / n
    dev = [x - mean for x in xs]
    sample_var = sum(d * d for d in dev) / (n - 1)
    m2 = sum(d**2 for d in dev) / n
    m3 = sum(d**3 for d in dev) / n
    m4 = sum(d**4 for d in dev) / n
    return mean / math.sqrt(sample_var), m3 / m2**1.5, m4 / m2**2


def _psr_reference(xs: list[float], benchmark: float) -> float:
    sr, g3, g4 = _moments(xs)
    denominator = math.sqrt(1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr)
    return _phi((sr - benchmark) * math.sqrt(len(xs) - 1) / denominator)


SKEWED = [0.02, -0.01, 0.005, 0.03, -0.002, 0.011, -0.02, 0.04, 0.0, 0.013, -0.004, 0.06]


# ---------------------------------------------------------------------------------------------
# Sharpe, PSR, DSR
# ---------------------------------------------------------------------------------------------


def test_sharpe_of_hand_sample() -> None:
    # [-1, 1, 3]: mean 1, sample variance (4 + 0 + 4) / 2 = 4, std 2 -> SR 0.5.
    assert sharpe_ratio([-1.0, 1.0, 3.0]) == pytest.approx(0.5, abs=1e-15)
    assert annualized_sharpe([-1.0, 1.0, 3.0], 16) == pytest.approx(2.0, abs=1e-14)
    matrix = np.array([[-1.0, 2.0], [1.0, 2.0], [3.0, 2.0]])
    columns = sharpe_ratios(matrix)
    assert columns[0] == pytest.approx(0.5) and math.isnan(columns[1])


def test_psr_hand_derived_symmetric_sample() -> None:
    # [-1, 1, 3]: SR 0.5, skewness 0, m2 = 8/3, m4 = 32/3, kurtosis = (32/3) / (64/9) = 1.5.
    # Variance term 1 - 0 + (1.5 - 1)/4 * 0.25 = 1.03125; z = 0.5 * sqrt(2) / sqrt(1.03125).
    expected = _phi(0.5 * math.sqrt(2.0) / math.sqrt(1.03125))
    assert probabilistic_sharpe_ratio([-1.0, 1.0, 3.0]) == pytest.approx(expected, abs=1e-12)
    # Against a benchmark of 0.2: z = 0.3 * sqrt(2) / sqrt(1.03125).
    expected = _phi(0.3 * math.sqrt(2.0) / math.sqrt(1.03125))
    assert probabilistic_sharpe_ratio([-1.0, 1.0, 3.0], 0.2) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("benchmark", [0.0, 0.1, 0.5, -0.2])
def test_psr_matches_plain_python_on_skewed_sample(benchmark: float) -> None:
    expected = _psr_reference(SKEWED, benchmark)
    assert probabilistic_sharpe_ratio(np.array(SKEWED), benchmark) == pytest.approx(
        expected, abs=1e-12
    )


def test_psr_properties() -> None:
    sr = sharpe_ratio(SKEWED)
    assert probabilistic_sharpe_ratio(SKEWED, sr) == pytest.approx(0.5, abs=1e-12)
    # More history of the same distribution makes a positive edge more certain.
    assert probabilistic_sharpe_ratio(SKEWED * 4) > probabilistic_sharpe_ratio(SKEWED) > 0.5
    # A higher bar is harder to clear.
    assert probabilistic_sharpe_ratio(SKEWED, 0.3) < probabilistic_sharpe_ratio(SKEWED, 0.1)


@pytest.mark.parametrize(
    "returns",
    [[], [0.01], [0.01, 0.02], [0.01] * 50, [0.0] * 50, [0.01, math.nan, 0.02, 0.03]],
    ids=["empty", "one", "two", "constant", "zeros", "nan"],
)
def test_degenerate_returns_give_nan_not_errors(returns: list[float]) -> None:
    assert math.isnan(probabilistic_sharpe_ratio(returns))
    assert math.isnan(deflated_sharpe_ratio(returns, 10, 0.01))
    if len(returns) != 2:  # two points still have a Sharpe ratio, just no PSR
        assert math.isnan(sharpe_ratio(returns))


def test_psr_nan_benchmark_and_bad_shapes() -> None:
    assert math.isnan(probabilistic_sharpe_ratio(SKEWED, math.nan))
    with pytest.raises(BacktestError, match="one-dimensional"):
        probabilistic_sharpe_ratio(np.zeros((3, 3)))
    with pytest.raises(BacktestError, match="periods_per_year"):
        annualized_sharpe(SKEWED, 0)


def test_psr_is_calibrated_under_the_null() -> None:
    """With true SR = 0, PSR(0) is about uniform: P(PSR > 0.95) should be about 5 %.

    2,000 seeded Gaussian series of 250 periods: binomial standard error sqrt(.05 * .95 / 2000)
    = 0.0049, so +-0.02 is about 4 standard errors.
    """
    rng = np.random.default_rng(20261126)
    samples = rng.standard_normal((2000, 250))
    psr = np.array([probabilistic_sharpe_ratio(row) for row in samples])
    assert abs(np.mean(psr > 0.95) - 0.05) < 0.02
    assert abs(np.mean(psr < 0.5) - 0.5) < 0.05


def test_expected_max_sharpe_hand_values() -> None:
    assert expected_max_sharpe(0.04, 1) == 0.0
    assert expected_max_sharpe(math.nan, 1) == 0.0  # no selection with one trial
    # N = 2: Phi^-1(1 - 1/2) = 0, so SR0 = sqrt(V) * e_g * Phi^-1(1 - 1/(2e)).
    expected = 0.2 * 0.5772156649 * _phi_inv(1.0 - 1.0 / (2.0 * math.e))
    assert expected_max_sharpe(0.04, 2) == pytest.approx(expected, abs=1e-9)
    n = 175
    expected = 0.1 * (
        (1 - 0.5772156649) * _phi_inv(1 - 1 / n) + 0.5772156649 * _phi_inv(1 - 1 / (n * math.e))
    )
    assert expected_max_sharpe(0.01, n) == pytest.approx(expected, abs=1e-9)
    assert expected_max_sharpe(0.0, 50) == 0.0
    assert math.isnan(expected_max_sharpe(math.nan, 50))
    assert abs(EULER_GAMMA - 0.5772156649) < 1e-10


@pytest.mark.parametrize("n_trials", [10, 100, 1000])
def test_expected_max_sharpe_tracks_the_simulated_maximum(n_trials: int) -> None:
    """SR0 approximates E[max of N standard normals] (Bailey & Lopez de Prado).

    The closed form is an asymptotic approximation that overstates the true mean slightly for
    small N (about 2.4 % at N = 10, 1 % at N = 100); a seeded simulation with standard error
    below 0.01 must agree within 4 % and the formula must not understate it by more than 1 %.
    """
    rng = np.random.default_rng(n_trials)
    draws = 40_000_000 // n_trials // 10
    simulated = rng.standard_normal((draws, n_trials)).max(axis=1).mean()
    approx = expected_max_sharpe(1.0, n_trials)
    assert abs(approx / simulated - 1.0) < 0.04
    assert approx > simulated * 0.99


def test_dsr_matches_plain_python_and_decreases_with_trials() -> None:
    variance = 0.02
    for n in (2, 10, 175):
        sr0 = math.sqrt(variance) * (
            (1 - 0.5772156649) * _phi_inv(1 - 1 / n) + 0.5772156649 * _phi_inv(1 - 1 / (n * math.e))
        )
        expected = _psr_reference(SKEWED, sr0)
        assert deflated_sharpe_ratio(SKEWED, n, variance) == pytest.approx(expected, abs=1e-9)
    dsr = [deflated_sharpe_ratio(SKEWED, n, variance) for n in (1, 2, 5, 10, 100, 1000, 10**6)]
    assert all(a > b for a, b in itertools.pairwise(dsr))
    assert dsr[0] == pytest.approx(probabilistic_sharpe_ratio(SKEWED), abs=1e-15)
    # More dispersion among the trials also deflates more.
    assert deflated_sharpe_ratio(SKEWED, 100, 0.05) < deflated_sharpe_ratio(SKEWED, 100, 0.01)


def test_dsr_argument_errors() -> None:
    with pytest.raises(BacktestError, match="n_trials"):
        deflated_sharpe_ratio(SKEWED, 0, 0.01)
    with pytest.raises(BacktestError, match="n_trials"):
        deflated_sharpe_ratio(SKEWED, 2.5, 0.01)  # type: ignore[arg-type]
    with pytest.raises(BacktestError, match="sr_variance"):
        deflated_sharpe_ratio(SKEWED, 10, -0.01)
    assert math.isnan(deflated_sharpe_ratio(SKEWED, 10, math.nan))


# ---------------------------------------------------------------------------------------------
# PBO via CSCV
# ---------------------------------------------------------------------------------------------


def _sharpe_for_ranking(xs: list[float]) -> float:
    """The documented ranking rule: zero variance -> 0 if the mean is 0, else +-inf."""
    mean = statistics.fmean(xs)
    sd = statistics.stdev(xs)
    if sd == 0.0:
        return 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    return mean / sd


def _pbo_brute_force(matrix: np.ndarray, n_blocks: int) -> tuple[float, list[float], list[int]]:
    """CSCV by explicit loops over combinations, columns and rows (plain Python lists)."""
    rows = matrix.tolist()
    n_periods, n_configs = matrix.shape
    edges = [n_periods * b // n_blocks for b in range(n_blocks + 1)]
    blocks = [rows[edges[b] : edges[b + 1]] for b in range(n_blocks)]
    logits, chosen = [], []
    for combo in itertools.combinations(range(n_blocks), n_blocks // 2):
        in_rows = [r for b in combo for r in blocks[b]]
        out_rows = [r for b in range(n_blocks) if b not in combo for r in blocks[b]]
        is_sr = [_sharpe_for_ranking([r[j] for r in in_rows]) for j in range(n_configs)]
        oos_sr = [_sharpe_for_ranking([r[j] for r in out_rows]) for j in range(n_configs)]
        best = max(range(n_configs), key=lambda j: (is_sr[j], -j))
        below = sum(1 for v in oos_sr if v < oos_sr[best])
        equal = sum(1 for v in oos_sr if v == oos_sr[best])
        w = (below + (equal + 1) / 2) / (n_configs + 1)
        logits.append(math.log(w / (1 - w)))
        chosen.append(best)
    pbo = sum(1 for v in logits if v <= 0) / len(logits)
    return pbo, logits, chosen


@pytest.mark.parametrize("n_periods", [60, 63])
def test_pbo_equals_brute_force_reference(n_periods: int) -> None:
    rng = np.random.default_rng(n_periods)
    matrix = rng.normal(0.0, 0.01, size=(n_periods, 7))
    matrix[:, 2] += 0.002
    matrix[:, 4] = 0.0  # an idle configuration: ties at Sharpe 0
    matrix[:20, 5] = 0.0  # idle in the first blocks only
    result = probability_of_backtest_overfitting(matrix, n_blocks=6)
    pbo, logits, chosen = _pbo_brute_force(matrix, 6)
    assert result.n_splits == math.comb(6, 3) == len(logits)
    assert result.pbo == pbo
    np.testing.assert_allclose(result.logits, logits, rtol=0, atol=1e-12)
    assert result.best_in_sample.tolist() == chosen
    assert np.all((result.relative_ranks > 0) & (result.relative_ranks < 1))


def test_pbo_of_pure_noise_is_about_half() -> None:
    """Pure noise: the in-sample winner's OOS rank is uniform, so E[PBO] = 1/2 for even N.

    In each split IS and OOS are disjoint halves of iid data, so the OOS rank of the IS winner
    is uniform on 1..N and P(rank <= N/2) = 1/2 exactly (N = 20). Splits of one matrix share
    data, so a single PBO is very noisy (standard deviation about 0.2 across seeds); the mean
    over 100 seeded matrices has a standard error of about 0.02, and +-0.08 is 4 of them.
    """
    values = [
        probability_of_backtest_overfitting(
            np.random.default_rng(seed).standard_normal((400, 20)), n_blocks=8
        ).pbo
        for seed in range(100)
    ]
    assert abs(statistics.fmean(values) - 0.5) < 0.08


def test_pbo_is_near_zero_when_one_config_truly_dominates() -> None:
    rng = np.random.default_rng(11)
    matrix = rng.normal(0.0, 0.01, size=(2000, 30))
    matrix[:, 17] += 0.004  # per-period SR about 0.4 against 0 for the rest
    result = probability_of_backtest_overfitting(matrix)
    assert result.n_splits == 12870
    assert result.pbo <= 0.01
    assert np.all(result.best_in_sample == 17)
    assert result.prob_oos_loss == 0.0


def test_pbo_input_validation() -> None:
    noise = np.random.default_rng(1).standard_normal((64, 5))
    with pytest.raises(BacktestError, match="even"):
        probability_of_backtest_overfitting(noise, n_blocks=7)
    with pytest.raises(BacktestError, match="fewer than n_blocks"):
        probability_of_backtest_overfitting(noise[:10], n_blocks=16)
    with pytest.raises(BacktestError, match="at least 2 configurations"):
        probability_of_backtest_overfitting(noise[:, :1])
    with pytest.raises(BacktestError, match="T x N"):
        probability_of_backtest_overfitting(noise[:, 0])
    with pytest.raises(BacktestError, match="splits"):
        probability_of_backtest_overfitting(np.zeros((200, 3)), n_blocks=24)
    bad = noise.copy()
    bad[7, 3] = math.nan
    with pytest.raises(BacktestError, match="row 7, column 3"):
        probability_of_backtest_overfitting(bad)


# ---------------------------------------------------------------------------------------------
# Walk-forward and purged k-fold
# ---------------------------------------------------------------------------------------------


def _walk_forward_reference(
    n: int, train: int, test: int, step: int, anchored: bool, purge: int, embargo: int
) -> list[tuple[list[int], list[int]]]:
    folds = []
    test_start = train
    while test_start + test <= n:
        start = 0 if anchored else test_start - train
        train_bars = [i for i in range(start, test_start) if i + purge < test_start]
        folds.append((train_bars, list(range(test_start, test_start + test))))
        test_start += step
    return folds


def test_walk_forward_splits_exhaustively_on_small_inputs() -> None:
    checked = 0
    for n, train, test, step, anchored, purge, embargo in itertools.product(
        range(1, 13),
        range(1, 5),
        range(1, 4),
        (None, 1, 2, 5),
        (False, True),
        range(3),
        range(2),
    ):
        if purge >= train:
            with pytest.raises(BacktestError, match="purge"):
                walk_forward_splits(n, train=train, test=test, purge=purge)
            continue
        step_bars = test if step is None else step
        expected = _walk_forward_reference(n, train, test, step_bars, anchored, purge, embargo)
        kwargs = {
            "train": train,
            "test": test,
            "step": step,
            "anchored": anchored,
            "purge": purge,
            "embargo": embargo,
        }
        if not expected:
            with pytest.raises(BacktestError, match="no fold fits"):
                walk_forward_splits(n, **kwargs)
            continue
        folds = walk_forward_splits(n, **kwargs)
        assert [(f.train.tolist(), f.test.tolist()) for f in folds] == expected
        for k, fold in enumerate(folds):
            assert fold.index == k
            assert fold.train.max() < fold.test.min()  # no overlap, train strictly before
            assert fold.test.min() - fold.train.max() == purge + 1  # exactly purge bars dropped
            assert fold.test.max() < n
            if anchored:
                assert fold.train[0] == 0
            else:
                assert fold.train_window[1] - fold.train_window[0] == train
        checked += 1
    assert checked > 1000


def test_walk_forward_on_timestamps_with_a_gap() -> None:
    hour = 3_600_000
    hours = [h for h in range(30) if not 12 <= h < 16]  # 4 missing hourly bars
    times = np.array(hours, dtype=np.int64) * hour + 1_700_000_000_000
    folds = walk_forward_splits(times, train=8 * hour, test=4 * hour, purge=hour)
    # Test windows start at hour 8, 12, 16, 20, 24; [12, 16) holds no bar and is skipped.
    assert [f.test_window[0] - times[0] for f in folds] == [
        8 * hour,
        16 * hour,
        20 * hour,
        24 * hour,
    ]
    for fold in folds:
        start, end = fold.test_window
        assert np.all((times[fold.test] >= start) & (times[fold.test] < end))
        in_window = np.flatnonzero((times >= start) & (times < end))
        assert fold.test.tolist() == in_window.tolist()
        # purge of one hour: no training bar within an hour before the test window
        assert np.all(times[fold.train] + hour < start)
        assert np.all(times[fold.train] >= fold.train_window[0])
    assert folds[0].train.size == 7  # hours 0..7 minus the purged hour 7
    assert folds[1].train.size == 4  # hours 8..15 minus the gap (hour 15 is missing anyway)
    with pytest.raises(BacktestError, match="strictly increasing"):
        walk_forward_splits(times[::-1].copy(), train=hour, test=hour)
    with pytest.raises(BacktestError, match="integer timestamps"):
        walk_forward_splits(times.astype(float), train=hour, test=hour)


def test_walk_forward_argument_errors() -> None:
    with pytest.raises(BacktestError, match="train must be >= 1"):
        walk_forward_splits(100, train=0, test=5)
    with pytest.raises(BacktestError, match="step must be an integer"):
        walk_forward_splits(100, train=10, test=5, step=2.5)  # type: ignore[arg-type]
    with pytest.raises(BacktestError, match="embargo must be >= 0"):
        walk_forward_splits(100, train=10, test=5, embargo=-1)


def test_purged_kfold_exhaustively_on_small_inputs() -> None:
    for n, n_folds, purge, embargo in itertools.product(
        range(2, 16), range(2, 6), range(3), range(3)
    ):
        if n_folds > n:
            with pytest.raises(BacktestError):
                purged_kfold_splits(n, n_folds=n_folds, purge=purge, embargo=embargo)
            continue
        # contiguous groups; the first n % k groups hold one extra bar
        sizes = [n // n_folds + (1 if g < n % n_folds else 0) for g in range(n_folds)]
        starts = [sum(sizes[:g]) for g in range(n_folds)]
        expected = []
        for start, size in zip(starts, sizes, strict=True):
            end = start + size
            train = [
                i
                for i in range(n)
                if not (start - purge <= i < end) and not (end <= i < end + embargo)
            ]
            if train:
                expected.append((train, list(range(start, end))))
        if not expected:
            with pytest.raises(BacktestError, match="no training"):
                purged_kfold_splits(n, n_folds=n_folds, purge=purge, embargo=embargo)
            continue
        folds = purged_kfold_splits(n, n_folds=n_folds, purge=purge, embargo=embargo)
        assert [(f.train.tolist(), f.test.tolist()) for f in folds] == expected
        for fold in folds:
            assert not set(fold.train.tolist()) & set(fold.test.tolist())


# ---------------------------------------------------------------------------------------------
# run_walk_forward
# ---------------------------------------------------------------------------------------------


def test_run_walk_forward_aggregates_out_of_sample_results() -> None:
    series = [0.01, -0.02, 0.03, 0.005, -0.01, 0.02, 0.0, -0.005, 0.015, 0.01, -0.03, 0.02]
    folds = walk_forward_splits(len(series), train=3, test=3)
    seen = []

    def evaluate(train_idx: np.ndarray, test_idx: np.ndarray) -> FoldResult:
        seen.append((train_idx.tolist(), test_idx.tolist()))
        returns = np.array([series[i] for i in test_idx])
        return FoldResult(returns=returns, n_trades=int(test_idx[0]), params={"k": len(seen)})

    report = run_walk_forward(folds, evaluate)
    assert seen == [([0, 1, 2], [3, 4, 5]), ([3, 4, 5], [6, 7, 8]), ([6, 7, 8], [9, 10, 11])]
    fold_returns = [
        (1 + 0.005) * (1 - 0.01) * (1 + 0.02) - 1,
        (1 + 0.0) * (1 - 0.005) * (1 + 0.015) - 1,
        (1 + 0.01) * (1 - 0.03) * (1 + 0.02) - 1,
    ]
    np.testing.assert_allclose(report.return_per_fold, fold_returns, rtol=1e-12)
    assert report.trades_per_fold.tolist() == [3, 6, 9] and report.total_trades == 18
    assert report.share_profitable == pytest.approx(2 / 3)
    oos = series[3:]
    assert report.oos_sharpe == pytest.approx(statistics.fmean(oos) / statistics.stdev(oos))
    assert report.sharpe_per_fold[0] == pytest.approx(
        statistics.fmean(oos[:3]) / statistics.stdev(oos[:3])
    )
    expected_compounded = math.prod(1 + r for r in fold_returns) - 1
    assert report.compounded_return == pytest.approx(expected_compounded, rel=1e-12)
    assert report.summary()["n_folds"] == 3.0
    # An explicit total_return (e.g. from the simulator's equity) wins over compounding.
    report = run_walk_forward(folds, lambda tr, te: FoldResult(np.zeros(3), 0, total_return=-0.1))
    assert report.share_profitable == 0.0 and math.isnan(report.oos_sharpe)


def test_run_walk_forward_errors_name_the_fold() -> None:
    folds = walk_forward_splits(20, train=5, test=5)

    def failing(train_idx: np.ndarray, test_idx: np.ndarray) -> FoldResult:
        if test_idx[0] >= 10:
            raise ValueError("optimizer diverged")
        return FoldResult(np.zeros(len(test_idx)), 0)

    with pytest.raises(ValueError, match="optimizer diverged") as info:
        run_walk_forward(folds, failing)
    assert any("fold 1" in note for note in info.value.__notes__)
    with pytest.raises(BacktestError, match="must return a FoldResult"):
        run_walk_forward(folds, lambda tr, te: {"returns": []})  # type: ignore[arg-type,return-value]
    with pytest.raises(BacktestError, match="n_trades must be >= 0"):
        run_walk_forward(folds, lambda tr, te: FoldResult(np.zeros(5), -1))
    with pytest.raises(BacktestError, match="no folds"):
        run_walk_forward([], failing)


# ---------------------------------------------------------------------------------------------
# Stress
# ---------------------------------------------------------------------------------------------


def _report(baseline: float, **stressed: float) -> StressReport:
    values = {"double_costs": baseline, "delay_1bar": baseline, "both": baseline, **stressed}
    results = {"baseline": {"total_return": baseline}}
    results.update({k: {"total_return": v} for k, v in values.items()})
    return StressReport(cases=STRESS_CASES, results=results)


def test_run_stress_runs_the_four_cases() -> None:
    calls: list[StressCase] = []

    def run(case: StressCase) -> dict[str, float]:
        calls.append(case)
        # a toy strategy: 20 % gross, 4 % costs, 5 % lost per bar of delay
        return {
            "total_return": 0.20 - 0.04 * case.fee_multiplier - 0.05 * case.extra_delay_bars,
            "n_trades": 12,
        }

    report = run_stress(run)
    assert [c.name for c in calls] == ["baseline", "double_costs", "delay_1bar", "both"]
    assert [(c.fee_multiplier, c.slippage_multiplier, c.extra_delay_bars) for c in calls] == [
        (1.0, 1.0, 0),
        (2.0, 2.0, 0),
        (1.0, 1.0, 1),
        (2.0, 2.0, 1),
    ]
    assert report.metric("both") == pytest.approx(0.20 - 0.08 - 0.05)
    assert report.metric("baseline", "n_trades") == 12.0
    # both = 0.07 < 0.5 * 0.16 = 0.08 -> fails by default, survives at ratio 0.4
    assert not survives(report)
    assert stress_failures(report) == [
        f"both: total_return = {report.metric('both')!r} < 0.5 x baseline "
        f"{report.metric('baseline')!r}"
    ]
    assert survives(report, min_return_ratio=0.4)


def test_survival_rule_at_its_boundary() -> None:
    # 0.125 = 0.5 * 0.25 exactly in binary floating point.
    assert survives(_report(0.25, both=0.125))
    assert not survives(_report(0.25, both=float(np.nextafter(0.125, 0.0))))
    assert survives(_report(0.25, double_costs=0.25, delay_1bar=0.3))  # stress may even help
    # With a zero ratio, require_positive decides whether a break-even stressed case survives.
    assert not survives(_report(0.25, both=0.0), min_return_ratio=0.0)
    assert survives(_report(0.25, both=0.0), min_return_ratio=0.0, require_positive=False)
    assert survives(
        _report(0.25, both=-0.05), min_return_ratio=-0.2, require_positive=False
    )  # a loss of up to 20 % of the baseline gain allowed
    assert not survives(_report(0.25, both=-0.05), min_return_ratio=-0.2)
    # The baseline itself must make money, and every figure must be finite.
    assert not survives(_report(0.0), require_positive=False, min_return_ratio=0.0)
    assert stress_failures(_report(-0.1))[0].startswith("baseline")
    assert not survives(_report(0.25, delay_1bar=math.nan))
    with pytest.raises(BacktestError, match="min_return_ratio"):
        survives(_report(0.25), min_return_ratio=1.5)
    with pytest.raises(BacktestError, match="did not report metric 'sharpe'"):
        survives(_report(0.25), metric="sharpe")


def test_run_stress_validation() -> None:
    with pytest.raises(BacktestError, match="no 'baseline'"):
        run_stress(lambda c: {"total_return": 1.0}, cases=[StressCase("double_costs", 2.0, 2.0)])
    with pytest.raises(BacktestError, match="duplicate"):
        run_stress(lambda c: {"total_return": 1.0}, cases=[StressCase("baseline")] * 2)
    with pytest.raises(BacktestError, match="'total_return' is not a number"):
        run_stress(lambda c: {"total_return": "high"})  # type: ignore[dict-item]

    def broken(case: StressCase) -> dict[str, float]:
        if case.extra_delay_bars:
            raise RuntimeError("engine failed")
        return {"total_return": 0.1}

    with pytest.raises(RuntimeError) as info:
        run_stress(broken)
    assert "delay_1bar" in info.value.__notes__[0]


def test_delay_signals_pads_with_no_signal() -> None:
    entries = np.array([True, False, True, True, False])
    delayed = delay_signals(entries, 1)
    assert delayed.tolist() == [False, True, False, True, True]
    assert delayed.dtype == np.bool_
    np.testing.assert_array_equal(
        delay_signals(np.array([1.0, 2.0, 3.0]), 2), [math.nan, math.nan, 1.0]
    )
    assert delay_signals(np.array([1, -1, 1], dtype=np.int8), 1).tolist() == [0, 1, -1]
    assert delay_signals(entries, 9).tolist() == [False] * 5
    copy = delay_signals(entries, 0)
    assert copy.tolist() == entries.tolist() and copy is not entries
    matrix = np.arange(6.0).reshape(3, 2)  # bars x configs: shifts along bars
    np.testing.assert_array_equal(delay_signals(matrix, 1), [[np.nan, np.nan], [0, 1], [2, 3]])
    with pytest.raises(BacktestError, match="bars must be >= 0"):
        delay_signals(entries, -1)
    with pytest.raises(BacktestError, match="dtype"):
        delay_signals(np.array(["a", "b"]), 1)
