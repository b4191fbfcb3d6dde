"""Knowledge track: books, chunks, tags, embeddings, vector index, concepts, modules."""
