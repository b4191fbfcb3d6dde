"""The signal language: a small, safe, causal expression language for strategy modules.

Agents (LLMs) propose module logic as text in this language. Text is tokenized, parsed into a
closed set of syntax nodes (never ``eval``), resolved against whitelisted series, functions and
declared parameters, and evaluated as vectorized numpy/numba arrays in which the value at bar t
depends only on data known at the close of bar t. See docs/signal_language.md.

    compiled = compile_expression("crosses_above(sma(close, fast), sma(close, slow))",
                                  parameters=module.parameters, base_timeframe="1h")
    entries = compiled.evaluate(EvalContext(frame, cache), {"fast": 10, "slow": 30})
"""

from factory_pipeline.strategy.language.cache import CacheStats, IndicatorCache
from factory_pipeline.strategy.language.compiler import (
    CompiledExpression,
    EvalContext,
    compile_expression,
    frame_digest,
)
from factory_pipeline.strategy.language.functions import KNOWN_FUNCTIONS, SERIES, FunctionSpec
from factory_pipeline.strategy.language.lexer import MAX_SOURCE_CHARS
from factory_pipeline.strategy.language.nodes import Node, canonical
from factory_pipeline.strategy.language.parser import MAX_DEPTH, MAX_NODES, parse

__all__ = [
    "KNOWN_FUNCTIONS",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_SOURCE_CHARS",
    "SERIES",
    "CacheStats",
    "CompiledExpression",
    "EvalContext",
    "FunctionSpec",
    "IndicatorCache",
    "Node",
    "canonical",
    "compile_expression",
    "frame_digest",
    "parse",
]
