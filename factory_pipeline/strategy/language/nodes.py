"""Syntax tree of the signal language: a closed set of frozen node types.

The parser can only build these nodes, and the compiler only knows how to evaluate these nodes,
so there is no path from source text to arbitrary Python. Every node carries ``position``, the
0-based character offset of the token that introduced it, so later stages (type checking,
parameter validation) can point at the offending text.

``canonical(node)`` renders a tree in one normal form (single spaces, every nested operator
parenthesized, numbers in shortest form); equal trees render equally, which makes the text
usable in cache keys.
"""

from __future__ import annotations

from dataclasses import dataclass

ARITHMETIC_OPS = frozenset({"+", "-", "*", "/"})
COMPARISON_OPS = frozenset({"<", "<=", ">", ">=", "==", "!="})
LOGICAL_OPS = frozenset({"and", "or"})


@dataclass(frozen=True)
class Number:
    """A numeric literal (always a float64 value)."""

    value: float
    position: int


@dataclass(frozen=True)
class Boolean:
    """``true`` or ``false``."""

    value: bool
    position: int


@dataclass(frozen=True)
class String:
    """A quoted string; valid only as the timeframe argument of ``tf``."""

    value: str
    position: int


@dataclass(frozen=True)
class Name:
    """An identifier: a series (``close``) or a declared parameter (``fast``)."""

    name: str
    position: int


@dataclass(frozen=True)
class Call:
    """A function call ``name(arg, ...)``; ``position`` is that of the name."""

    name: str
    args: tuple[Node, ...]
    position: int


@dataclass(frozen=True)
class Unary:
    """``-x`` or ``not x``; ``position`` is that of the operator."""

    op: str
    operand: Node
    position: int


@dataclass(frozen=True)
class Binary:
    """An arithmetic, comparison or logical operator; ``position`` is that of the operator."""

    op: str
    left: Node
    right: Node
    position: int


Node = Number | Boolean | String | Name | Call | Unary | Binary


def canonical(node: Node) -> str:
    """Normal-form text of ``node`` (see module docstring)."""
    if isinstance(node, Number):
        return format_number(node.value)
    if isinstance(node, Boolean):
        return "true" if node.value else "false"
    if isinstance(node, String):
        return f'"{node.value}"'
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Call):
        return f"{node.name}({', '.join(canonical(a) for a in node.args)})"
    if isinstance(node, Unary):
        sep = " " if node.op == "not" else ""
        return f"{node.op}{sep}{_wrapped(node.operand)}"
    if isinstance(node, Binary):
        return f"{_wrapped(node.left)} {node.op} {_wrapped(node.right)}"
    raise TypeError(f"not a signal-language node: {node!r}")


def iter_nodes(node: Node):
    """All nodes of the tree, parents before children (depth first)."""
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, Call):
            stack.extend(reversed(current.args))
        elif isinstance(current, Unary):
            stack.append(current.operand)
        elif isinstance(current, Binary):
            stack.extend((current.right, current.left))


def format_number(value: float) -> str:
    """Shortest text that reads back as ``value``: ``20`` for 20.0, ``0.5``, ``1e-08``."""
    if value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def _wrapped(node: Node) -> str:
    text = canonical(node)
    return f"({text})" if isinstance(node, Binary | Unary) else text


def start_position(node: Node) -> int:
    """Offset of the first character of ``node``'s text (the left operand for operators)."""
    while isinstance(node, Binary):
        node = node.left
    return node.position
