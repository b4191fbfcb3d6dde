"""Assessment of one system version: evidence completeness, robustness numbers on known cases,
the DSR's dependence on the trial ledger, and the promotion rules on the evidence.

Known cases: an always-long system on a rising series (positive returns in every regime, one
trade per walk-forward test fold); a system whose neighbourhood is a single configuration (PBO
undefined -> missing); a system whose variants are identical (PBO = 1 by the documented tie rule:
the in-sample best ranks at the OOS median, logit 0); an always-short system with a stop on a
rising series (negative expectancy: rejected by the rules).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from factory_pipeline.engine.robustness import deflated_sharpe_ratio, probabilistic_sharpe_ratio
from factory_pipeline.engine.trials import Trial, TrialLedger
from factory_pipeline.errors import BacktestError
from factory_pipeline.promotion.policy import load_policy
from factory_pipeline.promotion.rules import CANDIDATE_METRICS, evaluate_rules
from factory_pipeline.promotion.state_machine import decide
from factory_pipeline.research import (
    TRIAL_FAMILY,
    WalkForwardSettings,
    assess_system,
    backtest_partition,
    neighbourhood_trials,
    redeflate,
)
from factory_pipeline.research.assessment import neighbourhood
from factory_pipeline.research.regime_backtest import compiled_for
from factory_pipeline.settings import DEFAULT_DATA_DIR
from factory_pipeline.store import Store
from factory_pipeline_tests.research.helpers import (
    COSTLY,
    day_span,
    library,
    system,
    trend_frame,
)

REGIME_SPANS = {
    "trend_up": [day_span(5, 20), day_span(70, 10)],
    "range": [day_span(30, 20), day_span(90, 10)],
    "high_vol": [day_span(55, 10), day_span(105, 12)],
}
FOLDS = WalkForwardSettings(train_days=30, test_days=15, purge_days=1)


@pytest.fixture(scope="module")
def lib():
    return library()


@pytest.fixture(scope="module")
def policy():
    return load_policy(DEFAULT_DATA_DIR / "policy" / "promotion.yaml")


def partitions(docs, frames, lib):
    backtests, trades = [], []
    for symbol, frame in frames.items():
        for regime, spans in REGIME_SPANS.items():
            part = backtest_partition(
                docs, frame, spans, symbol=symbol, regime=regime, library=lib, base=COSTLY
            )
            backtests += part.backtests
            trades += part.all_trades
    return backtests, trades


def assess(doc, frames, lib, ledger, **kwargs):
    backtests, trades = partitions([doc], frames, lib)
    return assess_system(
        doc,
        frames=frames,
        backtests=backtests,
        trades=trades,
        ledger=ledger,
        library=lib,
        base=COSTLY,
        walk_forward=FOLDS,
        **kwargs,
    )


def test_always_long_on_a_rising_market(lib, tmp_path):
    frames = {"BTCUSDT": trend_frame(120), "ETHUSDT": trend_frame(120, symbol="ETHUSDT", seed=2)}
    doc = system(lib, symbols=("BTCUSDT", "ETHUSDT"))
    ledger = TrialLedger(Store(tmp_path / "l.duckdb"))
    backtests, trades = partitions([doc], frames, lib)
    result = assess_system(doc, frames=frames, backtests=backtests, trades=trades, ledger=ledger,
                           library=lib, base=COSTLY, walk_forward=FOLDS)  # fmt: skip
    metrics = result.evidence.metrics
    assert set(CANDIDATE_METRICS) <= set(metrics)
    assert sorted(result.evidence.evidence_ids) == sorted([*(b.id for b in backtests),
                                                           result.report.id])  # fmt: skip
    assert result.report.backtest_ids == sorted(b.id for b in backtests)
    # one forced-close trade per window: 2 windows x 3 regimes x 2 symbols
    assert metrics["trades"] == len(trades) == 12
    assert metrics["regimes_tested"] == 3 and metrics["profitable_regimes"] == 3
    assert all(r["total_return"] > 0 for r in result.report.regimes.values())
    assert metrics["expectancy_pct"] > 0
    assert metrics["expectancy_r"] is None  # no stop: R undefined, never invented
    # the trade-weighted mean equals the mean over the pooled trades (by hand from the trades)
    pooled = np.mean([t.net_pnl / (t.entry_price * t.qty) * 100 for t in trades])
    assert metrics["expectancy_pct"] == pytest.approx(pooled, rel=1e-9)
    # walk-forward: 120 days, train 30, test 15 -> 6 folds per symbol, one trade per test fold
    assert len(result.report.walk_forward["folds"]) == 12
    assert metrics["min_trades_per_fold"] == 1
    assert metrics["lookahead_passed"] is True  # audit run: the system has no sanity record
    assert metrics["psr"] > 0.99 and metrics["sharpe"] > 0
    # no tunable parameter: the neighbourhood is the system alone -> PBO undefined (missing)
    assert metrics["neighbourhood_size"] == 1
    assert metrics["pbo"] is None and result.pbo is None
    # stress: the baseline and every case keep a clearly positive return
    assert metrics["stress_survived"] is True
    cases = result.report.stress["cases"]
    assert set(cases) == {"baseline", "double_costs", "delay_1bar", "both"}
    assert cases["double_costs"]["total_return"] < cases["baseline"]["total_return"]
    assert cases["double_costs"]["fees_paid"] == pytest.approx(2 * cases["baseline"]["fees_paid"],
                                                               rel=0.05)  # fmt: skip
    # the stored report round-trips as JSON
    assert type(result.report).model_validate_json(result.report.model_dump_json()).evidence == (
        result.report.evidence
    )


def test_identical_variants_give_a_well_defined_pbo_and_dsr_falls_with_more_trials(lib, tmp_path):
    frame = trend_frame(120, drift=0.00002, noise=0.003, seed=4)
    doc = system(lib, name="inert", entry="entry_inert_param", entry_params={"k": 10})
    ledger = TrialLedger(Store(tmp_path / "l.duckdb"))
    first = assess(doc, {"BTCUSDT": frame}, lib, ledger, n_variants=6)
    metrics = first.evidence.metrics
    assert metrics["neighbourhood_size"] > 2
    # every variant trades identically: the in-sample best sits at the OOS median in every
    # split (average rank (N+1)/2, w = 1/2, logit 0 <= 0), so PBO = 1
    assert first.pbo is not None and metrics["pbo"] == 1.0
    # identical variants: their Sharpe spread is 0, so Var[SR] takes the sampling-noise floor
    # 1/T (T = 120 daily returns) and the DSR is the PSR against SR0(N, 1/T) < PSR(0)
    assert ledger.count(TRIAL_FAMILY) == metrics["n_trials"] == metrics["neighbourhood_size"]
    assert metrics["sharpe_variance"] == pytest.approx(1.0 / 120)
    n0 = int(metrics["n_trials"])
    assert metrics["dsr"] == pytest.approx(deflated_sharpe_ratio(first.returns, n0, 1.0 / 120))
    assert metrics["dsr"] < metrics["psr"]
    # the same assessment again records nothing new and gives the same evidence
    again = assess(doc, {"BTCUSDT": frame}, lib, ledger, n_variants=6)
    assert again.evidence.metrics == metrics and again.report.id == first.report.id
    # 200 more trials with dispersed Sharpe ratios: N grows, so the DSR falls
    rng = np.random.default_rng(0)
    ledger.record(
        Trial(TRIAL_FAMILY, f"cfg-{i}", float(s), 120, 0, 1) for i, s in enumerate(
            rng.normal(0.0, 0.05, 200))
    )  # fmt: skip
    later = assess(doc, {"BTCUSDT": frame}, lib, ledger, n_variants=6)
    assert later.evidence.metrics["n_trials"] == metrics["n_trials"] + 200
    assert later.evidence.metrics["dsr"] < metrics["dsr"]
    # the evidence is the engine's DSR of the system's daily returns with the ledger's N and
    # the neighbourhood's Var[SR]; the textbook ledger-variance DSR is reported next to it
    n, v = ledger.count(TRIAL_FAMILY), ledger.sharpe_variance(TRIAL_FAMILY)
    assert later.returns.shape == (120,)
    np.testing.assert_array_equal(later.returns, first.returns)
    assert later.evidence.metrics["dsr"] == pytest.approx(
        deflated_sharpe_ratio(later.returns, n, 1.0 / 120)
    )
    assert later.evidence.metrics["dsr_ledger_variance"] == pytest.approx(
        deflated_sharpe_ratio(later.returns, n, v)
    )
    # redeflate: the same evidence judged against a larger final N
    final = redeflate(later, n + 1000)
    assert final.evidence.metrics["n_trials"] == n + 1000
    assert final.evidence.metrics["dsr"] < later.evidence.metrics["dsr"]
    assert metrics["psr"] == pytest.approx(probabilistic_sharpe_ratio(first.returns))


def test_neighbourhood_is_deterministic_inside_the_schema(lib):
    doc = system(lib, name="sma", entry="entry_sma_cross", entry_params={"fast": 10, "slow": 30},
                 direction="both")  # fmt: skip
    compiled = compiled_for(doc, lib)
    a = neighbourhood(compiled, n_variants=8, seed=3)
    b = neighbourhood(compiled, n_variants=8, seed=3)
    assert [v.overrides for v in a] == [v.overrides for v in b]
    assert a[0].overrides == {} and a[0].system.spec_hash == doc.spec_hash
    assert len({v.system.spec_hash for v in a}) == len(a) > 3
    schema = lib["entry_sma_cross"].parameters
    for variant in a[1:]:
        fast = variant.overrides.get("entry.params.fast", 10)
        slow = variant.overrides.get("entry.params.slow", 30)
        assert abs(fast - 10) <= 2 * schema["fast"].step and schema["fast"].min <= fast
        assert abs(slow - 30) <= 2 * schema["slow"].step and (slow - 10) % 5 == 0
    assert [v.overrides for v in neighbourhood(compiled, n_variants=8, seed=4)] != [
        v.overrides for v in a
    ]


def test_a_losing_system_is_rejected_by_the_promotion_rules(lib, policy, tmp_path):
    frame = trend_frame(120, drift=0.0003, noise=0.002, seed=6)
    doc = system(
        lib,
        name="always short",
        entry="entry_always_short",
        direction="short_only",
        exits=[{"module": "exit_percent_stop", "params": {"pct": 3.0}}],
    )
    ledger = TrialLedger(Store(tmp_path / "l.duckdb"))
    result = assess(doc, {"BTCUSDT": frame}, lib, ledger)
    metrics = result.evidence.metrics
    assert metrics["expectancy_r"] < 0 and metrics["expectancy_pct"] < 0
    assert metrics["profitable_regimes"] == 0
    assert metrics["stress_survived"] is False
    results = {r.rule: r for r in evaluate_rules(result.evidence, policy.candidate_to_demo)}
    for rule in ("min_expectancy_r", "min_profitable_regimes", "stress_must_survive"):
        assert not results[rule].passed and not results[rule].missing
    decision = decide(doc, list(results.values()), policy)
    assert decision.to_status.value in ("rework_required", "disabled")


def test_sanity_record_inconsistent_trades_and_missing_frames(lib, tmp_path):
    frame = trend_frame(120)
    doc = system(lib).model_copy(update={"sanity": {"checks": {"lookahead": {"passed": False}}}})
    ledger = TrialLedger(Store(tmp_path / "l.duckdb"))
    result = assess(doc, {"BTCUSDT": frame}, lib, ledger)
    assert result.evidence.metrics["lookahead_passed"] is False
    backtests, trades = partitions([doc], {"BTCUSDT": frame}, lib)
    with pytest.raises(BacktestError, match="stale or partial"):
        assess_system(doc, frames={"BTCUSDT": frame}, backtests=backtests, trades=trades[1:],
                      ledger=ledger, library=lib, base=COSTLY, walk_forward=FOLDS)  # fmt: skip
    with pytest.raises(BacktestError, match="no frame"):
        assess_system(doc, frames={"ETHUSDT": frame}, backtests=backtests, trades=trades,
                      ledger=ledger, library=lib, base=COSTLY)  # fmt: skip
    # without backtests the partition metrics are missing, never zero
    empty = assess_system(doc, frames={"BTCUSDT": frame}, backtests=[], trades=[], ledger=ledger,
                          library=lib, base=COSTLY, walk_forward=FOLDS)  # fmt: skip
    assert empty.evidence.metrics["trades"] is None
    assert empty.evidence.metrics["profitable_regimes"] is None
    assert empty.evidence.evidence_ids == [empty.report.id]
    # the same trials as assess_system records, without assessing
    trials = neighbourhood_trials(doc, frames={"BTCUSDT": frame}, library=lib, base=COSTLY)
    assert {t.trial_id for t in trials} == {t.trial_id for t in result.trials}
    assert math.isfinite(result.evidence.metrics["max_drawdown"])
