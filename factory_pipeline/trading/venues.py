"""Building the gateway for a stage: credentials and hosts decide the venue, never a flag alone.

Why: a demo run must never be able to place a real order. Each stage accepts only its own
credentials and hosts:

- ``settings.exchange == "local"``: the local exchange at ``base_url`` (required: the URL of the
  running :func:`factory_pipeline.exchange.local.run_local_exchange` server, loopback only),
  with the local exchange's default account keys (``LOCAL_API_KEY`` / ``LOCAL_API_SECRET`` of
  ``factory_pipeline.exchange.local.state``) unless explicit keys are given.
- ``"bybit_demo"``: ``https://api-demo.bybit.com`` (or a loopback ``base_url`` in tests) with
  ``BYBIT_DEMO_API_KEY`` / ``BYBIT_DEMO_API_SECRET``.
- ``"bybit_live"`` only in the ``live_test`` stage, with ``BYBIT_LIVE_*`` keys and the mainnet
  host.

The demo stage refuses: the ``bybit_live`` exchange, the live host, and a key equal to the live
key. The live_test stage refuses the demo host and demo keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from factory_pipeline.errors import ConfigError
from factory_pipeline.settings import FactorySettings
from factory_pipeline.store.db import Store
from factory_pipeline.trading.broker import PybitBroker
from factory_pipeline.trading.gateway import OrderGateway
from factory_pipeline.trading.killswitch import KillSwitch
from factory_pipeline.trading.risk import RiskLimits, default_limits_path, load_risk_limits

DEMO_HOST = "api-demo.bybit.com"
LIVE_HOSTS = frozenset({"api.bybit.com", "api.bytick.com", "api.bybit.nl", "api.bybit.eu"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

Stage = Literal["demo", "live_test"]


def build_gateway(
    settings: FactorySettings,
    store: Store,
    *,
    stage: Stage = "demo",
    base_url: str | None = None,
    limits: RiskLimits | None = None,
    limits_path: str | Path | None = None,
    api_key: str | None = None,
    api_secret: str | None = None,
    timeout_s: float = 5.0,
    **gateway_options: object,
) -> OrderGateway:
    """An :class:`OrderGateway` for ``settings.exchange`` in ``stage`` (see module doc).

    Risk limits: ``limits`` if given, else ``limits_path``, else ``<data_dir>/policy/
    risk_limits.yaml`` (the repository's file when the data dir has none). Raises
    :class:`ConfigError` for a missing URL or key, a wrong host or a key of another stage.
    """
    url, key, secret = resolve_venue(
        settings, stage=stage, base_url=base_url, api_key=api_key, api_secret=api_secret
    )
    if limits is None:
        limits = load_risk_limits(limits_path or default_limits_path(settings))
    broker = PybitBroker(base_url=url, api_key=key, api_secret=secret, timeout_s=timeout_s)
    kill_switch = KillSwitch(store)
    gateway = OrderGateway(
        broker,
        store,
        limits=limits,
        kill_switch=kill_switch,
        venue=f"{settings.exchange}@{urlsplit(url).hostname}",
        **gateway_options,  # type: ignore[arg-type]
    )
    kill_switch.clock_ms = lambda: gateway.clock_ms()
    return gateway


def resolve_venue(
    settings: FactorySettings,
    *,
    stage: Stage,
    base_url: str | None = None,
    api_key: str | None = None,
    api_secret: str | None = None,
) -> tuple[str, str, str]:
    """(base URL, api key, api secret) for the stage, after every separation check."""
    if stage not in ("demo", "live_test"):
        raise ConfigError(f"stage {stage!r} must be 'demo' or 'live_test'")
    live_key = _secret(settings.bybit_live_api_key)
    demo_key = _secret(settings.bybit_demo_api_key)
    exchange = settings.exchange
    if stage == "demo":
        if exchange == "bybit_live":
            raise ConfigError(
                "FACTORY_EXCHANGE=bybit_live is refused in the demo stage (use local or bybit_demo)"
            )
        if exchange == "local":
            if not base_url:
                raise ConfigError(
                    "exchange 'local' needs base_url: the URL of the running local exchange"
                )
            _require_host(base_url, _LOOPBACK, "the local exchange (loopback only)")
            if api_key is None or api_secret is None:
                from factory_pipeline.exchange.local.state import LOCAL_API_KEY, LOCAL_API_SECRET

                api_key, api_secret = LOCAL_API_KEY, LOCAL_API_SECRET
        else:  # bybit_demo
            url = base_url or f"https://{DEMO_HOST}"
            _require_host(url, _LOOPBACK | {DEMO_HOST}, "the Bybit demo host")
            base_url = url
            api_key = api_key or demo_key
            api_secret = api_secret or _secret(settings.bybit_demo_api_secret)
            if not api_key or not api_secret:
                raise ConfigError(
                    "exchange 'bybit_demo' needs BYBIT_DEMO_API_KEY and BYBIT_DEMO_API_SECRET"
                )
        if live_key and api_key == live_key:
            raise ConfigError("the demo stage refuses the live API key (BYBIT_LIVE_API_KEY)")
        if _host(base_url) in LIVE_HOSTS:
            raise ConfigError(f"the demo stage refuses the live host {_host(base_url)}")
        return base_url.rstrip("/"), api_key, api_secret
    # live_test
    if exchange != "bybit_live":
        raise ConfigError(f"the live_test stage needs FACTORY_EXCHANGE=bybit_live (got {exchange})")
    url = base_url or "https://api.bybit.com"
    if _host(url) == DEMO_HOST or _host(url) in _LOOPBACK:
        raise ConfigError(f"the live_test stage refuses the host {_host(url)}")
    _require_host(url, LIVE_HOSTS, "a Bybit mainnet host")
    api_key = api_key or live_key
    api_secret = api_secret or _secret(settings.bybit_live_api_secret)
    if not api_key or not api_secret:
        raise ConfigError("the live_test stage needs BYBIT_LIVE_API_KEY and BYBIT_LIVE_API_SECRET")
    if demo_key and api_key == demo_key:
        raise ConfigError("the live_test stage refuses the demo API key (BYBIT_DEMO_API_KEY)")
    return url.rstrip("/"), api_key, api_secret


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _require_host(url: str, allowed: frozenset[str] | set[str], what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"venue URL {url!r} is not an http(s) URL")
    if parts.hostname.lower() not in allowed:
        raise ConfigError(f"venue URL {url!r}: host {parts.hostname} is not {what}")


def _secret(value: object) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    text = getter() if getter else str(value)
    return text or None
