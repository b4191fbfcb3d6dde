"""Name resolution and type checking: syntax tree -> resolved expression (ir.py).

Every identifier must be a series, a declared parameter or (when called) a whitelisted function;
every operator and argument gets the kind it needs (number or bool); window lengths and lags
must be integer literals >= 1 or int parameters whose declared minimum is >= 1; ``tf`` needs a
supported timeframe strictly higher than (and a whole multiple of) the timeframe it is used on,
when that is known. Errors carry the character offset of the offending text.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from factory_pipeline.errors import ConfigError, SignalLanguageError
from factory_pipeline.market.timeframes import SUPPORTED_TIMEFRAMES, timeframe_ms
from factory_pipeline.schemas import ParameterSpec
from factory_pipeline.strategy.language.functions import KNOWN_FUNCTIONS, SERIES, FunctionSpec
from factory_pipeline.strategy.language.ir import (
    ArithExpr,
    CompareExpr,
    ConstExpr,
    Expr,
    Kind,
    LogicExpr,
    NegExpr,
    NotExpr,
    ParamExpr,
    SeriesExpr,
    TimeframeExpr,
    WindowArg,
)
from factory_pipeline.strategy.language.lexer import KEYWORDS, PYTHON_WORDS
from factory_pipeline.strategy.language.nodes import (
    ARITHMETIC_OPS,
    COMPARISON_OPS,
    Binary,
    Boolean,
    Call,
    Name,
    Node,
    Number,
    String,
    Unary,
    start_position,
)

#: Largest window length accepted as a literal (a guard against absurd values, not a policy).
MAX_WINDOW = 1_000_000


@dataclass(frozen=True)
class CheckedExpression:
    """Result of checking: the resolved tree plus what it uses."""

    expr: Expr
    parameters: frozenset[str]
    #: offset of the first use of each parameter (for errors about its value)
    parameter_positions: Mapping[str, int]
    series: frozenset[str]
    timeframes: frozenset[str]


def check(
    tree: Node,
    source: str,
    parameters: Mapping[str, ParameterSpec],
    base_timeframe: str | None,
) -> CheckedExpression:
    """Resolve and type-check ``tree``; raises SignalLanguageError naming the position."""
    checker = _Checker(source, parameters)
    if base_timeframe is not None:
        checker.require_timeframe(base_timeframe, None)
    expr = checker.resolve(tree, base_timeframe)
    return CheckedExpression(
        expr=expr,
        parameters=frozenset(checker.used_parameters),
        parameter_positions=dict(checker.used_parameters),
        series=frozenset(checker.used_series),
        timeframes=frozenset(checker.used_timeframes),
    )


def parameter_kind(name: str, spec: ParameterSpec) -> Kind | None:
    """The kind a parameter has inside expressions (None: unusable, e.g. string enums)."""
    if spec.type == "bool":
        return "bool"
    if spec.type in ("int", "float"):
        return "number"
    choices = spec.choices or []
    if choices and all(isinstance(c, bool) for c in choices):
        return "bool"
    if choices and all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices):
        return "number"
    return None


def is_integer_parameter(spec: ParameterSpec) -> bool:
    """True when every value the parameter can take is an integer."""
    if spec.type == "int":
        return True
    if spec.type == "enum" and spec.choices:
        return all(
            isinstance(c, int | float) and not isinstance(c, bool) and float(c).is_integer()
            for c in spec.choices
        )
    return False


def suggest(name: str, candidates: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or an empty string."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean {lowered[match[0]]!r}?" if match else ""


class _Checker:
    def __init__(self, source: str, parameters: Mapping[str, ParameterSpec]) -> None:
        self.source = source
        self.parameters = parameters
        self.used_parameters: dict[str, int] = {}
        self.used_series: set[str] = set()
        self.used_timeframes: set[str] = set()

    def fail(self, message: str, position: int | None) -> SignalLanguageError:
        return SignalLanguageError(message, self.source, position)

    # -- expressions -------------------------------------------------------------------

    def resolve(self, node: Node, level: str | None) -> Expr:
        """Resolve ``node`` evaluated on timeframe ``level`` (None: the unknown base)."""
        if isinstance(node, Number):
            return ConstExpr(node.value, "number", node.position)
        if isinstance(node, Boolean):
            return ConstExpr(node.value, "bool", node.position)
        if isinstance(node, String):
            raise self.fail("strings are only allowed as the timeframe of tf()", node.position)
        if isinstance(node, Name):
            return self.name(node)
        if isinstance(node, Unary):
            if node.op == "-":
                return NegExpr(self.typed(node.operand, "number", level, "'-'"), node.position)
            return NotExpr(self.typed(node.operand, "bool", level, "'not'"), node.position)
        if isinstance(node, Binary):
            return self.binary(node, level)
        if isinstance(node, Call):
            return self.call(node, level)
        raise self.fail(f"unsupported syntax {type(node).__name__}", None)

    def typed(self, node: Node, kind: Kind, level: str | None, context: str) -> Expr:
        expr = self.resolve(node, level)
        if expr.kind != kind:
            got = "a boolean" if expr.kind == "bool" else "a number"
            need = "a boolean" if kind == "bool" else "a number"
            raise self.fail(f"{context} needs {need}, got {got}", start_position(node))
        return expr

    def binary(self, node: Binary, level: str | None) -> Expr:
        context = f"'{node.op}'"
        if node.op in ARITHMETIC_OPS:
            left = self.typed(node.left, "number", level, context)
            right = self.typed(node.right, "number", level, context)
            return ArithExpr(node.op, left, right, node.position)
        if node.op in COMPARISON_OPS:
            left = self.typed(node.left, "number", level, context)
            right = self.typed(node.right, "number", level, context)
            return CompareExpr(node.op, left, right, node.position)
        left = self.typed(node.left, "bool", level, context)
        right = self.typed(node.right, "bool", level, context)
        return LogicExpr(node.op, left, right, node.position)

    def name(self, node: Name) -> Expr:
        if node.name in self.parameters:
            kind = parameter_kind(node.name, self.parameters[node.name])
            if kind is None:
                raise self.fail(
                    f"parameter {node.name!r} has non-numeric choices and cannot appear in an "
                    "expression",
                    node.position,
                )
            self.used_parameters.setdefault(node.name, node.position)
            return ParamExpr(node.name, kind, node.position)
        if node.name in SERIES:
            self.used_series.add(node.name)
            return SeriesExpr(node.name, node.position)
        if node.name in KNOWN_FUNCTIONS:
            spec = KNOWN_FUNCTIONS[node.name]
            raise self.fail(
                f"{node.name!r} is a function; call it as {spec.signature}", node.position
            )
        raise self.fail(self.unknown(node.name, "name"), node.position)

    def unknown(self, name: str, what: str) -> str:
        candidates = [*SERIES, *KNOWN_FUNCTIONS, *self.parameters, *KEYWORDS]
        hint = suggest(name, candidates)
        if not self.parameters and not hint:
            hint = " (no module parameters are declared)"
        return f"unknown {what} {name!r}{hint}"

    # -- calls -------------------------------------------------------------------------

    def call(self, node: Call, level: str | None) -> Expr:
        spec = KNOWN_FUNCTIONS.get(node.name)
        if spec is None:
            if node.name in SERIES or node.name in self.parameters:
                raise self.fail(f"{node.name!r} is not a function", node.position)
            raise self.fail(self.unknown(node.name, "function"), node.position)
        if len(node.args) != len(spec.args):
            raise self.fail(
                f"{spec.signature} takes {len(spec.args)} argument"
                f"{'s' if len(spec.args) != 1 else ''}, got {len(node.args)}",
                node.position,
            )
        if spec.name == "tf":
            return self.timeframe_call(node, level)
        args = [self.argument(spec, index, arg, level) for index, arg in enumerate(node.args)]
        assert spec.build is not None
        return spec.build(args, node.position)

    def argument(self, spec: FunctionSpec, index: int, node: Node, level: str | None):
        arg_name, kind = spec.args[index]
        where = f"argument {index + 1} ({arg_name}) of {spec.name}"
        if kind == "window":
            return self.window(node, arg_name, spec.name)
        if kind == "scalar":
            return self.scalar(node, where)
        if kind == "any":
            return self.resolve(node, level)
        return self.typed(node, "number", level, where)

    def window(self, node: Node, arg_name: str, function: str) -> WindowArg:
        is_lag = function == "lag"
        noun = "lag" if is_lag else "window"
        what = f"{arg_name} of {function}"
        if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Number | Name):
            why = " (a negative lag would read the future)" if is_lag else ""
            raise self.fail(f"{noun} must be a positive integer{why}", node.position)
        if isinstance(node, Number):
            if not node.value.is_integer():
                raise self.fail(f"{noun} must be an integer, got {node.value}", node.position)
            if node.value < 1:
                why = " (lag 0 is the current bar: use the series itself)" if is_lag else ""
                raise self.fail(f"{noun} must be >= 1, got {int(node.value)}{why}", node.position)
            if node.value > MAX_WINDOW:
                raise self.fail(f"{noun} {int(node.value)} exceeds {MAX_WINDOW}", node.position)
            return WindowArg(int(node.value), None, node.position, what)
        if isinstance(node, Name) and node.name in self.parameters:
            spec = self.parameters[node.name]
            if not is_integer_parameter(spec):
                raise self.fail(
                    f"{noun} parameter {node.name!r} must be declared as int, not {spec.type}",
                    node.position,
                )
            low = spec.min if spec.type == "int" else min(spec.choices or [1])
            if low is not None and low < 1:
                raise self.fail(
                    f"{noun} parameter {node.name!r} may be {low:g} (its minimum); "
                    "declare min >= 1",
                    node.position,
                )
            self.used_parameters.setdefault(node.name, node.position)
            return WindowArg(None, node.name, node.position, what)
        if isinstance(node, Name) and node.name not in SERIES and node.name not in KNOWN_FUNCTIONS:
            raise self.fail(self.unknown(node.name, "name"), node.position)
        raise self.fail(
            f"{noun} ({what}) must be an integer constant or an int parameter, not an expression",
            start_position(node),
        )

    def scalar(self, node: Node, where: str) -> Expr:
        if isinstance(node, Number):
            return ConstExpr(node.value, "number", node.position)
        if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Number):
            return ConstExpr(-node.operand.value, "number", node.position)
        if isinstance(node, Name) and node.name in self.parameters:
            expr = self.name(node)
            if expr.kind != "number":
                raise self.fail(f"{where} must be numeric, got a boolean", node.position)
            return expr
        if isinstance(node, Name) and node.name not in SERIES and node.name not in KNOWN_FUNCTIONS:
            raise self.fail(self.unknown(node.name, "name"), node.position)
        raise self.fail(
            f"{where} must be a number or a numeric parameter, not an expression",
            start_position(node),
        )

    def timeframe_call(self, node: Call, level: str | None) -> Expr:
        label, operand = node.args
        if not isinstance(label, String):
            raise self.fail(
                'the first argument of tf must be a quoted timeframe such as "4h"',
                start_position(label),
            )
        self.require_timeframe(label.value, label.position)
        if level is not None:
            if timeframe_ms(label.value) <= timeframe_ms(level):
                raise self.fail(
                    f"tf({label.value!r}) must be higher than the timeframe it is used on "
                    f"({level})",
                    label.position,
                )
            if timeframe_ms(label.value) % timeframe_ms(level):
                raise self.fail(
                    f"tf({label.value!r}) is not a whole multiple of {level}", label.position
                )
        self.used_timeframes.add(label.value)
        inner = self.resolve(operand, label.value)
        return TimeframeExpr(label.value, inner, inner.kind, node.position)

    def require_timeframe(self, timeframe: str, position: int | None) -> None:
        try:
            timeframe_ms(timeframe)
        except ConfigError:
            raise self.fail(
                f"unknown timeframe {timeframe!r}{suggest(timeframe, list(SUPPORTED_TIMEFRAMES))}"
                f" (supported: {', '.join(SUPPORTED_TIMEFRAMES)})",
                position,
            ) from None


def validate_parameter_names(parameters: Mapping[str, ParameterSpec], source: str) -> None:
    """Declared parameter names must be identifiers that shadow nothing in the language."""
    reserved = set(SERIES) | set(KNOWN_FUNCTIONS) | KEYWORDS | PYTHON_WORDS
    for name in parameters:
        if not name.isidentifier() or name.startswith("_") or not name.isascii():
            raise SignalLanguageError(
                f"parameter name {name!r} is not a valid identifier", source, None
            )
        if name in reserved:
            raise SignalLanguageError(
                f"parameter name {name!r} shadows a built-in name of the signal language",
                source,
                None,
            )
