"""Trading venues. ``factory_pipeline.exchange.local`` is the local Bybit-v5-compatible exchange
(the embedded default venue and the test double); the order gateway in
``factory_pipeline.trading`` talks to it, or to Bybit demo, through pybit."""
