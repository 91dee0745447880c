"""The ``mosu`` command line."""
