"""Thin HTTP endpoints: parse, authorize, call one service function, return a model."""
