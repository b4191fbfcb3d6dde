"""Robustness assessment of one system version: the evidence the promotion rules read.

A backtest alone says little about whether a system will keep working; the promotion gate asks
for evidence that its result is not luck, not overfitted and not fragile. This module gathers,
for one system version, everything ``promotion.rules.CANDIDATE_METRICS`` names, with the units of
docs/promotion.md, and writes the details into a RobustnessDoc (semantics in docs/research.md):

- trade count, expectancy, drawdown, stagnation and the per-regime breakdown from the partition
  backtests (regime_backtest);
- walk-forward on each symbol's full history: in each fold the best member of the system's
  parameter neighbourhood on the training window is measured on the test window;
- the neighbourhood's daily returns -> PBO by CSCV; the system's daily returns -> PSR and DSR
  with N and Var[SR] from the trial ledger (the neighbourhood is recorded as trials first);
- cost and delay stress (doubled costs, +1 bar, both) with the survival rule;
- the lookahead audit (from the system's sanity record, else run here).

Numbers that cannot be measured stay NaN in reports and ``None`` in the evidence, so the rule
reading them fails as "missing": nothing here invents a passing value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from factory_pipeline.engine.config import SimConfig
from factory_pipeline.engine.robustness import (
    STRESS_CASES,
    FoldResult,
    PBOResult,
    StressCase,
    StressReport,
    WalkForwardReport,
    deflated_sharpe_ratio,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    run_stress,
    run_walk_forward,
    sharpe_ratio,
    stress_failures,
    walk_forward_splits,
)
from factory_pipeline.engine.system_backtest import DEFAULT_EXECUTION, ENGINE_VERSION, audit_system
from factory_pipeline.engine.trials import Trial, TrialLedger, hash_config
from factory_pipeline.errors import BacktestError, SpecError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.market.timeframes import DAY_MS
from factory_pipeline.promotion.rules import Evidence
from factory_pipeline.research.regime_backtest import (
    TRIAL_FAMILY,
    WindowRun,
    compiled_for,
    finite_metrics,
    run_windows,
)
from factory_pipeline.schemas import ModuleDoc, Provenance, SystemDoc
from factory_pipeline.schemas.documents import (
    BacktestDoc,
    BacktestTrade,
    ModuleKind,
    RobustnessDoc,
    stable_id,
)
from factory_pipeline.strategy.language import IndicatorCache
from factory_pipeline.strategy.signals import CompiledSystem, SystemSignals

#: Variants sampled around the system (the neighbourhood has at most 1 + this many members).
DEFAULT_N_VARIANTS = 8
#: Largest offset, in parameter steps, of a variant's parameter from the system's value.
MAX_STEP_OFFSET = 2
#: CSCV blocks for the PBO (C(16, 8) = 12,870 splits).
PBO_BLOCKS = 16
#: Stress survival rule parameters (engine.robustness.survives defaults).
STRESS_MIN_RETURN_RATIO = 0.5


@dataclass(frozen=True)
class WalkForwardSettings:
    """Rolling walk-forward folds in calendar days on each symbol's full history."""

    train_days: int = 180
    test_days: int = 120
    #: Days between fold starts (default: ``test_days``, back-to-back test windows).
    step_days: int | None = None
    #: Training bars in the last ``purge_days`` before a test window are dropped.
    purge_days: int = 1
    embargo_days: int = 0


@dataclass(frozen=True, eq=False)
class Variant:
    """One member of the parameter neighbourhood; index 0 is the system itself."""

    index: int
    overrides: dict[str, Any]
    system: CompiledSystem


@dataclass(frozen=True, eq=False)
class SystemAssessment:
    """The stored report, the promotion evidence, and the detailed objects behind them."""

    report: RobustnessDoc
    evidence: Evidence
    variants: tuple[Variant, ...]
    trials: tuple[Trial, ...]
    walk_forward: Mapping[str, WalkForwardReport]
    pbo: PBOResult | None
    stress: StressReport
    #: The system's equal-capital portfolio daily returns over the full history (PSR/DSR input)
    #: and their UTC day numbers (ms // 86,400,000).
    returns: np.ndarray
    days: np.ndarray


def neighbourhood_sharpe_variance(matrix: np.ndarray) -> float:
    """Var[SR] for the DSR: the variance of the per-period Sharpe ratios across the system's
    parameter neighbourhood, floored at ``1 / T``, the sampling variance of a Sharpe estimate of
    a skill-less strategy over ``T`` periods.

    Why not the whole ledger's variance: the ledger mixes structurally different systems (a
    cost-bleeding scalper next to a trend follower), so its Sharpe spread measures differences
    of ideas, not the luck of picking one configuration; with it the luck benchmark exceeds any
    plausible Sharpe and the DSR is 0 for every system (measured: docs/research.md). N still
    counts every trial the factory ever ran. The ledger-variance DSR is kept in the evidence as
    ``dsr_ledger_variance`` for comparison. Decision recorded in docs/decisions.md.
    """
    n_periods = int(matrix.shape[0])
    floor = 1.0 / n_periods if n_periods > 0 else math.nan
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        return floor
    ratios = np.array([sharpe_ratio(matrix[:, j]) for j in range(matrix.shape[1])])
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size < 2:
        return floor
    return max(float(np.var(ratios, ddof=1)), floor)


def redeflate(assessment: SystemAssessment, n_trials: int) -> SystemAssessment:
    """The same assessment with its DSR recomputed for ``n_trials`` (e.g. the ledger's final
    count once every system of a batch is recorded, so the first system assessed is not judged
    against fewer trials than the last)."""
    ev = dict(assessment.report.evidence)
    variance = float(ev.get("sharpe_variance") or math.nan)
    ledger_variance = float(ev.get("ledger_sharpe_variance") or math.nan)
    returns = assessment.returns
    ev["dsr"] = _evidence_value(deflated_sharpe_ratio(returns, n_trials, variance))
    ev["dsr_ledger_variance"] = _evidence_value(
        deflated_sharpe_ratio(returns, n_trials, ledger_variance)
    )
    ev["n_trials"] = float(n_trials)
    report = assessment.report.model_copy(update={"evidence": ev, "n_trials": n_trials})
    evidence = assessment.evidence.model_copy(update={"metrics": ev})
    return dataclasses.replace(assessment, report=report, evidence=evidence)


def assess_system(
    system: SystemDoc,
    *,
    frames: Mapping[str, MarketFrame],
    backtests: Sequence[BacktestDoc],
    trades: Sequence[BacktestTrade],
    ledger: TrialLedger,
    library: Mapping[str, ModuleDoc],
    base: SimConfig = DEFAULT_EXECUTION,
    seed: int = 0,
    n_variants: int = DEFAULT_N_VARIANTS,
    walk_forward: WalkForwardSettings = WalkForwardSettings(),  # noqa: B008 (frozen)
) -> SystemAssessment:
    """Assess ``system`` on ``frames`` (symbol -> base frame) and its partition ``backtests``
    (others in the sequence are ignored) with their ``trades``; records the neighbourhood in
    ``ledger`` (family ``candidate_systems``) and reads N and Var[SR] from it for the DSR."""
    hood = _evaluate_neighbourhood(
        system, frames=frames, library=library, base=base, seed=seed, n_variants=n_variants
    )
    compiled, symbols, variants = hood.compiled, hood.symbols, hood.variants
    decision_frames, signals, full_runs = hood.frames, hood.signals, hood.runs
    days, matrix, trials = hood.days, hood.matrix, hood.trials
    system_returns = matrix[:, 0]
    own = sorted(
        (b for b in backtests if b.system_id == system.id and b.spec_hash == system.spec_hash),
        key=lambda b: b.id,
    )
    partition_metrics, regimes = _partition_evidence(own, trades)

    pbo, pbo_note = _pbo(matrix)
    ledger.record(trials)
    n_trials = ledger.count(TRIAL_FAMILY)
    sr_variance = neighbourhood_sharpe_variance(matrix)
    ledger_variance = ledger.sharpe_variance(TRIAL_FAMILY)
    psr = probabilistic_sharpe_ratio(system_returns)
    dsr = deflated_sharpe_ratio(system_returns, n_trials, sr_variance)
    dsr_ledger = deflated_sharpe_ratio(system_returns, n_trials, ledger_variance)

    wf_reports, wf_rows, wf_note = _walk_forward(
        decision_frames, variants, signals, base, walk_forward
    )
    stress, stress_per_symbol = _stress(decision_frames, signals, base)
    failures = stress_failures(stress, min_return_ratio=STRESS_MIN_RETURN_RATIO)
    lookahead_passed, lookahead_source = _lookahead(system, compiled, decision_frames[symbols[0]])

    history = _full_history(full_runs, symbols)
    min_trades_per_fold = (
        float(min(int(r.trades_per_fold.min()) for r in wf_reports.values()))
        if wf_reports
        else math.nan
    )
    metrics: dict[str, float | bool | None] = {
        **partition_metrics,
        "max_drawdown": history["max_drawdown"],
        "worst_stagnation_days": history["worst_stagnation_days"],
        "min_trades_per_fold": min_trades_per_fold,
        "dsr": dsr,
        "pbo": pbo.pbo if pbo is not None else math.nan,
        "stress_survived": not failures,
        "lookahead_passed": lookahead_passed,
        "psr": psr,
        "sharpe": sharpe_ratio(system_returns) * math.sqrt(365.0),
        "n_trials": float(n_trials),
        "sharpe_variance": sr_variance,
        "ledger_sharpe_variance": ledger_variance,
        "dsr_ledger_variance": dsr_ledger,
        "neighbourhood_size": float(len(variants)),
        "oos_sharpe": _oos_sharpe(wf_reports),
    }
    evidence_values = {k: _evidence_value(v) for k, v in metrics.items()}
    report_id = stable_id("robustness", system.id, system.spec_hash, ENGINE_VERSION)
    report = RobustnessDoc(
        id=report_id,
        system_id=system.id,
        spec_hash=system.spec_hash,
        engine_version=ENGINE_VERSION,
        evidence=evidence_values,
        regimes={name: finite_metrics(values) for name, values in regimes.items()},
        walk_forward=_json_safe(
            {
                "settings": dataclasses.asdict(walk_forward),
                "folds": wf_rows,
                "per_symbol": {s: r.summary() for s, r in wf_reports.items()},
                "note": wf_note,
            }
        ),
        stress=_json_safe(
            {
                "cases": {name: dict(values) for name, values in stress.results.items()},
                "survived": not failures,
                "failures": failures,
                "min_return_ratio": STRESS_MIN_RETURN_RATIO,
                "per_symbol": stress_per_symbol,
            }
        ),
        backtest_ids=[b.id for b in own],
        n_trials=n_trials,
        provenance=Provenance(
            source=f"assessment {ENGINE_VERSION}",
            system_ids=[system.id],
            notes=_json_note(
                pbo_note=pbo_note,
                lookahead=lookahead_source,
                days=int(days.shape[0]),
                symbols=symbols,
                seed=seed,
            ),
        ),
    )
    evidence = Evidence(
        system_id=system.id,
        spec_hash=system.spec_hash,
        metrics=evidence_values,
        evidence_ids=[*(b.id for b in own), report_id],
    )
    return SystemAssessment(
        report=report,
        evidence=evidence,
        variants=tuple(variants),
        trials=tuple(trials),
        walk_forward=wf_reports,
        pbo=pbo,
        stress=stress,
        returns=system_returns,
        days=days,
    )


def neighbourhood(
    compiled: CompiledSystem, *, n_variants: int = DEFAULT_N_VARIANTS, seed: int = 0
) -> list[Variant]:
    """The system plus up to ``n_variants`` distinct, deterministic variants near it.

    Each variant moves every numeric parameter of the entry, exit, filter and management
    modules by a random whole number of steps in ``[-MAX_STEP_OFFSET, MAX_STEP_OFFSET]`` (the
    schema's ``step``; 1 for ints without one; a twentieth of the range, else 10 % of the value,
    for floats without one), kept inside the schema's bounds and step grid. Risk (sizing)
    parameters are kept: they scale positions, not the decisions being selected. Variants equal
    to the system or to an earlier variant (same spec hash) are dropped, so fewer may return.
    """
    rng = np.random.default_rng([seed, int(compiled.spec_hash[:12], 16)])
    tunable = [
        (part.path, name, spec, part.params[name])
        for part in compiled.parts
        if part.module.kind != ModuleKind.RISK
        for name, spec in part.module.parameters.items()
        if spec.type in ("int", "float")
    ]
    variants = [Variant(0, {}, compiled)]
    seen = {compiled.spec_hash}
    for _ in range(n_variants):
        overrides: dict[str, Any] = {}
        for path, name, spec, value in tunable:
            offset = int(rng.integers(-MAX_STEP_OFFSET, MAX_STEP_OFFSET + 1))
            moved = _moved_value(spec, value, offset)
            if moved != value:
                overrides[f"{path}.params.{name}"] = moved
        if not overrides:
            continue
        try:
            system = compiled.with_params(overrides)
        except SpecError:
            continue  # a combination the schema refuses: not part of the neighbourhood
        if system.spec_hash in seen:
            continue
        seen.add(system.spec_hash)
        variants.append(Variant(len(variants), overrides, system))
    return variants


def neighbourhood_trials(
    system: SystemDoc,
    *,
    frames: Mapping[str, MarketFrame],
    library: Mapping[str, ModuleDoc],
    base: SimConfig = DEFAULT_EXECUTION,
    seed: int = 0,
    n_variants: int = DEFAULT_N_VARIANTS,
) -> list[Trial]:
    """The trials :func:`assess_system` records for ``system`` (same ids), without assessing.

    The DSR reads N and Var[SR] from the ledger when a system is assessed, so in a batch the
    first systems would see fewer trials than the last; recording every candidate's trials
    first (then assessing) gives every system of the batch the same N and Var[SR].
    """
    return _evaluate_neighbourhood(
        system, frames=frames, library=library, base=base, seed=seed, n_variants=n_variants
    ).trials


@dataclass(frozen=True, eq=False)
class _Neighbourhood:
    compiled: CompiledSystem
    symbols: list[str]
    frames: dict[str, MarketFrame]
    variants: list[Variant]
    signals: dict[tuple[int, str], SystemSignals]
    runs: dict[tuple[int, str], WindowRun]
    days: np.ndarray
    matrix: np.ndarray
    trials: list[Trial]


def _evaluate_neighbourhood(
    system: SystemDoc,
    *,
    frames: Mapping[str, MarketFrame],
    library: Mapping[str, ModuleDoc],
    base: SimConfig,
    seed: int,
    n_variants: int,
) -> _Neighbourhood:
    """Signals and full-history runs of every neighbourhood member on every traded symbol."""
    if n_variants < 0:
        raise BacktestError(f"n_variants must be >= 0, got {n_variants}")
    compiled = compiled_for(system, library)
    spec = compiled.spec
    symbols = [s for s in dict.fromkeys(spec.symbols) if s in frames]
    if not symbols:
        raise BacktestError(
            f"system {system.id}: no frame for any of its symbols {spec.symbols} "
            f"(frames given: {sorted(frames)})"
        )
    timeframe = spec.timeframes.L
    decision_frames = {
        s: frames[s] if frames[s].timeframe == timeframe else frames[s].resample(timeframe)
        for s in symbols
    }
    variants = neighbourhood(compiled, n_variants=n_variants, seed=seed)
    caches = {s: IndicatorCache() for s in symbols}
    signals = {
        (v.index, s): v.system.signals(decision_frames[s], caches[s])
        for v in variants
        for s in symbols
    }
    runs = {
        key: run_windows(decision_frames[key[1]], sig, [(0, len(decision_frames[key[1]]))], base)
        for key, sig in signals.items()
    }
    days, matrix = _portfolio_returns(runs, variants, symbols)
    trials = _neighbourhood_trials(system, variants, symbols, matrix, runs, base)
    return _Neighbourhood(
        compiled, symbols, decision_frames, variants, signals, runs, days, matrix, trials
    )


# --- partition evidence -------------------------------------------------------------------------


def _partition_evidence(
    backtests: Sequence[BacktestDoc], trades: Sequence[BacktestTrade]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Trade count, expectancy, drawdown, stagnation and the per-regime breakdown."""
    nan = math.nan
    if not backtests:
        keys = ("trades", "expectancy_r", "expectancy_pct")
        keys += ("regime_max_drawdown", "regime_worst_stagnation_days")
        empty = dict.fromkeys(keys, nan)
        return {**empty, "profitable_regimes": nan, "regimes_tested": nan}, {}
    by_backtest: dict[str, list[BacktestTrade]] = {}
    for trade in trades:
        by_backtest.setdefault(trade.backtest_id, []).append(trade)
    for doc in backtests:
        given = by_backtest.get(doc.id)
        if given is not None and len(given) != int(doc.metrics.get("trades", 0)):
            raise BacktestError(
                f"backtest {doc.id} ({doc.partition_key}): {len(given)} trades given but its "
                f"metrics count {doc.metrics.get('trades')} (stale or partial trade list)"
            )
    totals = _pooled(backtests)
    regimes: dict[str, dict[str, float]] = {}
    for regime in sorted({b.regime for b in backtests}):
        docs = [b for b in backtests if b.regime == regime]
        pooled = _pooled(docs)
        chained = float(np.prod([1.0 + b.metrics.get("total_return", nan) for b in docs]) - 1.0)
        regime_trades = [t for b in docs for t in by_backtest.get(b.id, [])]
        wins = sum(1 for t in regime_trades if t.net_pnl > 0)
        regimes[regime] = {
            "total_return": chained,
            "mean_return": float(np.mean([b.metrics.get("total_return", nan) for b in docs])),
            "partitions": float(len(docs)),
            "trades": pooled["trades"],
            "expectancy_pct": pooled["expectancy_pct"],
            "expectancy_r": pooled["expectancy_r"],
            "max_drawdown": pooled["max_drawdown"],
            "worst_stagnation_days": pooled["worst_stagnation_days"],
            "win_rate": wins / len(regime_trades) if regime_trades else nan,
        }
    profitable = sum(1 for r in regimes.values() if r["total_return"] > 0)
    totals["regime_max_drawdown"] = totals.pop("max_drawdown")
    totals["regime_worst_stagnation_days"] = totals.pop("worst_stagnation_days")
    return (
        {**totals, "profitable_regimes": float(profitable), "regimes_tested": float(len(regimes))},
        regimes,
    )


def _pooled(backtests: Sequence[BacktestDoc]) -> dict[str, float]:
    """Trades summed; expectancies as trade-weighted means (exactly the mean over the pooled
    trades); drawdown and stagnation the worst partition's."""
    nan = math.nan
    n_trades = sum(b.metrics.get("trades", 0.0) for b in backtests)
    n_r = sum(b.metrics.get("r_trades", 0.0) for b in backtests)
    pct = sum(
        b.metrics.get("expectancy_pct", 0.0) * b.metrics.get("trades", 0.0) for b in backtests
    )
    r_sum = sum(
        b.metrics.get("expectancy_r", 0.0) * b.metrics.get("r_trades", 0.0) for b in backtests
    )
    return {
        "trades": float(n_trades),
        "expectancy_pct": pct / n_trades if n_trades > 0 else nan,
        "expectancy_r": r_sum / n_r if n_r > 0 else nan,
        "max_drawdown": max((b.metrics.get("max_drawdown", nan) for b in backtests), default=nan),
        "worst_stagnation_days": max(
            (b.metrics.get("stagnation_days", nan) for b in backtests), default=nan
        ),
    }


def _full_history(runs: Mapping[tuple[int, str], WindowRun], symbols: Sequence[str]) -> dict:
    """Drawdown and stagnation of the system itself over each symbol's full history (the worst
    symbol's): what an account trading it through every regime went through."""
    base = [runs[(0, s)].metrics for s in symbols]
    return {
        "max_drawdown": max(m["max_drawdown"] for m in base),
        "worst_stagnation_days": max(m["stagnation_days"] for m in base),
    }


# --- neighbourhood returns, PBO, trials ---------------------------------------------------------


def _portfolio_returns(
    runs: Mapping[tuple[int, str], WindowRun], variants: Sequence[Variant], symbols: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(days, T x N matrix)``: per UTC day, the mean over symbols of each configuration's
    daily return (an equal-capital portfolio; a symbol with no bar closing that day adds 0)."""
    per_symbol: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
    for key, run in runs.items():
        day = (run.close_time.astype(np.int64) - 1) // DAY_MS
        last = np.flatnonzero(np.r_[day[1:] != day[:-1], True]) if day.shape[0] else day
        per_symbol[key] = (day[last], run.daily_returns)
    days = np.unique(np.concatenate([d for d, _ in per_symbol.values()]))
    matrix = np.zeros((days.shape[0], len(variants)))
    for column, variant in enumerate(variants):
        for symbol in symbols:
            d, r = per_symbol[(variant.index, symbol)]
            matrix[np.searchsorted(days, d), column] += r
    matrix /= len(symbols)
    return days, matrix


def _pbo(matrix: np.ndarray) -> tuple[PBOResult | None, str]:
    if matrix.shape[1] < 2:
        return None, "PBO undefined: the neighbourhood has a single distinct configuration"
    try:
        return probability_of_backtest_overfitting(matrix, n_blocks=PBO_BLOCKS), ""
    except BacktestError as exc:
        return None, f"PBO undefined: {exc}"


def _neighbourhood_trials(
    system: SystemDoc,
    variants: Sequence[Variant],
    symbols: Sequence[str],
    matrix: np.ndarray,
    runs: Mapping[tuple[int, str], WindowRun],
    base: SimConfig,
) -> list[Trial]:
    """One trial per neighbourhood member: its portfolio daily Sharpe over the full history."""
    start = min(int(runs[(0, s)].open_time[0]) for s in symbols)
    end = max(int(runs[(0, s)].close_time[-1]) for s in symbols)
    trials = []
    for column, variant in enumerate(variants):
        trials.append(
            Trial(
                family=TRIAL_FAMILY,
                config_hash=hash_config(
                    {
                        "spec_hash": variant.system.spec_hash,
                        "symbols": list(symbols),
                        "scope": "full_history",
                        "execution": base.to_dict(),
                    }
                ),
                sharpe=sharpe_ratio(matrix[:, column]),
                n_periods=int(matrix.shape[0]),
                data_start_ms=start,
                data_end_ms=end,
                symbol=None,
                system_id=system.id,
                detail={
                    "scope": "neighbourhood",
                    "variant": variant.index,
                    "overrides": variant.overrides,
                    "symbols": list(symbols),
                    "engine_version": ENGINE_VERSION,
                },
            )
        )
    return trials


# --- walk-forward ---------------------------------------------------------------------------------


def _walk_forward(
    frames: Mapping[str, MarketFrame],
    variants: Sequence[Variant],
    signals: Mapping[tuple[int, str], SystemSignals],
    base: SimConfig,
    settings: WalkForwardSettings,
) -> tuple[dict[str, WalkForwardReport], list[dict[str, Any]], str]:
    reports: dict[str, WalkForwardReport] = {}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for symbol, frame in frames.items():
        try:
            folds = walk_forward_splits(
                frame.open_time,
                train=settings.train_days * DAY_MS,
                test=settings.test_days * DAY_MS,
                step=settings.step_days * DAY_MS if settings.step_days else None,
                purge=settings.purge_days * DAY_MS,
                embargo=settings.embargo_days * DAY_MS,
            )
        except BacktestError as exc:
            notes.append(f"{symbol}: {exc}")
            continue

        def evaluate(train: np.ndarray, test: np.ndarray, symbol: str = symbol) -> FoldResult:
            frame_ = frames[symbol]
            train_window = [(int(train[0]), int(train[-1]) + 1)]
            scores = []
            for v in variants:
                run = run_windows(frame_, signals[(v.index, symbol)], train_window, base)
                score = run.metrics["sharpe"]
                scores.append(score if math.isfinite(score) else -math.inf)
            best = variants[int(np.argmax(scores))]
            test_run = run_windows(
                frame_, signals[(best.index, symbol)], [(int(test[0]), int(test[-1]) + 1)], base
            )
            return FoldResult(
                returns=test_run.daily_returns,
                n_trades=int(test_run.metrics["trades"]),
                total_return=test_run.metrics["total_return"],
                params={"variant": best.index, "overrides": best.overrides},
                metrics={
                    "train_sharpe": float(max(scores)),
                    "test_sharpe": test_run.metrics["sharpe"],
                },
            )

        report = run_walk_forward(folds, evaluate)
        reports[symbol] = report
        for outcome in report.outcomes:
            rows.append(
                {
                    "symbol": symbol,
                    "fold": outcome.fold.index,
                    "train_start_ms": outcome.fold.train_window[0],
                    "test_start_ms": outcome.fold.test_window[0],
                    "test_end_ms": outcome.fold.test_window[1],
                    "variant": outcome.result.params["variant"],
                    "trades": outcome.result.n_trades,
                    "total_return": outcome.total_return,
                    "train_sharpe": outcome.result.metrics["train_sharpe"],
                    "test_sharpe": outcome.result.metrics["test_sharpe"],
                }
            )
    return reports, rows, "; ".join(notes)


def _oos_sharpe(reports: Mapping[str, WalkForwardReport]) -> float:
    """Annualized Sharpe of all symbols' stitched out-of-sample daily returns."""
    if not reports:
        return math.nan
    returns = np.concatenate([r.oos_returns for r in reports.values()])
    return sharpe_ratio(returns) * math.sqrt(365.0) if returns.shape[0] >= 2 else math.nan


# --- stress and lookahead -------------------------------------------------------------------------


def _stressed(base: SimConfig, case: StressCase) -> SimConfig:
    """The case applied to the execution assumptions (as engine.system_backtest.stress_system)."""
    return dataclasses.replace(
        base,
        taker_fee=base.taker_fee * case.fee_multiplier,
        maker_fee=base.maker_fee * case.fee_multiplier,
        slippage_bps=base.slippage_bps * case.slippage_multiplier,
    )


def _stress_run(
    frame: MarketFrame, signals: SystemSignals, base: SimConfig, case: StressCase
) -> WindowRun:
    return run_windows(
        frame,
        signals,
        [(0, len(frame))],
        _stressed(base, case),
        extra_delay_bars=case.extra_delay_bars,
    )


def _stress(
    frames: Mapping[str, MarketFrame],
    signals: Mapping[tuple[int, str], SystemSignals],
    base: SimConfig,
) -> tuple[StressReport, dict[str, dict[str, dict[str, float]]]]:
    """run_stress over the equal-capital portfolio of the system's symbols (full history), plus
    each case's per-symbol figures."""
    keep = ("total_return", "trades", "sharpe", "max_drawdown", "expectancy_pct")
    per_symbol: dict[str, dict[str, dict[str, float]]] = {}

    def run(case: StressCase) -> dict[str, float]:
        runs = {s: _stress_run(f, signals[(0, s)], base, case) for s, f in frames.items()}
        per_symbol[case.name] = {s: {k: r.metrics[k] for k in keep} for s, r in runs.items()}
        values = list(runs.values())
        return {
            "total_return": float(np.mean([r.metrics["total_return"] for r in values])),
            "trades": float(sum(r.metrics["trades"] for r in values)),
            "max_drawdown": float(max(r.metrics["max_drawdown"] for r in values)),
            "fees_paid": float(sum(r.metrics["fees_paid"] for r in values)),
        }

    return run_stress(run, STRESS_CASES), per_symbol


def _lookahead(system: SystemDoc, compiled: CompiledSystem, frame: MarketFrame) -> tuple[bool, str]:
    checks = system.sanity.get("checks")
    lookahead = checks.get("lookahead") if isinstance(checks, Mapping) else None
    recorded = lookahead.get("passed") if isinstance(lookahead, Mapping) else None
    if isinstance(recorded, bool):
        return recorded, "sanity record"
    return audit_system(compiled, frame).passed, f"audit run on {frame.symbol}"


# --- small helpers --------------------------------------------------------------------------------


def _moved_value(spec: Any, value: Any, offset: int) -> Any:
    """``value`` moved by ``offset`` steps of its schema, inside bounds and on the step grid."""
    if offset == 0 or isinstance(value, bool):
        return value
    lo = spec.min if spec.min is not None else -math.inf
    hi = spec.max if spec.max is not None else math.inf
    if spec.step:
        step = float(spec.step)
    elif spec.type == "int":
        step = 1.0
    elif math.isfinite(lo) and math.isfinite(hi):
        step = (hi - lo) / 20.0
    else:
        step = abs(float(value)) * 0.1 or 0.1
    anchor = spec.min if (spec.step and spec.min is not None) else float(value)
    target = float(value) + offset * step
    if spec.step:
        target = anchor + round((target - anchor) / step) * step
        while target > hi:
            target -= step
        while target < lo:
            target += step
    target = min(max(target, lo), hi)
    if spec.type == "int":
        return int(round(target))
    return round(target, 10)


def _evidence_value(value: float | bool | None) -> float | bool | None:
    if value is None or isinstance(value, bool):
        return value
    return float(value) if math.isfinite(value) else None


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively (documents are JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_note(**parts: Any) -> str:
    return "; ".join(f"{k}={v}" for k, v in parts.items() if v not in ("", None))
