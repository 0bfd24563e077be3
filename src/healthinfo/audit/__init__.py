"""Append-only audit events, written inside the caller's transaction."""
