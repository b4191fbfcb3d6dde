"""Tagging with the trading ontology: hand-scored sentences, matching rules, ontology data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from factory_pipeline.knowledge.ontology import MIN_TOPIC_SCORE, ONTOLOGY, topic_ids
from factory_pipeline.knowledge.tagging import score_text, tag_text, term_pattern

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ontology.md"


@pytest.mark.parametrize(
    ("text", "scores"),
    [
        # "mean reversion" 1.0 + "reversion" 0.75 (also inside the phrase) + "oversold" 0.5
        ("Mean reversion works when price is oversold.", {"mean_reversion": 2.25}),
        # one weak term each: below the threshold
        ("Place the stop 2 ATR below entry.", {"exits_stops": 0.35, "volatility": 0.5}),
        # plural and hyphen forms: "trailing stop" 1.0 + "stop" 0.35; "trend following" 1.0
        # + "trend" 0.35
        (
            "Trailing stops and a trend-following filter.",
            {"exits_stops": 1.35, "trend_following": 1.35},
        ),
        # no match inside other words
        ("The nonstop stopwatch restarted.", {}),
        # a trailing * matches any ending
        ("Revenge trading after losses.", {"psychology": 1.0}),
        # "higher timeframe" 1.0 + "timeframe" 0.5 + the "4-hour" pattern 0.35
        ("Check the higher timeframe and the 4-hour chart.", {"timeframes": 1.85}),
        # "funding rate" 1.0 + "funding" 0.5 + "open interest" 1.0 + "perpetual*" 0.75
        (
            "The funding rate and open interest on perpetual futures.",
            {"funding_open_interest": 3.25},
        ),
    ],
)
def test_scores_match_hand_derived_values(text: str, scores: dict[str, float]) -> None:
    assert score_text(text) == scores
    expected_tags = [topic for topic, score in scores.items() if score >= MIN_TOPIC_SCORE]
    assert sorted(tag_text(text)) == sorted(expected_tags)


def test_order_is_score_then_ontology_order_and_threshold_applies() -> None:
    # Equal scores: trend_following comes before exits_stops in the ontology.
    assert tag_text("Trailing stops and a trend-following filter.") == [
        "trend_following",
        "exits_stops",
    ]
    # "oversold" 0.5 x 2 = 1.0 beats "stop" 0.35: mean_reversion only.
    assert tag_text("Oversold, oversold again; the stop is close.") == ["mean_reversion"]
    assert tag_text("Place the stop 2 ATR below entry.", min_score=0.3) == [
        "volatility",
        "exits_stops",
    ]


def test_repeated_terms_count_at_most_three_times() -> None:
    assert score_text("stop stop") == {"exits_stops": 0.7}
    assert score_text("stop stop stop stop stop") == {"exits_stops": 1.05}
    assert tag_text("stop stop") == []
    assert tag_text("stop stop stop stop stop") == ["exits_stops"]


def test_term_pattern_syntax() -> None:
    pattern = re.compile(term_pattern("z-score"), re.IGNORECASE)
    assert pattern.fullmatch("Z-scores") and pattern.fullmatch("z score")
    assert not pattern.search("fizz-scoreboard")
    wildcard = re.compile(term_pattern("pyramid*"), re.IGNORECASE)
    assert wildcard.fullmatch("pyramiding") and wildcard.fullmatch("Pyramid")
    assert term_pattern("re:\\bx\\b") == "\\bx\\b"
    with pytest.raises(ValueError):
        term_pattern("  ")


def test_ontology_data_is_well_formed() -> None:
    ids = topic_ids()
    assert len(ids) == len(set(ids)) >= 15
    for topic in ONTOLOGY:
        assert re.fullmatch(r"[a-z][a-z_]*", topic.id)
        assert topic.label and topic.description and topic.terms
        normalized = [" ".join(re.split(r"[\s\-]+", term.lower())) for term, _ in topic.terms]
        assert len(normalized) == len(set(normalized)), topic.id
        assert all(0 < weight <= 1.0 for _, weight in topic.terms)
        # a single strong mention can tag every topic
        assert max(weight for _, weight in topic.terms) >= MIN_TOPIC_SCORE, topic.id
        for term, _ in topic.terms:
            re.compile(term_pattern(term))


def test_docs_list_every_topic() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for topic in ONTOLOGY:
        assert f"`{topic.id}`" in text, topic.id
