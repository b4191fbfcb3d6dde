"""LLM backends: OpenAI-compatible client, offline deterministic backend, response cache."""
