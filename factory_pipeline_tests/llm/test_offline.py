"""The offline backend's dispatch and the shared lexicon / sentence-pattern utilities."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from factory_pipeline.errors import LLMError
from factory_pipeline.llm import LLMOutputError, OfflineBackend
from factory_pipeline.llm.offline import (
    OfflineRequest,
    classify_timeframes,
    content_tokens,
    detect_topics,
    find_numbers,
    find_timeframes,
    jaccard,
    normalize_name,
    normalize_whitespace,
    quote_occurs,
    sentence_roles,
    split_sentences,
)


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str


class Loose(BaseModel):
    text: str
    extra_field: str = "x"


def test_offline_backend_dispatches_by_task_with_the_context():
    seen: list[OfflineRequest] = []

    def handler(request: OfflineRequest) -> BaseModel:
        seen.append(request)
        return Echo(text=str(request.context).upper())

    backend = OfflineBackend({"echo": handler})
    result = backend.complete_structured("echo", "v1", "sys", "usr", Echo, context="abc")
    assert result.value == Echo(text="ABC")
    assert result.model == "offline-v1" and result.attempts == 0 and not result.cached
    assert backend.usage.total_tokens == 0
    assert seen[0].task == "echo" and seen[0].schema is Echo


def test_offline_backend_unknown_task_names_it():
    with pytest.raises(LLMError, match=r"'nope'.*known: echo"):
        OfflineBackend({"echo": lambda r: Echo(text="")}).complete_structured(
            "nope", "v1", "s", "u", Echo
        )


def test_offline_answers_are_validated_against_the_schema_like_model_answers():
    backend = OfflineBackend({"leaky": lambda r: Loose(text="a")})
    with pytest.raises(LLMOutputError, match="extra_field"):
        backend.complete_structured("leaky", "v1", "s", "u", Echo)


def test_split_sentences_keeps_verbatim_spans():
    text = (
        "Enter long when the 20-period SMA crosses above the 50-period SMA. Use a 2.5 ATR stop,\n"
        "e.g. below the swing low. Risk 1% per trade!\n\nHeadline without period\nNext line"
    )
    sentences = split_sentences(text)
    assert [text[s.start : s.end] for s in sentences] == [s.text for s in sentences]
    assert [s.normalized for s in sentences] == [
        "Enter long when the 20-period SMA crosses above the 50-period SMA.",
        "Use a 2.5 ATR stop, e.g. below the swing low.",
        "Risk 1% per trade!",
        "Headline without period Next line",
    ]


def test_sentence_roles():
    assert sentence_roles("Enter long when the fast EMA crosses above the slow EMA.") == ["entry"]
    assert sentence_roles("Exit when the close drops below the 10-day low.") == ["exit"]
    assert sentence_roles("Place the stop 2 ATR below the entry price.") == ["exit", "risk"]
    assert sentence_roles("Never risk more than 1 percent of equity on a trade.") == ["risk"]
    assert sentence_roles("Only trade when the daily close is above the 200-day SMA.") == ["setup"]
    assert sentence_roles("Markets have moods, and traders have more of them.") == []


def test_numbers_and_timeframes():
    sentence = "Buy when the 2-period RSI is below 10 on the 15-minute chart; stop at 1.5 ATR."
    assert find_numbers(sentence) == [2.0, 10.0, 15.0, 1.5]
    assert find_timeframes(sentence) == ["15m"]
    assert find_timeframes("the 4-hour close and the daily chart, but a 20-day high") == [
        "4h",
        "1d",
    ]
    assert classify_timeframes(["1h", "4h"]) == {"HTF": ["4h"], "MTF": [], "LTF": ["1h"]}
    assert classify_timeframes(["15m", "1d", "4h"]) == {
        "HTF": ["1d"],
        "MTF": ["4h"],
        "LTF": ["15m"],
    }
    assert classify_timeframes(["1d"])["HTF"] == ["1d"]
    assert classify_timeframes(["4h"])["MTF"] == ["4h"]
    assert classify_timeframes(["5m"])["LTF"] == ["5m"]


def test_quote_occurs_after_whitespace_normalization_only():
    text = "Place the stop\n  2 ATR below\tentry."
    assert quote_occurs("Place the stop 2 ATR below entry.", text)
    assert quote_occurs("  stop 2 ATR  ", text)
    assert not quote_occurs("place the stop 2 ATR below entry.", text)  # case matters
    assert not quote_occurs("Place the stop 3 ATR below entry.", text)
    assert not quote_occurs("   ", text)
    assert normalize_whitespace("a\u00a0 b\n") == "a b"  # NFKC turns NBSP into a space


def test_name_normalization_and_similarity():
    assert normalize_name("The Moving-Average Crossover Strategy") == normalize_name(
        "moving average crossovers"
    )
    assert normalize_name("Breakout") != normalize_name("Breakeven")
    a = content_tokens("Buy the breakout of the range high")  # breakout range high buy
    b = content_tokens("Sell the breakout of the range low")  # breakout range low sell
    assert jaccard(a, b) == pytest.approx(2 / 6)
    assert jaccard([], []) == 1.0


def test_detect_topics_in_lexicon_order():
    keys = [t.key for t in detect_topics("A 4-hour close above the 200 SMA filters RSI entries.")]
    assert keys == ["htf_filter", "rsi_reversion"]
