"""Timeframe names and their lengths.

Timeframes are written the way traders and Bybit exports write them: ``1m``, ``15m``, ``1h``,
``4h``, ``1d``. Internally all times are integer milliseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import re

from factory_pipeline.errors import ConfigError

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

_UNIT_MS = {"m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}
_PATTERN = re.compile(r"^(\d+)([mhdw])$")

#: Timeframes the factory knows. Ordered from shortest to longest.
SUPPORTED_TIMEFRAMES: tuple[str, ...] = (
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "12h",
    "1d",
    "1w",
)

#: Bybit kline ``interval`` codes for each timeframe.
BYBIT_INTERVALS: dict[str, str] = {
    "1m": "1",
    "3m": "3",
    "5m": "5",
    "15m": "15",
    "30m": "30",
    "1h": "60",
    "2h": "120",
    "4h": "240",
    "6h": "360",
    "12h": "720",
    "1d": "D",
    "1w": "W",
}


def timeframe_ms(timeframe: str) -> int:
    """Length of ``timeframe`` in milliseconds; raises ConfigError naming the bad value."""
    match = _PATTERN.match(timeframe.strip()) if isinstance(timeframe, str) else None
    if match is None or timeframe not in SUPPORTED_TIMEFRAMES:
        raise ConfigError(
            f"unknown timeframe {timeframe!r}; supported: {', '.join(SUPPORTED_TIMEFRAMES)}"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def is_multiple(higher: str, lower: str) -> bool:
    """True when ``higher`` is a whole multiple of ``lower`` and strictly longer."""
    h, low = timeframe_ms(higher), timeframe_ms(lower)
    return h > low and h % low == 0
