"""DuckDB store: schema migrations, document repositories and market tables."""

from factory_pipeline.store.db import Store, apply_migrations, schema_version
from factory_pipeline.store.documents import DocumentStore, upsert_documents

__all__ = ["DocumentStore", "Store", "apply_migrations", "schema_version", "upsert_documents"]
