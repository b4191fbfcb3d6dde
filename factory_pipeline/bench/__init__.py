"""Benchmark suites run by ``factory bench`` / ``make bench``.

Each suite is a module ``factory_pipeline.bench.<name>`` exposing
``run(quick: bool = False) -> dict[str, float]``: a flat mapping of named figures measured in one
process (so ratios against an in-process reference hold on a noisy machine), and
``TARGETS: dict[str, tuple[str, float]]`` mapping figure -> (">=" or "<=", target) for the table.
"""

from __future__ import annotations

SUITES: tuple[str, ...] = ("market", "engine", "knowledge", "factory", "trading")
