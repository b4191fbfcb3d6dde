"""Knowledge track: books (dynamic partitions) -> pages -> segments (DuckDB + Qdrant) -> concept
cards -> strategy modules, plus the module library, the books sensor and the provenance checks."""
