"""Restart safety (snapshot file), the store-backed embedded venue, serve() and determinism."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from pybit.exceptions import InvalidRequestError

from factory_pipeline.errors import ExchangeError
from factory_pipeline.exchange.local import (
    LOCAL_API_KEY,
    LOCAL_API_SECRET,
    LocalExchangeServer,
    LocalExchangeState,
    run_local_exchange,
    serve,
)
from factory_pipeline.store.db import Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline_tests.exchange.conftest import (
    HOUR,
    KEY,
    MAKER,
    SECRET,
    SLIPPAGE_BPS,
    SYMBOL,
    T0,
    TAKER,
    client,
    make_bars,
    new_state,
)

SLIP = SLIPPAGE_BPS * 1e-4


def _open(path: Path) -> LocalExchangeState:
    state = LocalExchangeState.open(path, slippage_bps=SLIPPAGE_BPS)
    state.load(make_bars())
    state.add_account(KEY, SECRET, usdt=10_000.0, taker_fee=TAKER, maker_fee=MAKER)
    return state


def test_restart_continues_with_the_same_orders_positions_and_wallet(tmp_path: Path) -> None:
    path = tmp_path / "exchange" / "state.json"
    first = _open(path)
    first.set_time(T0 + HOUR)
    with run_local_exchange(first) as server:
        session = client(server)
        session.place_order(
            category="linear",
            symbol=SYMBOL,
            side="Buy",
            orderType="Market",
            qty="2",
            orderLinkId="run1-entry",
        )
        session.place_order(
            category="linear",
            symbol=SYMBOL,
            side="Sell",
            orderType="Limit",
            qty="1",
            price="101.5",
            orderLinkId="run1-tp",
            reduceOnly=True,
        )
        before_position = session.get_positions(category="linear", symbol=SYMBOL)["result"]
        before_wallet = session.get_wallet_balance(accountType="UNIFIED")["result"]
    assert path.exists() and not path.with_name("state.json.tmp").exists()

    second = _open(path)  # a new process would do exactly this
    assert second.now_ms == T0 + HOUR
    assert second.accounts[KEY].cash == pytest.approx(10_000 - 2 * 100 * (1 + SLIP) * TAKER)
    with run_local_exchange(second) as server:
        session = client(server)
        assert session.get_positions(category="linear", symbol=SYMBOL)["result"] == before_position
        wallet = session.get_wallet_balance(accountType="UNIFIED")["result"]
        assert wallet == before_wallet
        [resting] = session.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"]
        assert resting["orderLinkId"] == "run1-tp"
        with pytest.raises(InvalidRequestError) as info:
            session.place_order(
                category="linear",
                symbol=SYMBOL,
                side="Buy",
                orderType="Market",
                qty="2",
                orderLinkId="run1-entry",
            )
        assert info.value.status_code == 110072  # ids survive the restart
        second.advance_to(T0 + 2 * HOUR)  # bar 1 high 102 crosses 101.5
        position = session.get_positions(category="linear", symbol=SYMBOL)["result"]["list"][0]
        assert float(position["size"]) == 1.0
    third = _open(path)
    assert abs(third.accounts[KEY].positions[SYMBOL].size) == 1.0  # the fill was saved too
    ids = [o.order_id for o in third.accounts[KEY].orders.values()]
    assert len(set(ids)) == len(ids) == 2
    new_id, _ = third.next_id("order")
    assert new_id not in ids  # id sequence continues


def test_corrupt_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(ExchangeError, match=str(path)):
        LocalExchangeState.open(path)
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(ExchangeError, match="version 99"):
        LocalExchangeState.open(path)


def test_store_backed_venue_fills_at_store_prices(tmp_path: Path) -> None:
    store = Store(tmp_path / "factory.duckdb")
    try:
        MarketStore(store).write_batch(make_bars())
        state = LocalExchangeState(now_ms=T0 + 3 * HOUR, slippage_bps=SLIPPAGE_BPS)
        state.use_store(store, "1h")
        state.add_account(KEY, SECRET)
        with run_local_exchange(state) as server:
            session = client(server)
            info = session.get_instruments_info(category="linear")["result"]["list"]
            assert [i["symbol"] for i in info] == [SYMBOL]
            session.place_order(
                category="linear", symbol=SYMBOL, side="Sell", orderType="Market", qty="1"
            )
            [fill] = session.get_executions(category="linear")["result"]["list"]
            assert float(fill["execPrice"]) == pytest.approx(102.0 * (1 - SLIP))  # bar 3 open
            ticker = session.get_tickers(category="linear", symbol=SYMBOL)["result"]["list"][0]
            assert float(ticker["lastPrice"]) == 102.0  # bar 2 close
            klines = session.get_kline(
                category="linear", symbol=SYMBOL, interval="60", start=T0, end=T0 + 2 * HOUR
            )["result"]["list"]
            assert [float(k[1]) for k in klines] == [101.0, 100.0, 100.0]  # newest first
    finally:
        store.close()


def test_serve_runs_in_the_foreground_until_stopped(tmp_path: Path) -> None:
    stop = threading.Event()
    ready: list[LocalExchangeServer] = []

    def on_ready(server: LocalExchangeServer) -> None:
        ready.append(server)
        session = client(server, key=LOCAL_API_KEY, secret=LOCAL_API_SECRET)
        server.state.set_time(T0 + HOUR)
        session.place_order(
            category="linear", symbol=SYMBOL, side="Buy", orderType="Market", qty="1"
        )
        stop.set()

    snapshot = tmp_path / "exchange" / "state.json"
    serve(snapshot=snapshot, port=0, batches=[make_bars()], stop_event=stop, on_ready=on_ready)
    assert ready
    saved = json.loads(snapshot.read_text())
    [account] = saved["accounts"]
    assert account["api_key"] == LOCAL_API_KEY and len(account["orders"]) == 1


def _run_script(state: LocalExchangeState) -> list[dict]:
    with run_local_exchange(state) as server:
        session = client(server)
        session.place_order(
            category="linear",
            symbol=SYMBOL,
            side="Buy",
            orderType="Market",
            qty="1",
            stopLoss="97.5",
            orderLinkId="a",
        )
        session.place_order(
            category="linear",
            symbol=SYMBOL,
            side="Buy",
            orderType="Limit",
            qty="1",
            price="99.6",
            orderLinkId="b",
        )
        state.advance_to(T0 + 6 * HOUR)
        return session.get_executions(category="linear")["result"]["list"]


def test_same_inputs_same_executions() -> None:
    first, second = _run_script(new_state()), _run_script(new_state())
    assert first == second
    assert len(first) == 3  # market fill, limit fill, stop


def test_crash_without_shutdown_replays_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    first = _open(path)
    first.set_time(T0 + HOUR)
    server = LocalExchangeServer(first).start()
    try:
        session = client(server)
        for i in range(3):
            session.place_order(
                category="linear",
                symbol=SYMBOL,
                side="Buy",
                orderType="Market",
                qty="1",
                orderLinkId=f"crash-{i}",
            )
        journal = path.with_name("state.json.journal")
        assert journal.exists()  # per-request saves went to the journal
        with journal.open("a") as handle:
            handle.write('{"now_ms": 1, "se')  # a write torn by the crash
        survivor = _open(path)  # the process died: no compaction happened
    finally:
        server.shutdown()
        server.server_close()
    account = survivor.accounts[KEY]
    assert sorted(o.order_link_id for o in account.orders.values()) == [
        "crash-0",
        "crash-1",
        "crash-2",
    ]
    assert account.positions[SYMBOL].size == 3.0
    assert len(account.executions) == 3
    assert account.cash == pytest.approx(first.accounts[KEY].cash)
    assert not path.with_name("state.json.journal").exists()  # compacted on open
    again = _open(path)
    assert len(again.accounts[KEY].executions) == 3
