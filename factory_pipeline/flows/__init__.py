"""Dagster-free orchestration of core steps over the store (shared by assets, CLI, benches)."""
