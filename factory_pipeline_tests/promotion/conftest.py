"""Fixtures of the promotion tests: the hand-written policy and an in-memory store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from factory_pipeline.promotion import PromotionPolicy
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline_tests.promotion.helpers import make_policy


@pytest.fixture
def policy() -> PromotionPolicy:
    return make_policy()


@pytest.fixture
def docs() -> Iterator[DocumentStore]:
    store = Store(":memory:")
    try:
        yield DocumentStore(store)
    finally:
        store.close()
