"""BM25 sparse encoder: tokens, stems, stable term indices and the documented BM25 weights."""

from __future__ import annotations

import hashlib

import pytest

from factory_pipeline.knowledge.sparse import (
    SparseEncoder,
    SparseTerms,
    average_document_length,
    stem,
    term_index,
    tokenize,
)


def _index(term: str) -> int:
    """Independent re-derivation of the documented term index (BLAKE2b, 4 bytes, big-endian)."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big")


def _weight(tf: int, doc_len: int, k1: float, b: float, avgdl: float) -> float:
    return tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_len / avgdl))


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["trade", "trades", "traded", "trading", "trader", "traders"], "trad"),
        (["stop", "stops", "stopped", "stopping"], "stop"),
        (["strategy", "strategies"], "strategy"),
        (["loss", "losses"], "loss"),
        (["high", "higher", "highest"], "high"),
        (["price", "prices", "priced", "pricing"], "pric"),
    ],
)
def test_stem_maps_inflections_to_one_term(words: list[str], expected: str) -> None:
    assert {stem(word) for word in words} == {expected}


def test_stem_keeps_short_words_numbers_and_protected_endings() -> None:
    assert stem("rsi") == "rsi"
    assert stem("200") == "200"
    assert stem("basis") == "basis"
    assert stem("focus") == "focus"
    assert stem("need") == "need"  # 'ed' only stripped when 3+ characters remain


def test_tokenize_lowercases_splits_and_drops_stop_words() -> None:
    text = "The Traders were trading BTC-perpetuals; a 20-day ATR_stop, and x."
    assert tokenize(text) == ["trad", "trad", "btc", "perpetual", "20", "day", "atr", "stop"]
    assert tokenize("the and of it") == []


def test_term_index_is_stable_32_bit_blake2b() -> None:
    for term in ("trad", "atr", "donchian", "20"):
        assert term_index(term) == _index(term)
        assert 0 <= term_index(term) < 2**32


def test_document_weights_follow_bm25_formula() -> None:
    encoder = SparseEncoder(k1=1.2, b=0.75, avg_doc_length=4)
    terms = encoder.encode_document("breakout breakout breakout volume")  # |d| = 4 = avgdl
    weights = dict(zip(terms.indices, terms.values, strict=True))
    # At |d| = avgdl the length factor is 1: w = tf * 2.2 / (tf + 1.2).
    assert weights[_index("breakout")] == pytest.approx(3 * 2.2 / 4.2)
    assert weights[_index("volum")] == pytest.approx(1.0)
    assert list(terms.indices) == sorted(terms.indices)


def test_term_frequency_saturates_below_k1_plus_one() -> None:
    encoder = SparseEncoder(k1=1.2, b=0.0)  # b = 0: no length effect, pure saturation
    weights = [
        encoder.encode_document(" ".join(["breakout"] * tf)).values[0] for tf in (1, 2, 5, 50)
    ]
    assert weights == sorted(weights) and len(set(weights)) == 4
    assert weights[0] == pytest.approx(1.0)
    assert weights[-1] < 2.2
    # Diminishing returns: the 2nd occurrence adds more than each of occurrences 3..5.
    assert weights[1] - weights[0] > (weights[2] - weights[1]) / 3


def test_longer_documents_get_lower_weight_for_same_term_frequency() -> None:
    encoder = SparseEncoder(k1=1.2, b=0.75, avg_doc_length=10)
    short = encoder.encode_document("funding " + "alpha " * 4)
    long = encoder.encode_document("funding " + "alpha " * 39)
    key = _index("fund")
    w_short = dict(zip(short.indices, short.values, strict=True))[key]
    w_long = dict(zip(long.indices, long.values, strict=True))[key]
    assert w_short == pytest.approx(_weight(1, 5, 1.2, 0.75, 10))
    assert w_long == pytest.approx(_weight(1, 40, 1.2, 0.75, 10))
    assert w_long < w_short
    flat = SparseEncoder(k1=1.2, b=0.0, avg_doc_length=10)
    w_flat_short = dict(zip(*_pair(flat.encode_document("funding alpha")), strict=True))[key]
    w_flat_long = dict(zip(*_pair(flat.encode_document("funding " + "alpha " * 39)), strict=True))
    assert w_flat_short == pytest.approx(w_flat_long[key]) == pytest.approx(1.0)


def _pair(terms: SparseTerms) -> tuple[tuple[int, ...], tuple[float, ...]]:
    return terms.indices, terms.values


def test_query_is_binary_over_distinct_terms() -> None:
    query = SparseEncoder().encode_query("ATR atr stop and the stops")
    assert sorted(query.indices) == sorted({_index("atr"), _index("stop")})
    assert query.values == (1.0, 1.0)
    assert len(SparseEncoder().encode_query("the of and")) == 0


def test_empty_document_encodes_to_empty_vector() -> None:
    assert len(SparseEncoder().encode_document("")) == 0


def test_average_document_length_counts_kept_tokens() -> None:
    assert average_document_length(["stop loss", "the atr of volatility today"]) == 2.5


def test_encoder_name_changes_with_parameters_and_rejects_bad_ones() -> None:
    assert SparseEncoder(k1=1.2).name != SparseEncoder(k1=1.5).name
    with pytest.raises(ValueError, match="k1"):
        SparseEncoder(k1=0)
    with pytest.raises(ValueError, match="b="):
        SparseEncoder(b=1.5)
