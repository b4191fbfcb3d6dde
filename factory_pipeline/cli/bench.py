"""``factory bench``: run suites, print a table per suite, optionally write flat JSON."""

from __future__ import annotations

import importlib
import json
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path

from factory_pipeline.bench import SUITES
from factory_pipeline.errors import ConfigError


def run_benchmarks(
    suites: Sequence[str], *, json_path: str | None = None, quick: bool = False
) -> int:
    chosen = list(suites) or list(SUITES)
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        raise ConfigError(
            f"unknown bench suite(s) {', '.join(unknown)}; known: {', '.join(SUITES)}"
        )
    figures: dict[str, float] = {}
    missed = 0
    for name in chosen:
        module = importlib.import_module(f"factory_pipeline.bench.{name}")
        print(f"== bench suite '{name}'{' (quick)' if quick else ''} ==", flush=True)
        started = time.perf_counter()
        result = module.run(quick=quick)
        targets = getattr(module, "TARGETS", {})
        missed += _print_table(result, targets)
        print(f"   ({time.perf_counter() - started:.1f} s)\n", flush=True)
        figures.update({f"{name}.{k}": float(v) for k, v in result.items()})
    if json_path:
        payload = {**figures, "machine": platform.machine(), "python": platform.python_version()}
        Path(json_path).write_text(json.dumps(payload, indent=2, sort_keys=True))
        print(f"wrote {json_path}")
    if missed:
        print(f"{missed} figure(s) missed their target")
    return 0


def _print_table(result: dict[str, float], targets: dict[str, tuple[str, float]]) -> int:
    width = max((len(k) for k in result), default=10)
    missed = 0
    print(f"   {'figure':<{width}}  {'value':>16}  target")
    for key, value in result.items():
        target = targets.get(key)
        mark = ""
        if target is not None:
            op, bound = target
            ok = value >= bound if op == ">=" else value <= bound
            mark = f"{op} {_fmt(bound)}  {'ok' if ok else 'MISSED'}"
            missed += 0 if ok else 1
        print(f"   {key:<{width}}  {_fmt(value):>16}  {mark}")
    return missed


def _fmt(value: float) -> str:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if abs(value) >= 1e5:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.4g}"
