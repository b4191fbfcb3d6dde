"""The ``books`` dynamic partitions: one partition per book file, keyed by its book id.

Why dynamic: books arrive as files at any time. The key is
:func:`factory_pipeline.knowledge.books.book_id_for` (derived from the file name), so an edited
file keeps its partition and its new version replaces the old one's data. Partitions are added
and removed by the books sensor (defs/knowledge/sensors.py) or by ``register_books`` for the CLI.
"""

import dagster as dg

#: Name of the dynamic partitions set in the Dagster instance.
BOOKS_PARTITIONS_NAME = "books"

books_partitions = dg.DynamicPartitionsDefinition(name=BOOKS_PARTITIONS_NAME)
