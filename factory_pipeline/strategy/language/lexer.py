"""Tokenizer of the signal language.

The lexer is the first gate against code injection: it knows only numbers, plain identifiers,
one quoted string form (used solely for the timeframe of ``tf(...)``), a fixed operator set and
the keywords ``and or not true false``. Characters that would open Python constructs (``.``
attribute access, ``[`` subscripts, ``:`` lambdas and slices, ``=`` assignment, ``**``) are
rejected here with the character offset, and so are names starting with ``_`` (dunders) and
Python keywords, so ``__import__('os')`` or ``lambda: 0`` never reach the parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from factory_pipeline.errors import SignalLanguageError

#: Longest source text accepted; modules are one-liners, this bounds parser work.
MAX_SOURCE_CHARS = 4000

TokenKind = Literal["number", "name", "string", "op", "keyword", "end"]

KEYWORDS = frozenset({"and", "or", "not", "true", "false"})

#: Python words an LLM might try; named in the error so the rejection is explicit.
PYTHON_WORDS = frozenset(
    {
        "lambda", "import", "from", "def", "class", "return", "yield", "if", "else", "elif",
        "for", "while", "in", "is", "with", "as", "try", "except", "finally", "raise", "del",
        "global", "nonlocal", "assert", "pass", "break", "continue", "async", "await", "eval",
        "exec", "compile", "getattr", "setattr", "globals", "locals", "None",
        "True", "False",
    }
)  # fmt: skip

_TWO_CHAR_OPS = ("<=", ">=", "==", "!=")
_ONE_CHAR_OPS = frozenset("+-*/<>(),")

#: Characters with a dedicated explanation (the rest get a generic "unexpected character").
_FORBIDDEN_HINTS = {
    ".": "attribute access ('.') is not allowed",
    "[": "subscripts ('[') are not allowed; use lag(x, n) for past values",
    "]": "subscripts (']') are not allowed; use lag(x, n) for past values",
    "{": "'{' is not allowed",
    "}": "'}' is not allowed",
    ":": "':' is not allowed (no lambdas, slices or annotations)",
    ";": "';' is not allowed: an expression is a single statement",
    "=": "'=' is not allowed; use '==' to compare",
    "!": "'!' is not allowed; use 'not' or '!='",
    "&": "'&' is not allowed; use 'and'",
    "|": "'|' is not allowed; use 'or'",
    "%": "'%' is not allowed",
    "@": "'@' is not allowed",
    "^": "'^' is not allowed",
    "~": "'~' is not allowed; use 'not'",
    "\\": "'\\' is not allowed",
    "`": "'`' is not allowed",
    "$": "'$' is not allowed",
    "#": "comments ('#') are not allowed",
}


@dataclass(frozen=True)
class Token:
    """One lexical token; ``position`` is its 0-based character offset in the source."""

    kind: TokenKind
    text: str
    position: int


def tokenize(source: str) -> list[Token]:
    """Split ``source`` into tokens ending with an ``end`` token.

    Raises SignalLanguageError (with the offset) on any character or word outside the language
    and on sources longer than MAX_SOURCE_CHARS.
    """
    if not isinstance(source, str):
        raise SignalLanguageError(f"expression must be text, got {type(source).__name__}")
    if len(source) > MAX_SOURCE_CHARS:
        # position = first character past the limit; the text itself is not echoed (too long)
        raise SignalLanguageError(
            f"expression is {len(source)} characters long; the limit is {MAX_SOURCE_CHARS} "
            f"(starts {source[:40]!r})",
            "",
            MAX_SOURCE_CHARS,
        )
    tokens: list[Token] = []
    i = 0
    n = len(source)
    while i < n:
        ch = source[i]
        if ch in " \t\r\n":
            i += 1
        elif ch.isdigit() or (ch == "." and i + 1 < n and source[i + 1].isdigit()):
            end = _scan_number(source, i)
            tokens.append(Token("number", source[i:end], i))
            i = end
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            end = i + 1
            while (
                end < n and source[end].isascii() and (source[end].isalnum() or source[end] == "_")
            ):
                end += 1
            word = source[i:end]
            _check_word(word, source, i)
            tokens.append(Token("keyword" if word in KEYWORDS else "name", word, i))
            i = end
        elif ch in "\"'":
            end = source.find(ch, i + 1)
            if end < 0:
                raise SignalLanguageError("unterminated string", source, i)
            text = source[i + 1 : end]
            if not all(c.isascii() and c.isalnum() for c in text):
                raise SignalLanguageError(
                    'strings may hold only a timeframe such as "4h"', source, i
                )
            tokens.append(Token("string", text, i))
            i = end + 1
        elif source.startswith(_TWO_CHAR_OPS, i):
            tokens.append(Token("op", source[i : i + 2], i))
            i += 2
        elif source.startswith("**", i):
            raise SignalLanguageError("'**' (power) is not allowed", source, i)
        elif ch in _ONE_CHAR_OPS:
            tokens.append(Token("op", ch, i))
            i += 1
        else:
            hint = _FORBIDDEN_HINTS.get(ch, f"unexpected character {ch!r}")
            raise SignalLanguageError(hint, source, i)
    tokens.append(Token("end", "", n))
    return tokens


def _scan_number(source: str, start: int) -> int:
    """End offset of the decimal literal starting at ``start`` (digits, fraction, exponent)."""
    n = len(source)
    i = start
    while i < n and source[i].isdigit():
        i += 1
    if i < n and source[i] == ".":
        i += 1
        while i < n and source[i].isdigit():
            i += 1
    if i < n and source[i] in "eE":
        j = i + 1
        if j < n and source[j] in "+-":
            j += 1
        if j < n and source[j].isdigit():
            i = j
            while i < n and source[i].isdigit():
                i += 1
    if i < n and (source[i].isalpha() or source[i] == "_" or source[i] == "."):
        raise SignalLanguageError(f"malformed number {source[start : i + 1]!r}", source, start)
    return i


def _check_word(word: str, source: str, position: int) -> None:
    """Reject underscore-prefixed names and Python keywords before they reach the parser."""
    if word.startswith("_"):
        raise SignalLanguageError(
            f"names starting with '_' are not allowed ({word!r})", source, position
        )
    if word in PYTHON_WORDS:
        hint = ""
        if word in ("True", "False"):
            hint = f"; write {word.lower()!r}"
        elif word in ("if", "else"):
            hint = "; combine conditions with and/or/not"
        raise SignalLanguageError(
            f"{word!r} is not part of the signal language{hint}", source, position
        )
