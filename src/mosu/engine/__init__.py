"""The scheduling engine: pure functions over a snapshot, no I/O, no clock.

Nothing in this package reads a file, a socket, a database, the environment or
the wall clock; randomness only comes from a ``random.Random`` passed in.
"""
