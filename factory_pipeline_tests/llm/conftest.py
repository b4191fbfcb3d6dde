"""Fixtures for the LLM tests: the fake OpenAI server and backends pointed at it.

``fake_openai_server`` lives in factory_pipeline_tests/fakes/openai_server.py so other test
folders can import it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from factory_pipeline.llm.openai_backend import OpenAIBackend
from factory_pipeline_tests.fakes.openai_server import (  # noqa: F401 - re-exported fixture
    FakeOpenAIServer,
    fake_openai_server,
)


class SleepRecorder:
    """Stands in for time.sleep: records the requested delays, never sleeps."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_backend(
    fake_openai_server: FakeOpenAIServer,  # noqa: F811 - the fixture imported above
    sleeps: SleepRecorder,
) -> Iterator[Callable[..., OpenAIBackend]]:
    """Factory of OpenAIBackends on the fake server (no real sleeping between retries)."""
    created: list[OpenAIBackend] = []

    def make(**overrides: Any) -> OpenAIBackend:
        options: dict[str, Any] = {
            "base_url": fake_openai_server.base_url,
            "api_key": "sk-test-secret-key",
            "model": "fake-model",
            "timeout_s": 5.0,
            "max_retries": 2,
            "max_validation_attempts": 3,
            "sleep": sleeps,
        }
        options.update(overrides)
        backend = OpenAIBackend(**options)
        created.append(backend)
        return backend

    yield make
    for backend in created:
        backend.close()
