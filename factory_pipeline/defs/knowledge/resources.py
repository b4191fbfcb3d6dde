"""Where the knowledge track finds its inputs: book folders, the module library and chunking.

Why a resource of its own: the shared resources (defs/resources.py) carry stores and backends but
not the input folders, and assets must not read process-wide settings directly, or a test or a
second deployment with another data folder would ingest the wrong books. The resource is built
from the same FactorySettings as every other resource (:func:`knowledge_resource`).
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from factory_pipeline.knowledge.chunking import DEFAULT_CHUNK_SIZE, DEFAULT_OVERLAP
from factory_pipeline.settings import FactorySettings, default_settings

#: Resource key the knowledge assets and the books sensor ask for.
KNOWLEDGE_RESOURCE_KEY = "knowledge"


class KnowledgeResource(dg.ConfigurableResource):
    """Book folders (``data/books`` plus FACTORY_BOOKS_DIRS), module library folder, chunking."""

    books_dirs: list[str] = Field(default_factory=list)
    modules_dir: str = ""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    chunk_overlap: int = DEFAULT_OVERLAP

    def book_folders(self) -> list[Path]:
        """The folders watched for books, in configuration order."""
        return [Path(folder) for folder in self.books_dirs]

    def modules_folder(self) -> Path:
        return Path(self.modules_dir)


def knowledge_resource(settings: FactorySettings | None = None) -> KnowledgeResource:
    """The knowledge resource of ``settings`` (the environment's settings by default)."""
    s = settings or default_settings()
    return KnowledgeResource(
        books_dirs=[str(folder) for folder in s.all_books_dirs],
        modules_dir=str(s.modules_dir),
    )
