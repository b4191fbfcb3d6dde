"""run_bar_close against the local exchange through the real gateway and pybit: decisions and
orders, forecasts, idempotent re-runs, refusal of a changed spec, no lookahead, stale data."""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import numpy as np
import pytest

from factory_pipeline.demo.decisions import FLAT, SignalWindow, decide_at
from factory_pipeline.demo.runner import (
    RunnerCache,
    _latest_forecast,
    _latest_forecasts,
    previous_state,
    run_bar_close,
    store_frame_loader,
)
from factory_pipeline.exchange.local import LocalExchangeState, run_local_exchange
from factory_pipeline.exchange.local.state import LOCAL_API_KEY, LOCAL_API_SECRET
from factory_pipeline.promotion import apply_human_command, store_systems
from factory_pipeline.schemas import ForecastDoc, SystemStatus
from factory_pipeline.settings import FactorySettings
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline.strategy.signals import compile_system
from factory_pipeline.strategy.systems import to_system_doc
from factory_pipeline.trading import RiskLimits, build_gateway, order_link_id

from .conftest import rsi_time_stop_spec, sma_cross_spec

pytestmark = pytest.mark.integration

BAR = 900_000
LIMITS = RiskLimits(
    max_order_notional_usdt=25_000.0,
    max_system_notional_usdt=50_000.0,
    max_total_notional_usdt=100_000.0,
    max_leverage=5.0,
    max_open_positions=40,
    max_daily_loss_system_usdt=2_500.0,
    max_daily_loss_total_usdt=5_000.0,
    max_stale_bars=3,
    max_consecutive_venue_errors=10,
)


@pytest.fixture()
def store(market_db, tmp_path):
    path = tmp_path / "factory.duckdb"
    shutil.copyfile(market_db, path)
    return Store(path)


def put_in_demo(store: Store, library, *specs) -> list[str]:
    """Store systems and move them to demo with an audited human command."""
    docs = DocumentStore(store)
    system_docs = [to_system_doc(spec, library) for spec in specs]
    store_systems(docs, system_docs)
    for doc in system_docs:
        apply_human_command(
            docs, doc.id, SystemStatus.DEMO, actor="test", reason="runner test", policy_hash="t"
        )
    return [doc.id for doc in system_docs]


@contextmanager
def venue(store: Store, tmp_path, clock_ms: int):
    """The local exchange on the store's prices and a gateway to it, both on one shared DuckDB
    connection (as the replay runs them)."""
    with store.pinned() as fast:
        state = LocalExchangeState()
        state.use_store(fast, "15m", refresh_s=1e9)
        state.add_account(LOCAL_API_KEY, LOCAL_API_SECRET, usdt=100_000.0)
        state.set_time(clock_ms)
        with run_local_exchange(state, port=0) as server:
            gateway = build_gateway(
                FactorySettings(data_dir=tmp_path), fast, stage="demo", base_url=server.url,
                limits=LIMITS, clock_ms=state.clock, fill_wait_s=0.5,
            )  # fmt: skip
            yield state, gateway


def first_entry_close(library, spec, frame, after: int = 1200) -> int:
    """Close time of the first bar after ``after`` where the system would enter from flat."""
    window = SignalWindow.compute(compile_system(spec, library), frame)
    for i in range(after, len(frame) - 2):
        if decide_at(window, i, FLAT, 10_000.0, with_features=False).action == "enter":
            return int(frame.close_time[i])
    raise AssertionError("no entry in the test data")


def test_a_bar_close_enters_logs_a_forecast_and_a_rerun_sends_nothing(
    store, library, btc_frame, tmp_path
):
    spec = sma_cross_spec()
    (system_id,) = put_in_demo(store, library, spec)
    t = first_entry_close(library, spec, btc_frame)
    with venue(store, tmp_path, t) as (state, gateway):
        report = run_bar_close(store, gateway, bar_close_ms=t, library=library)
        creates = len(state.requests_to("/v5/order/create"))
        assert report.refused == {} and report.skipped == []
        (result,) = report.results
        assert result.action == "enter" and result.statuses == ("filled",)
        assert result.orders == (order_link_id(system_id, "BTCUSDT", t, "entry"),)
        position = gateway.system_position(system_id, "BTCUSDT")
        assert position != 0.0

        again = run_bar_close(store, gateway, bar_close_ms=t, library=library)
        assert again.results[0].orders == result.orders
        assert again.results[0].statuses == ("logged",)
        assert len(state.requests_to("/v5/order/create")) == creates  # nothing new sent
        assert gateway.system_position(system_id, "BTCUSDT") == position

    forecasts = DocumentStore(store).list(ForecastDoc, {"system_id": system_id})
    assert len(forecasts) == 1  # replaced, not duplicated
    doc = forecasts[0]
    i = int(np.searchsorted(btc_frame.close_time, t))
    assert doc.action == "enter" and doc.orders == list(result.orders)
    assert doc.features["close"] == float(btc_frame.close[i])
    assert doc.spec_hash == spec_hash_of(store, system_id)
    assert doc.features["state.side"] == np.sign(position)
    assert doc.provenance.system_ids == [system_id]


def spec_hash_of(store: Store, system_id: str) -> str:
    from factory_pipeline.schemas import SystemDoc

    return DocumentStore(store).get(SystemDoc, system_id).spec_hash


def test_the_position_is_fed_back_and_later_bars_manage_it(store, library, btc_frame, tmp_path):
    spec = sma_cross_spec()
    (system_id,) = put_in_demo(store, library, spec)
    t = first_entry_close(library, spec, btc_frame)
    cache = RunnerCache()
    with venue(store, tmp_path, t) as (state, gateway):
        actions = []
        for k in range(40):
            close = t + k * BAR
            state.advance_to(close)
            gateway.sync_fills()
            report = run_bar_close(store, gateway, bar_close_ms=close, library=library, cache=cache)
            actions.append(report.results[0].action)
        assert actions[0] == "enter"
        assert "hold" in actions  # the position was seen at the next bars
        state_now = previous_state(DocumentStore(store), system_id, "BTCUSDT", close + BAR)
        assert state_now.side * state_now.qty == pytest.approx(
            gateway.system_position(system_id, "BTCUSDT")
        )
        assert gateway.reconcile().clean
    # the runner's one-query read of the latest forecasts equals the per-system read
    docs = DocumentStore(store)
    key = (system_id, "BTCUSDT")
    for before in (t, t + BAR, t + 7 * BAR, close, close + BAR):
        batch = _latest_forecasts(docs, [key], before)
        assert batch.get(key) == _latest_forecast(docs, *key, before)
    assert _latest_forecasts(docs, [key], t + 3 * BAR)[key].decision_time.timestamp() * 1000 == (
        t + 2 * BAR
    )


def test_a_system_whose_spec_hash_changed_is_refused_and_never_traded(
    store, library, btc_frame, tmp_path
):
    spec = sma_cross_spec()
    (system_id,) = put_in_demo(store, library, spec)
    t = first_entry_close(library, spec, btc_frame)
    changed = dict(library)
    module = changed["entry_sma_cross"]
    changed["entry_sma_cross"] = module.model_copy(
        update={"logic": {**module.logic, "long": "crosses_above(close, sma(close, slow))"}}
    )
    with venue(store, tmp_path, t) as (state, gateway):
        report = run_bar_close(store, gateway, bar_close_ms=t, library=changed)
        assert "spec hash mismatch" in report.refused[system_id]
        assert report.results == []
        assert state.requests_to("/v5/order/create") == []
    assert DocumentStore(store).list(ForecastDoc, {"system_id": system_id}) == []


def test_only_closed_bars_are_loaded_and_stale_data_decides_nothing(
    store, library, btc_frame, tmp_path
):
    spec = rsi_time_stop_spec()  # two symbols: one decision each
    put_in_demo(store, library, spec)
    seen: list[tuple[str, int, int]] = []
    loader = store_frame_loader(MarketStore(store))

    def spy(symbol, timeframe, bar_close_ms, n_bars):
        frame = loader(symbol, timeframe, bar_close_ms, n_bars)
        seen.append((symbol, bar_close_ms, int(frame.close_time.max())))
        return frame

    t = int(btc_frame.close_time[2000])
    with venue(store, tmp_path, t) as (_, gateway):
        report = run_bar_close(
            store, gateway, bar_close_ms=t, library=library, cache=RunnerCache(frame_loader=spy)
        )
        assert sorted(r.symbol for r in report.results) == ["BTCUSDT", "ETHUSDT"]
        assert seen and all(last == close for _, close, last in seen)  # nothing after the close
        beyond = int(btc_frame.close_time[-1]) + 4 * BAR
        stale = run_bar_close(store, gateway, bar_close_ms=beyond, library=library)
        assert stale.results == [] and len(stale.skipped) == 2
        assert "stale data" in stale.skipped[0][2]


def test_systems_of_another_timeframe_are_left_to_their_schedule(
    store, library, btc_frame, tmp_path
):
    put_in_demo(store, library, sma_cross_spec())
    t = int(btc_frame.close_time[2000])
    with venue(store, tmp_path, t) as (_, gateway):
        assert (
            run_bar_close(store, gateway, bar_close_ms=t, timeframe="1h", library=library).results
            == []
        )
        assert (
            len(
                run_bar_close(
                    store, gateway, bar_close_ms=t, timeframe="15m", library=library
                ).results
            )
            == 1
        )
