"""Parser: precedence, associativity, canonical form, syntax errors and injection attempts."""

from __future__ import annotations

import pytest

from factory_pipeline.errors import SignalLanguageError
from factory_pipeline.strategy.language import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_SOURCE_CHARS,
    canonical,
    compile_expression,
    parse,
)
from factory_pipeline.strategy.language.nodes import Binary, Call, Name, Number, String, Unary


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", "1 + (2 * 3)"),
        ("(1 + 2) * 3", "(1 + 2) * 3"),
        ("1 - 2 - 3", "(1 - 2) - 3"),
        ("8 / 4 / 2", "(8 / 4) / 2"),
        ("8 / 4 * 2", "(8 / 4) * 2"),
        ("-2 * 3", "(-2) * 3"),
        ("- - 2", "-(-2)"),
        ("close - -open", "close - (-open)"),
        ("a or b and c", "a or (b and c)"),
        ("a and b or c", "(a and b) or c"),
        ("not a and b", "(not a) and b"),
        ("not a < b", "not (a < b)"),
        ("a < b and c >= d", "(a < b) and (c >= d)"),
        ("a + 1 > b * 2", "(a + 1) > (b * 2)"),
    ],
)
def test_precedence_and_associativity(source: str, expected: str) -> None:
    assert canonical(parse(source)) == expected


def test_tree_shape_of_a_call_with_a_timeframe() -> None:
    tree = parse('tf("4h", sma(close, 20)) > 1.5')
    assert isinstance(tree, Binary) and tree.op == ">"
    call = tree.left
    assert isinstance(call, Call) and call.name == "tf" and call.position == 0
    assert call.args[0] == String("4h", 3)
    inner = call.args[1]
    assert isinstance(inner, Call) and inner.args == (Name("close", 13), Number(20.0, 20))
    assert tree.right == Number(1.5, 27)


@pytest.mark.parametrize(
    "source",
    [
        "crosses_above(sma(close, fast), sma(close, slow)) and not (rsi(close, 14) > 70)",
        'tf("1d", ema(close, 20)) < close or hour >= 8',
        "-(close - open) / (high - low + 0.5e-3) * 100",
        "lag(close > open, 2) and weekday != 6",
    ],
)
def test_canonical_text_is_a_fixed_point(source: str) -> None:
    once = canonical(parse(source))
    assert canonical(parse(once)) == once


def test_numbers_are_normalized() -> None:
    assert canonical(parse("20.0 + 1e-3 + .5 + 2E2")) == "((20 + 0.001) + 0.5) + 200"


@pytest.mark.parametrize(
    ("source", "fragment", "position"),
    [
        ("", "empty expression", 0),
        ("close +", "ends too early", 7),
        ("(close + open", "expected ')'", 13),
        ("sma(close, 20", "expected ')'", 13),
        ("close open", "after a complete expression", 6),
        ("a < b < c", "do not chain", 6),
        ("close = open", "use '=='", 6),
        ("close ** 2", "power", 6),
        ("+close", "unary '+'", 0),
        ("1.2.3", "malformed number", 0),
        ("2x", "malformed number", 0),
        ("close > 1e999", "out of range", 8),
        ("sma(close,, 3)", "unexpected ','", 10),
        ("close && open", "use 'and'", 6),
        ("close # comment", "comments", 6),
    ],
)
def test_syntax_errors_carry_the_position(source: str, fragment: str, position: int) -> None:
    with pytest.raises(SignalLanguageError) as info:
        parse(source)
    assert fragment in str(info.value)
    assert info.value.position == position
    assert info.value.source == source


@pytest.mark.parametrize(
    ("source", "position"),
    [
        ("__import__('os')", 0),
        ("__import__('os').system('ls')", 0),
        ("open.__class__", 4),
        ("close.real", 5),
        ("(1).real", 3),
        ("close[0]", 5),
        ("close[-1] > close", 5),
        ("lambda: 1", 0),
        ("lambda x: x", 0),
        ("eval('1')", 0),
        ("exec('import os')", 0),
        ("getattr(close, 'x')", 0),
        ("import os", 0),
        ("'abc'", 0),
        ("close + 'x'", 8),
        ('sma("close", 20)', 4),
        ("close if true else open", 6),
        ("{'a': 1}", 0),
        ("close; open", 5),
        ("[x for x in close]", 0),
        ("clоse", 2),  # Cyrillic 'о'
        ("`ls`", 0),
        ("f'{close}'", 1),
    ],
)
def test_injection_attempts_are_rejected(source: str, position: int) -> None:
    with pytest.raises(SignalLanguageError) as info:
        parse(source)
    assert info.value.position == position
    with pytest.raises(SignalLanguageError):
        compile_expression(source)


def test_strings_are_only_timeframes() -> None:
    with pytest.raises(SignalLanguageError, match="only a timeframe"):
        parse('tf("4h; import os", close)')
    with pytest.raises(SignalLanguageError, match="only allowed as the timeframe"):
        parse('tf(close, "4h")')
    with pytest.raises(SignalLanguageError, match="unterminated"):
        parse('tf("4h, close)')


def test_very_long_input_is_rejected() -> None:
    source = " + ".join(["close"] * (MAX_SOURCE_CHARS // 8 + 10))
    assert len(source) > MAX_SOURCE_CHARS
    with pytest.raises(SignalLanguageError, match="limit") as info:
        parse(source)
    assert info.value.position == MAX_SOURCE_CHARS
    with pytest.raises(SignalLanguageError, match="limit"):
        compile_expression("close > 1" + " " * MAX_SOURCE_CHARS)


def test_deep_nesting_is_rejected() -> None:
    depth = MAX_DEPTH + 5
    with pytest.raises(SignalLanguageError, match="nests deeper"):
        parse("(" * depth + "close" + ")" * depth)
    with pytest.raises(SignalLanguageError, match="nests deeper"):
        parse("-" * depth + "close")
    with pytest.raises(SignalLanguageError, match="nests deeper"):
        parse("abs(" * depth + "close" + ")" * depth)
    # just inside the limit parses
    inside = MAX_DEPTH - 2
    parse("(" * inside + "close" + ")" * inside)


def test_too_many_nodes_are_rejected() -> None:
    source = "+".join(["1"] * (MAX_NODES + 1))
    assert len(source) < MAX_SOURCE_CHARS
    with pytest.raises(SignalLanguageError, match="more than"):
        parse(source)


def test_unary_minus_binds_tighter_than_multiplication() -> None:
    tree = parse("-a * b")
    assert isinstance(tree, Binary) and tree.op == "*"
    assert isinstance(tree.left, Unary) and tree.left.op == "-"


def test_a_source_is_parsed_once_and_its_tree_shared() -> None:
    source = "sma(close, 17) > lag(close, 3) and rsi(close, 14) < 30"
    tree = parse(source)
    assert parse(source) is tree  # memoized: immutable trees are shared
    assert canonical(parse(source + " ")) == canonical(tree)  # another text, an equal tree


def test_a_syntax_error_is_raised_on_every_call() -> None:
    for _ in range(2):  # errors are not memoized
        with pytest.raises(SignalLanguageError, match="position 7"):
            parse("close >")
