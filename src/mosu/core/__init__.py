"""Shared vocabulary of mosu: records every layer speaks, with no I/O.

Nomenclature: a *job* is what a tenant submits; it is a gang of *replicas*, each
needing the same *shape* (GPUs, GPU share, CPU, memory). A *placement* says, for
every replica, which node and which GPU indices (and what share of each) it holds.
An *allocation* is a placement held by a running job.
"""
