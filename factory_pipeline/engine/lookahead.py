"""Lookahead audit: verify empirically that signals at bar t use only data known at t's close.

The signal language is causal by construction; this audit checks any signal computation
(compiled modules, whole systems, hand-written code) from the outside, treating it as a black
box ``compute(frame) -> {name: array}``. Two tests run at each of ``n_cuts`` seeded random cut
bars ``c`` (the last bar known at the cut, with at least ``min_prefix`` bars known):

1. Truncation invariance: recompute on ``frame.truncate_at(frame.close_time[c])`` (only bars
   closed by then) and require every signal to equal the full run on bars ``0..c``.
   Catches computations whose past values change when later bars arrive: reading ``x[t+1]``
   (the cut bar loses its successor), centered windows, normalizing by statistics of the whole
   series, and higher-timeframe joins that expose a forming bar (the prefix ends inside it, so
   its "close" differs from the full run's).
2. Future perturbation: keep the full length but replace every bar strictly after ``c``
   (prices, volume, mark, open interest, funding settlements after the cut's close) with a
   scaled permutation of themselves, recompute, and require bars ``0..c`` unchanged.
   Catches the same leaks when the code behaves differently near the end of the data (e.g.
   pads the last bar, or only leaks when a next bar exists), and leaks that depend on the
   data after the cut rather than on its length.

Comparisons: booleans and NaN positions must match exactly; other numbers within
``rtol=1e-9, atol=1e-12`` (causal recomputation is normally bit-identical; the tolerance only
absorbs libraries that sum in blocks). A compute that raises, drops a signal or returns the
wrong length is reported as a failure, not raised.

What the audit cannot prove: a leak that changes no value at the sampled cuts (e.g. a bool
signal whose leaked input happens not to flip it there) goes unseen, so more cuts give more
assurance; and it does not inspect data sources outside the frame it passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from factory_pipeline.errors import BacktestError
from factory_pipeline.market.frame import MarketFrame, align_point_in_time

SignalCompute = Callable[[MarketFrame], Mapping[str, np.ndarray]]

RTOL = 1e-9
ATOL = 1e-12


@dataclass
class AuditReport:
    """Outcome of :func:`audit_signals`.

    ``cuts`` are the bar indices of the last known bar at each cut; ``failures`` one line per
    (signal, cut, test) that differed; ``checked_signals`` the number of signals compared.
    """

    passed: bool
    cuts: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    checked_signals: int = 0


def audit_signals(
    compute: SignalCompute,
    frame: MarketFrame,
    *,
    n_cuts: int = 8,
    seed: int = 0,
    min_prefix: int = 200,
) -> AuditReport:
    """Run the truncation and future-perturbation tests (module docstring) at ``n_cuts``
    random cuts drawn with ``seed``. Raises BacktestError if the frame is too short to leave
    ``min_prefix`` known bars and at least one future bar."""
    n = len(frame)
    first_cut = max(min_prefix - 1, 0)
    if n_cuts < 1:
        raise BacktestError(f"lookahead audit: n_cuts must be >= 1, got {n_cuts}")
    if first_cut > n - 2:
        raise BacktestError(
            f"lookahead audit on {frame.symbol} {frame.timeframe}: {n} bars are too few for "
            f"min_prefix={min_prefix} (need at least {min_prefix + 1})"
        )
    rng = np.random.default_rng(seed)
    candidates = np.arange(first_cut, n - 1)
    chosen = rng.choice(candidates, size=min(n_cuts, candidates.shape[0]), replace=False)
    cuts = sorted(int(c) for c in chosen)

    full = _as_arrays(compute(frame))
    failures: list[str] = []
    for name, values in list(full.items()):
        if values.shape != (n,):
            failures.append(f"{name}: full run returned shape {values.shape}, expected ({n},)")
            del full[name]
    for cut in cuts:
        prefix = frame.truncate_at(int(frame.close_time[cut]))
        failures += _compare_run(compute, prefix, full, cut, "truncation")
        perturbed = perturb_after(frame, cut, rng)
        failures += _compare_run(compute, perturbed, full, cut, "future perturbation")
    return AuditReport(
        passed=not failures,
        cuts=cuts,
        failures=failures,
        checked_signals=len(full),
    )


def perturb_after(frame: MarketFrame, cut: int, rng: np.random.Generator) -> MarketFrame:
    """A frame equal to ``frame`` on bars ``0..cut`` whose later bars are a permutation of the
    originals scaled by random factors in [0.5, 1.5] (one factor per bar for all prices, so
    high >= open, close >= low still holds), with funding settlements after the cut's close
    scaled and re-aligned. Times and completeness flags are unchanged."""
    n = len(frame)
    after = slice(cut + 1, n)
    count = n - cut - 1
    order = rng.permutation(count)
    price_scale = rng.uniform(0.5, 1.5, count)
    volume_scale = rng.uniform(0.5, 1.5, count)
    oi_scale = rng.uniform(0.5, 1.5, count)

    def changed(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
        out = np.array(values, dtype=np.float64, copy=True)
        out[after] = values[after][order] * scale
        return out

    cut_close = frame.close_time[cut]
    rates = np.array(frame.funding_rates, dtype=np.float64, copy=True)
    later = frame.funding_time > cut_close
    rates[later] = rates[later] * rng.uniform(-1.5, 1.5, int(later.sum()))
    funding_rate = np.array(frame.funding_rate, dtype=np.float64, copy=True)
    funding_rate[after] = align_point_in_time(frame.funding_time, rates, frame.close_time)[after]
    return replace(
        frame,
        open=changed(frame.open, price_scale),
        high=changed(frame.high, price_scale),
        low=changed(frame.low, price_scale),
        close=changed(frame.close, price_scale),
        mark=changed(frame.mark, price_scale),
        volume=changed(frame.volume, volume_scale),
        open_interest=changed(frame.open_interest, oi_scale),
        funding_rate=funding_rate,
        funding_rates=rates,
    )


def first_difference(
    expected: np.ndarray, actual: np.ndarray, rtol: float = RTOL, atol: float = ATOL
) -> int | None:
    """Index of the first element where ``actual`` differs from ``expected`` (NaN equals NaN;
    exact for booleans, ``rtol``/``atol`` otherwise), or None when they agree."""
    if (expected.dtype == np.bool_) != (actual.dtype == np.bool_):
        return 0 if expected.shape[0] else None
    if expected.dtype == np.bool_:
        differs = expected != actual
    else:
        a = expected.astype(np.float64)
        b = actual.astype(np.float64)
        a_nan, b_nan = np.isnan(a), np.isnan(b)
        with np.errstate(invalid="ignore"):
            close = (a == b) | (np.abs(a - b) <= atol + rtol * np.abs(a))
        differs = (a_nan != b_nan) | (~a_nan & ~b_nan & ~close)
    hits = np.flatnonzero(differs)
    return int(hits[0]) if hits.size else None


# -- helpers -------------------------------------------------------------------------------


def _compare_run(
    compute: SignalCompute,
    frame: MarketFrame,
    full: Mapping[str, np.ndarray],
    cut: int,
    test: str,
) -> list[str]:
    try:
        got = _as_arrays(compute(frame))
    except Exception as exc:  # the audited code is a black box: report, don't crash
        return [f"{test} at cut {cut}: compute raised {type(exc).__name__}: {exc}"]
    failures: list[str] = []
    for name, expected in full.items():
        if name not in got:
            failures.append(f"{name}: {test} at cut {cut}: signal missing from the recomputation")
            continue
        actual = got[name]
        if actual.shape != (len(frame),):
            failures.append(
                f"{name}: {test} at cut {cut}: shape {actual.shape}, expected ({len(frame)},)"
            )
            continue
        index = first_difference(expected[: cut + 1], actual[: cut + 1])
        if index is not None:
            failures.append(
                f"{name}: {test} at cut {cut}: bar {index} differs from the full run "
                f"(full={expected[index]!r}, recomputed={actual[index]!r})"
            )
    return failures


def _as_arrays(signals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {str(name): np.asarray(values) for name, values in signals.items()}
