"""Lookahead audit: it passes every causal function of the signal language and catches
deliberate leaks (next-bar values, centered windows, higher-timeframe joins on open times)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factory_pipeline.engine.lookahead import (
    AuditReport,
    audit_signals,
    first_difference,
    perturb_after,
)
from factory_pipeline.errors import BacktestError
from factory_pipeline.market.frame import MarketFrame, make_frame
from factory_pipeline.market.timeframes import HOUR_MS
from factory_pipeline.strategy.language import (
    KNOWN_FUNCTIONS,
    EvalContext,
    IndicatorCache,
    compile_expression,
)

START_MS = 1_699_920_000_000  # 2023-11-14 00:00 UTC


def synthetic_frame(n: int = 1200, seed: int = 7, gaps: tuple[int, ...] = (300, 301, 302, 777)):
    """Hourly random walk with funding every 8h, open interest every hour and a few gaps."""
    rng = np.random.default_rng(seed)
    open_time = START_MS + np.arange(n, dtype=np.int64) * HOUR_MS
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.006, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 0.002, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 0.002, n)))
    keep = np.setdiff1d(np.arange(n), np.asarray(gaps, dtype=np.int64))
    end = START_MS + n * HOUR_MS
    funding_time = np.arange(START_MS, end, 8 * HOUR_MS, dtype=np.int64)
    oi_time = np.arange(START_MS + 1_000, end, HOUR_MS, dtype=np.int64)
    return make_frame(
        "SYNUSDT", "1h", open_time[keep], open_[keep], high[keep], low[keep], close[keep],
        volume=rng.uniform(1.0, 50.0, n)[keep],
        funding_time=funding_time, funding_rates=rng.normal(1e-4, 2e-4, funding_time.shape[0]),
        oi_time=oi_time, oi_values=5e5 + np.cumsum(rng.normal(0.0, 500.0, oi_time.shape[0])),
    )  # fmt: skip


FRAME = synthetic_frame()

#: One expression per function of the language (checked against KNOWN_FUNCTIONS below).
LANGUAGE_SIGNALS = {
    "sma": "sma(close, 20)",
    "ema": "ema(close, 20) > close",
    "wma": "wma(close, 15)",
    "rsi": "rsi(close, 14)",
    "atr": "atr(14)",
    "stdev": "stdev(close, 20)",
    "bb_upper": "close > bb_upper(close, 20, 2)",
    "bb_middle": "bb_middle(close, 20, 2)",
    "bb_lower": "bb_lower(close, 20, 2)",
    "macd_line": "macd_line(close, 12, 26, 9)",
    "macd_signal": "macd_signal(close, 12, 26, 9)",
    "macd_hist": "macd_hist(close, 12, 26, 9) > 0",
    "highest": "highest(high, 30)",
    "lowest": "lowest(low, 30)",
    "donchian_upper": "close >= lag(donchian_upper(20), 1)",
    "donchian_lower": "donchian_lower(20)",
    "donchian_mid": "donchian_mid(20)",
    "roc": "roc(close, 10)",
    "zscore": "zscore(close, 50)",
    "vwap": "vwap(24)",
    "abs": "abs(close - open)",
    "min": "min(open, close)",
    "max": "max(open, close)",
    "crosses_above": "crosses_above(sma(close, 10), sma(close, 30))",
    "crosses_below": "crosses_below(ema(close, 5), ema(close, 21))",
    "lag": "lag(close, 3)",
    "tf": 'tf("4h", rsi(close, 14)) > 50 and tf("1d", sma(close, 3)) < close',
    "series": "funding_rate * open_interest + mark - volume + hour + weekday",
    "tf_value": 'tf("4h", ema(close, 5)) - tf("1d", sma(close, 3))',
    "nested_tf": 'tf("4h", tf("1d", atr(3)))',
}


def language_compute(cache: IndicatorCache | None):
    compiled = {name: compile_expression(src) for name, src in LANGUAGE_SIGNALS.items()}

    def compute(frame: MarketFrame) -> dict[str, np.ndarray]:
        ctx = EvalContext(frame, cache)
        return {name: expr.evaluate(ctx) for name, expr in compiled.items()}

    return compute


def test_every_language_function_is_covered() -> None:
    used = {
        name for name in KNOWN_FUNCTIONS if any(f"{name}(" in s for s in LANGUAGE_SIGNALS.values())
    }
    assert used == set(KNOWN_FUNCTIONS)


def test_the_language_passes_the_audit() -> None:
    report = audit_signals(language_compute(None), FRAME, n_cuts=6, seed=1)
    assert report.failures == []
    assert report.passed
    assert report.checked_signals == len(LANGUAGE_SIGNALS)


def test_the_language_passes_with_a_shared_cache() -> None:
    # the cache is shared across the full, truncated and perturbed frames: keys must separate
    cache = IndicatorCache()
    report = audit_signals(language_compute(cache), FRAME, n_cuts=4, seed=2)
    assert report.passed, report.failures
    assert cache.stats.misses > 0


# -- deliberate leaks ----------------------------------------------------------------------


def next_bar_leak(frame: MarketFrame) -> dict[str, np.ndarray]:
    close = frame.close
    following = np.r_[close[1:], np.nan]  # close[t + 1]
    return {"next_return": following / close - 1.0, "rises_next": following > close}


def centered_average(frame: MarketFrame) -> dict[str, np.ndarray]:
    centered = pd.Series(frame.close).rolling(21, center=True).mean().to_numpy()
    return {"above_centered": frame.close > centered, "centered": centered}


def open_time_asof_join(frame: MarketFrame) -> dict[str, np.ndarray]:
    """The classic bug: join 4h bars to 1h bars by open time, exposing the forming 4h bar."""
    higher = frame.resample("4h")
    idx = np.searchsorted(higher.open_time, frame.open_time, side="right") - 1
    return {"htf_close": higher.close[idx], "above_htf": frame.close > higher.close[idx]}


def closed_bar_join(frame: MarketFrame) -> dict[str, np.ndarray]:
    """The correct join (close times), for contrast."""
    higher = frame.resample("4h")
    idx = np.searchsorted(higher.close_time, frame.close_time, side="right") - 1
    values = np.where(idx >= 0, higher.close[np.maximum(idx, 0)], np.nan)
    return {"htf_close": values}


@pytest.mark.parametrize("leaky", [next_bar_leak, centered_average, open_time_asof_join])
def test_the_audit_catches_leaks(leaky) -> None:
    report = audit_signals(leaky, FRAME, n_cuts=8, seed=0)
    assert not report.passed
    assert len(report.failures) >= 8
    flagged = {line.split(":")[0] for line in report.failures}
    assert flagged == set(leaky(FRAME))  # every leaking signal is named, bool ones included


def test_a_correct_higher_timeframe_join_passes() -> None:
    assert audit_signals(closed_bar_join, FRAME).passed


def test_both_tests_catch_a_one_bar_leak() -> None:
    report = audit_signals(next_bar_leak, FRAME, n_cuts=3, seed=4)
    tests = {("truncation" in line, "perturbation" in line) for line in report.failures}
    assert (True, False) in tests and (False, True) in tests


def test_perturbation_catches_a_leak_that_survives_truncation() -> None:
    # Pads the missing next bar with the true one from a copy held outside the frame: a prefix
    # recomputation then looks identical, but changing the future still changes the past.
    def leak(frame: MarketFrame) -> dict[str, np.ndarray]:
        n = len(frame)
        nxt = np.r_[frame.close[1:], np.nan]
        if n < len(FRAME):
            nxt[-1] = FRAME.close[n]
        return {"next_close": nxt}

    report = audit_signals(leak, FRAME, n_cuts=4)
    assert not report.passed
    assert all("perturbation" in line for line in report.failures)


# -- mechanics -----------------------------------------------------------------------------


def test_cuts_are_seeded_sorted_and_leave_min_prefix_bars() -> None:
    a = audit_signals(closed_bar_join, FRAME, n_cuts=5, seed=3, min_prefix=250)
    b = audit_signals(closed_bar_join, FRAME, n_cuts=5, seed=3, min_prefix=250)
    c = audit_signals(closed_bar_join, FRAME, n_cuts=5, seed=9, min_prefix=250)
    assert isinstance(a, AuditReport)
    assert a.cuts == b.cuts and a.cuts != c.cuts
    assert a.cuts == sorted(set(a.cuts)) and len(a.cuts) == 5
    assert min(a.cuts) >= 249 and max(a.cuts) <= len(FRAME) - 2


def test_too_short_frames_are_an_error() -> None:
    with pytest.raises(BacktestError, match="too few"):
        audit_signals(closed_bar_join, FRAME.slice(0, 150), min_prefix=200)


def test_failing_or_malformed_computations_are_reported() -> None:
    def fails_on_prefixes(frame: MarketFrame) -> dict[str, np.ndarray]:
        if len(frame) < len(FRAME):
            raise ValueError("not enough data")
        return {"x": frame.close}

    report = audit_signals(fails_on_prefixes, FRAME, n_cuts=2)
    assert not report.passed and any("raised ValueError" in f for f in report.failures)

    def drops_a_signal(frame: MarketFrame) -> dict[str, np.ndarray]:
        out = {"x": frame.close}
        if len(frame) == len(FRAME):
            out["y"] = frame.close
        return out

    report = audit_signals(drops_a_signal, FRAME, n_cuts=2)
    assert any("y: truncation" in f and "missing" in f for f in report.failures)


def test_perturb_after_keeps_the_known_past_and_changes_the_future() -> None:
    cut = 500
    perturbed = perturb_after(FRAME, cut, np.random.default_rng(0))
    for name in ("open", "high", "low", "close", "volume", "mark", "open_interest"):
        np.testing.assert_array_equal(
            getattr(perturbed, name)[: cut + 1], getattr(FRAME, name)[: cut + 1]
        )
        assert (getattr(perturbed, name)[cut + 1 :] != getattr(FRAME, name)[cut + 1 :]).mean() > 0.9
    np.testing.assert_array_equal(perturbed.funding_rate[: cut + 1], FRAME.funding_rate[: cut + 1])
    assert not np.array_equal(perturbed.funding_rate[cut + 1 :], FRAME.funding_rate[cut + 1 :])
    assert np.all(perturbed.high >= np.maximum(perturbed.open, perturbed.close))
    assert np.all(perturbed.low <= np.minimum(perturbed.open, perturbed.close))
    np.testing.assert_array_equal(perturbed.open_time, FRAME.open_time)


def test_first_difference_rules() -> None:
    a = np.array([1.0, np.nan, 3.0])
    assert first_difference(a, a.copy()) is None
    assert first_difference(a, a + 1e-12) is None
    assert first_difference(a, np.array([1.0, 2.0, 3.0])) == 1
    assert first_difference(a, np.array([1.0, np.nan, 3.001])) == 2
    flags = np.array([True, False])
    assert first_difference(flags, np.array([True, True])) == 1
    assert first_difference(flags, np.array([1.0, 0.0])) == 0
