"""Forwarding submissions to the lab's API: a transactional outbox, a relay, signed deliveries.

The outbox row is written in the submission's own transaction (``outbox``); a relay (in the
serve process, or ``healthinfo worker``) claims due rows, POSTs them signed (``delivery``,
``signing``), and records the outcome with the retry state in the row (``store``, ``backoff``).
Admins list and retry dead letters through ``rest``. See docs/forwarding.md.
"""
