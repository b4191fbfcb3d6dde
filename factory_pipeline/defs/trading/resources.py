"""The trading venue and gateway as a Dagster resource, built from the factory settings.

Why a resource of its own: the runner needs, for the duration of one run, a venue and the one
order gateway in front of it. With ``exchange = "local"`` (the embedded default) the local
Bybit-compatible exchange is started in-process on the market store's prices, with its state
persisted next to the DuckDB file (the same snapshot the replay uses, so a scheduled run
continues where the replay stopped); with ``"bybit_demo"`` the gateway talks to the demo host
with the BYBIT_DEMO_* keys. Live keys are refused by trading.build_gateway in the demo stage.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import SecretStr

from factory_pipeline.errors import ConfigError
from factory_pipeline.promotion import PromotionPolicy, default_policy_path, load_policy
from factory_pipeline.settings import FactorySettings, default_settings
from factory_pipeline.store import Store

#: Resource key of the trading assets, schedule and sensor.
TRADING_RESOURCE_KEY = "trading"


class TradingResource(dg.ConfigurableResource):
    """Venue (``local`` / ``bybit_demo``), base timeframe, local-exchange snapshot and the
    promotion policy file the daily evaluation applies."""

    venue: str = "local"
    base_timeframe: str = "15m"
    local_snapshot_path: str = ""
    policy_path: str = ""
    data_dir: str = ""
    demo_api_key: str | None = None
    demo_api_secret: str | None = None

    def policy(self) -> PromotionPolicy:
        """The human-owned promotion policy (ConfigError naming the file when invalid)."""
        return load_policy(Path(self.policy_path) if self.policy_path else default_policy_path())

    def settings(self) -> FactorySettings:
        update: dict[str, Any] = {"exchange": self.venue, "base_timeframe": self.base_timeframe}
        if self.data_dir:
            update["data_dir"] = Path(self.data_dir)
        if self.demo_api_key:
            update["bybit_demo_api_key"] = SecretStr(self.demo_api_key)
        if self.demo_api_secret:
            update["bybit_demo_api_secret"] = SecretStr(self.demo_api_secret)
        return default_settings().model_copy(update=update)

    @contextmanager
    def open_gateway(self, store: Store, *, clock_ms: int | None = None) -> Iterator[Any]:
        """An OrderGateway for the demo stage, valid inside the ``with`` block.

        Local venue: the exchange runs in-process for the block, on ``store``'s prices, its
        clock advanced to ``clock_ms`` (the bar close being traded) when it is behind; its state
        is saved on exit. Fills are synced and the venue reconciled with the store before the
        block is entered (and the runner reconciles again after its bar close).
        """
        from factory_pipeline.trading import build_gateway

        settings = self.settings()
        if self.venue == "bybit_demo":
            gateway = build_gateway(settings, store, stage="demo")
            gateway.sync_fills()
            gateway.reconcile()  # at start: adopt the venue's state before deciding
            yield gateway
            return
        if self.venue != "local":
            raise ConfigError(
                f"trading venue {self.venue!r}: the demo runner trades on 'local' or 'bybit_demo'"
            )
        from factory_pipeline.exchange.local import LocalExchangeState, run_local_exchange
        from factory_pipeline.exchange.local.state import LOCAL_API_KEY, LOCAL_API_SECRET

        snapshot = self.local_snapshot_path or f"{store.path}.local_exchange.json"
        state = (
            LocalExchangeState.open(snapshot) if store.path != ":memory:" else LocalExchangeState()
        )
        state.use_store(store, self.base_timeframe)
        state.add_account(LOCAL_API_KEY, LOCAL_API_SECRET)
        if clock_ms is not None and state.clock() < clock_ms:
            state.advance_to(clock_ms)
        try:
            with run_local_exchange(state, port=0) as server:
                gateway = build_gateway(settings, store, stage="demo", base_url=server.url)
                gateway.clock_ms = state.clock
                gateway.sync_fills()
                gateway.reconcile()  # at start: adopt the venue's state before deciding
                yield gateway
        finally:
            state.save_if_dirty()


def trading_resource(settings: FactorySettings | None = None) -> TradingResource:
    """The trading resource of ``settings`` (the environment's by default); demo secrets are
    EnvVar references, resolved at run time and never shown."""
    s = settings or default_settings()
    return TradingResource(
        venue=s.exchange,
        base_timeframe=s.base_timeframe,
        policy_path=str(default_policy_path(s)),
        data_dir=str(s.data_dir),
        demo_api_key=dg.EnvVar("BYBIT_DEMO_API_KEY")
        if os.environ.get("BYBIT_DEMO_API_KEY")
        else None,
        demo_api_secret=(
            dg.EnvVar("BYBIT_DEMO_API_SECRET") if os.environ.get("BYBIT_DEMO_API_SECRET") else None
        ),
    )
