"""Trading Research Factory: books -> concepts -> modules -> systems -> backtests -> demo -> live.

The functional core lives in plain packages (schemas, store, market, strategy, engine, knowledge,
llm, ...) that import nothing from Dagster; ``factory_pipeline.defs`` is the thin Dagster shell.
"""

__version__ = "0.1.0"
