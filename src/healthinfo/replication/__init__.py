"""Reads served by PostgreSQL streaming replicas, without a client ever reading behind its writes.

``freshness`` decides, without I/O, whether a replica is fresh enough for one kit; ``reads``
routes history, audit and export reads accordingly. The guarantee is in docs/architecture.md
("Read replicas").
"""
