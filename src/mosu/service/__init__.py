"""The control plane: REST API, store and scheduling loop around the engine."""
