"""Persistence: ORM rows, conversions to API models, sessions and migrations."""
