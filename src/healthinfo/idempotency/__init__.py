"""Idempotency keys: the same request sent twice is performed once."""
