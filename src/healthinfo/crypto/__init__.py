"""Encryption at rest: per-kit data keys, wrapped by master keys, kept in a separate key store."""
