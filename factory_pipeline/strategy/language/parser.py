"""Recursive-descent parser: tokens -> syntax tree (nodes.py).

Grammar (lowest precedence first; see docs/signal_language.md for the full EBNF)::

    expression := or_expr
    or_expr    := and_expr { "or" and_expr }
    and_expr   := not_expr { "and" not_expr }
    not_expr   := "not" not_expr | comparison
    comparison := additive [ ("<"|"<="|">"|">="|"=="|"!=") additive ]
    additive   := term { ("+"|"-") term }
    term       := unary { ("*"|"/") unary }
    unary      := "-" unary | primary
    primary    := NUMBER | "true" | "false" | NAME | NAME "(" [ args ] ")" | "(" expression ")"
    args       := argument { "," argument }
    argument   := expression | STRING          (STRING only as the first argument of tf)

Binary operators are left-associative; comparisons do not chain (``a < b < c`` is an error,
unlike Python, because its meaning would be ambiguous to a reader). Nesting depth and node count
are bounded so hostile input cannot exhaust the stack or the CPU.
"""

from __future__ import annotations

import functools
import math

from factory_pipeline.errors import SignalLanguageError
from factory_pipeline.strategy.language.lexer import Token, tokenize
from factory_pipeline.strategy.language.nodes import (
    COMPARISON_OPS,
    Binary,
    Boolean,
    Call,
    Name,
    Node,
    Number,
    String,
    Unary,
)

#: Deepest nesting of parentheses, calls and unary operators accepted.
MAX_DEPTH = 40
#: Most syntax-tree nodes accepted in one expression.
MAX_NODES = 500


def parse(text: str) -> Node:
    """Parse signal-language source into a syntax tree.

    Only syntax is checked here (names are resolved and types checked by compile_expression).
    Raises SignalLanguageError with the 0-based character offset of the problem.

    Trees are immutable (frozen nodes, tuples of children), so the tree of a source text is
    memoized and shared: a backfill compiles every system's rules once per partition, and
    validation compiles each module's logic again; parsing was a fifth of the factory's
    backtest time. Errors are not memoized (each call raises anew).
    """
    return _parse(text)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Node:
    return _Parser(text).parse()


class _Parser:
    """One-shot parser over the token list of one source text."""

    def __init__(self, text: str) -> None:
        self.source = text
        self.tokens: list[Token] = tokenize(text)
        self.index = 0
        self.depth = 0
        self.nodes = 0

    def parse(self) -> Node:
        if self.peek.kind == "end":
            raise self.error("empty expression", self.peek)
        node = self.expression()
        if self.peek.kind != "end":
            raise self.error(
                f"unexpected {_describe(self.peek)} after a complete expression", self.peek
            )
        return node

    # -- grammar rules, lowest precedence first ------------------------------------------

    def expression(self) -> Node:
        self.enter()
        try:
            return self.or_expr()
        finally:
            self.depth -= 1

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.at_keyword("or"):
            op = self.advance()
            node = self.make(Binary("or", node, self.and_expr(), op.position))
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.at_keyword("and"):
            op = self.advance()
            node = self.make(Binary("and", node, self.not_expr(), op.position))
        return node

    def not_expr(self) -> Node:
        if self.at_keyword("not"):
            op = self.advance()
            self.enter()
            try:
                operand = self.not_expr()
            finally:
                self.depth -= 1
            return self.make(Unary("not", operand, op.position))
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        if self.at_op(*COMPARISON_OPS):
            op = self.advance()
            node = self.make(Binary(op.text, node, self.additive(), op.position))
            if self.at_op(*COMPARISON_OPS):
                raise self.error("comparisons do not chain; write 'a < b and b < c'", self.peek)
        return node

    def additive(self) -> Node:
        node = self.term()
        while self.at_op("+", "-"):
            op = self.advance()
            node = self.make(Binary(op.text, node, self.term(), op.position))
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.at_op("*", "/"):
            op = self.advance()
            node = self.make(Binary(op.text, node, self.unary(), op.position))
        return node

    def unary(self) -> Node:
        if self.at_op("-"):
            op = self.advance()
            self.enter()
            try:
                operand = self.unary()
            finally:
                self.depth -= 1
            return self.make(Unary("-", operand, op.position))
        if self.at_op("+"):
            raise self.error("unary '+' is not allowed; drop it", self.peek)
        return self.primary()

    def primary(self) -> Node:
        token = self.peek
        if token.kind == "number":
            self.advance()
            value = float(token.text)
            if not math.isfinite(value):
                raise self.error(f"number {token.text} is out of range", token)
            return self.make(Number(value, token.position))
        if token.kind == "keyword" and token.text in ("true", "false"):
            self.advance()
            return self.make(Boolean(token.text == "true", token.position))
        if token.kind == "name":
            self.advance()
            if self.at_op("("):
                return self.call(token)
            return self.make(Name(token.text, token.position))
        if self.at_op("("):
            self.advance()
            node = self.expression()
            self.expect(")", "to close '('")
            return node
        if token.kind == "string":
            raise self.error(
                'strings are only allowed as the timeframe of tf("4h", expression)', token
            )
        if token.kind == "end":
            raise self.error("expression ends too early", token)
        raise self.error(f"unexpected {_describe(token)}", token)

    def call(self, name: Token) -> Node:
        self.advance()  # "("
        self.enter()
        try:
            args: list[Node] = []
            if not self.at_op(")"):
                while True:
                    args.append(self.argument(name, len(args)))
                    if not self.at_op(","):
                        break
                    self.advance()
            self.expect(")", f"to close the call of {name.text}")
        finally:
            self.depth -= 1
        return self.make(Call(name.text, tuple(args), name.position))

    def argument(self, function: Token, index: int) -> Node:
        token = self.peek
        if token.kind == "string":
            if function.text != "tf" or index != 0:
                raise self.error(
                    'strings are only allowed as the timeframe of tf("4h", expression)', token
                )
            self.advance()
            return self.make(String(token.text, token.position))
        return self.expression()

    # -- token helpers -----------------------------------------------------------------

    @property
    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at_op(self, *ops: str) -> bool:
        return self.peek.kind == "op" and self.peek.text in ops

    def at_keyword(self, word: str) -> bool:
        return self.peek.kind == "keyword" and self.peek.text == word

    def expect(self, op: str, why: str) -> None:
        if not self.at_op(op):
            raise self.error(f"expected '{op}' {why}, found {_describe(self.peek)}", self.peek)
        self.advance()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nests deeper than {MAX_DEPTH} levels", self.peek)

    def make(self, node: Node) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.error(f"expression has more than {MAX_NODES} elements", self.peek)
        return node

    def error(self, message: str, token: Token) -> SignalLanguageError:
        return SignalLanguageError(message, self.source, token.position)


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "end of expression"
    if token.kind == "string":
        return f'string "{token.text}"'
    return f"{token.kind} {token.text!r}" if token.kind != "op" else f"'{token.text}'"
