"""Model services: the OpenAI-compatible gateway, its keys and limits, and a mock model server."""
