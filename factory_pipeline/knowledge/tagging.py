"""Deterministic topic tagging of text with the trading ontology.

Why rules and not a model: tags are used as retrieval filters and as provenance on every
segment, so the same text must always get the same tags, on any machine, without downloads.
A topic's score is the sum over its terms of ``weight x min(matches, MAX_TERM_COUNT)``; a topic
is assigned when its score reaches ``MIN_TOPIC_SCORE``. The rule is written in docs/ontology.md.
"""

from __future__ import annotations

import re
from functools import lru_cache

from factory_pipeline.knowledge.ontology import MAX_TERM_COUNT, MIN_TOPIC_SCORE, ONTOLOGY, Topic

_WORD_SEPARATOR = r"[\s\-]+"
_DASHES = str.maketrans({"\u2010": "-", "\u2011": "-", "\u00ad": ""})


def tag_text(
    text: str,
    *,
    min_score: float = MIN_TOPIC_SCORE,
    ontology: tuple[Topic, ...] = ONTOLOGY,
) -> list[str]:
    """Topic ids whose score reaches ``min_score``, highest score first (ties: ontology order)."""
    scores = score_text(text, ontology=ontology)
    order = {topic.id: index for index, topic in enumerate(ontology)}
    chosen = [topic_id for topic_id, score in scores.items() if score >= min_score]
    return sorted(chosen, key=lambda topic_id: (-scores[topic_id], order[topic_id]))


def score_text(text: str, *, ontology: tuple[Topic, ...] = ONTOLOGY) -> dict[str, float]:
    """Score of every topic with at least one matching term (rounded to 4 decimals)."""
    normalized = text.translate(_DASHES)
    lowered = normalized.lower()
    scores: dict[str, float] = {}
    for topic_id, patterns in _compiled(ontology):
        score = 0.0
        for pattern, weight, anchor in patterns:
            if anchor and anchor not in lowered:
                continue  # the term's first word is absent: no match possible (a fast path)
            matches = len(pattern.findall(normalized))
            if matches:
                score += weight * min(matches, MAX_TERM_COUNT)
        if score > 0:
            scores[topic_id] = round(score, 4)
    return scores


def term_pattern(term: str) -> str:
    """The regular expression a term of the ontology compiles to (see ontology.py for syntax)."""
    if term.startswith("re:"):
        return term[3:]
    words = [word for word in re.split(_WORD_SEPARATOR, term.strip()) if word]
    if not words:
        raise ValueError(f"empty ontology term {term!r}")
    parts = []
    for word in words:
        if word.endswith("*"):
            parts.append(re.escape(word[:-1]) + r"\w*")
        else:
            parts.append(re.escape(word) + r"(?:s|es)?")
    return r"(?<!\w)" + _WORD_SEPARATOR.join(parts) + r"(?!\w)"


@lru_cache(maxsize=8)
def _compiled(
    ontology: tuple[Topic, ...],
) -> tuple[tuple[str, tuple[tuple[re.Pattern[str], float, str], ...]], ...]:
    """Compile every term once per ontology (the ontology is an immutable tuple), with the
    lower-case literal its first word starts with ("" for raw regexes)."""
    return tuple(
        (
            topic.id,
            tuple(
                (re.compile(term_pattern(term), re.IGNORECASE), weight, _anchor(term))
                for term, weight in topic.terms
            ),
        )
        for topic in ontology
    )


def _anchor(term: str) -> str:
    if term.startswith("re:"):
        return ""
    first = re.split(_WORD_SEPARATOR, term.strip())[0]
    return first.rstrip("*").lower()
