"""Typed, resolved expression tree that the compiler evaluates.

The checker (checker.py) turns the syntax tree into these nodes after resolving every name,
checking every type and expanding composite functions (Bollinger bands, MACD, Donchian, z-score)
into primitives, so evaluation needs no further validation except of parameter *values*.

Each node knows three things:
- ``key(run)``: its canonical text with parameter values substituted (``sma(close, 20)`` for
  ``sma(close, fast)`` with ``fast = 20``), used as the cache key of indicator results;
- ``warmup(run, level_ms)``: the index of the first bar whose value can be non-NaN;
- ``compute(run, timeframe)``: its values on the frame of ``timeframe``.

``run`` is the per-evaluation state defined in compiler.py (bound parameter values, frames by
timeframe, memo and cache); nodes reach sub-results only through ``run.eval`` so caching applies
uniformly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from factory_pipeline.market.frame import MarketFrame, visible_index
from factory_pipeline.market.timeframes import DAY_MS, HOUR_MS, timeframe_ms
from factory_pipeline.strategy.language.indicators import lag as lag_values
from factory_pipeline.strategy.language.nodes import format_number

Kind = Literal["number", "bool"]

#: Series computed from the bar open time (UTC) rather than stored in the frame.
TIME_SERIES = ("hour", "weekday")


class Run(Protocol):
    """What nodes need from one evaluation (implemented by compiler._Run)."""

    def eval(self, expr: Expr, timeframe: str) -> np.ndarray: ...

    def frame(self, timeframe: str) -> MarketFrame: ...

    def window(self, arg: WindowArg) -> int: ...

    def value(self, name: str, position: int) -> float | bool: ...

    def key(self, expr: Expr) -> str: ...

    def check_timeframe(self, expr: TimeframeExpr, timeframe: str) -> None: ...


class Expr:
    """Base class of resolved expression nodes."""

    kind: Kind
    position: int
    #: Results are stored in the IndicatorCache (indicators and tf() only: the rest is cheap).
    cacheable: bool = False

    def children(self) -> tuple[Expr, ...]:
        return ()

    def key(self, run: Run) -> str:
        raise NotImplementedError

    def warmup(self, run: Run, level_ms: int) -> int:
        return max((c.warmup(run, level_ms) for c in self.children()), default=0)

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        raise NotImplementedError


@dataclass(eq=False)
class SeriesExpr(Expr):
    """A per-bar series of the frame (or hour/weekday derived from the open time)."""

    name: str
    position: int
    kind: Kind = "number"

    def key(self, run: Run) -> str:
        return self.name

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        frame = run.frame(timeframe)
        if self.name == "hour":
            return ((frame.open_time // HOUR_MS) % 24).astype(np.float64)
        if self.name == "weekday":
            # 1970-01-01 was a Thursday; Monday = 0 as in Python's datetime.weekday().
            return ((frame.open_time // DAY_MS + 3) % 7).astype(np.float64)
        return frame.series(self.name)


@dataclass(eq=False)
class ConstExpr(Expr):
    """A literal number or boolean, broadcast to every bar."""

    value: float | bool
    kind: Kind
    position: int

    def key(self, run: Run) -> str:
        if self.kind == "bool":
            return "true" if self.value else "false"
        return format_number(float(self.value))

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        n = len(run.frame(timeframe))
        dtype = np.bool_ if self.kind == "bool" else np.float64
        return np.full(n, self.value, dtype=dtype)


@dataclass(eq=False)
class ParamExpr(Expr):
    """A declared module parameter, broadcast to every bar."""

    name: str
    kind: Kind
    position: int

    def key(self, run: Run) -> str:
        value = run.value(self.name, self.position)
        if self.kind == "bool":
            return "true" if value else "false"
        return format_number(float(value))

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        n = len(run.frame(timeframe))
        value = run.value(self.name, self.position)
        if self.kind == "bool":
            return np.full(n, bool(value), dtype=np.bool_)
        return np.full(n, float(value), dtype=np.float64)


@dataclass(eq=False)
class WindowArg:
    """A window length or lag: an integer literal or an int parameter (validated >= 1)."""

    literal: int | None
    param: str | None
    position: int
    what: str  # e.g. "window of sma", used in messages

    def key(self, run: Run) -> str:
        return str(run.window(self))


@dataclass(eq=False)
class ApplyExpr(Expr):
    """A primitive function applied to number inputs and window lengths."""

    name: str
    function: Callable[..., np.ndarray]
    inputs: tuple[Expr, ...]
    windows: tuple[WindowArg, ...]
    position: int
    kind: Kind = "number"
    cacheable: bool = True
    #: warm-up index of the output given the inputs' warm-up and the window lengths.
    warmup_rule: Callable[[int, tuple[int, ...]], int] = lambda w, _: w

    def children(self) -> tuple[Expr, ...]:
        return self.inputs

    def key(self, run: Run) -> str:
        parts = [run.key(e) for e in self.inputs] + [w.key(run) for w in self.windows]
        return f"{self.name}({', '.join(parts)})"

    def warmup(self, run: Run, level_ms: int) -> int:
        inner = max((e.warmup(run, level_ms) for e in self.inputs), default=0)
        return self.warmup_rule(inner, tuple(run.window(w) for w in self.windows))

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        arrays = [run.eval(e, timeframe) for e in self.inputs]
        return self.function(*arrays, *(run.window(w) for w in self.windows))


@dataclass(eq=False)
class LagExpr(Expr):
    """``lag(x, n)``: the value n bars ago; keeps the kind of ``x``."""

    operand: Expr
    window: WindowArg
    kind: Kind
    position: int

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)

    def key(self, run: Run) -> str:
        return f"lag({run.key(self.operand)}, {self.window.key(run)})"

    def warmup(self, run: Run, level_ms: int) -> int:
        return self.operand.warmup(run, level_ms) + run.window(self.window)

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        return lag_values(run.eval(self.operand, timeframe), run.window(self.window))


@dataclass(eq=False)
class ArithExpr(Expr):
    """``+ - * /`` on numbers; division by zero gives NaN."""

    op: str
    left: Expr
    right: Expr
    position: int
    kind: Kind = "number"

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def key(self, run: Run) -> str:
        return f"({run.key(self.left)} {self.op} {run.key(self.right)})"

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        a = run.eval(self.left, timeframe)
        b = run.eval(self.right, timeframe)
        with np.errstate(all="ignore"):
            if self.op == "+":
                return a + b
            if self.op == "-":
                return a - b
            if self.op == "*":
                return a * b
            out = a / b
        out[b == 0.0] = np.nan
        return out


@dataclass(eq=False)
class NegExpr(Expr):
    """Unary minus."""

    operand: Expr
    position: int
    kind: Kind = "number"

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)

    def key(self, run: Run) -> str:
        return f"(-{run.key(self.operand)})"

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        return -run.eval(self.operand, timeframe)


@dataclass(eq=False)
class CompareExpr(Expr):
    """A comparison of two numbers; False wherever either side is NaN (also for ``!=``)."""

    op: str
    left: Expr
    right: Expr
    position: int
    kind: Kind = "bool"

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def key(self, run: Run) -> str:
        return f"({run.key(self.left)} {self.op} {run.key(self.right)})"

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        a = run.eval(self.left, timeframe)
        b = run.eval(self.right, timeframe)
        with np.errstate(invalid="ignore"):
            out = _COMPARE[self.op](a, b)
        if self.op == "!=":
            out &= ~(np.isnan(a) | np.isnan(b))
        return out


@dataclass(eq=False)
class LogicExpr(Expr):
    """``and`` / ``or`` on booleans (both sides are always evaluated)."""

    op: str
    left: Expr
    right: Expr
    position: int
    kind: Kind = "bool"

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def key(self, run: Run) -> str:
        return f"({run.key(self.left)} {self.op} {run.key(self.right)})"

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        a = run.eval(self.left, timeframe)
        b = run.eval(self.right, timeframe)
        return np.logical_and(a, b) if self.op == "and" else np.logical_or(a, b)


@dataclass(eq=False)
class NotExpr(Expr):
    """``not`` on a boolean."""

    operand: Expr
    position: int
    kind: Kind = "bool"

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)

    def key(self, run: Run) -> str:
        return f"(not {run.key(self.operand)})"

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        return np.logical_not(run.eval(self.operand, timeframe))


@dataclass(eq=False)
class TimeframeExpr(Expr):
    """``tf("4h", x)``: x on the higher timeframe, aligned to the enclosing bars so that higher
    bar k is visible at bar i iff ``htf.close_time[k] <= close_time[i]``."""

    timeframe: str
    operand: Expr
    kind: Kind
    position: int
    cacheable: bool = True

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)

    def key(self, run: Run) -> str:
        return f'tf("{self.timeframe}", {run.key(self.operand)})'

    def warmup(self, run: Run, level_ms: int) -> int:
        htf_ms = timeframe_ms(self.timeframe)
        ratio = max(htf_ms // level_ms, 1)
        return (self.operand.warmup(run, htf_ms) + 1) * ratio - 1

    def compute(self, run: Run, timeframe: str) -> np.ndarray:
        run.check_timeframe(self, timeframe)
        higher = run.eval(self.operand, self.timeframe)
        base = run.frame(timeframe)
        idx = visible_index(run.frame(self.timeframe).close_time, base.close_time)
        fill = False if self.kind == "bool" else np.nan
        dtype = np.bool_ if self.kind == "bool" else np.float64
        out = np.full(len(base), fill, dtype=dtype)
        seen = idx >= 0
        out[seen] = higher[idx[seen]]
        return out


_COMPARE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
