"""Trading Research Factory: books -> concepts -> modules -> systems -> backtests -> demo -> live.

The functional core lives in plain packages (schemas, store, market, strategy, engine, knowledge,
llm, ...) that import nothing from Dagster; ``factory_pipeline.defs`` is the thin Dagster shell.
"""

from factory_pipeline.numba_cache import configure as _configure_numba_cache

__version__ = "0.1.0"

_configure_numba_cache()  # before any module imports numba: see numba_cache
