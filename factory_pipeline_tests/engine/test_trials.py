"""Tests of the trial ledger: idempotent recording, counting, variance, atomic batches."""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from factory_pipeline.engine import trials as trials_module
from factory_pipeline.engine.robustness import deflated_sharpe_ratio, sharpe_ratios
from factory_pipeline.engine.trials import Trial, TrialLedger, hash_config
from factory_pipeline.errors import StoreError
from factory_pipeline.store import Store

START_MS = 1_700_000_000_000
END_MS = 1_700_360_000_000


def _trial(i: int, *, family: str = "sma_cross_1h", symbol: str | None = "BTCUSDT", **kw) -> Trial:
    fields = {
        "family": family,
        "config_hash": hash_config({"fast": 5 * (i + 1), "slow": 100}),
        "sharpe": 0.01 * i - 0.02,
        "n_periods": 1000,
        "data_start_ms": START_MS,
        "data_end_ms": END_MS,
        "symbol": symbol,
        "detail": {"fast": 5 * (i + 1), "slow": 100},
    }
    fields.update(kw)
    return Trial(**fields)


@pytest.fixture
def ledger() -> TrialLedger:
    return TrialLedger(Store(":memory:"))


def test_recording_twice_counts_once(ledger: TrialLedger) -> None:
    batch = [_trial(i) for i in range(5)]
    assert ledger.record(batch) == 5
    assert ledger.record(batch) == 0
    assert ledger.record(reversed(batch)) == 0
    assert ledger.count() == 5
    assert ledger.record([_trial(5)]) == 1
    assert ledger.count() == 6
    # duplicates inside one batch are one trial too
    assert ledger.record([_trial(9), _trial(9)]) == 1
    assert ledger.count() == 7


def test_trial_id_is_stable_and_covers_family_config_symbol_and_range() -> None:
    base = _trial(0)
    assert base.trial_id == _trial(0).trial_id
    assert base.trial_id.startswith("trial-")
    # the measured outcome is not part of the identity
    assert dataclasses.replace(base, sharpe=1.0, n_periods=5).trial_id == base.trial_id
    assert dataclasses.replace(base, data_start_ms=np.int64(START_MS)).trial_id == base.trial_id
    variants = [
        dataclasses.replace(base, family="other"),
        dataclasses.replace(base, config_hash="cfg-x"),
        dataclasses.replace(base, symbol="ETHUSDT"),
        dataclasses.replace(base, symbol=None),
        dataclasses.replace(base, data_start_ms=START_MS + 1),
        dataclasses.replace(base, data_end_ms=END_MS + 1),
    ]
    ids = {base.trial_id, *(v.trial_id for v in variants)}
    assert len(ids) == 1 + len(variants)


def test_hash_config_ignores_key_order() -> None:
    assert hash_config({"a": 1, "b": [1, 2]}) == hash_config({"b": [1, 2], "a": 1})
    assert hash_config({"a": 1}) != hash_config({"a": 2})
    with pytest.raises(StoreError, match="JSON"):
        hash_config({"a": object()})


def test_counts_by_family_and_symbol(ledger: TrialLedger) -> None:
    ledger.record([_trial(i) for i in range(4)])
    ledger.record([_trial(i, symbol="ETHUSDT") for i in range(3)])
    ledger.record([_trial(i, family="breakout_4h") for i in range(2)])
    assert ledger.count() == 9
    assert ledger.count("sma_cross_1h") == 7
    assert ledger.count("sma_cross_1h", symbol="ETHUSDT") == 3
    assert ledger.count(symbol="BTCUSDT") == 6
    assert ledger.count("breakout_4h") == 2
    assert ledger.count("unknown") == 0


def test_sharpe_variance_skips_undefined_sharpes_but_counts_them(ledger: TrialLedger) -> None:
    sharpes = [0.05, -0.01, 0.02, 0.11, 0.0]
    ledger.record(
        [_trial(i, sharpe=s) for i, s in enumerate(sharpes)] + [_trial(99, sharpe=math.nan)]
    )
    stats = ledger.stats("sma_cross_1h")
    assert stats.n_trials == 6 and ledger.count() == 6
    assert stats.n_with_sharpe == 5
    assert ledger.sharpe_variance() == pytest.approx(statistics.variance(sharpes), rel=1e-12)
    assert stats.sharpe_mean == pytest.approx(statistics.fmean(sharpes), rel=1e-12)
    assert stats.sharpe_max == 0.11
    assert math.isnan(ledger.sharpe_variance("breakout_4h"))  # no trials
    ledger.record([_trial(0, family="single")])
    assert ledger.count("single") == 1 and math.isnan(ledger.sharpe_variance("single"))
    undefined = [t for t in ledger.trials() if math.isnan(t.sharpe)]
    assert len(undefined) == 1


def test_rerecording_updates_outcome_and_keeps_first_timestamp(ledger: TrialLedger) -> None:
    ledger.record([_trial(1, sharpe=0.1)])
    with ledger.store.connect() as con:
        first = con.execute("SELECT created_at FROM trial_ledger").fetchone()[0]
    ledger.record([_trial(1, sharpe=0.2, detail={"engine": "v2"})])
    with ledger.store.connect() as con:
        rows = con.execute("SELECT created_at, sharpe FROM trial_ledger").fetchall()
    assert rows == [(first, 0.2)]
    assert ledger.trials()[0].detail == {"engine": "v2"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"sharpe": math.inf}, "sharpe must be finite or NaN"),
        ({"sharpe": "0.1"}, "sharpe must be a number"),
        ({"family": ""}, "family must be a non-empty string"),
        ({"config_hash": None}, "config_hash must be a non-empty string"),
        ({"symbol": 7}, "symbol must be a string or None"),
        ({"n_periods": -1}, "n_periods must be in"),
        ({"n_periods": 2**31}, "n_periods must be in"),
        ({"n_periods": 10.0}, "n_periods must be an integer"),
        ({"data_end_ms": START_MS - 1}, "data_end_ms .* is before data_start_ms"),
        ({"detail": {"x": object()}}, "detail is not JSON-serializable"),
        ({"detail": {"x": math.nan}}, "detail is not JSON-serializable"),
    ],
)
def test_bad_trial_rejects_the_whole_batch(ledger: TrialLedger, bad: dict, message: str) -> None:
    ledger.record([_trial(0)])
    batch = [_trial(1), _trial(2), _trial(3, **bad), _trial(4)]
    with pytest.raises(StoreError, match=message) as info:
        ledger.record(batch)
    assert "trial #2" in str(info.value)
    assert ledger.count() == 1


def test_non_trial_in_batch_is_rejected(ledger: TrialLedger) -> None:
    with pytest.raises(StoreError, match="trial #1: expected a Trial, got dict"):
        ledger.record([_trial(0), {"family": "x"}])  # type: ignore[list-item]
    assert ledger.count() == 0


def test_database_failure_mid_batch_rolls_back(
    ledger: TrialLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the rows were inserted inside the transaction leaves nothing behind."""
    ledger.record([_trial(0)])
    failing_sql = trials_module._UPSERT_SQL + ";\nSELECT error('disk full');"
    monkeypatch.setattr(trials_module, "_UPSERT_SQL", failing_sql)
    with pytest.raises(StoreError, match="disk full"):
        ledger.record([_trial(i) for i in range(1, 6)])
    assert ledger.count() == 1
    monkeypatch.undo()
    assert ledger.record([_trial(i) for i in range(1, 6)]) == 5


def test_file_store_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "factory.duckdb"
    written = [_trial(i) for i in range(3)] + [_trial(7, symbol=None, system_id="sys-1")]
    TrialLedger(Store(path)).record(written)
    reread = TrialLedger(Store(path)).trials()
    assert sorted(reread, key=lambda t: t.trial_id) == sorted(written, key=lambda t: t.trial_id)


def test_ledger_supplies_the_dsr_inputs(ledger: TrialLedger) -> None:
    """A sweep recorded in the ledger deflates its best config by N and Var[SR] of the sweep."""
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0002, 0.01, size=(1500, 40))
    sweep_sharpes = sharpe_ratios(returns)
    ledger.record(
        _trial(j, sharpe=float(sweep_sharpes[j]), n_periods=1500) for j in range(returns.shape[1])
    )
    best = int(np.argmax(sweep_sharpes))
    dsr = deflated_sharpe_ratio(returns[:, best], ledger.count(), ledger.sharpe_variance())
    expected = deflated_sharpe_ratio(returns[:, best], 40, float(np.var(sweep_sharpes, ddof=1)))
    assert dsr == pytest.approx(expected, rel=1e-9)
    assert ledger.count() == 40
