"""The function library of the signal language: signatures, formulas and how each call is built.

``KNOWN_FUNCTIONS`` is the whitelist: a call to any other name is rejected by the checker.
Each entry declares its argument kinds, its result kind and a builder that turns checked
arguments into resolved nodes (ir.py). Composite functions (Bollinger bands, MACD, Donchian
channels, z-score) are expanded into primitives here, so ``bb_upper(close, 20, 2)`` and
``sma(close, 20)`` share one cached SMA.

Argument kinds:
- ``number``: any numeric expression;
- ``any``: a numeric or boolean expression (the result has the same kind);
- ``window``: an integer literal >= 1 or an int parameter (checked >= 1 at evaluation);
- ``scalar``: a number literal (optionally negated) or a numeric parameter;
- ``timeframe``: a quoted timeframe such as ``"4h"`` (tf only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np

from factory_pipeline.market.frame import PRICE_SERIES
from factory_pipeline.strategy.language import indicators
from factory_pipeline.strategy.language.ir import (
    TIME_SERIES,
    ApplyExpr,
    ArithExpr,
    ConstExpr,
    Expr,
    LagExpr,
    SeriesExpr,
    WindowArg,
)

ArgKind = Literal["number", "any", "window", "scalar", "timeframe"]

#: Every series name the language knows.
SERIES: tuple[str, ...] = (*PRICE_SERIES, *TIME_SERIES)


@dataclass(frozen=True)
class FunctionSpec:
    """One whitelisted function."""

    name: str
    args: tuple[tuple[str, ArgKind], ...]
    returns: Literal["number", "bool", "same"]
    formula: str
    #: builds resolved nodes from checked arguments (Expr for number/any/scalar, WindowArg
    #: for window); ``None`` for tf, which the checker builds itself.
    build: Callable[[list, int], Expr] | None

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(name for name, _ in self.args)})"


# -- builders ------------------------------------------------------------------------------


def _apply(
    name: str, function: Callable[..., np.ndarray], rule: Callable[[int, tuple[int, ...]], int]
):
    def build(args: list, position: int) -> Expr:
        inputs = tuple(a for a in args if isinstance(a, Expr))
        windows = tuple(a for a in args if isinstance(a, WindowArg))
        return ApplyExpr(name, function, inputs, windows, position, warmup_rule=rule)

    return build


def _window_minus_one(w: int, n: tuple[int, ...]) -> int:
    return w + n[0] - 1


def _window_full(w: int, n: tuple[int, ...]) -> int:
    return w + n[0]


def _series(name: str, position: int) -> SeriesExpr:
    return SeriesExpr(name, position)


def _sma(x: Expr, n: WindowArg, position: int) -> Expr:
    return ApplyExpr("sma", indicators.sma, (x,), (n,), position, warmup_rule=_window_minus_one)


def _ema(x: Expr, n: WindowArg, position: int) -> Expr:
    return ApplyExpr("ema", indicators.ema, (x,), (n,), position, warmup_rule=_window_minus_one)


def _stdev(x: Expr, n: WindowArg, position: int) -> Expr:
    return ApplyExpr("stdev", indicators.stdev, (x,), (n,), position, warmup_rule=_window_minus_one)


def _highest(x: Expr, n: WindowArg, position: int) -> Expr:
    return ApplyExpr(
        "highest", indicators.highest, (x,), (n,), position, warmup_rule=_window_minus_one
    )


def _lowest(x: Expr, n: WindowArg, position: int) -> Expr:
    return ApplyExpr(
        "lowest", indicators.lowest, (x,), (n,), position, warmup_rule=_window_minus_one
    )


def _bollinger(side: str) -> Callable[[list, int], Expr]:
    def build(args: list, position: int) -> Expr:
        x, n, k = args
        middle = _sma(x, n, position)
        if side == "middle":
            return middle
        band = ArithExpr("*", k, _stdev(x, n, position), position)
        return ArithExpr("+" if side == "upper" else "-", middle, band, position)

    return build


def _macd_line(x: Expr, fast: WindowArg, slow: WindowArg, position: int) -> Expr:
    return ArithExpr("-", _ema(x, fast, position), _ema(x, slow, position), position)


def _macd(part: str) -> Callable[[list, int], Expr]:
    def build(args: list, position: int) -> Expr:
        x, fast, slow, signal = args
        line = _macd_line(x, fast, slow, position)
        if part == "line":
            return line
        smoothed = _ema(line, signal, position)
        if part == "signal":
            return smoothed
        return ArithExpr("-", line, smoothed, position)

    return build


def _donchian(part: str) -> Callable[[list, int], Expr]:
    def build(args: list, position: int) -> Expr:
        (n,) = args
        upper = _highest(_series("high", position), n, position)
        lower = _lowest(_series("low", position), n, position)
        if part == "upper":
            return upper
        if part == "lower":
            return lower
        total = ArithExpr("+", upper, lower, position)
        return ArithExpr("/", total, ConstExpr(2.0, "number", position), position)

    return build


def _zscore(args: list, position: int) -> Expr:
    x, n = args
    deviation = ArithExpr("-", x, _sma(x, n, position), position)
    return ArithExpr("/", deviation, _stdev(x, n, position), position)


def _atr(args: list, position: int) -> Expr:
    (n,) = args
    hlc = tuple(_series(s, position) for s in ("high", "low", "close"))
    return ApplyExpr("atr", indicators.atr, hlc, (n,), position, warmup_rule=_atr_rule)


def _atr_rule(w: int, n: tuple[int, ...]) -> int:
    return n[0] - 1


def _vwap(args: list, position: int) -> Expr:
    (n,) = args
    hlcv = tuple(_series(s, position) for s in ("high", "low", "close", "volume"))
    return ApplyExpr("vwap", indicators.vwap, hlcv, (n,), position, warmup_rule=_atr_rule)


def _elementwise(name: str, function: Callable[..., np.ndarray], kind: str = "number"):
    def build(args: list, position: int) -> Expr:
        rule = (lambda w, _: w + 1) if kind == "bool" else (lambda w, _: w)
        return ApplyExpr(
            name, function, tuple(args), (), position, kind=kind, cacheable=False,
            warmup_rule=rule,
        )  # fmt: skip

    return build


def _lag(args: list, position: int) -> Expr:
    x, n = args
    return LagExpr(x, n, x.kind, position)


def _maximum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(a, b)


def _minimum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.minimum(a, b)


def _absolute(a: np.ndarray) -> np.ndarray:
    return np.abs(a)


# -- the whitelist -------------------------------------------------------------------------

_X: tuple[str, ArgKind] = ("x", "number")
_N: tuple[str, ArgKind] = ("n", "window")
_MACD_ARGS: tuple[tuple[str, ArgKind], ...] = (
    _X, ("fast", "window"), ("slow", "window"), ("signal", "window"),
)  # fmt: skip

_SPECS = (
    FunctionSpec("sma", (_X, _N), "number", "mean(x[t-n+1..t])",
                 _apply("sma", indicators.sma, _window_minus_one)),
    FunctionSpec("ema", (_X, _N), "number",
                 "e[t] = e[t-1] + 2/(n+1) * (x[t] - e[t-1]), seeded with the SMA of the first n",
                 _apply("ema", indicators.ema, _window_minus_one)),
    FunctionSpec("wma", (_X, _N), "number",
                 "sum(k * x[t-n+k], k=1..n) / (n(n+1)/2)",
                 _apply("wma", indicators.wma, _window_minus_one)),
    FunctionSpec("rsi", (_X, _N), "number",
                 "100 * G / (G + L), G and L Wilder-smoothed gains and losses (50 if both 0)",
                 _apply("rsi", indicators.rsi, _window_full)),
    FunctionSpec("atr", (_N,), "number",
                 "Wilder smoothing of max(high-low, |high-close[t-1]|, |low-close[t-1]|)", _atr),
    FunctionSpec("stdev", (_X, _N), "number", "population standard deviation of x[t-n+1..t]",
                 _apply("stdev", indicators.stdev, _window_minus_one)),
    FunctionSpec("bb_upper", (_X, _N, ("k", "scalar")), "number", "sma(x, n) + k * stdev(x, n)",
                 _bollinger("upper")),
    FunctionSpec("bb_middle", (_X, _N, ("k", "scalar")), "number",
                 "sma(x, n) (k accepted for symmetry, unused)", _bollinger("middle")),
    FunctionSpec("bb_lower", (_X, _N, ("k", "scalar")), "number", "sma(x, n) - k * stdev(x, n)",
                 _bollinger("lower")),
    FunctionSpec("macd_line", _MACD_ARGS, "number",
                 "ema(x, fast) - ema(x, slow) (signal accepted for symmetry, unused)",
                 _macd("line")),
    FunctionSpec("macd_signal", _MACD_ARGS, "number", "ema(macd_line, signal)", _macd("signal")),
    FunctionSpec("macd_hist", _MACD_ARGS, "number", "macd_line - macd_signal", _macd("hist")),
    FunctionSpec("highest", (_X, _N), "number", "max(x[t-n+1..t])",
                 _apply("highest", indicators.highest, _window_minus_one)),
    FunctionSpec("lowest", (_X, _N), "number", "min(x[t-n+1..t])",
                 _apply("lowest", indicators.lowest, _window_minus_one)),
    FunctionSpec("donchian_upper", (_N,), "number", "highest(high, n)", _donchian("upper")),
    FunctionSpec("donchian_lower", (_N,), "number", "lowest(low, n)", _donchian("lower")),
    FunctionSpec("donchian_mid", (_N,), "number", "(highest(high, n) + lowest(low, n)) / 2",
                 _donchian("mid")),
    FunctionSpec("roc", (_X, _N), "number", "100 * (x[t] / x[t-n] - 1)",
                 _apply("roc", indicators.roc, _window_full)),
    FunctionSpec("zscore", (_X, _N), "number", "(x - sma(x, n)) / stdev(x, n)", _zscore),
    FunctionSpec("vwap", (_N,), "number",
                 "sum(tp * volume) / sum(volume) over n bars, tp = (high + low + close) / 3",
                 _vwap),
    FunctionSpec("abs", (_X,), "number", "|x|", _elementwise("abs", _absolute)),
    FunctionSpec("min", (("a", "number"), ("b", "number")), "number", "elementwise minimum",
                 _elementwise("min", _minimum)),
    FunctionSpec("max", (("a", "number"), ("b", "number")), "number", "elementwise maximum",
                 _elementwise("max", _maximum)),
    FunctionSpec("crosses_above", (("a", "number"), ("b", "number")), "bool",
                 "a[t] > b[t] and a[t-1] <= b[t-1]",
                 _elementwise("crosses_above", indicators.crosses_above, "bool")),
    FunctionSpec("crosses_below", (("a", "number"), ("b", "number")), "bool",
                 "a[t] < b[t] and a[t-1] >= b[t-1]",
                 _elementwise("crosses_below", indicators.crosses_below, "bool")),
    FunctionSpec("lag", (("x", "any"), _N), "same", "x[t-n], n >= 1", _lag),
    FunctionSpec("tf", (("timeframe", "timeframe"), ("x", "any")), "same",
                 "x on the higher timeframe, aligned to closed higher bars", None),
)  # fmt: skip

#: The whitelist of callable functions, by name.
KNOWN_FUNCTIONS: Mapping[str, FunctionSpec] = MappingProxyType({s.name: s for s in _SPECS})
