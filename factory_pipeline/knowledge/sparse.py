"""BM25 sparse vectors for keyword retrieval, with no model to download.

Dense embeddings find paraphrases but blur exact trading vocabulary ("ATR", "funding",
"Donchian"); a lexical BM25 signal keeps those sharp, and hybrid retrieval fuses both. This
module is the lexical half, written out so its behaviour is fixed and documented rather than
borrowed from a hub model:

* **Tokens**: lower-cased runs of letters/digits (``[^\\W_]+``), English stop words and
  one-character tokens dropped, then a light suffix stemmer (:func:`stem`).
* **Term index**: the first 4 bytes of BLAKE2b of the stem (a 32-bit space, what Qdrant stores
  sparse indices in), so indices are stable across processes and corpora and need no vocabulary.
* **Document values**: BM25 term-frequency saturation with length normalisation,
  ``w(t, d) = tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))`` where ``|d|`` is the
  number of kept tokens and ``avgdl`` a fixed constant of the encoder (not refitted per corpus,
  so a document's vector never changes when other books are added or removed).
* **Queries**: weight 1.0 per distinct query term.
* **IDF**: applied by Qdrant at query time (sparse vector ``modifier=IDF``, also in local mode),
  ``idf(t) = ln((N - df(t) + 0.5) / (df(t) + 0.5) + 1)`` over the live points of the collection,
  so the score ``sum_t idf(t) * w(t, d)`` is Okapi BM25 and deletions update IDF at once.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

#: BM25 defaults (Robertson/Lucene).
DEFAULT_K1 = 1.2
DEFAULT_B = 0.75
#: Typical kept-token count of one book chunk: 68 measured on the sample corpus (chunks of at
#: most 800 characters); a fixed constant so vectors do not depend on the rest of the corpus.
DEFAULT_AVG_DOC_LENGTH = 70.0


@dataclass(frozen=True)
class SparseTerms:
    """A sparse vector: parallel tuples of 32-bit term indices (sorted, unique) and weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.indices)


class SparseEncoder:
    """Encodes documents and queries as BM25 sparse vectors (IDF applied by the index)."""

    def __init__(
        self,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        avg_doc_length: float = DEFAULT_AVG_DOC_LENGTH,
    ) -> None:
        if k1 <= 0 or not 0 <= b <= 1 or avg_doc_length <= 0:
            raise ValueError(
                f"BM25 parameters out of range: k1={k1} (> 0), b={b} (0..1), "
                f"avg_doc_length={avg_doc_length} (> 0)"
            )
        self.k1 = k1
        self.b = b
        self.avg_doc_length = avg_doc_length

    @property
    def name(self) -> str:
        """Identifies the vector space; an index recreates its collections when it changes."""
        return f"bm25-blake2b32-k1={self.k1:g}-b={self.b:g}-avgdl={self.avg_doc_length:g}"

    def encode_document(self, text: str) -> SparseTerms:
        """BM25-saturated, length-normalised term weights of one document."""
        tokens = tokenize(text)
        if not tokens:
            return SparseTerms((), ())
        norm = self.k1 * (1.0 - self.b + self.b * len(tokens) / self.avg_doc_length)
        counts = Counter(term_index(token) for token in tokens)
        indices = sorted(counts)
        values = tuple(counts[i] * (self.k1 + 1.0) / (counts[i] + norm) for i in indices)
        return SparseTerms(tuple(indices), values)

    def encode_documents(self, texts: Iterable[str]) -> list[SparseTerms]:
        return [self.encode_document(text) for text in texts]

    def encode_query(self, text: str) -> SparseTerms:
        """Weight 1.0 per distinct query term (IDF is applied by the index)."""
        indices = sorted({term_index(token) for token in tokenize(text)})
        return SparseTerms(tuple(indices), (1.0,) * len(indices))


def tokenize(text: str) -> list[str]:
    """Stemmed content tokens of ``text`` in order (stop words and 1-char tokens dropped)."""
    return [
        stem(word)
        for word in _WORD.findall(text.lower())
        if len(word) > 1 and word not in STOP_WORDS
    ]


def average_document_length(texts: Sequence[str]) -> float:
    """Mean kept-token count of ``texts``: a data-driven choice for ``avg_doc_length``."""
    if not texts:
        return DEFAULT_AVG_DOC_LENGTH
    return sum(len(tokenize(text)) for text in texts) / len(texts)


@lru_cache(maxsize=200_000)
def term_index(term: str) -> int:
    """Stable 32-bit index of a term (BLAKE2b, not ``hash()``, which is salted per process)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Light English suffix stripping so inflections share a term.

    Steps, each applied at most once and only while at least 3 characters remain:
    plural (``sses``->``ss``, ``ies``->``y``, ``s``->'' unless ``ss``/``us``/``is``);
    ``ing``/``ed`` (then a doubled final consonant other than l/s/z is undoubled);
    ``ly``; comparative ``est``/``er``; a final ``e``. So trade, trades, traded, trading and
    trader all map to ``trad``; stopped and stops to ``stop``; strategies to ``strategy``.
    Digits-only tokens are kept as they are.
    """
    if word.isdigit() or len(word) <= 3:
        return word
    if word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if _VOWEL.search(base):
                word = base
                if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "aeioulsz":
                    word = word[:-1]
            break
    if word.endswith("ly") and len(word) - 2 >= 3:
        word = word[:-2]
    for suffix in ("est", "er"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) - 1 >= 3:
        word = word[:-1]
    return word


_WORD = re.compile(r"[^\W_]+")
_VOWEL = re.compile(r"[aeiouy]")

#: English function words that carry no retrieval signal (a short, fixed list).
_STOP_WORDS_TEXT = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either else
    ever few for from further had has have having he her here hers herself him himself his how
    however i if in into is it its itself just let may me might more most much must my myself
    no nor not now of off on once only or other our ours ourselves out over own per same shall
    she should so some such than that the their theirs them themselves then there these they
    this those though through thus to too under until up upon us very via was we were what
    when where whether which while who whom whose why will with within without would yet you
    your yours yourself yourselves
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_WORDS_TEXT.split())
