"""A bounded, thread-safe LRU cache of indicator arrays, sized by bytes.

A parameter sweep evaluates the same sub-expressions (``sma(close, 20)``) under many
configurations; keeping their arrays avoids recomputing them. The compiler builds the keys as
``(symbol, timeframe, data_id, canonical sub-expression with parameter values substituted)``.
``data_id`` is a content digest of the base frame, so a truncated or perturbed frame (the
lookahead audit) can never be served another frame's results.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

#: Default budget: enough for ~30 float64 series of 1M bars.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class CacheStats:
    """Counters since construction (or the last ``clear``)."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int


class IndicatorCache:
    """LRU mapping from keys to numpy arrays, evicting least recently used entries once the
    stored arrays exceed ``max_bytes``. Arrays larger than the whole budget are not stored.
    Stored arrays are shared: callers must not modify them in place."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> np.ndarray | None:
        """The array stored under ``key`` (marking it recently used), or None (a miss)."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        """Store ``value`` under ``key``, evicting old entries to stay within budget."""
        size = int(value.nbytes)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= int(old.nbytes)
            self._entries[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= int(evicted.nbytes)
                self._evictions += 1

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._hits = self._misses = self._evictions = 0

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self._hits, self._misses, self._evictions, len(self._entries), self._bytes
            )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries
