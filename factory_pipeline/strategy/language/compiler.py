"""compile_expression: source text -> a checked, cache-aware, vectorized evaluator.

Compilation parses the text, resolves and type-checks it against the declared module
parameters, and validates the parameters' default values, so a module whose logic compiles is
known to be evaluable. Evaluation binds parameter values (defaults overridden by the caller),
computes every node as a numpy array over all bars of an EvalContext's frame, and stores
indicator and tf() results in the context's IndicatorCache keyed by
``(symbol, timeframe, data_id, canonical sub-expression with parameter values)``.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from factory_pipeline.errors import SignalLanguageError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.market.timeframes import SUPPORTED_TIMEFRAMES, timeframe_ms
from factory_pipeline.schemas import ParameterSpec
from factory_pipeline.strategy.language import indicators
from factory_pipeline.strategy.language.cache import IndicatorCache
from factory_pipeline.strategy.language.checker import (
    check,
    is_integer_parameter,
    parameter_kind,
    validate_parameter_names,
)
from factory_pipeline.strategy.language.ir import (
    ApplyExpr,
    Expr,
    LagExpr,
    SeriesExpr,
    TimeframeExpr,
    WindowArg,
)
from factory_pipeline.strategy.language.nodes import Node, canonical
from factory_pipeline.strategy.language.parser import parse

ParamValue = float | int | bool


def compile_expression(
    text: str,
    *,
    parameters: Mapping[str, ParameterSpec] | None = None,
    base_timeframe: str | None = None,
) -> CompiledExpression:
    """Parse and check ``text``; raise SignalLanguageError (with the offset) if it is invalid.

    ``parameters`` are the module's declared parameters (ParameterSpec or equivalent dicts);
    any identifier that is not a series, a function or one of them is an error.
    ``base_timeframe``, when given, lets tf() timeframes be checked now instead of at
    evaluation time, and makes warmup_bars exact.
    """
    specs = _coerce_specs(parameters, text)
    validate_parameter_names(specs, text)
    tree = parse(text)
    checked = check(tree, text, specs, base_timeframe)
    compiled = CompiledExpression(
        source=text,
        kind=checked.expr.kind,
        parameters=checked.parameters,
        series=frozenset(_series_used(checked.expr)),
        timeframes=checked.timeframes,
        canonical=canonical(tree),
        base_timeframe=base_timeframe,
        tree=tree,
        _expr=checked.expr,
        _specs={name: specs[name] for name in checked.parameters},
        _positions=dict(checked.parameter_positions),
    )
    compiled.bind(None)  # the declared defaults must be valid values
    return compiled


class EvalContext:
    """The data an expression is evaluated on: a frame, its higher-timeframe resamples
    (computed once, memoized) and an optional shared IndicatorCache."""

    def __init__(self, frame: MarketFrame, cache: IndicatorCache | None = None) -> None:
        self.frame = frame
        self.cache = cache
        self._frames: dict[str, MarketFrame] = {frame.timeframe: frame}
        #: Without a cache, results of indicators and tf() are still shared by every expression
        #: evaluated on this context (entry and exit rules reading the same averages); with a
        #: cache, the cache does that (and counts it).
        self._results: dict[tuple[str, str], np.ndarray] = {}

    def at_timeframe(self, timeframe: str) -> MarketFrame:
        """The frame resampled to ``timeframe`` (MarketFrame.resample), memoized."""
        frame = self._frames.get(timeframe)
        if frame is None:
            frame = self.frame.resample(timeframe)
            self._frames[timeframe] = frame
        return frame

    @property
    def data_id(self) -> str:
        """Content digest of the base frame (part of every cache key)."""
        return frame_digest(self.frame)


@dataclass(frozen=True, repr=False, eq=False)
class CompiledExpression:
    """A checked expression, ready to evaluate on any frame with any parameter values."""

    source: str
    kind: Literal["bool", "number"]
    parameters: frozenset[str]
    series: frozenset[str]
    timeframes: frozenset[str]
    canonical: str
    base_timeframe: str | None
    tree: Node
    _expr: Expr
    _specs: Mapping[str, ParameterSpec] = field(default_factory=dict)
    _positions: Mapping[str, int] = field(default_factory=dict)

    def evaluate(
        self, ctx: EvalContext, params: Mapping[str, ParamValue] | None = None
    ) -> np.ndarray:
        """Values at every bar of ``ctx.frame``: np.bool_ for bool expressions, float64 for
        numbers. ``params`` override the declared defaults; names not used here are ignored."""
        values = self.bind(params)
        run = _Run(self, ctx, values)
        _batch_moving_averages(run, self._expr, ctx.frame.timeframe)
        result = run.eval(self._expr, ctx.frame.timeframe)
        if self._expr.cacheable or isinstance(self._expr, SeriesExpr):
            result = result.copy()  # never hand out the cached or the frame's own array
        dtype = np.bool_ if self.kind == "bool" else np.float64
        return np.ascontiguousarray(result, dtype=dtype)

    def warmup_bars(
        self, params: Mapping[str, ParamValue] | None = None, *, base_timeframe: str | None = None
    ) -> int:
        """Index of the first bar whose value can be non-NaN (for bool expressions: can be
        meaningful). Exact for expressions without tf(); for tf() an upper bound that is exact
        when the data starts on a higher-timeframe boundary. Without a base timeframe (here or
        at compile time) tf() is bounded as if the base were 1m."""
        values = self.bind(params)
        base = base_timeframe or self.base_timeframe or SUPPORTED_TIMEFRAMES[0]
        run = _Run(self, None, values)
        return int(self._expr.warmup(run, timeframe_ms(base)))

    def bind(self, params: Mapping[str, ParamValue] | None) -> dict[str, ParamValue]:
        """Validated values of the parameters this expression uses (defaults filled in)."""
        values: dict[str, ParamValue] = {}
        for name, spec in self._specs.items():
            raw = params[name] if params is not None and name in params else spec.default
            values[name] = self._validate(name, spec, raw)
        run = _Run(self, None, values)
        for window in _windows(self._expr):
            run.window(window)
        return values

    def _validate(self, name: str, spec: ParameterSpec, raw: Any) -> ParamValue:
        position = self._positions.get(name)

        def fail(problem: str) -> SignalLanguageError:
            return SignalLanguageError(
                f"parameter {name!r} = {raw!r}: {problem}", self.source, position
            )

        kind = parameter_kind(name, spec)
        if kind == "bool":
            if not isinstance(raw, bool | np.bool_):
                raise fail("must be true or false")
            value: ParamValue = bool(raw)
        else:
            if isinstance(raw, bool | np.bool_) or not isinstance(raw, int | float | np.number):
                raise fail("must be a number")
            if not math.isfinite(float(raw)):
                raise fail("must be finite")
            if is_integer_parameter(spec):
                if not float(raw).is_integer():
                    raise fail("must be an integer")
                value = int(raw)
            else:
                value = float(raw)
        if spec.type == "enum" and spec.choices is not None and value not in spec.choices:
            raise fail(f"must be one of {spec.choices}")
        if spec.min is not None and kind == "number" and value < spec.min:
            raise fail(f"is below the declared minimum {spec.min:g}")
        if spec.max is not None and kind == "number" and value > spec.max:
            raise fail(f"is above the declared maximum {spec.max:g}")
        return value

    def __repr__(self) -> str:
        return f"CompiledExpression({self.canonical!r}, kind={self.kind!r})"


def frame_digest(frame: MarketFrame) -> str:
    """Content digest of every array the language can read, memoized per frame object
    (frames are treated as immutable once built)."""
    entry = _DIGESTS.get(id(frame))
    if entry is not None and entry[0]() is frame:
        return entry[1]
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{frame.symbol}|{frame.timeframe}|{len(frame)}".encode())
    for name in _DIGEST_ARRAYS:
        array = np.ascontiguousarray(getattr(frame, name))
        h.update(name.encode())
        h.update(array.tobytes())
    digest = h.hexdigest()
    key = id(frame)
    _DIGESTS[key] = (weakref.ref(frame, lambda _ref, k=key: _DIGESTS.pop(k, None)), digest)
    return digest


# -- helpers -------------------------------------------------------------------------------

_DIGEST_ARRAYS = (
    "open_time", "close_time", "open", "high", "low", "close", "volume", "mark",
    "funding_rate", "open_interest", "complete", "funding_time", "funding_rates",
)  # fmt: skip
_DIGESTS: dict[int, tuple[weakref.ref, str]] = {}
_CROSSES = (indicators.crosses_above, indicators.crosses_below)


class _Run:
    """State of one evaluation: bound values, memo of cacheable results, key memo."""

    def __init__(
        self,
        compiled: CompiledExpression,
        ctx: EvalContext | None,
        values: Mapping[str, ParamValue],
    ) -> None:
        self.compiled = compiled
        self.ctx = ctx
        self.values = values
        shared = ctx is not None and ctx.cache is None
        self.memo: dict[tuple[str, str], np.ndarray] = ctx._results if shared else {}
        self.keys: dict[int, str] = {}

    def eval(self, expr: Expr, timeframe: str) -> np.ndarray:
        if not expr.cacheable:
            if isinstance(expr, ApplyExpr) and expr.function in _CROSSES:
                return self.crosses(expr, timeframe)
            return expr.compute(self, timeframe)
        assert self.ctx is not None
        key = self.key(expr)
        memo_key = (timeframe, key)
        value = self.memo.get(memo_key)
        if value is not None:
            return value
        value = self.cached(timeframe, key)
        if value is None:
            value = expr.compute(self, timeframe)
            self.store(timeframe, key, value)
        self.memo[memo_key] = value
        return value

    def crosses(self, expr: ApplyExpr, timeframe: str) -> np.ndarray:
        """``crosses_above(a, b)`` or ``crosses_below(a, b)``. Strategies test both directions
        of the same pair (entry and exit rules), so both are computed in one pass and the
        other one is left in the memo for its first taker (handed over, not shared: each
        array is returned once, so no caller sees another's array)."""
        above = expr.function is indicators.crosses_above
        left, right = expr.inputs
        keys = (self.key(left), self.key(right))
        mine, other = ("above", "below") if above else ("below", "above")
        value = self.memo.pop((timeframe, _crosses_key(mine, *keys)), None)
        if value is not None:
            return value
        up, down = indicators.crosses_both(self.eval(left, timeframe), self.eval(right, timeframe))
        self.memo[(timeframe, _crosses_key(other, *keys))] = down if above else up
        return up if above else down

    def cached(self, timeframe: str, key: str) -> np.ndarray | None:
        """The IndicatorCache entry of ``key`` on ``timeframe`` (None without a cache)."""
        assert self.ctx is not None
        if self.ctx.cache is None:
            return None
        return self.ctx.cache.get((self.ctx.frame.symbol, timeframe, self.ctx.data_id, key))

    def store(self, timeframe: str, key: str, value: np.ndarray) -> None:
        """Put a computed result in the IndicatorCache (when there is one)."""
        assert self.ctx is not None
        if self.ctx.cache is not None:
            self.ctx.cache.put((self.ctx.frame.symbol, timeframe, self.ctx.data_id, key), value)

    def frame(self, timeframe: str) -> MarketFrame:
        assert self.ctx is not None
        return self.ctx.at_timeframe(timeframe)

    def key(self, expr: Expr) -> str:
        key = self.keys.get(id(expr))
        if key is None:
            key = expr.key(self)
            self.keys[id(expr)] = key
        return key

    def value(self, name: str, position: int) -> ParamValue:
        return self.values[name]

    def window(self, arg: WindowArg) -> int:
        if arg.literal is not None:
            return arg.literal
        assert arg.param is not None
        value = self.values[arg.param]
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise SignalLanguageError(
                f"parameter {arg.param!r} = {value!r} is used as the {arg.what} and must be an "
                "integer >= 1",
                self.compiled.source,
                arg.position,
            )
        return int(value)

    def check_timeframe(self, expr: TimeframeExpr, timeframe: str) -> None:
        higher, lower = timeframe_ms(expr.timeframe), timeframe_ms(timeframe)
        if higher <= lower or higher % lower:
            raise SignalLanguageError(
                f"tf({expr.timeframe!r}) needs a timeframe higher than and a whole multiple of "
                f"the {timeframe} bars it is evaluated on",
                self.compiled.source,
                expr.position,
            )


def _crosses_key(direction: str, left_key: str, right_key: str) -> str:
    """Memo key of ``crosses_<direction>(left, right)`` handed over by :meth:`_Run.crosses`."""
    return f"\0crosses_{direction}({left_key}, {right_key})"


def _batch_moving_averages(run: _Run, expr: Expr, timeframe: str) -> None:
    """Compute the not yet known ``sma`` nodes of one input together (two windows per pass,
    :func:`indicators.sma_many`, bit-identical to one at a time) and put them where
    ``run.eval`` finds them: the memo, and the cache exactly as ``run.eval`` would (one lookup
    and, on a miss, one store per distinct node). A pair that a ``crosses_above`` /
    ``crosses_below`` node compares is computed with its crossings in the same pass
    (:func:`indicators.sma_pair_crosses`), both directions left in the memo for
    :meth:`_Run.crosses` to hand over. Nodes under ``tf()`` are left to ``run.eval`` (other
    timeframe)."""
    groups: dict[str, tuple[Expr, dict[str, int]]] = {}
    crossed: list[tuple[str, str]] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, TimeframeExpr):
            continue
        stack.extend(node.children())
        if isinstance(node, ApplyExpr) and node.function is indicators.sma:
            key = run.key(node)
            if (timeframe, key) not in run.memo:
                source = node.inputs[0]
                group = groups.setdefault(run.key(source), (source, {}))
                group[1][key] = run.window(node.windows[0])
        elif isinstance(node, ApplyExpr) and node.function in _CROSSES:
            left, right = node.inputs
            if all(
                isinstance(side, ApplyExpr) and side.function is indicators.sma
                for side in (left, right)
            ):
                crossed.append((run.key(left), run.key(right)))
    for source, windows in groups.values():
        if len(windows) < 2:
            continue  # nothing to share: run.eval computes it as usual
        missing: dict[str, int] = {}
        for key, window in windows.items():
            value = run.cached(timeframe, key)
            if value is None:
                missing[key] = window
            else:
                run.memo[(timeframe, key)] = value
        if not missing:
            continue
        values = run.eval(source, timeframe)
        for left, right in crossed:
            if left == right or left not in missing or right not in missing:
                continue
            a, b, up, down = indicators.sma_pair_crosses(values, missing[left], missing[right])
            for key, value in ((left, a), (right, b)):
                run.store(timeframe, key, value)
                run.memo[(timeframe, key)] = value
                del missing[key]
            run.memo[(timeframe, _crosses_key("above", left, right))] = up
            run.memo[(timeframe, _crosses_key("below", left, right))] = down
        if not missing:
            continue
        averages = indicators.sma_many(values, list(missing.values()))
        for key, value in zip(missing, averages, strict=True):
            run.store(timeframe, key, value)
            run.memo[(timeframe, key)] = value


def _coerce_specs(
    parameters: Mapping[str, ParameterSpec | Mapping[str, Any]] | None, source: str
) -> dict[str, ParameterSpec]:
    specs: dict[str, ParameterSpec] = {}
    for name, spec in (parameters or {}).items():
        if isinstance(spec, ParameterSpec):
            specs[name] = spec
            continue
        try:
            specs[name] = ParameterSpec.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SignalLanguageError(
                f"parameter {name!r} has an invalid declaration ({where}: {first['msg']})",
                source,
                None,
            ) from None
    return specs


def _walk(expr: Expr) -> Iterator[Expr]:
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children())


def _windows(expr: Expr) -> Iterator[WindowArg]:
    for node in _walk(expr):
        if isinstance(node, ApplyExpr):
            yield from node.windows
        elif isinstance(node, LagExpr):
            yield node.window


def _series_used(expr: Expr) -> set[str]:
    return {node.name for node in _walk(expr) if isinstance(node, SeriesExpr)}
