"""Executors that run the engine's decisions: local processes now, a Ray cluster later."""
