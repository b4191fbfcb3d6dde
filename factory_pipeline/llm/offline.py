"""The offline LLM backend and the lexicon / sentence-pattern utilities its tasks share.

Why an offline backend: the whole knowledge track must run with no key and no network, and give
the same answer every time. :class:`OfflineBackend` answers :meth:`complete_structured` by
dispatching on the task name to a deterministic Python implementation registered with
:func:`register_offline_task` (concept extraction and module proposal register themselves in
``knowledge.concepts`` / ``knowledge.proposals``; later tasks register the same way). The
implementation computes its answer from the structured ``context`` (not by parsing the prompt),
and the answer is re-validated against the requested schema exactly like a model's answer.

The utilities below (sentence splitting with verbatim spans, whitespace normalization, number and
timeframe extraction, sentence roles, the topic lexicon, token similarity) are plain functions so
the evidence check and the merge rule use the very same normalization as the offline extractor.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from factory_pipeline.errors import LLMError
from factory_pipeline.llm.backend import (
    LLMOutputError,
    StructuredResult,
    T,
    TokenUsage,
    describe_validation_error,
)

OFFLINE_MODEL = "offline-v1"


@dataclass(frozen=True)
class OfflineRequest:
    """What an offline task implementation receives."""

    task: str
    prompt_version: str
    system: str
    user: str
    schema: type[BaseModel]
    context: Any


OfflineHandler = Callable[[OfflineRequest], BaseModel]

_REGISTRY: dict[str, OfflineHandler] = {}


def register_offline_task(task: str) -> Callable[[OfflineHandler], OfflineHandler]:
    """Decorator: register ``handler`` as the offline implementation of ``task``."""

    def decorator(handler: OfflineHandler) -> OfflineHandler:
        _REGISTRY[task] = handler
        return handler

    return decorator


def registered_offline_tasks() -> list[str]:
    return sorted(_REGISTRY)


class OfflineBackend:
    """Deterministic, network-free backend: dispatches by task name (no tokens are spent)."""

    def __init__(self, handlers: Mapping[str, OfflineHandler] | None = None) -> None:
        self.model = OFFLINE_MODEL
        self.usage = TokenUsage()
        self._handlers = dict(handlers) if handlers is not None else None

    def __repr__(self) -> str:
        return f"OfflineBackend(model={self.model!r})"

    def complete_structured(
        self,
        task: str,
        prompt_version: str,
        system: str,
        user: str,
        schema: type[T],
        *,
        context: Any = None,
    ) -> StructuredResult[T]:
        handlers = self._handlers if self._handlers is not None else _REGISTRY
        handler = handlers.get(task)
        if handler is None:
            known = ", ".join(sorted(handlers)) or "none"
            raise LLMError(
                f"offline LLM backend has no implementation for task {task!r} (known: {known})"
            )
        request = OfflineRequest(task, prompt_version, system, user, schema, context)
        answer = handler(request)
        try:
            value = schema.model_validate_json(answer.model_dump_json())
        except ValidationError as exc:
            raise LLMOutputError(
                f"offline task {task!r}: answer does not validate against {schema.__name__}: "
                f"{describe_validation_error(exc)}"
            ) from exc
        return StructuredResult(value=value, model=self.model, cached=False, attempts=0)


# Text normalization ----------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")

#: Words ignored by token similarity (function words and generic trading filler).
STOP_WORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "than",
        "that",
        "the",
        "then",
        "this",
        "to",
        "was",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "you",
        "your",
        "we",
        "our",
        "can",
        "may",
        "should",
        "must",
        "not",
        "no",
        "only",
        "one",
        "two",
        "all",
        "any",
        "each",
        "more",
        "most",
        "less",
        "very",
    }
)

#: Extra words ignored when normalizing concept names (they do not distinguish concepts).
GENERIC_NAME_WORDS = frozenset(
    {
        "strategy",
        "strategies",
        "system",
        "setup",
        "setups",
        "rule",
        "rules",
        "method",
        "technique",
    }
)


def normalize_whitespace(text: str) -> str:
    """NFKC-normalize, collapse runs of whitespace to one space, strip."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def quote_occurs(quote: str, text: str) -> bool:
    """Whether ``quote`` occurs in ``text`` after whitespace normalization (case-sensitive)."""
    needle = normalize_whitespace(quote)
    return bool(needle) and needle in normalize_whitespace(text)


def word_tokens(text: str) -> list[str]:
    """Lower-case alphanumeric tokens (decimals kept whole)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def content_tokens(text: str) -> set[str]:
    """Word tokens minus stop words, with a trailing plural 's' stripped (light stemming)."""
    return {_singular(t) for t in word_tokens(text) if t not in STOP_WORDS}


def normalize_name(name: str) -> str:
    """Canonical concept name: content tokens minus generic words, sorted, space-joined."""
    tokens = content_tokens(name) - GENERIC_NAME_WORDS
    return " ".join(sorted(tokens))


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|A & B| / |A | B| (1.0 for two empty sets)."""
    set_a, set_b = set(a), set(b)
    if not set_a and not set_b:
        return 1.0
    return len(set_a & set_b) / len(set_a | set_b)


def _singular(token: str) -> str:
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


# Sentences -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    """A sentence of a text: ``text`` is ``source[start:end]`` (verbatim, stripped)."""

    text: str
    start: int
    end: int

    @property
    def normalized(self) -> str:
        return normalize_whitespace(self.text)


_ABBREVIATIONS = ("e.g.", "i.e.", "vs.", "etc.", "approx.", "fig.", "no.", "cf.")
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|(?<=:)\s*\n")


def split_sentences(text: str) -> list[Sentence]:
    """Split ``text`` into sentences with verbatim spans.

    Boundaries: '.', '!' or '?' followed by whitespace and an upper-case letter or digit (not after
    common abbreviations such as "e.g."), blank lines, and a colon at a line end. Decimal points
    ("2.5 ATR") never split because no whitespace follows them.
    """
    sentences: list[Sentence] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        head = text[start : match.start()].rstrip()
        if head.lower().endswith(_ABBREVIATIONS):
            continue
        _append_sentence(text, start, match.start(), sentences)
        start = match.end()
    _append_sentence(text, start, len(text), sentences)
    return sentences


def _append_sentence(text: str, start: int, end: int, out: list[Sentence]) -> None:
    chunk = text[start:end]
    stripped = chunk.strip()
    if not stripped:
        return
    lead = len(chunk) - len(chunk.lstrip())
    s = start + lead
    out.append(Sentence(text=stripped, start=s, end=s + len(stripped)))


# Numbers and timeframes ------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)")


def find_numbers(text: str) -> list[float]:
    """Every number in ``text`` in order of appearance ("2.5 ATR" -> 2.5, "20-period" -> 20)."""
    return [float(m.group(1)) for m in _NUMBER.finditer(text)]


_TIMEFRAME_UNITS = {
    "minute": "m",
    "minutes": "m",
    "min": "m",
    "mins": "m",
    "m": "m",
    "hour": "h",
    "hours": "h",
    "hr": "h",
    "hrs": "h",
    "h": "h",
    "hourly": "h",
    "day": "d",
    "days": "d",
    "d": "d",
    "daily": "d",
    "week": "w",
    "weeks": "w",
    "w": "w",
    "weekly": "w",
}
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}
_TIMEFRAME = re.compile(
    r"\b(?:(\d{1,3})[- ]?(minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w)\b"
    r"(?=[- ](?:chart|candles?|bars?|close|closes|timeframe|trend|frame)\b|\s*(?:chart|timeframe))"
    r"|(daily|hourly|weekly)\s+(?:chart|close|candles?|bars?|"
    r"timeframe|trend))",
    re.IGNORECASE,
)


def find_timeframes(text: str) -> list[str]:
    """Chart timeframes mentioned in ``text`` as canonical codes ("4-hour chart" -> "4h").

    Only a number+unit followed by a chart word (chart, candle, bar, close, timeframe, trend ...)
    counts, so "a 20-day high" is not a timeframe but "the daily chart" and "4h close" are.
    """
    found: list[str] = []
    for match in _TIMEFRAME.finditer(text):
        if match.group(3):
            code = "1" + _TIMEFRAME_UNITS[match.group(3).lower()]
        else:
            code = f"{int(match.group(1))}{_TIMEFRAME_UNITS[match.group(2).lower()]}"
        if code not in found:
            found.append(code)
    return found


def timeframe_minutes(code: str) -> int:
    """Minutes in a canonical timeframe code ("4h" -> 240)."""
    return int(code[:-1]) * _UNIT_MINUTES[code[-1]]


def classify_timeframes(codes: Iterable[str]) -> dict[str, list[str]]:
    """Assign timeframes to HTF/MTF/LTF.

    With two or more distinct timeframes the role is relative: the longest is HTF, the shortest
    LTF, any between MTF. A single timeframe is placed absolutely: >= 1 day HTF, >= 1 hour MTF,
    shorter LTF.
    """
    unique = sorted(set(codes), key=timeframe_minutes)
    result: dict[str, list[str]] = {"HTF": [], "MTF": [], "LTF": []}
    if len(unique) == 1:
        minutes = timeframe_minutes(unique[0])
        role = "HTF" if minutes >= 1440 else "MTF" if minutes >= 60 else "LTF"
        result[role].append(unique[0])
    elif unique:
        result["LTF"].append(unique[0])
        result["HTF"].append(unique[-1])
        result["MTF"].extend(unique[1:-1])
    return result


# Sentence roles ------------------------------------------------------------------------------

#: Role -> patterns. A sentence can have several roles (a stop rule is both exit and risk).
SENTENCE_ROLES: dict[str, tuple[re.Pattern[str], ...]] = {
    "entry": tuple(
        re.compile(p, re.IGNORECASE)
        for p in (
            r"\b(?:enter|go|get)\s+(?:a\s+)?(?:long|short)\b",
            r"\b(?:buy|sell short|short|open a (?:long|short)(?: position)?)\s+(?:when|if|on|as soon as)\b",
            r"\b(?:entry|entries)\b.{0,60}\b(?:when|if|signal|trigger)\b",
            r"\benter\b.{0,80}\bwhen\b",
        )
    ),
    "exit": tuple(
        re.compile(p, re.IGNORECASE)
        for p in (
            r"\bexit\b",
            r"\bclose (?:the|a|your|all) (?:long|short|position|trade)",
            r"\btake[- ]profit\b|\btake profits?\b|\bprofit target\b",
            r"\bstop(?:[- ]loss)?\b.{0,60}\b(?:atr|average true range|below|above)\b",
            r"\btrail(?:ing)?\b.{0,40}\bstop\b|\bstop\b.{0,40}\btrail",
            r"\btime stop\b|\bbreak[- ]?even\b",
        )
    ),
    "risk": tuple(
        re.compile(p, re.IGNORECASE)
        for p in (
            r"\brisk(?:s|ing)?\b.{0,60}\b(?:percent|%)",
            r"\b(?:percent|%)\b.{0,40}\b(?:of (?:the )?(?:account|equity|capital))\b",
            r"\bstop\b.{0,60}\b(?:atr|average true range)\b",
            r"\bsize (?:the|each|every|your) (?:position|trade)\b",
            r"\b(?:daily loss|max(?:imum)? drawdown|drawdown limit|loss limit)\b",
            r"\bvolatility target|\btarget\b.{0,20}\bvolatility\b",
        )
    ),
    "setup": tuple(
        re.compile(p, re.IGNORECASE)
        for p in (
            r"\bonly (?:take|trade|enter|go|buy|sell)\b",
            r"\b(?:filter|condition|setup|regime)\b",
            r"\b(?:is|are|stays?|remains?|closes?) (?:above|below)\b",
            r"\b(?:uptrend|downtrend|range-bound|ranging|trending)\b",
            r"\bavoid\b|\bdo not (?:trade|enter)\b",
        )
    ),
}


def sentence_roles(sentence: str) -> list[str]:
    """Roles of a sentence (entry, exit, risk, setup) in that fixed order; empty if none."""
    return [
        role
        for role, patterns in SENTENCE_ROLES.items()
        if any(p.search(sentence) for p in patterns)
    ]


# Topic lexicon ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    """A concept family the offline extractor recognizes: display name, summary, patterns, tags."""

    key: str
    name: str
    summary: str
    patterns: tuple[str, ...]
    tags: tuple[str, ...]
    #: more specific topics that take a sentence over from this one when both match
    suppressed_by: tuple[str, ...] = ()

    def matches(self, text: str) -> bool:
        return any(re.search(p, text, re.IGNORECASE) for p in self.patterns)


TOPICS: tuple[Topic, ...] = (
    Topic(
        "ma_cross",
        "Moving Average Crossover",
        "Trend entries taken when a faster moving average crosses a slower moving average.",
        (
            r"\b(?:sma|ema|moving[- ]averages?)\b.{0,80}\bcross",
            r"\bcross(?:es|ing|over)?\b.{0,80}\b(?:sma|ema|moving[- ]average)",
        ),
        ("trend-following", "moving-average"),
    ),
    Topic(
        "donchian",
        "Donchian Channel Breakout",
        "Breakout entries taken when price closes beyond the highest high or lowest low of a lookback window.",
        (r"\bdonchian\b", r"\b\d+[- ](?:day|bar|period)\s+(?:high|low)\b", r"\bbreakout\b"),
        ("breakout", "trend-following"),
        suppressed_by=("squeeze",),
    ),
    Topic(
        "htf_filter",
        "Higher-Timeframe Trend Filter",
        "Trades are taken only in the direction of the trend on a higher timeframe.",
        (
            r"\bhigher[- ]timeframe\b",
            r"\b(?:\d+[- ]?(?:hour|h|day|d)|daily|weekly)\b.{0,40}\b(?:close|trend)\b.{0,40}\b(?:above|below)\b",
        ),
        ("trend-filter", "multi-timeframe"),
    ),
    Topic(
        "atr_trailing",
        "ATR Trailing Stop",
        "A stop that follows price at a multiple of the average true range to lock in trend profits.",
        (
            r"\btrail(?:ing)?\b.{0,60}\b(?:atr|average true range)\b",
            r"\b(?:atr|average true range)\b.{0,60}\btrail",
        ),
        ("exits", "volatility", "stops"),
    ),
    Topic(
        "pyramiding",
        "Pyramiding",
        "Adding to a winning position in steps as the trend extends.",
        (r"\bpyramid",),
        ("position-sizing", "trend-following"),
    ),
    Topic(
        "rsi_reversion",
        "RSI Mean Reversion",
        "Counter-trend entries when the relative strength index reaches oversold or overbought levels.",
        (r"\brsi\b", r"\brelative strength index\b"),
        ("mean-reversion", "oscillator"),
    ),
    Topic(
        "bollinger_fade",
        "Bollinger Band Fade",
        "Fading moves that close outside a Bollinger band, expecting a return to the middle band.",
        (r"\bbollinger\b",),
        ("mean-reversion", "volatility"),
        suppressed_by=("squeeze",),
    ),
    Topic(
        "zscore",
        "Z-Score Reversion",
        "Entries when price deviates from its rolling mean by a number of standard deviations.",
        (r"\bz-?score\b",),
        ("mean-reversion", "statistics"),
    ),
    Topic(
        "range",
        "Range Trading",
        "Trading between support and resistance while the market is range-bound.",
        (
            r"\brange[- ]bound\b",
            r"\branging\b",
            r"\brange (?:detection|trading|filter)\b",
            r"\btrading range\b",
        ),
        ("mean-reversion", "market-structure"),
    ),
    Topic(
        "time_stop",
        "Time Stop",
        "Closing a trade that has not worked after a fixed number of bars.",
        (r"\btime stop\b", r"\bafter \d+ bars\b"),
        ("exits", "time"),
    ),
    Topic(
        "fixed_fractional",
        "Fixed Fractional Position Sizing",
        "Sizing each position so that the loss at the stop is a fixed fraction of equity.",
        (r"\bfixed[- ]fraction", r"\brisk(?:s|ing)?\b.{0,40}\b\d+(?:\.\d+)?\s*(?:percent|%)"),
        ("position-sizing", "risk-management"),
    ),
    Topic(
        "vol_target",
        "Volatility Targeting",
        "Scaling position size so that the position's volatility matches a target.",
        (r"\bvolatility target",),
        ("position-sizing", "volatility"),
    ),
    Topic(
        "daily_loss",
        "Daily Loss Limit",
        "Stopping trading for the day after a maximum daily loss.",
        (r"\bdaily loss\b", r"\bloss limit\b"),
        ("risk-management",),
    ),
    Topic(
        "drawdown",
        "Drawdown Control",
        "Reducing or halting risk as the account drawdown deepens.",
        (r"\bdrawdown\b",),
        ("risk-management",),
    ),
    Topic(
        "breakeven",
        "Breakeven Stop",
        "Moving the stop to the entry price once the trade has moved a multiple of the initial risk.",
        (r"\bbreak[- ]?even\b",),
        ("exits", "risk-management"),
    ),
    Topic(
        "funding",
        "Funding Rate Filter",
        "Using perpetual funding rates to avoid crowded positions or to time entries.",
        (r"\bfunding\b",),
        ("funding", "perpetuals"),
    ),
    Topic(
        "open_interest",
        "Open Interest Confirmation",
        "Using changes in open interest to confirm or reject a move.",
        (r"\bopen interest\b",),
        ("open-interest", "perpetuals"),
    ),
    Topic(
        "squeeze",
        "Volatility Squeeze Breakout",
        "Breakouts after a period of unusually low volatility (a squeeze).",
        (r"\bsqueeze\b",),
        ("breakout", "volatility"),
    ),
    Topic(
        "macd",
        "MACD Momentum",
        "Momentum entries from the MACD line crossing its signal line.",
        (r"\bmacd\b",),
        ("momentum", "trend-following"),
    ),
    Topic(
        "session",
        "Session Filter",
        "Restricting trading to chosen hours or weekdays.",
        (r"\bsession\b", r"\b\d{1,2}:00\s*utc\b", r"\bweekends?\b"),
        ("time", "filter"),
    ),
)

TOPICS_BY_KEY: dict[str, Topic] = {t.key: t for t in TOPICS}


def detect_topics(text: str) -> list[Topic]:
    """Topics whose patterns match ``text``, in lexicon order, minus those suppressed by a more
    specific matching topic (a Bollinger squeeze sentence is not a Bollinger fade)."""
    matched = [t for t in TOPICS if t.matches(text)]
    keys = {t.key for t in matched}
    return [t for t in matched if not keys.intersection(t.suppressed_by)]
